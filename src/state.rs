//! The shared state every handler and background task sees: a cheap `Clone`
//! handle around one `Arc`.

use std::ops::Deref;
use std::sync::Arc;

use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::domain::TokenHash;
use crate::ledger::Ledger;
use crate::limiter::WindowLimiter;
use crate::registry::Registry;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

pub struct Shared {
    pub settings: Settings,
    /// `public_url` reduced to its origin, computed once for the origin check.
    pub origin: String,
    /// `app.sqlite`.
    pub db: SqlitePool,
    pub ledger: Ledger,
    pub registry: Registry,
    pub clock: SharedClock,
    /// Failed sign-ins per username and per client IP.
    pub login_failures: WindowLimiter,
    /// Sign-ins that start a peer review, per user and per client IP, so a
    /// stolen password cannot flood the reviewers (MFA fatigue).
    pub review_starts_per_user: WindowLimiter,
    pub review_starts_per_ip: WindowLimiter,
    /// Open sockets per browser session, to cap them.
    pub sockets: dashmap::DashMap<TokenHash, usize>,
    /// Moves when an account changes in `app.sqlite` (roles, disabled), even
    /// from another process; sockets then re-check their session.
    pub accounts_version: tokio::sync::watch::Sender<i64>,
    /// Browser sessions that just ended (logout), so their sockets close at once.
    pub session_ended: tokio::sync::broadcast::Sender<TokenHash>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self {
            inner: Arc::new(shared),
        }
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}
