//! HTML, written with maud: a layout and one module per area. Views take plain
//! data and return `Markup`; they do no I/O. maud escapes every interpolated
//! string, so user text (names, notes, user agents) is always inert.
//!
//! Templates may run longer than 60 lines: a page reads top to bottom.

pub mod admin;
pub mod auth;
pub mod inbox;
pub mod pending;

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use crate::domain::{PendingCode, Roles};

/// Who is looking at a page: what the layout and the home page show of them.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub roles: Roles,
}

/// The page shell: head with embedded assets, a top bar with the user's
/// navigation, and the content.
pub fn page(title: &str, user: Option<Viewer<'_>>, content: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · peergate" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/htmx.min.js" defer {}
                script src="/assets/htmx-ext-ws.min.js" defer {}
                script src="/assets/app.js" defer {}
            }
            body {
                // For keyboard users: straight past the top bar to the page.
                a.skip-link href="#main" { "Skip to content" }
                header.topbar {
                    a.brand href="/" { "peergate" }
                    @if let Some(user) = user {
                        nav aria-label="Main" {
                            a href="/" { "Home" }
                            @if user.roles.reviewer { a href="/inbox" { "Inbox" } }
                            @if user.roles.admin { a href="/admin" { "Admin" } }
                        }
                        form.signout method="post" action="/logout" {
                            span.who { (user.display_name) }
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" { (content) }
            }
        }
    }
}

/// A code in large grouped digits (`123 456`), and for screen readers, which
/// would read the groups as numbers ("one hundred twenty-three"), digit by
/// digit after a label ("Your code: 1 2 3 4 5 6"). `class` goes on the large
/// digits (`code`, or `code big` in the drawer).
pub fn code_display(label: &str, code: &PendingCode, class: &str) -> Markup {
    let digits: Vec<String> = code.expose().chars().map(String::from).collect();
    html! {
        p.visually-hidden { (label) ": " (digits.join(" ")) }
        p class=(class) aria-hidden="true" { (code.grouped()) }
    }
}

/// A readable error page for HTML routes.
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let heading = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Already settled",
        StatusCode::TOO_MANY_REQUESTS => "Slow down",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    page(
        heading,
        None,
        &html! {
            section.card.narrow role="alert" {
                h1 { (heading) }
                p { (message) }
                p { a href="/" { "Back to peergate" } }
            }
        },
    )
}
