//! The reviewer's inbox: the live list, its rows, the detail drawer and the
//! decision form. Fragments here are what the sockets send to htmx.

// A template reads top to bottom; the 60-line rule is for code.
#![allow(clippy::too_many_lines)]

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::Viewer;
use super::page;
use crate::clock::rfc3339;
use crate::domain::{Channel, Outcome};
use crate::registry::{PendingSession, Summary};

/// `mm:ss` (or `h:mm:ss`) of an age in seconds, as the client ticks it.
fn clock_text(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A short, readable form of a user agent: browser and major version, and
/// operating system, e.g. "Chrome 156 on Linux". The full string is in the drawer.
pub fn client_summary(user_agent: &str) -> String {
    const BROWSERS: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("Chrome/", "Chrome"),
        ("Version/", "Safari"),
        ("curl/", "curl"),
        ("Safari/", "Safari"),
    ];
    const SYSTEMS: [(&str, &str); 7] = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    let browser = BROWSERS.iter().find_map(|(token, name)| {
        let at = user_agent.find(token)?;
        let version: String = user_agent[at + token.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some(if version.is_empty() {
            (*name).to_string()
        } else {
            format!("{name} {version}")
        })
    });
    let system = SYSTEMS
        .iter()
        .find(|(token, _)| user_agent.contains(token))
        .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b,
        (None, Some(s)) => format!("a browser on {s}"),
        (None, None) if user_agent.trim().is_empty() => "unknown client".into(),
        (None, None) => user_agent
            .split_whitespace()
            .next()
            .unwrap_or("unknown client")
            .to_string(),
    }
}

/// One row of the inbox; opening it loads the detail into the drawer.
///
/// The button's accessible name is its own text, with "Review" in front for
/// screen readers: a separate `aria-label` would not contain what sighted
/// people read on it (WCAG 2.5.3, "label in name"), so a speech user saying
/// the name they see could not open it.
pub fn row(s: &Summary, oob: bool) -> Markup {
    html! {
        li id={ "row-" (s.session_id) } class={ "row level-" (s.level.as_str()) } data-session=(s.session_id)
            hx-swap-oob=[oob.then_some("true")] {
            button.row-open type="button"
                hx-get={ "/inbox/" (s.session_id) } hx-target="#drawer-body" hx-swap="innerHTML"
                aria-haspopup="dialog" {
                span.visually-hidden { "Review " }
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
    html! {
        span #reviewers-online hx-swap-oob=[oob.then_some("true")] {
            (n) (if n == 1 { " reviewer online" } else { " reviewers online" })
        }
    }
}

pub fn inbox_page(user: Viewer<'_>, sessions: &[Summary], online: usize) -> Markup {
    let title = if sessions.is_empty() {
        "Inbox".to_string()
    } else {
        format!("({}) Inbox", sessions.len())
    };
    page(
        &title,
        Some(user),
        &html! {
            section.inbox hx-ext="ws" ws-connect="/ws/inbox" {
                div.inbox-head {
                    // Focus lands here when a drawer closes and no request is left.
                    h1 #inbox-title tabindex="-1" { "Sign-in requests" }
                    p.muted {
                        (reviewers_online(online, false)) " · oldest first"
                    }
                    label.notify {
                        input #notify-toggle type="checkbox";
                        " Notify me of new requests"
                    }
                }
                (keyboard_help())
                (rows(sessions, false))
                p #inbox-empty.muted hidden[!sessions.is_empty()] { "Nobody is waiting. New requests appear here by themselves." }
                // app.js adds a line here for each request that arrives, so
                // screen readers announce it without moving the reader's place.
                div #inbox-announce.visually-hidden aria-live="polite" {}
            }
            dialog #drawer aria-labelledby="drawer-title" {
                div #drawer-body {}
            }
        },
    )
}

/// The inbox's keys. There are no single-key shortcuts to learn (they would
/// fire while a screen reader or speech input is typing); everything is the
/// browser's own Tab, Enter, Space and Escape, and the drawer keeps focus
/// where this says.
fn keyboard_help() -> Markup {
    html! {
        details.keys {
            summary { "Using the inbox with a keyboard" }
            dl {
                dt { kbd { "Tab" } ", " kbd { "Shift" } "+" kbd { "Tab" } }
                dd { "Move between requests, oldest first, and through the review form." }
                dt { kbd { "Enter" } " or " kbd { "Space" } " on a request" }
                dd { "Open it in the review drawer. Focus moves into the drawer." }
                dt { kbd { "Space" } }
                dd { "Choose Approve or Deny, tick the read-back confirmation." }
                dt { kbd { "Enter" } " on Record decision" }
                dd { "Record the decision in the ledger." }
                dt { kbd { "Escape" } }
                dd { "Close the drawer. Focus goes back to the request, or to the next one once it is decided." }
            }
        }
    }
}

/// The drawer's content: who, from where, the code, and the decision form.
/// `locks` says whether a mismatch locks the account (`lock_on_mismatch`), so
/// the form can say what that choice does.
pub fn detail(s: &PendingSession, now: DateTime<Utc>, error: Option<&str>, locks: bool) -> Markup {
    let age = (now - s.created_at).num_seconds();
    html! {
        div.detail data-session=(s.id) {
            div.detail-head {
                h2 #drawer-title { (s.requester.display_name) }
                button.close type="button" data-close-dialog aria-label="Close" { "×" }
            }
            div id={ "drawer-notice-" (s.id) } {}
            // A GET never changes state: the drawer claims the session once open.
            span hidden hx-post={ "/inbox/" (s.id) "/claim" } hx-trigger="load" hx-swap="none" {}
            dl.facts {
                dt { "Username" } dd { (s.requester.username) }
                dt { "Client IP" } dd.mono { (s.client.ip) }
                dt { "User agent" } dd.ua { (s.client.user_agent) }
                dt { "Waiting" } dd { span data-age-since=(rfc3339(s.created_at)) { (clock_text(age)) } }
                dt { "Expires" } dd { time data-countdown=(rfc3339(s.expires_at)) datetime=(rfc3339(s.expires_at)) { (s.expires_at.format("%H:%M:%S UTC")) } }
            }
            (super::code_display("Code", &s.code, "code big"))
            p.warning {
                strong { "The code only proves that the person you are talking to can see this sign-in, not who they are. " }
                "Call them back on a number you already know, or check with them in person."
            }
            (decision_form(&s.id, error, locks))
        }
    }
}

/// The detail as a whole page, for a request that did not come from htmx.
pub fn detail_view(me: Viewer<'_>, detail: &Markup) -> Markup {
    super::page("Review", Some(me), &html! { section.card { (detail) } })
}

pub fn decision_form(session_id: &str, error: Option<&str>, locks: bool) -> Markup {
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
                label.inline.mismatch {
                    input #outcome-mismatch type="radio" name="outcome" value="mismatch" aria-describedby="mismatch-help";
                    " The code did not match"
                }
                p.hint #mismatch-help {
                    "Choose this if the code they read back to you is not the one above. "
                    "Then the person you are talking to cannot see this sign-in, and someone else most likely typed the password. "
                    "The sign-in ends, the requester is told only that it was denied, "
                    @if locks { "the account is locked until an admin unlocks it, " }
                    "and the admins are alerted. Leave the read-back box unticked; a note is optional."
                }
            }
            label for="channel" { "How did you confirm?" }
            select #channel name="channel" required {
                @for c in Channel::ALL { option value=(c.as_str()) { (c.label()) } }
            }
            label.inline.confirm {
                input type="checkbox" name="code_confirmed" value="on";
                " The requester read this code back to me"
            }
            label for="note" { "Note " span.muted { "(required to deny, optional for a mismatch; at most 1000 characters)" } }
            textarea #note name="note" maxlength="1000" rows="3" {}
            div.actions {
                button.primary type="submit" { "Record decision" }
                button.secondary type="button" data-close-dialog { "Cancel" }
            }
        }
    }
}

/// What the decider sees once the ledger has the decision.
pub fn recorded(
    outcome: Outcome,
    seq: i64,
    entry_hash: &str,
    name: &str,
    note: &str,
    locks: bool,
) -> Markup {
    let title = match outcome {
        Outcome::Approved => "Approved",
        Outcome::Mismatch => "Code mismatch recorded",
        _ => "Denied",
    };
    html! {
        div.detail.result {
            div.detail-head {
                h2 #drawer-title { (title) }
                button.close type="button" data-close-dialog aria-label="Close" { "×" }
            }
            p role="status" {
                "Your decision on " (name) "'s sign-in is recorded in the ledger as entry "
                strong { "#" (seq) } ", hash " code title=(entry_hash) { (&entry_hash[..12.min(entry_hash.len())]) "…" } "."
            }
            @if outcome == Outcome::Mismatch {
                p.alert #mismatch-recorded {
                    "The requester was told only that the sign-in was denied. The admins see an alarm on their page"
                    @if locks { ", and " (name) "'s account stays locked until an admin unlocks it" }
                    ". If you can, tell the account's owner on a channel you trust."
                }
            }
            @if !note.is_empty() {
                p { "Your note:" }
                blockquote.note { (note) }
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
        Outcome::Mismatch => "was reported by another reviewer: the code did not match",
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

#[cfg(test)]
mod tests {
    use super::client_summary;

    #[test]
    fn user_agents_read_like_people_say_them() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
        assert_eq!(client_summary(chrome), "Chrome 156 on Linux");
        let safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15";
        assert_eq!(client_summary(safari), "Safari 18 on macOS");
        assert_eq!(client_summary("curl/8.5.0"), "curl 8");
        assert_eq!(client_summary(""), "unknown client");
        assert_eq!(client_summary("weird-bot"), "weird-bot");
    }
}
