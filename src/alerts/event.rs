//! The six webhook events of DESIGN.md §12 and the bodies they are sent as:
//! pure data and encoding, no I/O. A body never carries the code or the note:
//! [`AlertEvent`] has no field that could hold either.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::domain::{Level, Outcome, PublicUrl, Requester, Reviewer};

/// Which event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A pending session appeared.
    #[serde(rename = "review.requested")]
    Requested,
    /// A pending session turned `aging` while no reviewer had the inbox open.
    #[serde(rename = "review.unattended")]
    Unattended,
    /// A pending session turned `overdue`.
    #[serde(rename = "review.overdue")]
    Overdue,
    /// Approved or denied.
    #[serde(rename = "review.decided")]
    Decided,
    /// Expired.
    #[serde(rename = "review.expired")]
    Expired,
    /// A reviewer recorded a mismatch: the alarm.
    #[serde(rename = "review.mismatch")]
    Mismatch,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Requested,
        EventKind::Unattended,
        EventKind::Overdue,
        EventKind::Decided,
        EventKind::Expired,
        EventKind::Mismatch,
    ];

    /// Every event: what an endpoint gets when its `events` is left out.
    pub fn all() -> Vec<EventKind> {
        Self::ALL.to_vec()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Requested => "review.requested",
            EventKind::Unattended => "review.unattended",
            EventKind::Overdue => "review.overdue",
            EventKind::Decided => "review.decided",
            EventKind::Expired => "review.expired",
            EventKind::Mismatch => "review.mismatch",
        }
    }

    /// The event a recorded outcome sends, if any (a withdrawal sends none; a
    /// mismatch sends `review.mismatch`, not `review.decided`).
    pub fn for_outcome(outcome: Outcome) -> Option<EventKind> {
        match outcome {
            Outcome::Approved | Outcome::Denied => Some(EventKind::Decided),
            Outcome::Mismatch => Some(EventKind::Mismatch),
            Outcome::Expired => Some(EventKind::Expired),
            Outcome::Withdrawn => None,
        }
    }
}

/// The ledger row an outcome event points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRef {
    pub seq: i64,
    pub entry_hash: String,
}

/// One event about one pending session.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    pub kind: EventKind,
    /// When it happened (the service's clock).
    pub at: DateTime<Utc>,
    pub session_id: String,
    pub requester: Requester,
    /// The deciding reviewer, for decided and mismatch events.
    pub reviewer: Option<Reviewer>,
    /// For decided, expired and mismatch events.
    pub outcome: Option<Outcome>,
    /// The session's level when the event fired.
    pub level: Level,
    /// The ledger row, for decided, expired and mismatch events.
    pub entry: Option<LedgerRef>,
}

/// The Standard Webhooks body: `{"type", "timestamp", "data"}`.
#[derive(Serialize)]
struct StandardBody<'a> {
    #[serde(rename = "type")]
    kind: EventKind,
    timestamp: String,
    data: Data<'a>,
}

/// `data`: every key present, `null` where it does not apply.
#[derive(Serialize)]
struct Data<'a> {
    session_id: &'a str,
    requester: &'a Requester,
    reviewer: Option<ReviewerRef<'a>>,
    outcome: Option<Outcome>,
    level: Level,
    inbox_url: String,
    seq: Option<i64>,
    entry_hash: Option<&'a str>,
}

#[derive(Serialize)]
struct ReviewerRef<'a> {
    id: &'a str,
    display_name: &'a str,
}

impl AlertEvent {
    /// Recorded once per kind and session, however often it is re-derived
    /// (after a crash, the settling sweep may derive an outcome event again).
    pub fn dedupe_key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.session_id)
    }

    /// `{public_url}/inbox/{session_id}`.
    pub fn inbox_url(&self, public_url: &PublicUrl) -> String {
        format!("{}/inbox/{}", public_url.origin(), self.session_id)
    }

    /// The Standard Webhooks JSON body of DESIGN.md §12.
    pub fn standard_body(&self, public_url: &PublicUrl) -> String {
        let body = StandardBody {
            kind: self.kind,
            timestamp: rfc3339(self.at),
            data: Data {
                session_id: &self.session_id,
                requester: &self.requester,
                reviewer: self.reviewer.as_ref().map(|r| ReviewerRef {
                    id: &r.id,
                    display_name: &r.display_name,
                }),
                outcome: self.outcome,
                level: self.level,
                inbox_url: self.inbox_url(public_url),
                seq: self.entry.as_ref().map(|e| e.seq),
                entry_hash: self.entry.as_ref().map(|e| e.entry_hash.as_str()),
            },
        };
        // Strings, numbers and enums only: encoding cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// The `{"text": ...}` body for Slack, Mattermost and Rocket.Chat, made from
/// a stored standard body (the outbox keeps one body per event).
pub fn slack_body(standard: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(standard).unwrap_or_default();
    let d = &v["data"];
    let who = format!(
        "{} ({})",
        d["requester"]["display_name"].as_str().unwrap_or("someone"),
        d["requester"]["username"].as_str().unwrap_or("?")
    );
    let reviewer = d["reviewer"]["display_name"]
        .as_str()
        .unwrap_or("a reviewer");
    let url = d["inbox_url"].as_str().unwrap_or("");
    let entry = d["seq"]
        .as_i64()
        .map(|s| format!(" Ledger entry #{s}."))
        .unwrap_or_default();
    let text = match v["type"].as_str().unwrap_or("") {
        "review.requested" => format!("peergate: {who} is waiting for a peer review. {url}"),
        "review.unattended" => format!(
            "peergate: {who} has been waiting for a while and no reviewer has the inbox open. {url}"
        ),
        "review.overdue" => {
            format!("peergate: {who}'s sign-in is overdue for review and will expire soon. {url}")
        }
        "review.decided" => format!(
            "peergate: {reviewer} {} {who}'s sign-in.{entry}",
            d["outcome"].as_str().unwrap_or("decided")
        ),
        "review.expired" => {
            format!("peergate: {who}'s sign-in expired without a decision.{entry}")
        }
        "review.mismatch" => format!(
            "🚨 peergate ALERT: the code read back for {who}'s sign-in did not match (reported by {reviewer}). Someone else may hold this password; the account may be locked. See the admin page.{entry}"
        ),
        other => format!("peergate: {other} for {who}. {url}"),
    };
    serde_json::json!({ "text": text }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> AlertEvent {
        AlertEvent {
            kind,
            at: chrono::DateTime::parse_from_rfc3339("2026-11-28T03:20:38.123Z")
                .unwrap()
                .with_timezone(&Utc),
            session_id: "ps_abc".into(),
            requester: Requester {
                id: "usr_1".into(),
                username: "uma".into(),
                display_name: "Uma User".into(),
            },
            reviewer: None,
            outcome: None,
            level: Level::New,
            entry: None,
        }
    }

    #[test]
    fn the_standard_body_has_every_key() {
        let url = PublicUrl::parse("https://login.example.com/").unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&event(EventKind::Requested).standard_body(&url)).unwrap();
        assert_eq!(body["type"], "review.requested");
        assert_eq!(body["timestamp"], "2026-11-28T03:20:38.123Z");
        let data = body["data"].as_object().unwrap();
        let mut keys: Vec<_> = data.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "entry_hash",
                "inbox_url",
                "level",
                "outcome",
                "requester",
                "reviewer",
                "seq",
                "session_id"
            ]
        );
        assert_eq!(data["inbox_url"], "https://login.example.com/inbox/ps_abc");
        assert!(data["reviewer"].is_null() && data["seq"].is_null());
    }

    #[test]
    fn outcomes_map_to_events() {
        assert_eq!(
            EventKind::for_outcome(Outcome::Mismatch),
            Some(EventKind::Mismatch)
        );
        assert_eq!(
            EventKind::for_outcome(Outcome::Denied),
            Some(EventKind::Decided)
        );
        assert_eq!(EventKind::for_outcome(Outcome::Withdrawn), None);
    }

    #[test]
    fn slack_bodies_are_text_only() {
        let url = PublicUrl::parse("http://127.0.0.1:8080").unwrap();
        let mut e = event(EventKind::Mismatch);
        e.entry = Some(LedgerRef {
            seq: 7,
            entry_hash: "ab".repeat(32),
        });
        let body: serde_json::Value =
            serde_json::from_str(&slack_body(&e.standard_body(&url))).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("did not match") && text.contains("#7"),
            "{text}"
        );
        assert_eq!(body.as_object().unwrap().len(), 1);
    }
}
