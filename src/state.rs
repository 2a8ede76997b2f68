//! The shared state every handler and background task sees: a cheap `Clone`
//! handle around one `Arc`.

use std::ops::Deref;
use std::sync::Arc;

use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::domain::TokenHash;
use crate::ledger::Ledger;
use crate::limiter::FailureLimiter;
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
    pub login_failures: FailureLimiter,
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
