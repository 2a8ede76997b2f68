//! The requester's waiting page.

// A template reads top to bottom; the 60-line rule is for code.
#![allow(clippy::too_many_lines)]

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::page;
use crate::clock::rfc3339;
use crate::domain::PendingCode;

/// What the waiting page shows.
pub struct PendingView<'a> {
    pub display_name: &'a str,
    pub code: &'a PendingCode,
    pub expires_at: DateTime<Utc>,
    pub reviewers_online: usize,
    pub claimed_by: Option<&'a str>,
    pub rotations_left: u32,
    pub notice: Option<&'a str>,
    /// The app the requester is on their way to (forward auth), by host.
    pub continue_to: Option<&'a str>,
}

/// The code, large and grouped, with its expiry. The code sits in a polite
/// live region, so a new code is announced; the countdown, which changes
/// every second, stays outside it (inside, it would be read out every second).
pub fn code_block(code: &PendingCode, expires_at: DateTime<Utc>) -> Markup {
    html! {
        div aria-live="polite" aria-atomic="true" {
            div #code-block { (super::code_display("Your code", code, "code")) }
        }
        div #expiry { (expiry_inner(expires_at)) }
    }
}

fn expiry_inner(expires_at: DateTime<Utc>) -> Markup {
    html! {
        p.muted {
            strong {
                time.expires datetime=(rfc3339(expires_at)) data-countdown=(rfc3339(expires_at)) {
                    (expires_at.format("until %H:%M:%S UTC"))
                }
            }
            " · this sign-in expires at " (expires_at.format("%H:%M UTC"))
        }
    }
}

/// Who is online and who is looking. Not a live region itself: the socket
/// replaces it whole, and screen readers hear of changes through the
/// announcement regions below, which stay in place.
pub fn presence(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! { div #presence { (presence_inner(reviewers_online, claimed_by)) } }
}

/// The two announcement regions of the waiting page, empty when it loads:
/// screen readers announce what the socket later puts into them. They sit
/// outside `#pending-live`, which approval and endings replace, because a
/// live region must already be in the page when its text changes.
fn announcement_regions() -> Markup {
    html! {
        // Outcomes (claimed, approved, denied, expired) interrupt.
        div #pending-outcome .visually-hidden aria-live="assertive" aria-atomic="true" {}
        // How many reviewers are online waits its turn.
        div #pending-presence .visually-hidden aria-live="polite" aria-atomic="true" {}
    }
}

/// New text for an announcement region, swapped into it by the socket
/// (`innerHTML`, so the region itself stays).
fn announce(region: &str, text: &str) -> Markup {
    html! { div id=(region) hx-swap-oob="innerHTML" { p { (text) } } }
}

/// The text announced when a reviewer opens the request.
fn claimed_text(name: &str) -> String {
    format!("{name} is reviewing your request.")
}

fn online_text(reviewers_online: usize) -> String {
    match reviewers_online {
        0 => "No reviewers are online right now. Ask a colleague to open peergate.".into(),
        1 => "1 reviewer online".into(),
        n => format!("{n} reviewers online"),
    }
}

fn presence_inner(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! {
        div {
            @if let Some(name) = claimed_by {
                p.claimed { strong { (name) } " is reviewing your request." }
            }
            p.muted { (online_text(reviewers_online)) }
        }
    }
}

pub fn waiting(view: &PendingView<'_>) -> Markup {
    page(
        "Waiting for a colleague",
        None,
        &html! {
            div #pending-live hx-ext="ws" ws-connect="/ws/pending" {
                section.card.narrow.pending {
                    h1 { "A colleague needs to confirm it is you" }
                    (continuing(view.continue_to))
                    p {
                        "Hello " (view.display_name) ". Contact a colleague you trust (a call, a chat) "
                        "and read them this code. When they approve, this page continues by itself."
                    }
                    @if let Some(notice) = view.notice {
                        p.alert role="alert" { (notice) }
                    }
                    (code_block(view.code, view.expires_at))
                    (presence(view.reviewers_online, view.claimed_by))
                    div.actions {
                        @if view.rotations_left > 0 {
                            form method="post" action="/pending/code" {
                                button type="submit" { "Get a new code" }
                            }
                        }
                        form method="post" action="/pending/cancel" {
                            button.secondary type="submit" { "Cancel sign-in" }
                        }
                    }
                }
            }
            (announcement_regions())
        },
    )
}

const APPROVED_TEXT: &str = "Your colleague approved this sign-in. Continuing…";

/// "to continue to grafana.example.com", when the requester came from an app.
pub fn continuing(host: Option<&str>) -> Markup {
    html! {
        @if let Some(host) = host {
            p.continue-to { "to continue to " strong { (host) } }
        }
    }
}

/// The approved state: a form the page submits by itself (app.js), with a
/// button in case scripts are off.
fn approved_block(continue_to: Option<&str>) -> Markup {
    html! {
        div #pending-live {
            section.card.narrow.pending {
                h1 { "Approved" }
                (continuing(continue_to))
                p { (APPROVED_TEXT) }
                form #complete method="post" action="/pending/complete" data-autosubmit {
                    button.primary type="submit" { "Continue" }
                }
            }
        }
    }
}

/// The page after approval, before the browser completes sign-in.
pub fn approved(continue_to: Option<&str>) -> Markup {
    page("Approved", None, &approved_block(continue_to))
}

/// Sent over the socket on approval: replaces the live area, ending the
/// socket, and announces the approval.
pub fn approved_fragment() -> Markup {
    html! {
        div #pending-live hx-swap-oob="true" { (approved_block(None)) }
        (announce("pending-outcome", &format!("Approved. {APPROVED_TEXT}")))
    }
}

/// Sent over the socket when the session ends without approval.
pub fn ended_fragment(outcome: crate::domain::Outcome) -> Markup {
    use crate::domain::Outcome;
    let (title, text) = match outcome {
        // A mismatch never reaches the requester as such (`as_told_to_requester`).
        Outcome::Denied | Outcome::Mismatch => (
            "Sign-in denied",
            "A reviewer denied this sign-in. If it was you, contact your security team.",
        ),
        Outcome::Expired => (
            "Sign-in expired",
            "Nobody confirmed this sign-in in time. Sign in again to get a new code.",
        ),
        Outcome::Withdrawn | Outcome::Approved => (
            "Sign-in withdrawn",
            "This sign-in was cancelled, or replaced by a newer sign-in.",
        ),
    };
    html! {
        div #pending-live hx-swap-oob="true" {
            section.card.narrow.pending.ended {
                h1 { (title) }
                p { (text) }
                p { a href="/login" { "Back to sign-in" } }
            }
        }
        (announce("pending-outcome", &format!("{title}. {text}")))
    }
}

/// The code block, for the socket.
pub fn code_fragment(code: &PendingCode, expires_at: DateTime<Utc>) -> Markup {
    html! {
        div #code-block hx-swap-oob="true" { (super::code_display("Your code", code, "code")) }
        div #expiry hx-swap-oob="true" { (expiry_inner(expires_at)) }
    }
}

/// The presence block, for the socket.
pub fn presence_fragment(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! { div #presence hx-swap-oob="true" { (presence_inner(reviewers_online, claimed_by)) } }
}

/// A reviewer opened the request: the presence block, and an announcement.
pub fn claimed_fragment(reviewers_online: usize, reviewer: &str) -> Markup {
    html! {
        (presence_fragment(reviewers_online, Some(reviewer)))
        (announce("pending-outcome", &claimed_text(reviewer)))
    }
}

/// The number of reviewers online changed: the presence block, and a polite
/// announcement of the new count.
pub fn presence_changed_fragment(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! {
        (presence_fragment(reviewers_online, claimed_by))
        (announce("pending-presence", &online_text(reviewers_online)))
    }
}
