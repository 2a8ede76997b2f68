//! The multi-statement changes the review flow makes to `app.sqlite`, each in
//! one `BEGIN IMMEDIATE` transaction so that a crash leaves all or nothing.

use anyhow::Context;
use sqlx::SqlitePool;

use super::pending::{self, NewPending, PendingStatus};
use super::sessions::{self, SessionState};
use super::{devices, users};
use crate::domain::{Outcome, TokenHash};

/// A browser session to create: whose, until when.
pub struct NewSession<'a> {
    pub token_hash: &'a TokenHash,
    pub user_id: &'a str,
    pub created_at: &'a str,
    pub expires_at: &'a str,
}

/// Starts a fully authenticated session, ending `previous` (the session the
/// request came with) in the same transaction.
pub async fn sign_in_fully(
    db: &SqlitePool,
    previous: Option<&TokenHash>,
    session: &NewSession<'_>,
) -> anyhow::Result<()> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(previous) = previous {
        sessions::delete(&mut *tx, previous).await?;
    }
    sessions::insert(
        &mut *tx,
        session.token_hash,
        session.user_id,
        SessionState::Authenticated,
        None,
        session.created_at,
        session.expires_at,
    )
    .await?;
    tx.commit().await.context("committing a sign-in")
}

/// Records a pending session and the half-authenticated browser session that
/// waits on it, ending `previous`.
pub async fn open_review(
    db: &SqlitePool,
    previous: Option<&TokenHash>,
    pending: &NewPending<'_>,
    token_hash: &TokenHash,
    session_expires_at: &str,
) -> anyhow::Result<()> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(previous) = previous {
        sessions::delete(&mut *tx, previous).await?;
    }
    pending::insert(&mut *tx, pending).await?;
    sessions::insert(
        &mut *tx,
        token_hash,
        pending.user_id,
        SessionState::HalfAuthenticated,
        Some(pending.id),
        pending.created_at,
        session_expires_at,
    )
    .await?;
    tx.commit().await.context("committing a pending session")
}

/// Mirrors an outcome the ledger holds: the pending session leaves `pending`,
/// and unless it was approved its browser session ends.
pub async fn mirror_outcome(
    db: &SqlitePool,
    id: &str,
    outcome: Outcome,
    now: &str,
) -> anyhow::Result<()> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    pending::transition(
        &mut *tx,
        id,
        &[PendingStatus::Pending],
        PendingStatus::from(outcome),
        now,
    )
    .await?;
    if outcome != Outcome::Approved {
        sessions::delete_for_pending(&mut *tx, id).await?;
    }
    tx.commit().await.context("mirroring an outcome")
}

/// An approved sign-in to complete: the half-authenticated token it replaces,
/// and the new session and device.
pub struct Completion<'a> {
    pub pending_id: &'a str,
    pub old_token: &'a TokenHash,
    pub session: NewSession<'a>,
    pub device_hash: &'a TokenHash,
    pub device_expires_at: &'a str,
}

/// Completes an approved sign-in; `Ok(false)` if the pending session was not
/// there to complete (already completed, or ended).
pub async fn complete(db: &SqlitePool, c: &Completion<'_>) -> anyhow::Result<bool> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let moved = pending::transition(
        &mut *tx,
        c.pending_id,
        &[PendingStatus::Approved, PendingStatus::Pending],
        PendingStatus::Completed,
        c.session.created_at,
    )
    .await?;
    // The half-authenticated token must still exist: a cancelled or signed-out
    // browser cannot complete, whatever the ledger says.
    let had_token = sessions::delete(&mut *tx, c.old_token).await?;
    if !moved || !had_token {
        tx.rollback().await?;
        return Ok(false);
    }
    sessions::insert(
        &mut *tx,
        c.session.token_hash,
        c.session.user_id,
        SessionState::Authenticated,
        None,
        c.session.created_at,
        c.session.expires_at,
    )
    .await?;
    devices::insert(
        &mut *tx,
        c.device_hash,
        c.session.user_id,
        c.session.created_at,
        c.device_expires_at,
    )
    .await?;
    tx.commit().await.context("completing a sign-in")?;
    Ok(true)
}

/// Puts an approval the ledger does not have back to waiting (fail closed).
pub async fn reopen(db: &SqlitePool, id: &str, now: &str) -> anyhow::Result<()> {
    pending::transition(
        db,
        id,
        &[PendingStatus::Approved],
        PendingStatus::Pending,
        now,
    )
    .await?;
    Ok(())
}

/// Ends one browser session (sign-out).
pub async fn sign_out(db: &SqlitePool, token_hash: &TokenHash) -> anyhow::Result<()> {
    sessions::delete(db, token_hash).await?;
    Ok(())
}

/// The counter that moves whenever an account changes (roles, disabled),
/// from this process or from the command line.
pub async fn accounts_version(db: &SqlitePool) -> anyhow::Result<i64> {
    users::accounts_version(db).await
}
