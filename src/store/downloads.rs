//! Who downloaded which ledger snapshot, and when.

use anyhow::Context;
use sqlx::{Row, SqliteExecutor};

#[derive(Debug, Clone)]
pub struct Download {
    pub username: String,
    pub downloaded_at: String,
    pub head_seq: i64,
    pub head_hash: String,
    pub filename: String,
}

pub async fn record(
    db: impl SqliteExecutor<'_>,
    user_id: &str,
    username: &str,
    now: &str,
    head_seq: i64,
    head_hash: &str,
    filename: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ledger_downloads (user_id, username, downloaded_at, head_seq, head_hash, filename)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(user_id)
    .bind(username)
    .bind(now)
    .bind(head_seq)
    .bind(head_hash)
    .bind(filename)
    .execute(db)
    .await
    .context("logging a ledger download")?;
    Ok(())
}

pub async fn recent(db: impl SqliteExecutor<'_>, limit: i64) -> anyhow::Result<Vec<Download>> {
    let rows = sqlx::query(
        "SELECT username, downloaded_at, head_seq, head_hash, filename
         FROM ledger_downloads ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(db)
    .await
    .context("listing ledger downloads")?;
    rows.iter()
        .map(|r| {
            Ok(Download {
                username: r.try_get("username")?,
                downloaded_at: r.try_get("downloaded_at")?,
                head_seq: r.try_get("head_seq")?,
                head_hash: r.try_get("head_hash")?,
                filename: r.try_get("filename")?,
            })
        })
        .collect()
}
