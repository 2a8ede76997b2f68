//! Signing in, whole: the failed-login limits, the password check, device
//! trust, and then either a full session or the start of a peer review.

use std::sync::Arc;

use super::{Flow, ReviewError, alarm, later, lifecycle};
use crate::alerts::EventKind;
use crate::clock::rfc3339;
use crate::domain::{
    Client, Level, Outcome, PendingCode, Requester, ReturnTo, SessionToken, TokenHash, Username,
    ids,
};
use crate::password_checks::CheckError;
use crate::registry::PendingSession;
use crate::store::devices;
use crate::store::flows::{self, NewSession};
use crate::store::pending::{self, NewPending};
use crate::store::users::{self, User};

/// Longest password looked at; anything longer cannot match.
const MAX_PASSWORD_LEN: usize = 1024;

/// A sign-in attempt, as the web layer hands it over.
pub struct SignInRequest {
    pub username: String,
    pub password: String,
    pub client: Client,
    /// The trusted-device cookie's token hash, if the browser sent one.
    pub device: Option<TokenHash>,
    /// The browser session the request came with; it ends, so the token
    /// always rotates.
    pub previous: Option<TokenHash>,
    /// Where the person was going (a checked `rd`); kept with the pending
    /// session, so it survives the wait for review.
    pub return_to: Option<ReturnTo>,
}

/// What a successful password step leads to.
#[derive(Debug)]
pub enum SignIn {
    /// Exempt user or trusted device: signed in.
    Authenticated(SessionToken),
    /// Waiting for a reviewer.
    HalfAuthenticated(SessionToken),
}

impl SignIn {
    pub fn token(&self) -> &SessionToken {
        match self {
            SignIn::Authenticated(t) | SignIn::HalfAuthenticated(t) => t,
        }
    }
}

/// Checks a password and starts the session. Every failure looks the same
/// from outside.
///
/// A failure is counted *before* the password is checked (a slot reserved
/// per client address, and one under the username's ceiling across all
/// addresses) and given back on success, so a burst of concurrent attempts
/// cannot check more passwords than the limit allows.
pub async fn sign_in(flow: &Flow, request: SignInRequest) -> Result<SignIn, ReviewError> {
    // A name that is not a valid username cannot match an account, but its
    // attempts still count against the address.
    let username = Username::parse(&request.username).ok();
    let user_key = match &username {
        Some(name) => format!("user:{name}"),
        None => format!("user:{}", request.username.trim().to_lowercase()),
    };
    let ip_key = format!("ip:{}", request.client.ip);
    let limited = |retry_after_secs| ReviewError::RateLimited { retry_after_secs };
    let at_address = flow.login_failures.reserve(&[&ip_key]).map_err(limited)?;
    let for_user = match flow.login_failures_per_user.reserve(&[&user_key]) {
        Ok(reservation) => reservation,
        Err(secs) => {
            at_address.refund();
            return Err(limited(secs));
        }
    };
    let checked = match &username {
        Some(name) => check_password(flow, name, request.password).await,
        None => check_nobody(flow, request.password).await,
    };
    let user = match checked {
        Ok(Some(user)) => user,
        Ok(None) => {
            tracing::info!(ip = %request.client.ip, "failed sign-in");
            return Err(ReviewError::BadCredentials);
        }
        // Busy or broken: nobody's password was judged, so nothing counts.
        Err(e) => {
            at_address.refund();
            for_user.refund();
            return Err(e);
        }
    };
    at_address.refund();
    for_user.refund();
    if user.locked {
        // The password was right, and that is the worry: a reviewer saw its
        // holder fail the code. No pending session, nothing for reviewers.
        tracing::warn!(user_id = %user.id, ip = %request.client.ip, "sign-in refused: the account is locked after a code mismatch");
        return Err(ReviewError::AccountLocked);
    }
    let device_trusted = match &request.device {
        Some(device) => {
            let now = rfc3339(flow.clock.now());
            devices::is_trusted(&flow.db, device, &user.id, &now).await?
        }
        None => false,
    };
    if user.is_exempt || device_trusted {
        return sign_in_fully(flow, &user, request.previous.as_ref()).await;
    }
    let review = Review {
        client: request.client,
        previous: request.previous,
        return_to: request.return_to,
    };
    start_review(flow, user, review).await
}

/// What a review that is about to start keeps of the sign-in request.
struct Review {
    client: Client,
    previous: Option<TokenHash>,
    return_to: Option<ReturnTo>,
}

/// The user, if the password is theirs and the account is enabled.
async fn check_password(
    flow: &Flow,
    username: &Username,
    password: String,
) -> Result<Option<User>, ReviewError> {
    let found = if password.len() > MAX_PASSWORD_LEN {
        None
    } else {
        users::password_hash(&flow.db, username).await?
    };
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let password_ok = verify(flow, password, stored).await?;
    Ok(user.filter(|u| password_ok && !u.disabled))
}

/// A sign-in with a name no account can have: checked against a dummy hash
/// all the same, so it takes as long as any other failure.
async fn check_nobody(flow: &Flow, password: String) -> Result<Option<User>, ReviewError> {
    verify(flow, password, None).await?;
    Ok(None)
}

/// One argon2 check on the bounded pool; a full queue is `Busy`.
async fn verify(
    flow: &Flow,
    password: String,
    stored: Option<String>,
) -> Result<bool, ReviewError> {
    flow.password_checks
        .verify(password, stored)
        .await
        .map_err(|e| match e {
            CheckError::Busy { retry_after_secs } => ReviewError::Busy { retry_after_secs },
            CheckError::Failed(e) => ReviewError::Storage(e),
        })
}

async fn sign_in_fully(
    flow: &Flow,
    user: &User,
    previous: Option<&TokenHash>,
) -> Result<SignIn, ReviewError> {
    let now = flow.clock.now();
    let token = SessionToken::generate();
    let (created, expires) = (
        rfc3339(now),
        rfc3339(later(now, lifecycle::SESSION_LIFETIME)),
    );
    flows::sign_in_fully(
        &flow.db,
        previous,
        &NewSession {
            token_hash: &token.hash(),
            user_id: &user.id,
            created_at: &created,
            expires_at: &expires,
        },
    )
    .await?;
    tracing::info!(user_id = %user.id, "signed in without peer review");
    Ok(SignIn::Authenticated(token))
}

/// Starts a peer review: withdraws the user's older pending session and
/// records the new one, under the user's lock and on its own task, so that
/// concurrent sign-ins leave exactly one pending session and a dropped
/// request leaves no half-done step.
async fn start_review(flow: &Flow, user: User, review: Review) -> Result<SignIn, ReviewError> {
    // A stolen password hammered to wear reviewers down gets nowhere: only so
    // many reviews may start per user and per address.
    let user_key = format!("user:{}", user.id);
    let ip_key = format!("ip:{}", review.client.ip);
    flow.review_starts_per_user
        .check(&[&user_key])
        .and_then(|()| flow.review_starts_per_ip.check(&[&ip_key]))
        .map_err(|retry_after_secs| ReviewError::RateLimited { retry_after_secs })?;
    flow.review_starts_per_user.record(&[&user_key]);
    flow.review_starts_per_ip.record(&[&ip_key]);

    let flow = flow.clone();
    lifecycle::run_to_end(async move {
        let lock = Arc::clone(
            flow.sign_in_locks
                .entry(user.id.clone())
                .or_default()
                .value(),
        );
        let held = lock.lock().await;
        let token = open_review(&flow, &user, review).await;
        drop(held);
        // Forget the lock once nobody else holds or waits for it.
        flow.sign_in_locks
            .remove_if(&user.id, |_, l| Arc::strong_count(l) == 2);
        token
    })
    .await
}

async fn open_review(flow: &Flow, user: &User, review: Review) -> Result<SignIn, ReviewError> {
    let Review {
        client,
        previous,
        return_to,
    } = review;
    // One pending session per user: a new sign-in withdraws the older one. One
    // that a reviewer is deciding right now is left to that decision.
    if let Some(older) = pending::find_waiting_for_user(&flow.db, &user.id).await? {
        match lifecycle::close(flow, &older, Outcome::Withdrawn).await {
            Ok(_) | Err(ReviewError::AlreadyDecided) => {}
            Err(e) => return Err(e),
        }
    }
    let now = flow.clock.now();
    let token = SessionToken::generate();
    let id = ids::new_pending_id();
    let expires_at = later(now, flow.settings.peer_review.session_ttl);
    let (created, expires) = (rfc3339(now), rfc3339(expires_at));
    flows::open_review(
        &flow.db,
        previous.as_ref(),
        &NewPending {
            id: &id,
            user_id: &user.id,
            client_ip: &client.ip,
            user_agent: &client.user_agent,
            created_at: &created,
            expires_at: &expires,
            return_to: return_to.as_ref().map(ReturnTo::as_str),
        },
        &token.hash(),
        &expires,
    )
    .await?;
    let requester = Requester {
        id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
    };
    // Into the outbox before the reviewers hear of it.
    alarm::waiting(flow, EventKind::Requested, &id, &requester, Level::New).await;
    flow.registry.insert(
        PendingSession {
            id: id.clone(),
            requester,
            client,
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
