//! The registry of pending peer reviews: the hot, in-memory copy of every
//! session waiting for a reviewer, and the events that tell reviewers and
//! requesters what changed.
//!
//! A `DashMap` keyed by session id sits behind methods; no guard leaves this
//! module and none is held across an `.await`. Reviewers hear about changes on
//! one `broadcast` channel; each requester has a `watch` channel of its own, so
//! a burst of inbox traffic never queues in front of a requester's outcome.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::clock::rfc3339;
use crate::domain::{Outcome, PendingCode};

/// How many inbox events a reviewer socket may fall behind before it is
/// resynchronised with a fresh snapshot instead.
const INBOX_EVENT_BUFFER: usize = 1024;

/// The ageing level shown in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    New,
    Aging,
    Overdue,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::New => "new",
            Level::Aging => "aging",
            Level::Overdue => "overdue",
        }
    }
}

/// Who asked for review, as reviewers see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requester {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

/// Where the sign-in came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

/// A reviewer, as requesters and other reviewers see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewerRef {
    #[serde(skip)]
    pub id: String,
    pub display_name: String,
}

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
    pub claimed_by: Option<ReviewerRef>,
    /// True while one reviewer's decision is being written to the ledger;
    /// every other decision on this session loses with `already_decided`.
    pub deciding: bool,
}

/// `Summary` of DESIGN.md §4: a pending session without its code.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub session_id: String,
    pub requester: Requester,
    pub created_at: String,
    pub age_seconds: i64,
    pub level: Level,
    pub client: Client,
    pub claimed_by: Option<ReviewerRef>,
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

/// An inbox event as broadcast: shared by every reviewer socket, and encoded
/// at most once per format, by whichever socket needs it first.
#[derive(Debug)]
pub struct Published {
    pub event: InboxEvent,
    pub json: OnceLock<Utf8Bytes>,
    pub html: OnceLock<Utf8Bytes>,
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
    inbox_tx: broadcast::Sender<Arc<Published>>,
    /// Reviewer sockets open now. A watch, not an event: a burst of connects
    /// collapses into the latest count for every reader.
    presence_tx: watch::Sender<usize>,
}

/// Counts one open reviewer socket while it lives.
pub struct PresenceGuard {
    registry: Registry,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.registry
            .inner
            .presence_tx
            .send_modify(|n| *n = n.saturating_sub(1));
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
                presence_tx,
            }),
        }
    }

    fn publish(&self, event: InboxEvent) {
        // No reviewer connected is normal: the event has nobody to reach.
        let _ = self.inner.inbox_tx.send(Arc::new(Published {
            event,
            json: OnceLock::new(),
            html: OnceLock::new(),
        }));
    }

    /// Adds a session and tells the reviewers.
    pub fn insert(&self, session: PendingSession, now: DateTime<Utc>) {
        // Inserting an id that is already present would orphan its requester
        // channel; ids are random, so this only guards against misuse.
        debug_assert!(!self.inner.sessions.contains_key(&session.id));
        let summary = session.summary(now);
        let (requester_tx, _) = watch::channel(RequesterStatus::Pending {
            code: session.code.clone(),
            expires_at: session.expires_at,
            claimed_by: None,
        });
        self.inner.sessions.insert(
            session.id.clone(),
            Entry {
                session,
                requester_tx,
            },
        );
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

    pub fn len(&self) -> usize {
        self.inner.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.sessions.is_empty()
    }

    /// Listens to the requester status of one session.
    pub fn watch_requester(&self, id: &str) -> Option<watch::Receiver<RequesterStatus>> {
        self.inner
            .sessions
            .get(id)
            .map(|e| e.requester_tx.subscribe())
    }

    /// Listens to inbox events.
    pub fn subscribe_inbox(&self) -> broadcast::Receiver<Arc<Published>> {
        self.inner.inbox_tx.subscribe()
    }

    /// Listens to the number of reviewers online.
    pub fn watch_presence(&self) -> watch::Receiver<usize> {
        self.inner.presence_tx.subscribe()
    }

    /// Counts a reviewer socket as online until the guard is dropped.
    pub fn reviewer_connected(&self) -> PresenceGuard {
        self.inner.presence_tx.send_modify(|n| *n += 1);
        PresenceGuard {
            registry: self.clone(),
        }
    }

    /// Marks a session as being looked at by `reviewer` (a soft claim: it locks
    /// no one out) and tells the other reviewers and the requester.
    pub fn claim(
        &self,
        id: &str,
        reviewer: ReviewerRef,
        now: DateTime<Utc>,
    ) -> Option<PendingSession> {
        let (session, changed) = {
            let mut entry = self.inner.sessions.get_mut(id)?;
            let changed = entry.session.claimed_by.as_ref().map(|r| &r.id) != Some(&reviewer.id);
            if changed {
                entry.session.claimed_by = Some(reviewer);
                let status = RequesterStatus::Pending {
                    code: entry.session.code.clone(),
                    expires_at: entry.session.expires_at,
                    claimed_by: entry
                        .session
                        .claimed_by
                        .as_ref()
                        .map(|r| r.display_name.clone()),
                };
                entry.requester_tx.send_replace(status);
            }
            (entry.session.clone(), changed)
        };
        if changed {
            self.publish(InboxEvent::Updated(Box::new(session.summary(now))));
        }
        Some(session)
    }

    /// Moves sessions to the level their age calls for, telling the reviewers,
    /// and returns the ids of sessions past their expiry (not being decided).
    pub fn tick(&self, now: DateTime<Utc>, ages: &Ages) -> Vec<String> {
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
        for summary in changed {
            self.publish(InboxEvent::Updated(Box::new(summary)));
        }
        expired
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
        let rotations = entry.session.code_rotations;
        let expires_at = entry.session.expires_at;
        let claimed_by = entry
            .session
            .claimed_by
            .as_ref()
            .map(|r| r.display_name.clone());
        entry.requester_tx.send_replace(RequesterStatus::Pending {
            code: code.clone(),
            expires_at,
            claimed_by,
        });
        Ok((code, rotations))
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
        entry
            .requester_tx
            .send_replace(RequesterStatus::Settled(outcome));
        // The requester's socket is the one waiting for this outcome: tell it
        // first, and let the fan-out to every reviewer follow on its own task,
        // so the requester's frame does not queue behind a thousand others.
        let registry = self.clone();
        let removed = InboxEvent::Removed {
            session_id: id.to_string(),
            outcome,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::task::yield_now().await;
                    registry.publish(removed);
                });
            }
            Err(_) => registry.publish(removed),
        }
        Some(entry.session)
    }

    /// Reviewers online now.
    pub fn reviewers_online(&self) -> usize {
        *self.inner.presence_tx.borrow()
    }
}

/// The ages at which a session becomes `aging` and `overdue`.
#[derive(Debug, Clone, Copy)]
pub struct Ages {
    pub aging_after: Duration,
    pub overdue_after: Duration,
}

impl Ages {
    pub fn level(&self, age: chrono::Duration) -> Level {
        let age = age.to_std().unwrap_or_default();
        if age >= self.overdue_after {
            Level::Overdue
        } else if age >= self.aging_after {
            Level::Aging
        } else {
            Level::New
        }
    }
}
