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
}

/// The code, large and grouped, with its expiry.
pub fn code_block(code: &PendingCode, expires_at: DateTime<Utc>) -> Markup {
    html! { div #code-block { (code_inner(code, expires_at)) } }
}

fn code_inner(code: &PendingCode, expires_at: DateTime<Utc>) -> Markup {
    html! {
        div {
            p.code aria-label={ "Your code: " (code.expose().chars().map(String::from).collect::<Vec<_>>().join(" ")) } {
                (code.grouped())
            }
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
}

/// Who is online and who is looking.
pub fn presence(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! { div #presence aria-live="polite" { (presence_inner(reviewers_online, claimed_by)) } }
}

fn presence_inner(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! {
        div {
            @if let Some(name) = claimed_by {
                p.claimed { strong { (name) } " is reviewing your request." }
            }
            p.muted {
                @match reviewers_online {
                    0 => "No reviewers are online right now. Ask a colleague to open peergate.",
                    1 => "1 reviewer online",
                    n => { (n) " reviewers online" }
                }
            }
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
                    p {
                        "Hello " (view.display_name) ". Contact a colleague you trust (a call, a chat) "
                        "and read them this code. When they approve, this page continues by itself."
                    }
                    @if let Some(notice) = view.notice {
                        p.alert role="alert" { (notice) }
                    }
                    div aria-live="polite" aria-atomic="true" {
                        (code_block(view.code, view.expires_at))
                    }
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
        },
    )
}

/// The approved state: a form the page submits by itself (app.js), with a
/// button in case scripts are off.
fn approved_block() -> Markup {
    html! {
        div #pending-live {
            section.card.narrow.pending {
                h1 { "Approved" }
                p role="status" aria-live="assertive" { "Your colleague approved this sign-in. Continuing…" }
                form #complete method="post" action="/pending/complete" data-autosubmit {
                    button.primary type="submit" { "Continue" }
                }
            }
        }
    }
}

/// The page after approval, before the browser completes sign-in.
pub fn approved() -> Markup {
    page("Approved", None, &approved_block())
}

/// Sent over the socket on approval: replaces the live area, ending the socket.
pub fn approved_fragment() -> Markup {
    html! { div #pending-live hx-swap-oob="true" { (approved_block()) } }
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
                p role="alert" { (text) }
                p { a href="/login" { "Back to sign-in" } }
            }
        }
    }
}

/// The code block, for the socket.
pub fn code_fragment(code: &PendingCode, expires_at: DateTime<Utc>) -> Markup {
    html! { div #code-block hx-swap-oob="true" { (code_inner(code, expires_at)) } }
}

/// The presence block, for the socket.
pub fn presence_fragment(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! { div #presence hx-swap-oob="true" aria-live="polite" { (presence_inner(reviewers_online, claimed_by)) } }
}
