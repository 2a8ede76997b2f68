//! [`Flow`]: everything the review flow works with, and nothing of the web.

use std::ops::Deref;
use std::sync::Arc;

use dashmap::DashMap;

use crate::alerts::Alerts;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::domain::{Ages, TokenHash};
use crate::ledger::Ledger;
use crate::limiter::WindowLimiter;
use crate::password_checks::PasswordChecks;
use crate::registry::Registry;
use crate::store::Db;

/// The per-username ceiling of failed sign-ins is this many times
/// `failed_logins_per_minute`.
pub const FAILURES_PER_USER_FACTOR: u32 = 20;

/// A cheap `Clone` handle to the flow's shared parts.
#[derive(Clone)]
pub struct Flow {
    inner: Arc<FlowParts>,
}

/// The flow's parts; built once by `startup`.
pub struct FlowParts {
    pub settings: Settings,
    /// `app.sqlite`.
    pub db: Db,
    pub ledger: Ledger,
    pub registry: Registry,
    /// Webhook events: the outbox and the endpoints' senders' wake-ups.
    pub alerts: Alerts,
    pub clock: SharedClock,
    /// Failed sign-ins per client IP (`failed_logins_per_minute`).
    pub login_failures: WindowLimiter,
    /// Failed sign-ins per username across all addresses: a ceiling
    /// [`FAILURES_PER_USER_FACTOR`] times higher, so that failures from
    /// elsewhere do not lock out a user at a clean address, but a spread-out
    /// guessing attack still stops.
    pub login_failures_per_user: WindowLimiter,
    /// argon2 checks, bounded in number and queue.
    pub password_checks: PasswordChecks,
    /// Sign-ins that start a peer review, per user and per client IP, so a
    /// stolen password cannot flood the reviewers (MFA fatigue).
    pub review_starts_per_user: WindowLimiter,
    pub review_starts_per_ip: WindowLimiter,
    /// Browser sessions that just ended (sign-out), so their sockets close at once.
    pub session_ended: tokio::sync::broadcast::Sender<TokenHash>,
    /// One lock per user around "withdraw the older pending session, create
    /// the new one", so concurrent sign-ins leave one pending session. A tokio
    /// mutex: it is held across the ledger append.
    pub sign_in_locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

impl Flow {
    pub fn new(parts: FlowParts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }
}

impl FlowParts {
    /// The ages at which sessions turn `aging` and `overdue`.
    pub fn ages(&self) -> Ages {
        Ages {
            aging_after: self.settings.peer_review.aging_after,
            overdue_after: self.settings.peer_review.overdue_after,
        }
    }
}

impl Deref for Flow {
    type Target = FlowParts;
    fn deref(&self) -> &FlowParts {
        &self.inner
    }
}
