//! Forward auth's session cache: the proxy asks about every request of every
//! protected app, so a fully signed-in session, once read from `app.sqlite`,
//! is answered from memory (DESIGN.md §10, BENCHMARKS.md).
//!
//! An entry goes when the session is signed out (the flow's `session_ended`
//! broadcast, and the logout handler directly), when any account changes
//! (`accounts_version`: roles, disabled; also from the command line), when
//! the session expires, and in any case [`FRESH_FOR`] after it was read, so
//! a change nobody signalled is seen that soon. Half-authenticated and
//! unknown tokens are never cached: they are read each time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::broadcast::error::RecvError;

use crate::clock::parse_rfc3339;
use crate::domain::{Roles, TokenHash};
use crate::state::AppState;
use crate::store::sessions::{BrowserSession, SessionState};

/// The longest a cached answer is used without reading `app.sqlite` again:
/// the bound on how stale an answer can be if a signal were missed.
pub const FRESH_FOR: Duration = Duration::from_millis(500);

/// Entries at most; beyond it the cache starts over (a flood of valid
/// sessions cannot grow memory without bound).
const MAX_ENTRIES: usize = 100_000;

/// What forward auth says about a fully signed-in session.
#[derive(Debug)]
pub struct Passport {
    pub roles: Roles,
    /// `Remote-User`, `Remote-Name`, `Remote-Groups`, `Remote-Session-Expires`,
    /// encoded once.
    pub headers: [HeaderValue; 4],
    /// When the session ends.
    ends: DateTime<Utc>,
    /// When it was read from `app.sqlite`.
    read_at: Instant,
}

impl Passport {
    /// `None` for a session that is not fully signed in, or whose values
    /// cannot be sent as headers (fail closed).
    fn of(session: &BrowserSession) -> Option<Self> {
        if session.state != SessionState::Authenticated {
            return None;
        }
        let user = &session.user;
        let roles = user.roles();
        let value = |text: &str| {
            let clean: String = text.chars().filter(|c| !c.is_control()).collect();
            HeaderValue::from_bytes(clean.as_bytes()).ok()
        };
        Some(Self {
            roles,
            headers: [
                value(&user.username)?,
                value(&user.display_name)?,
                value(&roles.names().join(","))?,
                value(&session.expires_at)?,
            ],
            ends: parse_rfc3339(&session.expires_at).ok()?,
            read_at: Instant::now(),
        })
    }
}

/// Passports by session token hash.
#[derive(Default)]
pub struct SessionCache {
    entries: DashMap<TokenHash, Arc<Passport>>,
    /// Moves on every removal, so that a lookup that raced with a sign-out
    /// does not put back what the sign-out just removed.
    generation: AtomicU64,
}

impl SessionCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn fresh(&self, hash: &TokenHash, now: DateTime<Utc>) -> Option<Arc<Passport>> {
        let entry = self.entries.get(hash)?;
        let passport = Arc::clone(entry.value());
        drop(entry);
        if passport.ends > now && passport.read_at.elapsed() < FRESH_FOR {
            Some(passport)
        } else {
            self.entries.remove(hash);
            None
        }
    }

    /// Keeps `passport` unless a removal happened since `generation` was read.
    fn keep(&self, hash: &TokenHash, passport: Arc<Passport>, generation: u64) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(hash.clone(), passport);
        // A removal that started after `generation` was read has bumped it
        // before removing; if it bumped too late to see this entry, undo.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.entries.remove(hash);
        }
    }

    /// Forgets one session (signed out).
    pub fn forget(&self, hash: &TokenHash) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(hash);
    }

    /// Forgets every session (an account changed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}

/// The passport of a fully signed-in session: from memory when fresh, else
/// one read of `app.sqlite`. `None` for anonymous, half-authenticated or
/// ended sessions.
pub async fn passport(app: &AppState, hash: &TokenHash) -> anyhow::Result<Option<Arc<Passport>>> {
    let cache = &app.session_cache;
    if let Some(passport) = cache.fresh(hash, app.clock.now()) {
        return Ok(Some(passport));
    }
    let generation = cache.generation.load(Ordering::SeqCst);
    let Some(session) = crate::review::browser_session(&app.flow, hash).await? else {
        return Ok(None);
    };
    let Some(passport) = Passport::of(&session).map(Arc::new) else {
        return Ok(None);
    };
    cache.keep(hash, Arc::clone(&passport), generation);
    Ok(Some(passport))
}

/// Listens for the signals that end cached answers, for the life of the
/// service: a session signed out, or any account changed.
pub async fn run_invalidation(app: AppState) {
    let mut ended = app.session_ended.subscribe();
    let mut accounts = app.accounts_version.subscribe();
    loop {
        tokio::select! {
            got = ended.recv() => match got {
                Ok(hash) => app.session_cache.forget(&hash),
                // Missed some: forget everything rather than guess.
                Err(RecvError::Lagged(_)) => app.session_cache.clear(),
                Err(RecvError::Closed) => return,
            },
            changed = accounts.changed() => {
                if changed.is_err() {
                    return;
                }
                app.session_cache.clear();
            }
        }
    }
}
