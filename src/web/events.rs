//! Encoding live events for the sockets: the JSON events of DESIGN.md §4 and
//! the HTML fragments the htmx `ws` extension swaps in by id.
//!
//! Inbox events are encoded once per broadcast (see `registry::Published`);
//! every reviewer socket sends the same shared bytes.

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::clock::rfc3339;
use crate::domain::{Outcome, PendingCode};
use crate::registry::{InboxEvent, Published, Summary};
use crate::views;

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

fn text(value: String) -> Utf8Bytes {
    Utf8Bytes::from(value)
}

/// The shared frame for a published inbox event.
pub fn inbox_frame(published: &Published, format: Format) -> Utf8Bytes {
    match format {
        Format::Json => published
            .json
            .get_or_init(|| inbox_json(&published.event))
            .clone(),
        Format::Html => published
            .html
            .get_or_init(|| inbox_html(&published.event))
            .clone(),
    }
}

fn inbox_json(event: &InboxEvent) -> Utf8Bytes {
    let value = match event {
        InboxEvent::Added(s) => json!({"type": "added", "session": s}),
        InboxEvent::Updated(s) => json!({"type": "updated", "session": s}),
        InboxEvent::Removed {
            session_id,
            outcome,
        } => json!({"type": "removed", "session_id": session_id, "outcome": outcome}),
    };
    text(value.to_string())
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
        Format::Json => text(json!({"type": "snapshot", "sessions": sessions}).to_string()),
        Format::Html => text(views::inbox::rows(sessions, true).into_string()),
    }
}

pub fn presence(reviewers_online: usize, format: Format) -> Utf8Bytes {
    match format {
        Format::Json => {
            text(json!({"type": "presence", "reviewers_online": reviewers_online}).to_string())
        }
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
        Format::Json => text(
            json!({
                "type": "status",
                "status": "pending",
                "code": code.expose(),
                "expires_at": rfc3339(expires_at),
                "reviewers_online": reviewers_online,
            })
            .to_string(),
        ),
        Format::Html => text(format!(
            "{}{}",
            views::pending::code_fragment(code, expires_at).into_string(),
            views::pending::presence_fragment(reviewers_online, claimed_by).into_string()
        )),
    }
}

pub fn requester_code(code: &PendingCode, expires_at: DateTime<Utc>, format: Format) -> Utf8Bytes {
    match format {
        Format::Json => text(
            json!({"type": "code", "code": code.expose(), "expires_at": rfc3339(expires_at)})
                .to_string(),
        ),
        Format::Html => text(views::pending::code_fragment(code, expires_at).into_string()),
    }
}

pub fn requester_claimed(reviewer: &str, reviewers_online: usize, format: Format) -> Utf8Bytes {
    match format {
        Format::Json => {
            text(json!({"type": "claimed", "reviewer": {"display_name": reviewer}}).to_string())
        }
        Format::Html => {
            text(views::pending::presence_fragment(reviewers_online, Some(reviewer)).into_string())
        }
    }
}

pub fn requester_presence(
    reviewers_online: usize,
    claimed_by: Option<&str>,
    format: Format,
) -> Utf8Bytes {
    match format {
        Format::Json => {
            text(json!({"type": "presence", "reviewers_online": reviewers_online}).to_string())
        }
        Format::Html => {
            text(views::pending::presence_fragment(reviewers_online, claimed_by).into_string())
        }
    }
}

/// The requester's last frame; `None` for a withdrawal in JSON (DESIGN.md has
/// no such event: the socket just closes).
pub fn requester_outcome(outcome: Outcome, format: Format) -> Option<Utf8Bytes> {
    match format {
        Format::Json => match outcome {
            Outcome::Approved => Some(text(
                json!({"type": "approved", "complete_url": "/pending/complete"}).to_string(),
            )),
            Outcome::Denied => Some(text(json!({"type": "denied"}).to_string())),
            Outcome::Expired => Some(text(json!({"type": "expired"}).to_string())),
            Outcome::Withdrawn => None,
        },
        Format::Html => Some(text(match outcome {
            Outcome::Approved => views::pending::approved_fragment().into_string(),
            other => views::pending::ended_fragment(other).into_string(),
        })),
    }
}
