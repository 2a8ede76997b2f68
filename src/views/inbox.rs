//! The reviewer's inbox: the live list, its rows, the detail drawer and the
//! decision form. Fragments here are what the sockets send to htmx.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::page;
use crate::clock::rfc3339;
use crate::domain::{Channel, Outcome};
use crate::registry::{PendingSession, Summary};
use crate::store::users::User;

/// `mm:ss` (or `h:mm:ss`) of an age in seconds, as the client ticks it.
fn clock_text(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A short, readable form of a user agent: the first product token and the
/// platform in parentheses, if any.
pub fn client_summary(user_agent: &str) -> String {
    let platform = user_agent
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(p, _)| p.split(';').next().unwrap_or("").trim().to_string());
    let product = user_agent
        .split_whitespace()
        .rev()
        .find(|t| t.contains('/') && !t.starts_with("Mozilla"))
        .or_else(|| user_agent.split_whitespace().next())
        .unwrap_or("unknown client");
    match platform {
        Some(p) if !p.is_empty() => format!("{product} on {p}"),
        _ => product.to_string(),
    }
}

/// One row of the inbox; opening it loads the detail into the drawer.
pub fn row(s: &Summary, oob: bool) -> Markup {
    html! {
        li id={ "row-" (s.session_id) } class={ "row level-" (s.level.as_str()) } data-session=(s.session_id)
            hx-swap-oob=[oob.then_some("true")] {
            button.row-open type="button"
                hx-get={ "/inbox/" (s.session_id) } hx-target="#drawer-body" hx-swap="innerHTML"
                aria-haspopup="dialog"
                aria-label={ "Review " (s.requester.display_name) ", waiting " (clock_text(s.age_seconds)) ", " (s.level.as_str()) } {
                span.who {
                    span.name { (s.requester.display_name) }
                    " "
                    span.user.muted { "@" (s.requester.username) }
                }
                span.meta {
                    span class={ "badge level-" (s.level.as_str()) } { (s.level.as_str()) }
                    " "
                    span.age data-age-since=(s.created_at) { (clock_text(s.age_seconds)) }
                }
                span.client.muted { (s.client.ip) " · " (client_summary(&s.client.user_agent)) }
                @if let Some(reviewer) = &s.claimed_by {
                    span.claimed-by { "being reviewed by " (reviewer.display_name) }
                }
            }
        }
    }
}

/// The list itself, replaced whole by a snapshot.
pub fn rows(sessions: &[Summary], oob: bool) -> Markup {
    html! {
        ul #inbox-rows hx-swap-oob=[oob.then_some("true")] aria-label="Waiting sign-in requests" {
            @for s in sessions { (row(s, false)) }
        }
    }
}

pub fn reviewers_online(n: usize, oob: bool) -> Markup {
    html! { span #reviewers-online hx-swap-oob=[oob.then_some("true")] { (n) } }
}

pub fn inbox_page(user: &User, sessions: &[Summary], online: usize) -> Markup {
    let title = if sessions.is_empty() {
        "Inbox".to_string()
    } else {
        format!("({}) Inbox", sessions.len())
    };
    page(
        &title,
        Some(user),
        html! {
            section.inbox hx-ext="ws" ws-connect="/ws/inbox" {
                div.inbox-head {
                    h1 { "Sign-in requests" }
                    p.muted {
                        (reviewers_online(online, false)) " reviewers online · oldest first"
                    }
                    label.notify {
                        input #notify-toggle type="checkbox";
                        " Notify me of new requests"
                    }
                }
                (rows(sessions, false))
                p #inbox-empty.muted hidden[!sessions.is_empty()] { "Nobody is waiting. New requests appear here by themselves." }
            }
            dialog #drawer aria-labelledby="drawer-title" {
                div #drawer-body {}
            }
        },
    )
}

/// The drawer's content: who, from where, the code, and the decision form.
pub fn detail(s: &PendingSession, now: DateTime<Utc>, error: Option<&str>) -> Markup {
    let age = (now - s.created_at).num_seconds();
    html! {
        div.detail data-session=(s.id) {
            div.detail-head {
                h2 #drawer-title { (s.requester.display_name) }
                button.close type="button" data-close-dialog aria-label="Close" { "×" }
            }
            div id={ "drawer-notice-" (s.id) } {}
            dl.facts {
                dt { "Username" } dd { (s.requester.username) }
                dt { "Client IP" } dd.mono { (s.client.ip) }
                dt { "User agent" } dd.ua { (s.client.user_agent) }
                dt { "Waiting" } dd { span data-age-since=(rfc3339(s.created_at)) { (clock_text(age)) } }
                dt { "Expires" } dd { time data-countdown=(rfc3339(s.expires_at)) datetime=(rfc3339(s.expires_at)) { (s.expires_at.format("%H:%M:%S UTC")) } }
            }
            p.code.big aria-label="Code" { (s.code.grouped()) }
            p.warning {
                strong { "The code only proves that the person you are talking to can see this sign-in, not who they are. " }
                "Call them back on a number you already know, or check with them in person."
            }
            (decision_form(&s.id, error))
        }
    }
}

pub fn decision_form(session_id: &str, error: Option<&str>) -> Markup {
    html! {
        form.decision hx-post={ "/inbox/" (session_id) "/decision" } hx-target="#drawer-body" hx-swap="innerHTML"
            method="post" action={ "/inbox/" (session_id) "/decision" } {
            @if let Some(error) = error {
                p.alert role="alert" { (error) }
            }
            fieldset {
                legend { "Decision" }
                label.inline { input type="radio" name="outcome" value="approve" required; " Approve" }
                label.inline { input type="radio" name="outcome" value="deny"; " Deny" }
            }
            label for="channel" { "How did you confirm?" }
            select #channel name="channel" required {
                @for c in Channel::ALL { option value=(c.as_str()) { (c.label()) } }
            }
            label.inline.confirm {
                input type="checkbox" name="code_confirmed" value="on";
                " The requester read this code back to me"
            }
            label for="note" { "Note " span.muted { "(required to deny; at most 1000 characters)" } }
            textarea #note name="note" maxlength="1000" rows="3" {}
            div.actions {
                button.primary type="submit" { "Record decision" }
                button.secondary type="button" data-close-dialog { "Cancel" }
            }
        }
    }
}

/// What the decider sees once the ledger has the decision.
pub fn recorded(outcome: Outcome, seq: i64, entry_hash: &str, name: &str) -> Markup {
    html! {
        div.detail.result {
            div.detail-head {
                h2 #drawer-title { (if outcome == Outcome::Approved { "Approved" } else { "Denied" }) }
                button.close type="button" data-close-dialog aria-label="Close" { "×" }
            }
            p role="status" {
                "Your decision on " (name) "'s sign-in is recorded in the ledger as entry "
                strong { "#" (seq) } ", hash " code title=(entry_hash) { (&entry_hash[..12.min(entry_hash.len())]) "…" } "."
            }
            div.actions { button.primary type="button" data-close-dialog { "Close" } }
        }
    }
}

/// A message in the drawer (not pending any more, not allowed, failed).
pub fn drawer_message(title: &str, message: &str) -> Markup {
    html! {
        div.detail {
            div.detail-head {
                h2 #drawer-title { (title) }
                button.close type="button" data-close-dialog aria-label="Close" { "×" }
            }
            p.alert role="alert" { (message) }
        }
    }
}

/// Sent to every inbox when a session leaves it: the row goes, and a drawer
/// open on it says what happened.
pub fn removed(session_id: &str, outcome: Outcome) -> Markup {
    let what = match outcome {
        Outcome::Approved => "was approved by another reviewer",
        Outcome::Denied => "was denied by another reviewer",
        Outcome::Expired => "expired",
        Outcome::Withdrawn => "was withdrawn by the requester",
    };
    html! {
        li id={ "row-" (session_id) } hx-swap-oob="delete" {}
        div id={ "drawer-notice-" (session_id) } hx-swap-oob="true" {
            p.alert role="alert" { "This request " (what) ". Nothing more to do here." }
        }
    }
}
