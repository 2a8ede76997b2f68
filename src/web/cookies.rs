//! The two cookies peergate sets, with the attributes of DESIGN.md §4:
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` with the `__Host-` prefix
//! when `public_url` is https.

use axum_extra::extract::cookie::{Cookie, SameSite};

use crate::domain::SessionToken;
use crate::state::AppState;

pub fn session_name(app: &AppState) -> &'static str {
    if app.settings.is_https() {
        "__Host-peergate_session"
    } else {
        "peergate_session"
    }
}

pub fn device_name(app: &AppState) -> &'static str {
    if app.settings.is_https() {
        "__Host-peergate_device"
    } else {
        "peergate_device"
    }
}

fn build(app: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(app.settings.is_https())
        .build()
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
