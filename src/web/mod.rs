//! HTTP: one router per area, merged here, under the shared middleware.
//!
//! Layers, outermost first: tracing, error rendering, the origin check, body
//! limit, then the session lookup that every handler's extractors read.

pub mod admin;
pub mod auth;
pub mod cookies;
pub mod events;
pub mod extract;
pub mod home;
pub mod inbox;
pub mod middleware;
pub mod pending;
pub mod serve;
pub mod transparency;
pub mod ws;

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use crate::store::users::User;
use crate::views::Viewer;

/// The largest request body accepted: a decision form with a 1,000-character
/// note is far below it.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Content Security Policy: everything from our own origin, nothing inline
/// except styles htmx sets on swapped elements.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What the views show of a signed-in user.
fn viewer(user: &User) -> Viewer<'_> {
    Viewer {
        username: &user.username,
        display_name: &user.display_name,
        roles: user.roles(),
    }
}

pub fn create_app(state: AppState) -> Router {
    Router::new()
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
        ))
        .layer(axum::middleware::from_fn(middleware::render_errors))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
