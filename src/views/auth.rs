//! The sign-in page and the signed-in home.

// A template reads top to bottom; the 60-line rule is for code.
#![allow(clippy::too_many_lines)]

use maud::{Markup, html};

use super::Viewer;
use super::page;
use super::pending::continuing;
use crate::domain::ReturnTo;

/// The sign-in form, with an error message after a failed attempt. With a
/// checked `rd`, it names the app the person is on their way to and carries
/// the address through the sign-in.
pub fn login(error: Option<&str>, username: &str, return_to: Option<&ReturnTo>) -> Markup {
    page(
        "Sign in",
        None,
        &html! {
            section.card.narrow {
                h1 { "Sign in" }
                (continuing(return_to.map(ReturnTo::host)))
                @if let Some(error) = error {
                    p.alert role="alert" id="login-error" { (error) }
                }
                form method="post" action="/login" {
                    @if let Some(rd) = return_to {
                        input type="hidden" name="rd" value=(rd.as_str());
                    }
                    label for="username" { "Username" }
                    input #username name="username" type="text" autocomplete="username"
                        required autofocus value=(username);
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button.primary type="submit" { "Sign in" }
                }
                p.hint {
                    "Unless this browser is already trusted, a colleague confirms it is you "
                    "before your sign-in completes."
                }
            }
        },
    )
}

/// The signed-in home: who you are and where you can go.
pub fn home(user: Viewer<'_>) -> Markup {
    page(
        "Home",
        Some(user),
        &html! {
            section.card {
                h1 { "Signed in as " (user.display_name) }
                p.muted { "Username " code { (user.username) } }
                @if !user.roles.names().is_empty() {
                    p { "Roles: " (user.roles.names().join(", ")) }
                }
                ul.links {
                    @if user.roles.reviewer {
                        li { a href="/inbox" { "Review sign-in requests" } " — colleagues waiting for a peer check." }
                    }
                    @if user.roles.admin {
                        li { a href="/admin" { "Admin" } " — KPIs, the ledger and its download." }
                    }
                }
                @if !user.roles.reviewer && !user.roles.admin {
                    p { "You are signed in. There is nothing else to do here." }
                }
            }
        },
    )
}
