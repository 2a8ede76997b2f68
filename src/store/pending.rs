//! The durable copy of pending peer reviews. The registry holds the hot copy;
//! this table lets a restart lose nothing (codes excepted: they are never stored).

use anyhow::Context;
use sqlx::Row;
use sqlx::SqliteExecutor;

use super::users::{USER_COLUMNS, User, user_from_row};

/// A pending session's status in `app.sqlite`, and `/api/v1/pending`'s `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PendingStatus {
    Pending,
    /// Approved in the ledger; the requester has not completed sign-in yet.
    Approved,
    /// Approved and completed: the browser now holds a full session.
    Completed,
    Denied,
    Expired,
    Withdrawn,
}

impl PendingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingStatus::Pending => "pending",
            PendingStatus::Approved => "approved",
            PendingStatus::Completed => "completed",
            PendingStatus::Denied => "denied",
            PendingStatus::Expired => "expired",
            PendingStatus::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Completed,
            Self::Denied,
            Self::Expired,
            Self::Withdrawn,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl From<crate::domain::Outcome> for PendingStatus {
    fn from(outcome: crate::domain::Outcome) -> Self {
        use crate::domain::Outcome;
        match outcome {
            Outcome::Approved => PendingStatus::Approved,
            // app.sqlite's CHECK constraint predates the mismatch outcome; the
            // ledger holds the exact outcome, and `mismatches` the alarm.
            Outcome::Denied | Outcome::Mismatch => PendingStatus::Denied,
            Outcome::Expired => PendingStatus::Expired,
            Outcome::Withdrawn => PendingStatus::Withdrawn,
        }
    }
}

/// A pending session row with its requester.
#[derive(Debug, Clone)]
pub struct PendingRow {
    pub id: String,
    pub user: User,
    pub status: PendingStatus,
    pub client_ip: String,
    pub user_agent: String,
    pub created_at: String,
    pub expires_at: String,
    pub code_rotations: u32,
    /// Where the requester was going (a checked `rd`), if anywhere.
    pub return_to: Option<String>,
}

pub struct NewPending<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub client_ip: &'a str,
    pub user_agent: &'a str,
    pub created_at: &'a str,
    pub expires_at: &'a str,
    pub return_to: Option<&'a str>,
}

pub async fn insert(db: impl SqliteExecutor<'_>, p: &NewPending<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO pending_sessions (id, user_id, status, client_ip, user_agent, created_at, expires_at, return_to)
         VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
    )
    .bind(p.id)
    .bind(p.user_id)
    .bind(p.client_ip)
    .bind(p.user_agent)
    .bind(p.created_at)
    .bind(p.expires_at)
    .bind(p.return_to)
    .execute(db)
    .await
    .context("recording a pending session")?;
    Ok(())
}

fn row_to_pending(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<PendingRow> {
    let status: String = row.try_get("status")?;
    let rotations: i64 = row.try_get("code_rotations")?;
    Ok(PendingRow {
        id: row.try_get("pid")?,
        user: user_from_row(row)?,
        status: PendingStatus::parse(&status)
            .with_context(|| format!("unknown pending status `{status}`"))?,
        client_ip: row.try_get("client_ip")?,
        user_agent: row.try_get("user_agent")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        code_rotations: u32::try_from(rotations).unwrap_or(u32::MAX),
        return_to: row.try_get("return_to")?,
    })
}

const PENDING_SELECT: &str = "SELECT p.id AS pid, p.status, p.client_ip, p.user_agent, p.created_at, p.expires_at, p.code_rotations, p.return_to";

pub async fn find(db: impl SqliteExecutor<'_>, id: &str) -> anyhow::Result<Option<PendingRow>> {
    let sql = format!(
        "{PENDING_SELECT}, {USER_COLUMNS} FROM pending_sessions p JOIN users u ON u.id = p.user_id WHERE p.id = ?"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("looking up a pending session")?;
    row.as_ref().map(row_to_pending).transpose()
}

/// Sessions still waiting on a reviewer or on their requester, oldest first.
pub async fn list_open(db: impl SqliteExecutor<'_>) -> anyhow::Result<Vec<PendingRow>> {
    let sql = format!(
        "{PENDING_SELECT}, {USER_COLUMNS} FROM pending_sessions p JOIN users u ON u.id = p.user_id
         WHERE p.status IN ('pending', 'approved') ORDER BY p.created_at, p.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db)
        .await
        .context("listing open pending sessions")?;
    rows.iter().map(row_to_pending).collect()
}

/// The user's session that is still waiting, if any.
pub async fn find_waiting_for_user(
    db: impl SqliteExecutor<'_>,
    user_id: &str,
) -> anyhow::Result<Option<String>> {
    let id = sqlx::query_scalar(
        "SELECT id FROM pending_sessions WHERE user_id = ? AND status = 'pending' ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
    .context("looking up a user's pending session")?;
    Ok(id)
}

/// Moves a session from one status to another; returns false if it was not in `from`.
pub async fn transition(
    db: impl SqliteExecutor<'_>,
    id: &str,
    from: &[PendingStatus],
    to: PendingStatus,
    now: &str,
) -> anyhow::Result<bool> {
    let placeholders = vec!["?"; from.len()].join(", ");
    let sql = format!(
        "UPDATE pending_sessions SET status = ?, settled_at = ? WHERE id = ? AND status IN ({placeholders})"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to.as_str())
        .bind(now)
        .bind(id);
    for status in from {
        query = query.bind(status.as_str());
    }
    let done = query
        .execute(db)
        .await
        .context("updating a pending session")?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_code_rotations(
    db: impl SqliteExecutor<'_>,
    id: &str,
    rotations: u32,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE pending_sessions SET code_rotations = ? WHERE id = ?")
        .bind(i64::from(rotations))
        .bind(id)
        .execute(db)
        .await
        .context("counting a code rotation")?;
    Ok(())
}
