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

/// The entry recording a session's outcome, if the ledger has one.
pub async fn entry_of(pool: &SqlitePool, session_id: &str) -> anyhow::Result<Option<StoredEntry>> {
    let row = sqlx::query("SELECT * FROM ledger_entries WHERE session_id = ?")
        .bind(session_id)
        .fetch_optional(pool)
        .await
        .context("reading a session's entry from the ledger")?;
    row.as_ref().map(stored_from_row).transpose()
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

/// Filters for the ledger browser.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Only entries before this seq (paging newest first).
    pub before: Option<i64>,
    pub outcome: Option<Outcome>,
    /// Only entries whose requester or reviewer has this stable user id.
    pub user_id: Option<String>,
}

/// A page of entries, newest first.
pub async fn page(
    pool: &SqlitePool,
    filter: &EntryFilter,
    limit: i64,
) -> anyhow::Result<Vec<StoredEntry>> {
    let rows = sqlx::query(
        "SELECT * FROM ledger_entries
         WHERE (?1 IS NULL OR seq < ?1)
           AND (?2 IS NULL OR outcome = ?2)
           AND (?3 IS NULL OR requester_id = ?3 OR reviewer_id = ?3)
         ORDER BY seq DESC LIMIT ?4",
    )
    .bind(filter.before)
    .bind(
        filter
            .outcome
            .map(super::super::domain::outcome::Outcome::as_str),
    )
    .bind(filter.user_id.as_deref())
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("reading a page of the ledger")?;
    rows.iter().map(stored_from_row).collect()
}

/// The first seq whose `decided_at` is at or after `since`, found by binary
/// search on the primary key: entries are appended in time order, so this
/// needs ~20 point lookups even on a million entries, and no extra index.
pub async fn first_seq_since(pool: &SqlitePool, since: &str) -> anyhow::Result<i64> {
    let last: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM ledger_entries")
        .fetch_one(pool)
        .await?;
    let Some(last) = last else { return Ok(1) };
    let (mut lo, mut hi) = (1i64, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at: Option<String> =
            sqlx::query_scalar("SELECT decided_at FROM ledger_entries WHERE seq = ?")
                .bind(mid)
                .fetch_optional(pool)
                .await?;
        match at {
            Some(at) if at.as_str() < since => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// The peer-review KPIs of the admin page, all computed from the ledger.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Kpis {
    /// Approvals, denials and mismatches in the last 24 hours and 7 days.
    pub decisions_24h: i64,
    pub decisions_7d: i64,
    pub expired_24h: i64,
    pub expired_7d: i64,
    /// Median and p90 (nearest rank) seconds from sign-in to decision, 7 days.
    pub median_decision_secs: Option<f64>,
    pub p90_decision_secs: Option<f64>,
    /// Of the sessions that ended in the last 7 days (approved, denied,
    /// mismatch or expired; withdrawn ones are the requester's choice and left out), the
    /// share decided within 10 minutes.
    pub decided_within_10m: Option<f64>,
}

/// The goal the admin page measures against.
pub const DECIDED_WITHIN_10M_GOAL: f64 = 0.9;

pub async fn kpis(pool: &SqlitePool, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Kpis> {
    use crate::clock::rfc3339;
    let day = rfc3339(now - chrono::Duration::hours(24));
    let week = rfc3339(now - chrono::Duration::days(7));
    let from = first_seq_since(pool, &week).await?;
    let rows: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT outcome, decided_at,
                (julianday(decided_at) - julianday(session_created_at)) * 86400.0
         FROM ledger_entries WHERE seq >= ? AND decided_at >= ?",
    )
    .bind(from)
    .bind(&week)
    .fetch_all(pool)
    .await
    .context("reading the KPIs")?;
    let mut kpis = Kpis {
        decisions_24h: 0,
        decisions_7d: 0,
        expired_24h: 0,
        expired_7d: 0,
        median_decision_secs: None,
        p90_decision_secs: None,
        decided_within_10m: None,
    };
    let mut waits = Vec::new();
    let mut ended = 0usize;
    for (outcome, decided_at, secs) in rows {
        let recent = decided_at.as_str() >= day.as_str();
        match outcome.as_str() {
            // A mismatch is a reviewer's decision too: it counts towards the
            // 10-minute share like a denial.
            "approved" | "denied" | "mismatch" => {
                kpis.decisions_7d += 1;
                kpis.decisions_24h += i64::from(recent);
                // Rounded to milliseconds: julianday arithmetic is floating point.
                waits.push((secs * 1000.0).round() / 1000.0);
                ended += 1;
            }
            "expired" => {
                kpis.expired_7d += 1;
                kpis.expired_24h += i64::from(recent);
                ended += 1;
            }
            _ => {}
        }
    }
    waits.sort_by(f64::total_cmp);
    if !waits.is_empty() {
        kpis.median_decision_secs = Some(crate::domain::percentile(&waits, 50.0));
        kpis.p90_decision_secs = Some(crate::domain::percentile(&waits, 90.0));
    }
    if ended > 0 {
        let quick = waits.iter().filter(|w| **w <= 600.0).count();
        kpis.decided_within_10m = Some(quick as f64 / ended as f64);
    }
    Ok(kpis)
}

/// Whether the ledger answers (for `/healthz`).
pub async fn ping(pool: &SqlitePool) -> anyhow::Result<()> {
    sqlx::query("SELECT 1 FROM ledger_meta LIMIT 1")
        .execute(pool)
        .await
        .context("ledger.sqlite does not answer")?;
    Ok(())
}

/// The ledger's id (`ledger_meta`), part of the log's default origin.
pub async fn ledger_id(pool: &SqlitePool) -> anyhow::Result<String> {
    sqlx::query_scalar("SELECT value FROM ledger_meta WHERE key = 'ledger_id'")
        .fetch_one(pool)
        .await
        .context("reading the ledger id")
}

/// The entry hashes of seq `first..first + count`, as raw bytes (the tree's
/// records, for entry bundles). Fewer when the ledger is shorter.
pub async fn entry_hashes(
    pool: &SqlitePool,
    first: i64,
    count: i64,
) -> anyhow::Result<Vec<[u8; 32]>> {
    let hashes: Vec<String> = sqlx::query_scalar(
        "SELECT entry_hash FROM ledger_entries WHERE seq >= ? AND seq < ? ORDER BY seq",
    )
    .bind(first)
    .bind(first.saturating_add(count))
    .fetch_all(pool)
    .await
    .context("reading entry hashes")?;
    hashes
        .iter()
        .map(|h| super::chain::parse_hash(h).context("a malformed entry_hash"))
        .collect()
}
