//! The two cookies peergate sets, with the attributes of DESIGN.md §4:
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` with the `__Host-` prefix
//! when `public_url` is https.
//!
//! With `forward_auth.cookie_domain` set (§10) they also carry
//! `Domain=cookie_domain`, so that the protected apps' hosts receive them and
//! their proxy can pass them on; on https the prefix is then `__Secure-`,
//! because `__Host-` forbids `Domain`.

use axum_extra::extract::cookie::{Cookie, SameSite};

use crate::domain::SessionToken;
use crate::state::AppState;

/// One of a cookie's three names: plain on http; on https `__Host-`, or
/// `__Secure-` when a cookie domain is set.
fn named(app: &AppState, [plain, host, secure]: [&'static str; 3]) -> &'static str {
    match (
        app.settings.is_https(),
        app.settings.forward_auth.cookie_domain.is_some(),
    ) {
        (false, _) => plain,
        (true, false) => host,
        (true, true) => secure,
    }
}

pub fn session_name(app: &AppState) -> &'static str {
    named(
        app,
        [
            "peergate_session",
            "__Host-peergate_session",
            "__Secure-peergate_session",
        ],
    )
}

pub fn device_name(app: &AppState) -> &'static str {
    named(
        app,
        [
            "peergate_device",
            "__Host-peergate_device",
            "__Secure-peergate_device",
        ],
    )
}

fn build(app: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(app.settings.is_https())
        .build();
    if let Some(domain) = &app.settings.forward_auth.cookie_domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The browser-session cookie; it lasts as long as the browser session.
pub fn session(app: &AppState, token: &SessionToken) -> Cookie<'static> {
    build(app, session_name(app), token.expose().to_string())
}

/// Clears the browser-session cookie.
pub fn session_removal(app: &AppState) -> Cookie<'static> {
    let mut cookie = build(app, session_name(app), String::new());
    cookie.make_removal();
    cookie
}

/// The trusted-device cookie, kept for `trusted_device_days`.
pub fn device(app: &AppState, token: &SessionToken) -> Cookie<'static> {
    let mut cookie = build(app, device_name(app), token.expose().to_string());
    let days = i64::from(app.settings.auth.trusted_device_days);
    cookie.set_max_age(time::Duration::days(days));
    cookie
}
