//! The registry of pending peer reviews: the hot, in-memory copy of every
//! session waiting for a reviewer, and the events that tell reviewers and
//! requesters what changed.
//!
//! A `DashMap` keyed by session id sits behind methods; no guard leaves this
//! module and none is held across an `.await`. It is a plain data structure:
//! it spawns nothing and encodes nothing. Reviewers hear about changes as
//! domain events on one `broadcast` channel (the web layer's fan-out task is
//! its one reader, and encodes each event once); each requester has a `watch`
//! channel of its own, so a burst of inbox traffic never queues in front of a
//! requester's outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::clock::rfc3339;
use crate::domain::{Ages, Client, Level, Outcome, PendingCode, Requester, Reviewer};

/// How many inbox events a reviewer socket may fall behind before it is
/// resynchronised with a fresh snapshot instead.
const INBOX_EVENT_BUFFER: usize = 1024;

/// A session waiting for review, as held in memory.
#[derive(Debug, Clone)]
pub struct PendingSession {
    pub id: String,
    pub requester: Requester,
    pub client: Client,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub code: PendingCode,
    pub code_rotations: u32,
    pub level: Level,
    pub claimed_by: Option<Reviewer>,
    /// True while one reviewer's decision is being written to the ledger;
    /// every other decision on this session loses with `already_decided`.
    pub deciding: bool,
}

/// `Summary` of DESIGN.md §4: a pending session without its code.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub session_id: String,
    pub requester: Requester,
    /// RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    pub created_at: String,
    pub age_seconds: i64,
    pub level: Level,
    pub client: Client,
    /// The reviewer who has the session open (a soft claim), or null.
    #[schema(required = true)]
    pub claimed_by: Option<Reviewer>,
}

impl PendingSession {
    pub fn summary(&self, now: DateTime<Utc>) -> Summary {
        Summary {
            session_id: self.id.clone(),
            requester: self.requester.clone(),
            created_at: rfc3339(self.created_at),
            age_seconds: (now - self.created_at).num_seconds().max(0),
            level: self.level,
            client: self.client.clone(),
            claimed_by: self.claimed_by.clone(),
        }
    }
}

/// What a reviewer's inbox hears.
#[derive(Debug, Clone)]
pub enum InboxEvent {
    Added(Box<Summary>),
    Updated(Box<Summary>),
    Removed {
        session_id: String,
        outcome: Outcome,
    },
}

impl InboxEvent {
    /// The requester the event is about, if it shows a session: a reviewer's
    /// own sign-in never appears in their inbox.
    pub fn requester_id(&self) -> Option<&str> {
        match self {
            InboxEvent::Added(s) | InboxEvent::Updated(s) => Some(&s.requester.id),
            InboxEvent::Removed { .. } => None,
        }
    }
}

/// What one tick of the ageing clock did.
#[derive(Debug, Default)]
pub struct Ticked {
    /// Sessions that moved to a new level, oldest first (already announced).
    pub promoted: Vec<Summary>,
    /// Sessions past their expiry, for the ticker to close.
    pub expired: Vec<String>,
}

/// What a requester's page shows; the last value is always the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequesterStatus {
    Pending {
        code: PendingCode,
        expires_at: DateTime<Utc>,
        claimed_by: Option<String>,
    },
    Settled(Outcome),
}

/// Why a code could not be rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateError {
    NotPending,
    LimitReached { max: u32 },
}

/// Why a decision could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// No such session is waiting (decided, expired, withdrawn, or never existed).
    NotPending,
    /// Another decision on this session is in flight.
    AlreadyDeciding,
}

struct Entry {
    session: PendingSession,
    requester_tx: watch::Sender<RequesterStatus>,
}

/// A cheap, cloneable handle to the registry.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: DashMap<String, Entry>,
    inbox_tx: broadcast::Sender<Arc<InboxEvent>>,
    /// Open reviewer sockets per reviewer (user id). A `std` mutex: it is held
    /// for a map update, never across an `.await`.
    sockets_by_reviewer: Mutex<HashMap<String, usize>>,
    /// Reviewers online now: people, not their tabs. A watch, not an event: a
    /// burst of connects collapses into the latest count for every reader.
    presence_tx: watch::Sender<usize>,
}

/// Counts one open reviewer socket while it lives.
pub struct PresenceGuard {
    registry: Registry,
    reviewer_id: String,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.registry.change_presence(&self.reviewer_id, false);
    }
}

impl Entry {
    /// What the requester's page shows now.
    fn requester_status(&self) -> RequesterStatus {
        RequesterStatus::Pending {
            code: self.session.code.clone(),
            expires_at: self.session.expires_at,
            claimed_by: self
                .session
                .claimed_by
                .as_ref()
                .map(|r| r.display_name.clone()),
        }
    }

    fn new(session: PendingSession) -> Self {
        let (requester_tx, _) = watch::channel(RequesterStatus::Settled(Outcome::Withdrawn));
        let entry = Self {
            session,
            requester_tx,
        };
        entry.requester_tx.send_replace(entry.requester_status());
        entry
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let (inbox_tx, _) = broadcast::channel(INBOX_EVENT_BUFFER);
        let (presence_tx, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                sessions: DashMap::new(),
                inbox_tx,
                sockets_by_reviewer: Mutex::new(HashMap::new()),
                presence_tx,
            }),
        }
    }

    fn publish(&self, event: InboxEvent) {
        // Nobody listening (no fan-out yet, or shutting down) is normal.
        let _ = self.inner.inbox_tx.send(Arc::new(event));
    }

    /// Adds a session and tells the reviewers.
    pub fn insert(&self, session: PendingSession, now: DateTime<Utc>) {
        // Inserting an id that is already present would orphan its requester
        // channel; ids are random, so this only guards against misuse.
        debug_assert!(!self.inner.sessions.contains_key(&session.id));
        let summary = session.summary(now);
        self.inner
            .sessions
            .insert(session.id.clone(), Entry::new(session));
        self.publish(InboxEvent::Added(Box::new(summary)));
    }

    /// A copy of one session, code included.
    pub fn get(&self, id: &str) -> Option<PendingSession> {
        self.inner.sessions.get(id).map(|e| e.session.clone())
    }

    /// Every waiting session, oldest first.
    pub fn list(&self) -> Vec<PendingSession> {
        let mut all: Vec<PendingSession> = self
            .inner
            .sessions
            .iter()
            .map(|e| e.session.clone())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    /// What one reviewer's inbox shows: every waiting session but their own,
    /// oldest first.
    pub fn summaries_for(&self, reviewer_id: &str, now: DateTime<Utc>) -> Vec<Summary> {
        self.list()
            .iter()
            .filter(|s| s.requester.id != reviewer_id)
            .map(|s| s.summary(now))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Listens to the requester status of one session.
    pub fn watch_requester(&self, id: &str) -> Option<watch::Receiver<RequesterStatus>> {
        self.inner
            .sessions
            .get(id)
            .map(|e| e.requester_tx.subscribe())
    }

    /// Listens to inbox events.
    pub fn subscribe_inbox(&self) -> broadcast::Receiver<Arc<InboxEvent>> {
        self.inner.inbox_tx.subscribe()
    }

    /// Listens to the number of reviewers online.
    pub fn watch_presence(&self) -> watch::Receiver<usize> {
        self.inner.presence_tx.subscribe()
    }

    /// Counts a reviewer's socket until the guard is dropped; a reviewer with
    /// several tabs is one reviewer online.
    pub fn reviewer_connected(&self, reviewer_id: &str) -> PresenceGuard {
        self.change_presence(reviewer_id, true);
        PresenceGuard {
            registry: self.clone(),
            reviewer_id: reviewer_id.to_string(),
        }
    }

    fn change_presence(&self, reviewer_id: &str, opened: bool) {
        let people = {
            let mut sockets = self
                .inner
                .sockets_by_reviewer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if opened {
                *sockets.entry(reviewer_id.to_string()).or_insert(0) += 1;
            } else if let Some(n) = sockets.get_mut(reviewer_id) {
                *n -= 1;
                if *n == 0 {
                    sockets.remove(reviewer_id);
                }
            }
            sockets.len()
        };
        self.inner.presence_tx.send_if_modified(|n| {
            let changed = *n != people;
            *n = people;
            changed
        });
    }

    /// Marks a session as being looked at by `reviewer` (a soft claim: it locks
    /// no one out) and tells the other reviewers and the requester.
    pub fn claim(
        &self,
        id: &str,
        reviewer: Reviewer,
        now: DateTime<Utc>,
    ) -> Option<PendingSession> {
        let (session, changed) = {
            let mut entry = self.inner.sessions.get_mut(id)?;
            let changed = entry.session.claimed_by.as_ref().map(|r| &r.id) != Some(&reviewer.id);
            if changed {
                entry.session.claimed_by = Some(reviewer);
                let status = entry.requester_status();
                entry.requester_tx.send_replace(status);
            }
            (entry.session.clone(), changed)
        };
        if changed {
            self.publish(InboxEvent::Updated(Box::new(session.summary(now))));
        }
        Some(session)
    }

    /// Moves sessions to the level their age calls for, telling the reviewers;
    /// returns those it moved, and the ids of sessions past their expiry (not
    /// being decided).
    pub fn tick(&self, now: DateTime<Utc>, ages: &Ages) -> Ticked {
        let mut changed = Vec::new();
        let mut expired = Vec::new();
        for mut entry in self.inner.sessions.iter_mut() {
            let session = &mut entry.session;
            if now >= session.expires_at {
                if !session.deciding {
                    expired.push(session.id.clone());
                }
                continue;
            }
            let level = ages.level(now - session.created_at);
            if level != session.level {
                session.level = level;
                changed.push(session.summary(now));
            }
        }
        // Published after the iteration: no map guard is held while sending.
        changed.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        for summary in &changed {
            self.publish(InboxEvent::Updated(Box::new(summary.clone())));
        }
        Ticked {
            promoted: changed,
            expired,
        }
    }

    /// Replaces the code, if the session may still rotate it.
    pub fn rotate_code(
        &self,
        id: &str,
        max_rotations: u32,
    ) -> Result<(PendingCode, u32), RotateError> {
        let mut entry = self
            .inner
            .sessions
            .get_mut(id)
            .ok_or(RotateError::NotPending)?;
        if entry.session.deciding {
            return Err(RotateError::NotPending);
        }
        if entry.session.code_rotations >= max_rotations {
            return Err(RotateError::LimitReached { max: max_rotations });
        }
        let code = PendingCode::generate();
        entry.session.code = code.clone();
        entry.session.code_rotations += 1;
        let status = entry.requester_status();
        entry.requester_tx.send_replace(status);
        Ok((code, entry.session.code_rotations))
    }

    /// Marks a session as being decided; exactly one caller wins until
    /// [`Registry::abort_decision`] or [`Registry::settle`].
    pub fn begin_decision(&self, id: &str) -> Result<PendingSession, ClaimError> {
        let mut entry = self
            .inner
            .sessions
            .get_mut(id)
            .ok_or(ClaimError::NotPending)?;
        if entry.session.deciding {
            return Err(ClaimError::AlreadyDeciding);
        }
        entry.session.deciding = true;
        Ok(entry.session.clone())
    }

    /// Returns a session to waiting after a decision failed to reach the ledger.
    pub fn abort_decision(&self, id: &str) {
        if let Some(mut entry) = self.inner.sessions.get_mut(id) {
            entry.session.deciding = false;
        }
    }

    /// Removes a session whose outcome is recorded, and tells everyone.
    pub fn settle(&self, id: &str, outcome: Outcome) -> Option<PendingSession> {
        let (_, entry) = self.inner.sessions.remove(id)?;
        // The requester's socket is the one waiting for this outcome: it is
        // told first. The reviewers' event goes to the fan-out task, which
        // sends it on its own time, so the requester's frame never queues
        // behind a thousand others.
        // A mismatch reaches the requester as a plain denial (DESIGN.md §4);
        // the reviewers' inbox hears the real outcome.
        entry
            .requester_tx
            .send_replace(RequesterStatus::Settled(outcome.as_told_to_requester()));
        self.publish(InboxEvent::Removed {
            session_id: id.to_string(),
            outcome,
        });
        Some(entry.session)
    }

    /// Reviewers online now.
    pub fn reviewers_online(&self) -> usize {
        *self.inner.presence_tx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn session(id: &str, user: &str, created_at: DateTime<Utc>) -> PendingSession {
        PendingSession {
            id: id.into(),
            requester: Requester {
                id: user.into(),
                username: user.into(),
                display_name: user.into(),
            },
            client: Client {
                ip: "127.0.0.1".into(),
                user_agent: "test".into(),
            },
            created_at,
            expires_at: created_at + chrono::Duration::minutes(15),
            code: PendingCode::generate(),
            code_rotations: 0,
            level: Level::New,
            claimed_by: None,
            deciding: false,
        }
    }

    fn reviewer(id: &str) -> Reviewer {
        Reviewer {
            id: id.into(),
            display_name: format!("Reviewer {id}"),
        }
    }

    #[test]
    fn inserts_are_listed_oldest_first_and_announced() {
        let registry = Registry::new();
        let mut events = registry.subscribe_inbox();
        let now = Utc::now();
        registry.insert(session("b", "u2", now), now);
        registry.insert(session("a", "u1", now - chrono::Duration::seconds(5)), now);
        let ids: Vec<_> = registry.list().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(
            matches!(&*events.try_recv().unwrap(), InboxEvent::Added(s) if s.session_id == "b")
        );
        assert!(
            matches!(&*events.try_recv().unwrap(), InboxEvent::Added(s) if s.session_id == "a")
        );
        // A reviewer never sees their own sign-in.
        let seen: Vec<_> = registry
            .summaries_for("u1", now)
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        assert_eq!(seen, ["b"]);
    }

    #[test]
    fn exactly_one_decision_begins_until_it_is_aborted() {
        let registry = Registry::new();
        let now = Utc::now();
        registry.insert(session("a", "u1", now), now);
        let winners = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| scope.spawn(|| registry.begin_decision("a").is_ok()))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(winners, 1);
        assert_eq!(
            registry.begin_decision("a").unwrap_err(),
            ClaimError::AlreadyDeciding
        );
        assert_eq!(
            registry.rotate_code("a", 3).unwrap_err(),
            RotateError::NotPending
        );
        registry.abort_decision("a");
        assert!(registry.begin_decision("a").is_ok());
        assert_eq!(
            registry.begin_decision("nope").unwrap_err(),
            ClaimError::NotPending
        );
    }

    #[test]
    fn settling_tells_the_requester_then_the_reviewers() {
        let registry = Registry::new();
        let now = Utc::now();
        registry.insert(session("a", "u1", now), now);
        let mut requester = registry.watch_requester("a").unwrap();
        let mut events = registry.subscribe_inbox();
        assert!(registry.settle("a", Outcome::Denied).is_some());
        // The sender is gone with the entry; its last value is the outcome.
        assert_eq!(
            *requester.borrow_and_update(),
            RequesterStatus::Settled(Outcome::Denied)
        );
        assert!(matches!(
            &*events.try_recv().unwrap(),
            InboxEvent::Removed { session_id, outcome: Outcome::Denied } if session_id == "a"
        ));
        assert!(registry.get("a").is_none());
        assert!(registry.settle("a", Outcome::Denied).is_none());
    }

    #[test]
    fn claims_reach_the_requester_once_per_reviewer() {
        let registry = Registry::new();
        let now = Utc::now();
        registry.insert(session("a", "u1", now), now);
        let mut requester = registry.watch_requester("a").unwrap();
        let mut events = registry.subscribe_inbox();
        let _ = events.try_recv();
        registry.claim("a", reviewer("r1"), now).unwrap();
        assert!(matches!(
            &*requester.borrow_and_update(),
            RequesterStatus::Pending { claimed_by: Some(name), .. } if name == "Reviewer r1"
        ));
        assert!(matches!(
            &*events.try_recv().unwrap(),
            InboxEvent::Updated(_)
        ));
        // The same reviewer again changes nothing and announces nothing.
        registry.claim("a", reviewer("r1"), now).unwrap();
        assert!(!requester.has_changed().unwrap());
        assert!(events.try_recv().is_err());
        assert!(registry.claim("missing", reviewer("r1"), now).is_none());
    }

    #[test]
    fn rotations_stop_at_the_limit() {
        let registry = Registry::new();
        let now = Utc::now();
        registry.insert(session("a", "u1", now), now);
        let (code, n) = registry.rotate_code("a", 2).unwrap();
        assert_eq!(n, 1);
        assert_eq!(registry.get("a").unwrap().code, code);
        registry.rotate_code("a", 2).unwrap();
        assert_eq!(
            registry.rotate_code("a", 2).unwrap_err(),
            RotateError::LimitReached { max: 2 }
        );
    }

    #[test]
    fn ticking_promotes_and_reports_expiries() {
        let registry = Registry::new();
        let start = Utc::now();
        registry.insert(session("a", "u1", start), start);
        let ages = Ages {
            aging_after: Duration::from_mins(3),
            overdue_after: Duration::from_mins(8),
        };
        let at_start = registry.tick(start, &ages);
        assert!(at_start.expired.is_empty() && at_start.promoted.is_empty());
        let four_minutes_in = registry.tick(start + chrono::Duration::minutes(4), &ages);
        assert_eq!(registry.get("a").unwrap().level, Level::Aging);
        assert_eq!(four_minutes_in.promoted.len(), 1);
        assert_eq!(four_minutes_in.promoted[0].level, Level::Aging);
        let ticked = registry.tick(start + chrono::Duration::minutes(16), &ages);
        assert_eq!(ticked.expired, ["a"]);
        // One being decided is left to its decision.
        registry.begin_decision("a").unwrap();
        assert!(
            registry
                .tick(start + chrono::Duration::minutes(16), &ages)
                .expired
                .is_empty()
        );
    }

    #[test]
    fn presence_counts_people_not_tabs() {
        let registry = Registry::new();
        let one = registry.reviewer_connected("r1");
        let two = registry.reviewer_connected("r1");
        let other = registry.reviewer_connected("r2");
        assert_eq!(registry.reviewers_online(), 2);
        drop(one);
        assert_eq!(registry.reviewers_online(), 2);
        drop(two);
        assert_eq!(registry.reviewers_online(), 1);
        drop(other);
        assert_eq!(registry.reviewers_online(), 0);
    }
}
