//! How a pending session ends without a reviewer (withdrawn, expired), how an
//! approved requester completes sign-in, code rotation, sign-out, and the
//! mirror that copies a recorded outcome into `app.sqlite` and the registry.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::alarm::{self, Recorded};
use super::{Flow, ReviewError, later};
use crate::clock::rfc3339;
use crate::domain::{Outcome, PendingCode, SessionToken, TokenHash};
use crate::ledger::{AppendError, LedgerDraft, SessionFacts};
use crate::registry::{ClaimError, PendingSession, RotateError};
use crate::store::flows::{self, Completion, NewSession};
use crate::store::pending;
use crate::store::sessions::BrowserSession;

/// How long a fully authenticated browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_hours(12);

/// Runs `work` on its own task and waits for it. The request that asked for
/// the work may be dropped at any `.await` (the client hung up); the work is
/// not: once a ledger append is asked for, what follows it (`app.sqlite`, the
/// registry, the sockets) happens too.
pub async fn run_to_end<T, F>(work: F) -> Result<T, ReviewError>
where
    F: Future<Output = Result<T, ReviewError>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) => Err(ReviewError::Storage(anyhow::anyhow!(
            "a review step stopped before it finished: {e}"
        ))),
    }
}

/// The facts the ledger records about a session.
pub fn facts(session: &PendingSession) -> SessionFacts {
    SessionFacts {
        session_id: session.id.clone(),
        requester_id: session.requester.id.clone(),
        requester_name: session.requester.display_name.clone(),
        requester_ip: session.client.ip.clone(),
        requester_user_agent: session.client.user_agent.clone(),
        session_created_at: rfc3339(session.created_at),
    }
}

/// Ends a pending session without a reviewer: `Withdrawn` or `Expired`.
/// Returns `Ok(false)` if it was no longer waiting.
pub async fn close(flow: &Flow, id: &str, outcome: Outcome) -> Result<bool, ReviewError> {
    let (flow, id) = (flow.clone(), id.to_string());
    run_to_end(async move { close_now(&flow, &id, outcome).await }).await
}

async fn close_now(flow: &Flow, id: &str, outcome: Outcome) -> Result<bool, ReviewError> {
    debug_assert!(!outcome.is_decision());
    let session = match flow.registry.begin_decision(id) {
        Ok(session) => session,
        Err(ClaimError::NotPending) => return Ok(false),
        Err(ClaimError::AlreadyDeciding) => return Err(ReviewError::AlreadyDecided),
    };
    let draft = match outcome {
        Outcome::Expired => LedgerDraft::expired(facts(&session)),
        _ => LedgerDraft::withdrawn(facts(&session)),
    };
    match flow.ledger.writer.append(draft).await {
        Ok(receipt) => {
            tracing::info!(session_id = %id, outcome = %outcome, seq = receipt.seq, "pending session closed");
            alarm::follow_up(flow, &Recorded::live(&session, None, outcome, &receipt)).await;
            apply_outcome(flow, id, outcome).await;
            crate::metrics::closed(outcome);
            Ok(true)
        }
        Err(AppendError::Duplicate(_)) => {
            // The ledger already has this session's outcome: it wins.
            settle_from_ledger(flow, id).await;
            Ok(false)
        }
        Err(AppendError::Unavailable(reason)) => {
            flow.registry.abort_decision(id);
            Err(ReviewError::LedgerUnavailable(reason))
        }
    }
}

/// Mirrors a recorded outcome into the registry (and so everyone listening)
/// and `app.sqlite`. The ledger already holds it, so a failure here is logged
/// and mended by the settling sweep.
///
/// The registry is told first: the outcome is durable in the ledger, and the
/// requester should not wait on a second fsync. `complete` accepts an approval
/// the ledger has even if this mirror has not landed yet.
pub async fn apply_outcome(flow: &Flow, id: &str, outcome: Outcome) {
    flow.registry.settle(id, outcome);
    let now = rfc3339(flow.clock.now());
    if let Err(e) = flows::mirror_outcome(&flow.db, id, outcome, &now).await {
        tracing::error!(session_id = %id, error = format!("{e:#}"), "recorded outcome not mirrored to app.sqlite; the settling sweep retries");
    }
}

/// Applies whatever the ledger says about a session, follow-ups (alarm,
/// webhook event) included: whoever appended it may have crashed before them.
pub async fn settle_from_ledger(flow: &Flow, id: &str) {
    match crate::ledger::read::entry_of(&flow.ledger.reader, id).await {
        Ok(Some(entry)) => {
            let Ok(outcome) = entry.fields.outcome.parse::<Outcome>() else {
                flow.registry.abort_decision(id);
                return;
            };
            if let Some(session) = flow.registry.get(id)
                && let Some(recorded) =
                    Recorded::from_ledger(&entry, session.requester, &flow.ages())
            {
                alarm::follow_up(flow, &recorded).await;
            }
            apply_outcome(flow, id, outcome).await;
        }
        Ok(None) => flow.registry.abort_decision(id),
        Err(e) => {
            tracing::error!(session_id = %id, error = format!("{e:#}"), "reading an outcome failed");
            flow.registry.abort_decision(id);
        }
    }
}

/// Gives the requester a new code, up to `max_code_rotations` per session.
pub async fn rotate_code(
    flow: &Flow,
    id: &str,
) -> Result<(PendingCode, DateTime<Utc>), ReviewError> {
    let max = flow.settings.peer_review.max_code_rotations;
    let (code, rotations) = flow.registry.rotate_code(id, max).map_err(|e| match e {
        RotateError::NotPending => ReviewError::Expired,
        RotateError::LimitReached { max } => ReviewError::RotationLimit { max },
    })?;
    let expires_at = flow
        .registry
        .get(id)
        .map(|s| s.expires_at)
        .ok_or(ReviewError::Expired)?;
    // The count is what limits rotations across a restart: it is stored even
    // if the requester hangs up now.
    let (db, owned_id) = (flow.db.clone(), id.to_string());
    run_to_end(async move {
        pending::set_code_rotations(&db, &owned_id, rotations).await?;
        Ok(())
    })
    .await?;
    tracing::info!(session_id = %id, rotations, "code rotated");
    Ok((code, expires_at))
}

/// The new tokens of a completed sign-in.
pub struct Completed {
    pub session: SessionToken,
    pub device: SessionToken,
}

/// Completes an approved sign-in: a new token replaces the half-authenticated
/// one, and the browser becomes a trusted device. An approval recorded before
/// the TTL may be completed until `complete_grace` after the TTL.
pub async fn complete(flow: &Flow, session: &BrowserSession) -> Result<Completed, ReviewError> {
    let id = session
        .pending_session_id
        .clone()
        .ok_or(ReviewError::NotApproved)?;
    // The ledger decides whether this session was approved; app.sqlite may
    // still be catching up with it (see `apply_outcome`).
    let approved =
        crate::ledger::read::outcome_of(&flow.ledger.reader, &id).await? == Some(Outcome::Approved);
    if !approved {
        return Err(ReviewError::NotApproved);
    }
    let (flow, old_token, user_id) = (
        flow.clone(),
        session.token_hash.clone(),
        session.user.id.clone(),
    );
    run_to_end(async move { complete_now(&flow, &id, &old_token, &user_id).await }).await
}

async fn complete_now(
    flow: &Flow,
    id: &str,
    old_token: &TokenHash,
    user_id: &str,
) -> Result<Completed, ReviewError> {
    let now = flow.clock.now();
    let tokens = Completed {
        session: SessionToken::generate(),
        device: SessionToken::generate(),
    };
    let trusted_for =
        Duration::from_secs(u64::from(flow.settings.auth.trusted_device_days) * 86_400);
    let (session_hash, device_hash) = (tokens.session.hash(), tokens.device.hash());
    let (created, expires) = (rfc3339(now), rfc3339(later(now, SESSION_LIFETIME)));
    let device_expires = rfc3339(later(now, trusted_for));
    let done = flows::complete(
        &flow.db,
        &Completion {
            pending_id: id,
            old_token,
            session: NewSession {
                token_hash: &session_hash,
                user_id,
                created_at: &created,
                expires_at: &expires,
            },
            device_hash: &device_hash,
            device_expires_at: &device_expires,
        },
    )
    .await?;
    if !done {
        return Err(ReviewError::NotApproved);
    }
    tracing::info!(user_id = %user_id, session_id = %id, "sign-in completed after approval");
    Ok(tokens)
}

/// The live browser session behind a token, if any (see `sessions::find` for
/// the completion grace).
pub async fn browser_session(
    flow: &Flow,
    token_hash: &TokenHash,
) -> anyhow::Result<Option<BrowserSession>> {
    let now = flow.clock.now();
    let grace = chrono::Duration::from_std(flow.settings.peer_review.complete_grace)
        .unwrap_or(chrono::Duration::zero());
    crate::store::sessions::find(&flow.db, token_hash, &rfc3339(now), &rfc3339(now - grace)).await
}

/// Ends a browser session: a half-authenticated one withdraws its review
/// first. Its sockets close at once.
pub async fn sign_out(flow: &Flow, session: &BrowserSession) -> Result<(), ReviewError> {
    let (flow, session) = (flow.clone(), session.clone());
    run_to_end(async move {
        if let Some(pending_id) = &session.pending_session_id {
            close_now(&flow, pending_id, Outcome::Withdrawn).await?;
        }
        flows::sign_out(&flow.db, &session.token_hash).await?;
        // Nobody listening is fine: the session had no sockets.
        let _ = flow.session_ended.send(session.token_hash.clone());
        tracing::info!(user_id = %session.user.id, "signed out");
        Ok(())
    })
    .await
}
