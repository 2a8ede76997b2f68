//! Reading the ledger through the read pool: outcomes by session for start-up
//! reconciliation, and entries for the admin pages.

use anyhow::Context;
use sqlx::{Row, SqlitePool};

use super::chain::EntryFields;
use crate::domain::Outcome;

/// A stored entry with its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub fields: EntryFields,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// The recorded outcome of a session, if the ledger has one.
pub async fn outcome_of(pool: &SqlitePool, session_id: &str) -> anyhow::Result<Option<Outcome>> {
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM ledger_entries WHERE session_id = ?")
            .bind(session_id)
            .fetch_optional(pool)
            .await
            .context("reading a session's outcome from the ledger")?;
    outcome
        .map(|o| o.parse::<Outcome>().map_err(anyhow::Error::msg))
        .transpose()
}

/// Every entry in `seq` order (for tests and tools; the admin pages page through).
pub async fn all_entries(pool: &SqlitePool) -> anyhow::Result<Vec<StoredEntry>> {
    let rows = sqlx::query("SELECT * FROM ledger_entries ORDER BY seq")
        .fetch_all(pool)
        .await
        .context("reading the ledger")?;
    rows.iter().map(stored_from_row).collect()
}

pub(crate) fn stored_from_row(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<StoredEntry> {
    Ok(StoredEntry {
        fields: EntryFields {
            seq: row.try_get("seq")?,
            entry_id: row.try_get("entry_id")?,
            session_id: row.try_get("session_id")?,
            outcome: row.try_get("outcome")?,
            requester_id: row.try_get("requester_id")?,
            requester_name: row.try_get("requester_name")?,
            requester_ip: row.try_get("requester_ip")?,
            requester_user_agent: row.try_get("requester_user_agent")?,
            reviewer_id: row.try_get("reviewer_id")?,
            reviewer_name: row.try_get("reviewer_name")?,
            channel: row.try_get("channel")?,
            code_confirmed: row.try_get("code_confirmed")?,
            note: row.try_get("note")?,
            session_created_at: row.try_get("session_created_at")?,
            decided_at: row.try_get("decided_at")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        entry_hash: row.try_get("entry_hash")?,
    })
}
