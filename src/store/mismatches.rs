//! Mismatches in `app.sqlite`: the account lock a mismatch leaves, and the
//! alarm `/admin` shows until an admin acknowledges it (who and when).

use anyhow::Context;
use sqlx::{FromRow, SqlitePool};

/// A mismatch to record, with the ledger row that holds it.
pub struct NewMismatch<'a> {
    pub session_id: &'a str,
    pub user_id: &'a str,
    pub requester_name: &'a str,
    pub requester_ip: &'a str,
    pub reviewer_id: &'a str,
    pub reviewer_name: &'a str,
    pub seq: i64,
    pub entry_hash: &'a str,
    pub recorded_at: &'a str,
}

/// A mismatch as `/admin` lists it.
#[derive(Debug, Clone, FromRow)]
pub struct Mismatch {
    pub session_id: String,
    pub username: String,
    pub requester_name: String,
    pub requester_ip: String,
    pub reviewer_name: String,
    pub seq: i64,
    pub entry_hash: String,
    pub recorded_at: String,
    pub account_locked: bool,
    /// Whether the account is locked now (an unlock may have followed).
    pub locked_now: bool,
}

/// Records a mismatch and, with `lock`, locks the account, in one transaction.
/// Recording the same session again changes nothing (start-up re-derives
/// outcomes the ledger has, and may meet this one twice).
pub async fn record(db: &SqlitePool, m: &NewMismatch<'_>, lock: bool) -> anyhow::Result<()> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO mismatches (session_id, user_id, requester_name, requester_ip,
                reviewer_id, reviewer_name, seq, entry_hash, recorded_at, account_locked)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(m.session_id)
    .bind(m.user_id)
    .bind(m.requester_name)
    .bind(m.requester_ip)
    .bind(m.reviewer_id)
    .bind(m.reviewer_name)
    .bind(m.seq)
    .bind(m.entry_hash)
    .bind(m.recorded_at)
    .bind(lock)
    .execute(&mut *tx)
    .await
    .context("recording a mismatch")?;
    // Only the first recording locks: a replay after `user unlock` must not
    // lock the account again.
    if lock && inserted.rows_affected() == 1 {
        sqlx::query("UPDATE users SET locked_at = ? WHERE id = ? AND locked_at IS NULL")
            .bind(m.recorded_at)
            .bind(m.user_id)
            .execute(&mut *tx)
            .await
            .context("locking an account after a mismatch")?;
    }
    tx.commit().await.context("committing a mismatch")
}

/// Mismatches nobody has acknowledged yet, newest first.
pub async fn open(db: &SqlitePool) -> anyhow::Result<Vec<Mismatch>> {
    sqlx::query_as(
        "SELECT m.session_id, u.username, m.requester_name, m.requester_ip,
                m.reviewer_name, m.seq, m.entry_hash, m.recorded_at, m.account_locked,
                (u.locked_at IS NOT NULL) AS locked_now
         FROM mismatches m JOIN users u ON u.id = m.user_id
         WHERE m.acknowledged_at IS NULL ORDER BY m.recorded_at DESC, m.seq DESC",
    )
    .fetch_all(db)
    .await
    .context("reading open mismatches")
}

/// Marks a mismatch acknowledged by an admin; `false` if there was no open one.
pub async fn acknowledge(
    db: &SqlitePool,
    session_id: &str,
    admin_id: &str,
    admin_name: &str,
    now: &str,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE mismatches SET acknowledged_by = ?, acknowledged_by_name = ?, acknowledged_at = ?
         WHERE session_id = ? AND acknowledged_at IS NULL",
    )
    .bind(admin_id)
    .bind(admin_name)
    .bind(now)
    .bind(session_id)
    .execute(db)
    .await
    .context("acknowledging a mismatch")?;
    Ok(done.rows_affected() == 1)
}
