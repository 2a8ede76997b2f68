//! The requester's waiting page.

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
    html! {
        div #code-block {
            p.code aria-label={ "Your code: " (code.expose().chars().map(String::from).collect::<Vec<_>>().join(" ")) } {
                (code.grouped())
            }
            p.muted {
                "Expires at "
                time.expires datetime=(rfc3339(expires_at)) data-countdown=(rfc3339(expires_at)) {
                    (expires_at.format("%H:%M:%S UTC"))
                }
            }
        }
    }
}

/// Who is online and who is looking.
pub fn presence(reviewers_online: usize, claimed_by: Option<&str>) -> Markup {
    html! {
        div #presence aria-live="polite" {
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
        html! {
            section.card.narrow.pending {
                h1 { "A colleague needs to confirm it is you" }
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
        },
    )
}

/// The page after approval, before the browser completes sign-in.
pub fn approved() -> Markup {
    page(
        "Approved",
        None,
        html! {
            section.card.narrow.pending {
                h1 { "Approved" }
                p aria-live="assertive" { "Your colleague approved this sign-in. Continuing…" }
                form #complete method="post" action="/pending/complete" {
                    button.primary type="submit" { "Continue" }
                }
            }
        },
    )
}
