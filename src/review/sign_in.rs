//! Signing in, whole: the failed-login limits, the password check, device
//! trust, and then either a full session or the start of a peer review.

use std::sync::Arc;

use super::{Flow, ReviewError, later, lifecycle};
use crate::clock::rfc3339;
use crate::domain::{Client, Level, Outcome, PendingCode, Requester, SessionToken, TokenHash, ids};
use crate::registry::PendingSession;
use crate::store::devices;
use crate::store::flows::{self, NewSession};
use crate::store::pending::{self, NewPending};
use crate::store::users::{self, User};

/// Longest username or password looked at; anything longer cannot match.
const MAX_CREDENTIAL_LEN: usize = 1024;

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

fn failure_keys(username: &str, ip: &str) -> [String; 2] {
    [format!("ip:{ip}"), format!("user:{username}")]
}

/// Checks a password and starts the session, counting failures per username
/// and per client IP. Every failure looks the same from outside.
pub async fn sign_in(flow: &Flow, request: SignInRequest) -> Result<SignIn, ReviewError> {
    let username = request.username.trim().to_lowercase();
    let keys = failure_keys(&username, &request.client.ip);
    let keys = [keys[0].as_str(), keys[1].as_str()];
    flow.login_failures
        .check(&keys)
        .map_err(|retry_after_secs| ReviewError::RateLimited { retry_after_secs })?;
    let user = match check_password(flow, &username, request.password).await? {
        Some(user) => user,
        None => {
            flow.login_failures.record(&keys);
            tracing::info!(ip = %request.client.ip, "failed sign-in");
            return Err(ReviewError::BadCredentials);
        }
    };
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
    start_review(flow, user, request.client, request.previous).await
}

/// The user, if the password is theirs and the account is enabled.
async fn check_password(
    flow: &Flow,
    username: &str,
    password: String,
) -> Result<Option<User>, ReviewError> {
    let too_long = username.len() > MAX_CREDENTIAL_LEN || password.len() > MAX_CREDENTIAL_LEN;
    let found = if too_long {
        None
    } else {
        users::password_hash(&flow.db, username).await?
    };
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let password_ok = crate::passwords::verify(password, stored).await?;
    Ok(user.filter(|u| password_ok && !u.disabled))
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
async fn start_review(
    flow: &Flow,
    user: User,
    client: Client,
    previous: Option<TokenHash>,
) -> Result<SignIn, ReviewError> {
    // A stolen password hammered to wear reviewers down gets nowhere: only so
    // many reviews may start per user and per address.
    let user_key = format!("user:{}", user.id);
    let ip_key = format!("ip:{}", client.ip);
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
        let _held = lock.lock().await;
        let token = open_review(&flow, &user, client, previous.as_ref()).await;
        drop(_held);
        // Forget the lock once nobody else holds or waits for it.
        flow.sign_in_locks
            .remove_if(&user.id, |_, l| Arc::strong_count(l) == 2);
        token
    })
    .await
}

async fn open_review(
    flow: &Flow,
    user: &User,
    client: Client,
    previous: Option<&TokenHash>,
) -> Result<SignIn, ReviewError> {
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
        previous,
        &NewPending {
            id: &id,
            user_id: &user.id,
            client_ip: &client.ip,
            user_agent: &client.user_agent,
            created_at: &created,
            expires_at: &expires,
        },
        &token.hash(),
        &expires,
    )
    .await?;
    flow.registry.insert(
        PendingSession {
            id: id.clone(),
            requester: Requester {
                id: user.id.clone(),
                username: user.username.clone(),
                display_name: user.display_name.clone(),
            },
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
