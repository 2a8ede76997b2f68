//! Browser sessions: the cookie's token hash, whose session it is, and whether
//! it is half-authenticated (waiting for peer review) or fully authenticated.

use anyhow::Context;
use sqlx::Row;
use sqlx::SqliteExecutor;

use super::users::{USER_COLUMNS, User, user_from_row};
use crate::domain::TokenHash;

/// Serialised as `/api/v1/me`'s and `/api/v1/login`'s `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Passed the password step; waiting for a reviewer.
    HalfAuthenticated,
    Authenticated,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::HalfAuthenticated => "half_authenticated",
            SessionState::Authenticated => "authenticated",
        }
    }
}

/// A live browser session and its user.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub token_hash: TokenHash,
    pub user: User,
    pub state: SessionState,
    /// The pending peer review this half-authenticated session waits on.
    pub pending_session_id: Option<String>,
    /// When the session ends (RFC 3339), as forward auth reports it.
    pub expires_at: String,
}

impl BrowserSession {
    /// Signed in fully, with the reviewer role.
    pub fn may_review(&self) -> bool {
        self.state == SessionState::Authenticated && self.user.is_reviewer
    }
}

pub async fn insert(
    db: impl SqliteExecutor<'_>,
    token_hash: &TokenHash,
    user_id: &str,
    state: SessionState,
    pending_session_id: Option<&str>,
    now: &str,
    expires_at: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO browser_sessions (token_hash, user_id, state, pending_session_id, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&token_hash.0)
    .bind(user_id)
    .bind(state.as_str())
    .bind(pending_session_id)
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await
    .context("creating a browser session")?;
    Ok(())
}

/// Finds the live session for a token hash; expired sessions and disabled
/// users are not found. A half-authenticated session whose review was
/// approved lives on past its expiry while it expired after `grace_cutoff`
/// (now minus the completion grace), so that it can still complete.
pub async fn find(
    db: impl SqliteExecutor<'_>,
    token_hash: &TokenHash,
    now: &str,
    grace_cutoff: &str,
) -> anyhow::Result<Option<BrowserSession>> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, s.state, s.pending_session_id, s.expires_at AS session_expires_at
         FROM browser_sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ? AND u.disabled = 0
           AND (s.expires_at > ?
                OR (s.state = 'half_authenticated' AND s.expires_at > ?
                    AND EXISTS (SELECT 1 FROM pending_sessions p
                                WHERE p.id = s.pending_session_id AND p.status = 'approved')))"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&token_hash.0)
        .bind(now)
        .bind(grace_cutoff)
        .fetch_optional(db)
        .await
        .context("looking up a browser session")?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    Ok(Some(BrowserSession {
        token_hash: token_hash.clone(),
        user: user_from_row(&row)?,
        state: if state == "authenticated" {
            SessionState::Authenticated
        } else {
            SessionState::HalfAuthenticated
        },
        pending_session_id: row.try_get("pending_session_id")?,
        expires_at: row.try_get("session_expires_at")?,
    }))
}

/// Ends a browser session; `Ok(false)` if there was none.
pub async fn delete(db: impl SqliteExecutor<'_>, token_hash: &TokenHash) -> anyhow::Result<bool> {
    let done = sqlx::query("DELETE FROM browser_sessions WHERE token_hash = ?")
        .bind(&token_hash.0)
        .execute(db)
        .await
        .context("ending a browser session")?;
    Ok(done.rows_affected() > 0)
}

/// Ends the browser session(s) waiting on a pending review.
pub async fn delete_for_pending(
    db: impl SqliteExecutor<'_>,
    pending_session_id: &str,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM browser_sessions WHERE pending_session_id = ?")
        .bind(pending_session_id)
        .execute(db)
        .await
        .context("ending a pending session's browser session")?;
    Ok(())
}
