//! The shared state every handler sees: a cheap `Clone` handle around one
//! `Arc`, holding the review [`Flow`] and what only the web layer needs.

use std::ops::Deref;
use std::sync::Arc;

use crate::domain::TokenHash;
use crate::review::Flow;
use crate::web::events::Frames;
use crate::web::session_cache::SessionCache;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

pub struct Shared {
    /// The review flow: settings, stores, ledger, registry, clock, limits.
    pub flow: Flow,
    /// `public_url` reduced to its origin, computed once for the origin check.
    pub origin: String,
    /// Open sockets per browser session, to cap them.
    pub sockets: dashmap::DashMap<TokenHash, usize>,
    /// Moves when an account changes in `app.sqlite` (roles, disabled), even
    /// from another process; sockets then re-check their session.
    pub accounts_version: tokio::sync::watch::Sender<i64>,
    /// Inbox events, encoded once, for every reviewer socket.
    pub frames: Frames,
    /// Turns true when the server begins to shut down: every socket then
    /// closes with 1001 "going away", and the pages reconnect to the next
    /// process by themselves.
    pub going_away: tokio::sync::watch::Sender<bool>,
    /// Fully signed-in sessions as forward auth answers for them, so that a
    /// proxy's question costs no database read (see `web::session_cache`).
    pub session_cache: SessionCache,
    /// The ledger as a transparency log: checkpoints, key, tree.
    pub transparency: crate::transparency::Transparency,
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

/// Handlers read the flow's parts (`app.registry`, `app.db`, …) directly.
impl Deref for Shared {
    type Target = Flow;
    fn deref(&self) -> &Flow {
        &self.flow
    }
}
