//! The peer-review flow, in the product's words: a sign-in starts a review (or
//! skips it), the requester may get a new code or withdraw, the review expires,
//! and an approved requester completes sign-in. Decisions join in `decide`.
//!
//! The rule everywhere: an outcome is appended to the ledger and acknowledged
//! durable before `app.sqlite` or the registry changes and before anyone is told.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::clock::rfc3339;
use crate::domain::{Channel, Note, Outcome, PendingCode, SessionToken, TokenHash, ids};
use crate::error::Error;
use crate::ledger::{AppendError, Decider, LedgerDraft, SessionFacts};
use crate::registry::{Ages, ClaimError, Client, Level, PendingSession, Requester, RotateError};
use crate::state::AppState;
use crate::store::devices;
use crate::store::pending::{self, NewPending, PendingRow, PendingStatus};
use crate::store::sessions::{self, BrowserSession, SessionState};
use crate::store::users::User;

/// How long a fully authenticated browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Where a sign-in came from.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

/// What a successful password step leads to.
#[derive(Debug)]
pub enum SignIn {
    /// Exempt user or trusted device: signed in.
    Authenticated(SessionToken),
    /// Waiting for a reviewer.
    HalfAuthenticated(SessionToken),
}

fn later(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX)
}

/// Finishes a sign-in whose password was right. Ends the browser session the
/// request came with (`previous`), so the token always rotates.
pub async fn sign_in(
    app: &AppState,
    user: &User,
    client: &ClientInfo,
    device_trusted: bool,
    previous: Option<&TokenHash>,
) -> Result<SignIn, Error> {
    let now = app.clock.now();
    let token = SessionToken::generate();
    if user.is_exempt || device_trusted {
        let mut tx = app.db.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(previous) = previous {
            sessions::delete(&mut tx, previous).await?;
        }
        sessions::insert(
            &mut tx,
            &token.hash(),
            &user.id,
            SessionState::Authenticated,
            None,
            &rfc3339(now),
            &rfc3339(later(now, SESSION_LIFETIME)),
        )
        .await?;
        tx.commit().await.context("committing a sign-in")?;
        tracing::info!(user_id = %user.id, "signed in without peer review");
        return Ok(SignIn::Authenticated(token));
    }

    // A stolen password hammered to wear reviewers down gets nowhere: only so
    // many reviews may start per user and per address.
    let user_key = format!("user:{}", user.id);
    let ip_key = format!("ip:{}", client.ip);
    app.review_starts_per_user
        .check(&[&user_key])
        .and_then(|()| app.review_starts_per_ip.check(&[&ip_key]))
        .map_err(|retry_after_secs| Error::RateLimited { retry_after_secs })?;
    app.review_starts_per_user.record(&[&user_key]);
    app.review_starts_per_ip.record(&[&ip_key]);

    // One pending session per user: a new sign-in withdraws the older one.
    let older = {
        let mut conn = app.db.acquire().await?;
        pending::find_waiting_for_user(&mut conn, &user.id).await?
    };
    if let Some(older) = older {
        close(app, &older, Outcome::Withdrawn).await?;
    }

    let id = ids::new_pending_id();
    let expires_at = later(now, app.settings.peer_review.session_ttl);
    let (created, expires) = (rfc3339(now), rfc3339(expires_at));
    let mut tx = app.db.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(previous) = previous {
        sessions::delete(&mut tx, previous).await?;
    }
    pending::insert(
        &mut tx,
        &NewPending {
            id: &id,
            user_id: &user.id,
            client_ip: &client.ip,
            user_agent: &client.user_agent,
            created_at: &created,
            expires_at: &expires,
        },
    )
    .await?;
    sessions::insert(
        &mut tx,
        &token.hash(),
        &user.id,
        SessionState::HalfAuthenticated,
        Some(&id),
        &created,
        &expires,
    )
    .await?;
    tx.commit().await.context("committing a pending session")?;

    app.registry.insert(
        PendingSession {
            id: id.clone(),
            requester: Requester {
                id: user.id.clone(),
                username: user.username.clone(),
                display_name: user.display_name.clone(),
            },
            client: Client {
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
            },
            created_at: now,
            expires_at,
            code: PendingCode::generate(),
            code_rotations: 0,
            level: Level::New,
            claimed_by: None,
            deciding: false,
        },
        now,
    );
    tracing::info!(user_id = %user.id, session_id = %id, "peer review requested");
    Ok(SignIn::HalfAuthenticated(token))
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
pub async fn close(app: &AppState, id: &str, outcome: Outcome) -> Result<bool, Error> {
    debug_assert!(!outcome.is_decision());
    let session = match app.registry.begin_decision(id) {
        Ok(session) => session,
        Err(ClaimError::NotPending) => return Ok(false),
        Err(ClaimError::AlreadyDeciding) => return Err(Error::AlreadyDecided),
    };
    let draft = match outcome {
        Outcome::Expired => LedgerDraft::expired(facts(&session)),
        _ => LedgerDraft::withdrawn(facts(&session)),
    };
    match app.ledger.writer.append(draft).await {
        Ok(receipt) => {
            tracing::info!(session_id = %id, outcome = %outcome, seq = receipt.seq, "pending session closed");
            apply_outcome(app, id, outcome).await;
            crate::metrics::closed(outcome);
            Ok(true)
        }
        Err(AppendError::Duplicate(_)) => {
            // The ledger already has this session's outcome: it wins.
            settle_from_ledger(app, id).await;
            Ok(false)
        }
        Err(AppendError::Unavailable(reason)) => {
            app.registry.abort_decision(id);
            Err(Error::Unavailable(format!(
                "The outcome could not be recorded, so nothing changed. {reason}"
            )))
        }
    }
}

/// Mirrors a recorded outcome into `app.sqlite` and the registry. The ledger
/// already holds it, so a failure here is logged and mended at the next start.
///
/// The registry (and so everyone listening) is told first: the outcome is
/// already durable in the ledger, and the requester should not wait on a
/// second fsync. `complete` accepts an approval the ledger has even if this
/// mirror has not landed yet.
pub async fn apply_outcome(app: &AppState, id: &str, outcome: Outcome) {
    app.registry.settle(id, outcome);
    if let Err(e) = mirror_outcome(app, id, outcome).await {
        tracing::error!(session_id = %id, error = format!("{e:#}"), "recorded outcome not mirrored to app.sqlite; it is applied again at start-up");
    }
}

async fn mirror_outcome(app: &AppState, id: &str, outcome: Outcome) -> anyhow::Result<()> {
    let now = rfc3339(app.clock.now());
    let mut tx = app.db.begin_with("BEGIN IMMEDIATE").await?;
    pending::transition(
        &mut tx,
        id,
        &[PendingStatus::Pending],
        PendingStatus::from(outcome),
        &now,
    )
    .await?;
    if outcome != Outcome::Approved {
        // Denied, expired, withdrawn: the requester's browser session ends now.
        sessions::delete_for_pending(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Applies whatever the ledger says about a session.
async fn settle_from_ledger(app: &AppState, id: &str) {
    match crate::ledger::read::outcome_of(&app.ledger.reader, id).await {
        Ok(Some(outcome)) => apply_outcome(app, id, outcome).await,
        Ok(None) => app.registry.abort_decision(id),
        Err(e) => {
            tracing::error!(session_id = %id, error = format!("{e:#}"), "reading an outcome failed");
            app.registry.abort_decision(id);
        }
    }
}

/// Gives the requester a new code, up to `max_code_rotations` per session.
pub async fn rotate_code(app: &AppState, id: &str) -> Result<(PendingCode, DateTime<Utc>), Error> {
    let max = app.settings.peer_review.max_code_rotations;
    let (code, rotations) = app.registry.rotate_code(id, max).map_err(|e| match e {
        RotateError::NotPending => Error::Expired,
        RotateError::LimitReached { max } => Error::Invalid(format!(
            "You have asked for a new code {max} times already; that is the limit for one sign-in. Cancel and sign in again if you need to."
        )),
    })?;
    pending::set_code_rotations(&app.db, id, rotations).await?;
    let expires_at = app
        .registry
        .get(id)
        .map(|s| s.expires_at)
        .ok_or(Error::Expired)?;
    tracing::info!(session_id = %id, rotations, "code rotated");
    Ok((code, expires_at))
}

/// Completes an approved sign-in: a new token replaces the half-authenticated
/// one, and the browser becomes a trusted device. Returns (session, device) tokens.
pub async fn complete(
    app: &AppState,
    session: &BrowserSession,
) -> Result<(SessionToken, SessionToken), Error> {
    let id = session
        .pending_session_id
        .as_deref()
        .ok_or(Error::NotApproved)?;
    let now = app.clock.now();
    let token = SessionToken::generate();
    let device = SessionToken::generate();
    let trusted_for =
        Duration::from_secs(u64::from(app.settings.auth.trusted_device_days) * 86_400);
    // The ledger decides whether this session was approved; app.sqlite may
    // still be catching up with it (see `apply_outcome`).
    let approved =
        crate::ledger::read::outcome_of(&app.ledger.reader, id).await? == Some(Outcome::Approved);
    if !approved {
        return Err(Error::NotApproved);
    }
    let mut tx = app.db.begin_with("BEGIN IMMEDIATE").await?;
    let moved = pending::transition(
        &mut tx,
        id,
        &[PendingStatus::Approved, PendingStatus::Pending],
        PendingStatus::Completed,
        &rfc3339(now),
    )
    .await?;
    if !moved {
        return Err(Error::NotApproved);
    }
    sessions::delete(&mut tx, &session.token_hash).await?;
    sessions::insert(
        &mut tx,
        &token.hash(),
        &session.user.id,
        SessionState::Authenticated,
        None,
        &rfc3339(now),
        &rfc3339(later(now, SESSION_LIFETIME)),
    )
    .await?;
    devices::insert(
        &mut tx,
        &device.hash(),
        &session.user.id,
        &rfc3339(now),
        &rfc3339(later(now, trusted_for)),
    )
    .await?;
    tx.commit().await.context("completing a sign-in")?;
    tracing::info!(user_id = %session.user.id, session_id = %id, "sign-in completed after approval");
    Ok((token, device))
}

/// Rebuilds the registry from `app.sqlite` at start-up. Sessions the ledger
/// has already settled are settled from it; every waiting session gets a fresh
/// code, since codes are never stored.
pub async fn restore(app: &AppState) -> anyhow::Result<()> {
    let open = pending::list_open(&app.db).await?;
    let now = app.clock.now();
    let (mut restored, mut settled) = (0, 0);
    for row in open {
        let recorded = crate::ledger::read::outcome_of(&app.ledger.reader, &row.id).await?;
        match (recorded, row.status) {
            (Some(Outcome::Approved), PendingStatus::Approved) => {}
            (Some(outcome), _) => {
                mirror_outcome(app, &row.id, outcome).await?;
                settled += 1;
            }
            (None, PendingStatus::Approved) => {
                // Approved here but not in the ledger: the ledger is the truth,
                // so the session waits again (fail closed).
                tracing::warn!(session_id = %row.id, "approval missing from the ledger; the session is pending again");
                let mut conn = app.db.acquire().await?;
                pending::transition(
                    &mut conn,
                    &row.id,
                    &[PendingStatus::Approved],
                    PendingStatus::Pending,
                    &rfc3339(now),
                )
                .await?;
                app.registry.insert(restored_session(&row)?, now);
                restored += 1;
            }
            (None, _) => {
                app.registry.insert(restored_session(&row)?, now);
                restored += 1;
            }
        }
    }
    tracing::info!(restored, settled, "pending sessions restored");
    Ok(())
}

fn restored_session(row: &PendingRow) -> anyhow::Result<PendingSession> {
    Ok(PendingSession {
        id: row.id.clone(),
        requester: Requester {
            id: row.user.id.clone(),
            username: row.user.username.clone(),
            display_name: row.user.display_name.clone(),
        },
        client: Client {
            ip: row.client_ip.clone(),
            user_agent: row.user_agent.clone(),
        },
        created_at: crate::clock::parse_rfc3339(&row.created_at)?,
        expires_at: crate::clock::parse_rfc3339(&row.expires_at)?,
        code: PendingCode::generate(),
        code_rotations: row.code_rotations,
        level: Level::New,
        claimed_by: None,
        deciding: false,
    })
}

/// A reviewer's decision as submitted, before validation.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DecisionInput {
    pub outcome: String,
    pub channel: String,
    pub code_confirmed: bool,
    pub note: String,
}

/// A decision after validation: what the ledger will record.
#[derive(Debug, Clone)]
pub struct Decision {
    pub approve: bool,
    pub channel: Channel,
    pub code_confirmed: bool,
    pub note: Note,
}

impl Decision {
    /// Validates once, at the edge: approval needs the code read back, denial
    /// needs a reason.
    pub fn parse(input: &DecisionInput) -> Result<Self, Error> {
        let approve = match input.outcome.as_str() {
            "approve" => true,
            "deny" => false,
            other => {
                return Err(Error::Invalid(format!(
                    "outcome must be \"approve\" or \"deny\", not \"{other}\""
                )));
            }
        };
        let channel: Channel = input.channel.parse().map_err(|_| {
            Error::Invalid(format!(
                "channel must be one of call, chat, video, in_person, other; not \"{}\"",
                input.channel
            ))
        })?;
        let note = Note::parse(&input.note).map_err(Error::Invalid)?;
        if approve && !input.code_confirmed {
            return Err(Error::Invalid(
                "To approve, confirm that the requester read this code back to you.".into(),
            ));
        }
        if !approve && note.is_blank() {
            return Err(Error::Invalid("To deny, say why in the note.".into()));
        }
        Ok(Self {
            approve,
            channel,
            code_confirmed: input.code_confirmed,
            note,
        })
    }
}

/// Why a session cannot be decided any more.
async fn not_pending_reason(app: &AppState, id: &str) -> Error {
    match crate::ledger::read::outcome_of(&app.ledger.reader, id).await {
        Ok(Some(Outcome::Expired)) => Error::Expired,
        Ok(Some(_)) => Error::AlreadyDecided,
        Ok(None) => Error::NotFound("There is no such sign-in request.".into()),
        Err(e) => Error::Internal(e),
    }
}

/// Records a reviewer's decision. The order is the contract: claim the session
/// (exactly one decider wins), append to the ledger and wait until it is
/// durable, mirror it into `app.sqlite`, and only then tell anyone.
pub async fn decide(
    app: &AppState,
    reviewer: &User,
    id: &str,
    decision: Decision,
) -> Result<crate::ledger::Receipt, Error> {
    let Some(snapshot) = app.registry.get(id) else {
        return Err(not_pending_reason(app, id).await);
    };
    if snapshot.requester.id == reviewer.id {
        return Err(Error::SelfReview);
    }
    let session = match app.registry.begin_decision(id) {
        Ok(session) => session,
        Err(ClaimError::AlreadyDeciding) => return Err(Error::AlreadyDecided),
        Err(ClaimError::NotPending) => return Err(not_pending_reason(app, id).await),
    };
    if app.clock.now() >= session.expires_at {
        // Past its expiry, even if the ticker has not got to it yet.
        app.registry.abort_decision(id);
        close(app, id, Outcome::Expired).await?;
        return Err(Error::Expired);
    }
    let draft = LedgerDraft::decision(
        facts(&session),
        decision.approve,
        Decider {
            id: reviewer.id.clone(),
            name: reviewer.display_name.clone(),
        },
        decision.channel,
        decision.code_confirmed,
        decision.note,
    );
    let outcome = draft.outcome;
    let decided = Instant::now();
    match app.ledger.writer.append(draft).await {
        Ok(receipt) => {
            tracing::info!(session_id = %id, outcome = %outcome, reviewer_id = %reviewer.id, seq = receipt.seq, "decision recorded");
            apply_outcome(app, id, outcome).await;
            crate::metrics::decision(
                outcome,
                session.created_at,
                app.clock.now(),
                decided.elapsed(),
            );
            Ok(receipt)
        }
        Err(AppendError::Duplicate(_)) => {
            settle_from_ledger(app, id).await;
            Err(Error::AlreadyDecided)
        }
        Err(AppendError::Unavailable(reason)) => {
            app.registry.abort_decision(id);
            Err(Error::Unavailable(format!(
                "The decision could not be recorded in the ledger, so nothing was approved or denied. Try again shortly. ({reason})"
            )))
        }
    }
}

/// How often the ageing ticker looks at the registry.
pub const TICK: Duration = Duration::from_millis(250);

/// The ageing ticker: promotes sessions `new → aging → overdue` and expires
/// them at their TTL. Runs until the registry's owner stops it.
pub async fn run_ticker(app: AppState) {
    let ages = Ages {
        aging_after: app.settings.peer_review.aging_after,
        overdue_after: app.settings.peer_review.overdue_after,
    };
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let expired = app.registry.tick(app.clock.now(), &ages);
        // Expire concurrently so the appends share group commits.
        let mut closing = tokio::task::JoinSet::new();
        for id in expired {
            let app = app.clone();
            closing.spawn(async move {
                if let Err(e) = close(&app, &id, Outcome::Expired).await {
                    tracing::warn!(session_id = %id, error = %e, "expiry not recorded yet; retrying on the next tick");
                }
            });
        }
        while closing.join_next().await.is_some() {}
    }
}
