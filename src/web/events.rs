//! Encoding live events for the sockets: the JSON events of DESIGN.md §4
//! (typed, tagged by `type`) and the HTML fragments the htmx `ws` extension
//! swaps in by id.
//!
//! The registry emits domain events; the fan-out task here (owned by
//! startup) wraps each one once, and every reviewer socket sends the same
//! shared bytes, encoded at most once per format by whichever socket needs
//! them first.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::clock::rfc3339;
use crate::domain::{Outcome, PendingCode};
use crate::registry::{InboxEvent, Registry, Summary};
use crate::views;

/// Frames a reviewer socket may fall behind before it is resynchronised with a
/// fresh snapshot instead.
const FRAME_BUFFER: usize = 1024;

/// Which encoding a socket asked for (`?format=json`; HTML by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

impl Format {
    pub fn from_query(format: Option<&str>) -> Self {
        match format {
            Some("json") => Format::Json,
            _ => Format::Html,
        }
    }
}

/// The reviewer socket events of DESIGN.md §4.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InboxMessage<'a> {
    Snapshot {
        sessions: &'a [Summary],
    },
    Added {
        session: &'a Summary,
    },
    Updated {
        session: &'a Summary,
    },
    Removed {
        session_id: &'a str,
        outcome: Outcome,
    },
    Presence {
        reviewers_online: usize,
    },
}

/// A reviewer, as the requester's `claimed` event names them.
#[derive(Serialize)]
struct DisplayName<'a> {
    display_name: &'a str,
}

/// The requester socket events of DESIGN.md §4.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RequesterMessage<'a> {
    Status {
        status: &'static str,
        code: &'a str,
        expires_at: String,
        reviewers_online: usize,
    },
    Code {
        code: &'a str,
        expires_at: String,
    },
    Claimed {
        reviewer: DisplayName<'a>,
    },
    Presence {
        reviewers_online: usize,
    },
    Approved {
        complete_url: &'static str,
    },
    Denied,
    Expired,
}

fn text(value: String) -> Utf8Bytes {
    Utf8Bytes::from(value)
}

fn json<T: Serialize>(message: &T) -> Utf8Bytes {
    // These types hold only strings and numbers: encoding cannot fail.
    text(serde_json::to_string(message).unwrap_or_default())
}

/// An inbox event as sent to every reviewer socket. `None` means "you may have
/// missed events": the socket sends a fresh snapshot.
#[derive(Debug)]
pub struct Published {
    event: Option<Arc<InboxEvent>>,
    json: OnceLock<Utf8Bytes>,
    html: OnceLock<Utf8Bytes>,
}

impl Published {
    fn new(event: Option<Arc<InboxEvent>>) -> Self {
        Self {
            event,
            json: OnceLock::new(),
            html: OnceLock::new(),
        }
    }

    /// The event, or `None` for a resynchronisation.
    pub fn event(&self) -> Option<&InboxEvent> {
        self.event.as_deref()
    }

    /// The shared frame for this event.
    pub fn frame(&self, event: &InboxEvent, format: Format) -> Utf8Bytes {
        match format {
            Format::Json => self.json.get_or_init(|| inbox_json(event)).clone(),
            Format::Html => self.html.get_or_init(|| inbox_html(event)).clone(),
        }
    }
}

/// The channel reviewer sockets read their frames from.
#[derive(Clone)]
pub struct Frames {
    tx: broadcast::Sender<Arc<Published>>,
}

impl Default for Frames {
    fn default() -> Self {
        Self::new()
    }
}

impl Frames {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(FRAME_BUFFER).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    fn send(&self, published: Published) {
        // No reviewer connected is normal: the event has nobody to reach.
        let _ = self.tx.send(Arc::new(published));
    }
}

/// The fan-out task: takes the registry's events as they come and hands each,
/// wrapped once, to every reviewer socket. It runs until its owner stops it.
pub async fn run_fanout(registry: Registry, frames: Frames) {
    let mut events = registry.subscribe_inbox();
    loop {
        match events.recv().await {
            Ok(event) => frames.send(Published::new(Some(event))),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the inbox fan-out fell behind; reviewers get a fresh snapshot"
                );
                frames.send(Published::new(None));
            }
            Err(RecvError::Closed) => break,
        }
    }
}

fn inbox_json(event: &InboxEvent) -> Utf8Bytes {
    json(&match event {
        InboxEvent::Added(s) => InboxMessage::Added { session: s },
        InboxEvent::Updated(s) => InboxMessage::Updated { session: s },
        InboxEvent::Removed {
            session_id,
            outcome,
        } => InboxMessage::Removed {
            session_id,
            outcome: *outcome,
        },
    })
}

fn inbox_html(event: &InboxEvent) -> Utf8Bytes {
    let markup = match event {
        InboxEvent::Added(s) => maud::html! {
            ul #inbox-rows hx-swap-oob="beforeend" { (views::inbox::row(s, false)) }
        },
        InboxEvent::Updated(s) => views::inbox::row(s, true),
        InboxEvent::Removed {
            session_id,
            outcome,
        } => views::inbox::removed(session_id, *outcome),
    };
    text(markup.into_string())
}

/// The whole inbox, for a socket that just connected or fell behind.
pub fn inbox_snapshot(sessions: &[Summary], format: Format) -> Utf8Bytes {
    match format {
        Format::Json => json(&InboxMessage::Snapshot { sessions }),
        Format::Html => text(views::inbox::rows(sessions, true).into_string()),
    }
}

pub fn presence(reviewers_online: usize, format: Format) -> Utf8Bytes {
    match format {
        Format::Json => json(&InboxMessage::Presence { reviewers_online }),
        Format::Html => text(views::inbox::reviewers_online(reviewers_online, true).into_string()),
    }
}

/// The requester's first frame: everything the page shows.
pub fn requester_status(
    code: &PendingCode,
    expires_at: DateTime<Utc>,
    reviewers_online: usize,
    claimed_by: Option<&str>,
    format: Format,
) -> Utf8Bytes {
    match format {
        Format::Json => json(&RequesterMessage::Status {
            status: "pending",
            code: code.expose(),
            expires_at: rfc3339(expires_at),
            reviewers_online,
        }),
        Format::Html => text(format!(
            "{}{}",
            views::pending::code_fragment(code, expires_at).into_string(),
            views::pending::presence_fragment(reviewers_online, claimed_by).into_string()
        )),
    }
}

pub fn requester_code(code: &PendingCode, expires_at: DateTime<Utc>, format: Format) -> Utf8Bytes {
    match format {
        Format::Json => json(&RequesterMessage::Code {
            code: code.expose(),
            expires_at: rfc3339(expires_at),
        }),
        Format::Html => text(views::pending::code_fragment(code, expires_at).into_string()),
    }
}

pub fn requester_claimed(reviewer: &str, reviewers_online: usize, format: Format) -> Utf8Bytes {
    match format {
        Format::Json => json(&RequesterMessage::Claimed {
            reviewer: DisplayName {
                display_name: reviewer,
            },
        }),
        Format::Html => {
            text(views::pending::claimed_fragment(reviewers_online, reviewer).into_string())
        }
    }
}

pub fn requester_presence(
    reviewers_online: usize,
    claimed_by: Option<&str>,
    format: Format,
) -> Utf8Bytes {
    match format {
        Format::Json => json(&RequesterMessage::Presence { reviewers_online }),
        Format::Html => text(
            views::pending::presence_changed_fragment(reviewers_online, claimed_by).into_string(),
        ),
    }
}

/// The requester's last frame; `None` for a withdrawal in JSON (DESIGN.md has
/// no such event: the socket just closes).
pub fn requester_outcome(outcome: Outcome, format: Format) -> Option<Utf8Bytes> {
    match format {
        Format::Json => match outcome {
            Outcome::Approved => Some(json(&RequesterMessage::Approved {
                complete_url: "/pending/complete",
            })),
            // The registry already tells a requester "denied" for a mismatch;
            // this arm keeps it so should anything else pass one in.
            Outcome::Denied | Outcome::Mismatch => Some(json(&RequesterMessage::Denied)),
            Outcome::Expired => Some(json(&RequesterMessage::Expired)),
            Outcome::Withdrawn => None,
        },
        Format::Html => Some(text(match outcome {
            Outcome::Approved => views::pending::approved_fragment().into_string(),
            other => views::pending::ended_fragment(other.as_told_to_requester()).into_string(),
        })),
    }
}
