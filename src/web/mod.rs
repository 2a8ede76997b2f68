//! HTTP: one router per area, merged here, under the shared middleware.
//!
//! Layers, outermost first: tracing, error rendering, the origin check, body
//! limit, then the session lookup that every handler's extractors read. The
//! forward-auth endpoints (`authz`) sit outside the last three: they change
//! nothing and do their own cached session lookup. So does the OpenAPI
//! document (`openapi`): it is the same for everyone, so it needs no session,
//! and a half-authenticated browser may read it like an anonymous one.

pub mod admin;
pub mod auth;
pub mod authz;
pub mod cookies;
pub mod events;
pub mod extract;
pub mod home;
pub mod inbox;
pub mod middleware;
pub mod openapi;
pub mod pending;
pub mod serve;
pub mod session_cache;
pub mod transparency;
pub mod ws;

use std::fmt::Write as _;

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::domain::{AllowedHosts, HostPattern};
use crate::state::AppState;
use crate::store::users::User;
use crate::views::Viewer;

/// The largest request body accepted: a decision form with a 1,000-character
/// note is far below it.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Content Security Policy: everything from our own origin, nothing inline
/// except styles htmx sets on swapped elements. Forms post only to our own
/// origin, and their redirects go only there or to `forward_auth.allowed_hosts`
/// (the way back to a protected app after sign-in).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// [`CSP`], with the allowed hosts (any scheme of http and https, any port)
/// added to `form-action`: browsers check a form's redirects against it too.
fn content_security_policy(allowed: &AllowedHosts) -> HeaderValue {
    let mut csp = CSP.to_string();
    for pattern in allowed.patterns() {
        let host = match pattern {
            HostPattern::Exact(host) => host.clone(),
            HostPattern::SubdomainsOf(parent) => format!("*.{parent}"),
        };
        // Writing to a String cannot fail.
        let _ = write!(csp, " http://{host}:* https://{host}:*");
    }
    // Host patterns are checked DNS names, so this is always a valid value.
    HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static(CSP))
}

/// What the views show of a signed-in user.
fn viewer(user: &User) -> Viewer<'_> {
    Viewer {
        username: &user.username,
        display_name: &user.display_name,
        roles: user.roles(),
    }
}

pub fn create_app(state: AppState) -> Router {
    let csp = content_security_policy(&state.settings.forward_auth.allowed_hosts);
    let pages = Router::new()
        .merge(home::router())
        .merge(auth::router())
        .merge(pending::router())
        .merge(inbox::router())
        .merge(admin::router())
        .merge(transparency::router())
        .merge(ws::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::load_session,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::check_origin,
        ));
    Router::new()
        .merge(pages)
        .merge(authz::router())
        .merge(openapi::router())
        .layer(axum::middleware::from_fn(middleware::render_errors))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            csp,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Failures are logged once, where they happen (error.rs logs every
        // 500 and 503 with its cause); here they are only traced, so a flood
        // of refused sign-ins cannot fill the log with ERROR lines.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state)
}
