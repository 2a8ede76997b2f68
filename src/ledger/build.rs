//! Building ledgers directly, without the writer: known-answer fixtures, the
//! million-entry benchmark ledger, tamper tests. Hashes are chained exactly as
//! the writer chains them; rows go in large transactions.

use std::path::Path;

use anyhow::Context;
use sqlx::Connection;

use super::chain::{EntryFields, Head};
use super::writer::{ChainedRow, insert_rows, open_write_connection, read_head};

/// Rows per transaction when building.
const ROWS_PER_TRANSACTION: usize = 10_000;

/// Creates (or extends) the ledger at `path` with `count` entries made by
/// `make(seq)`; `seq` and the hashes are set here. Returns the new head.
pub async fn append_entries(
    path: &Path,
    count: usize,
    mut make: impl FnMut(i64) -> EntryFields,
) -> anyhow::Result<Head> {
    let mut conn = open_write_connection(path).await?;
    let mut head = read_head(&mut conn).await?;
    let mut done = 0;
    while done < count {
        let mut rows = Vec::with_capacity(ROWS_PER_TRANSACTION);
        for _ in 0..ROWS_PER_TRANSACTION.min(count - done) {
            let mut fields = make(head.seq + 1);
            fields.seq = head.seq + 1;
            rows.push(ChainedRow::link(&mut head, fields));
            done += 1;
        }
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        insert_rows(&mut tx, &rows).await?;
        tx.commit().await.context("committing built entries")?;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(head)
}

/// A plausible entry for `seq`, for benchmarks and tests.
pub fn sample_entry(seq: i64) -> EntryFields {
    let decided = seq % 3 != 0;
    EntryFields {
        seq,
        entry_id: format!("01SAMPLE{seq:018}"),
        session_id: format!("ps_sample{seq:010}"),
        outcome: if decided { "approved" } else { "expired" }.into(),
        requester_id: format!("usr_SAMPLE{:010}", seq % 5000),
        requester_name: format!("Requester {}", seq % 5000),
        requester_ip: "192.0.2.10".into(),
        requester_user_agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0".into(),
        reviewer_id: if decided {
            "usr_SAMPLEREVIEWER1".into()
        } else {
            String::new()
        },
        reviewer_name: if decided {
            "Rita Reviewer".into()
        } else {
            String::new()
        },
        channel: if decided {
            "call".into()
        } else {
            String::new()
        },
        code_confirmed: i64::from(decided),
        note: if decided {
            "Called back on the directory number; the code matched.".into()
        } else {
            String::new()
        },
        session_created_at: "2026-11-28T03:20:38.123Z".into(),
        decided_at: "2026-11-28T03:22:05.907Z".into(),
    }
}
