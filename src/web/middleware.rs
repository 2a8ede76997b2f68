//! Cross-cutting request rules, each written once:
//! - `check_origin`: every unsafe method and every WebSocket upgrade comes from
//!   our own origin; JSON endpoints that change state take only JSON.
//! - `load_session`: finds the browser session behind the cookie and keeps a
//!   half-authenticated session inside its allowed routes.
//! - `render_errors`: turns errors into JSON on the API and pages elsewhere.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;

use super::cookies;
use super::extract::CurrentSession;
use crate::domain::SessionToken;
use crate::error::{Error, ErrorInfo};
use crate::state::AppState;
use crate::store::sessions::SessionState;

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether a path is served as JSON (errors included) rather than as a page.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/")
        || path.starts_with("/ws/")
        || path.starts_with("/ledger/")
        || path == "/metrics"
        || path == "/healthz"
}

/// Refuses cross-origin unsafe requests and socket upgrades (CSRF and
/// cross-site WebSocket hijacking), and non-JSON bodies on the JSON API.
pub async fn check_origin(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let is_unsafe = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if is_unsafe || is_websocket_upgrade(req.headers()) {
        let headers = req.headers();
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let same_origin = origin.is_some_and(|o| o.eq_ignore_ascii_case(&app.origin));
        if cross_site || !same_origin {
            tracing::warn!(path = %req.uri().path(), origin = origin.unwrap_or("(none)"), cross_site, "refused a request from another origin");
            return Error::Forbidden(
                "This request did not come from peergate's own pages, so it was refused.".into(),
            )
            .into_response();
        }
        if is_unsafe && req.uri().path().starts_with("/api/") {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(';')
                        .next()
                        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
                });
            if !json {
                return Error::Invalid(
                    "Send the request body as Content-Type: application/json.".into(),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// The routes a half-authenticated session may reach (DESIGN.md §4).
pub fn half_authenticated_may_reach(path: &str) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    under("/pending")
        || path == "/ws/pending"
        || path == "/logout"
        || path == "/api/v1/me"
        || under("/api/v1/pending")
        || path.starts_with("/assets/")
}

/// Looks up the browser session behind the cookie, once per request.
pub async fn load_session(
    State(app): State<AppState>,
    jar: CookieJar,
    mut req: Request,
    next: Next,
) -> Response {
    let token = jar
        .get(cookies::session_name(&app))
        .and_then(|c| SessionToken::parse(c.value()));
    let session = match token {
        Some(token) => match crate::review::browser_session(&app.flow, &token.hash()).await {
            Ok(found) => found,
            Err(e) => return Error::Internal(e).into_response(),
        },
        None => None,
    };
    if let Some(s) = &session {
        let path = req.uri().path();
        if s.state == SessionState::HalfAuthenticated && !half_authenticated_may_reach(path) {
            if is_api_path(path) {
                return Error::Unauthenticated.into_response();
            }
            return Redirect::to("/pending").into_response();
        }
    }
    req.extensions_mut().insert(CurrentSession(session));
    next.run(req).await
}

/// Renders errors for people: JSON stays JSON on the API; on pages an
/// unauthenticated request goes to `/login` and anything else gets a page.
pub async fn render_errors(req: Request, next: Next) -> Response {
    let api = is_api_path(req.uri().path());
    let htmx = req.headers().contains_key("hx-request");
    let response = next.run(req).await;
    if api {
        return response;
    }
    let Some(info) = response.extensions().get::<ErrorInfo>().cloned() else {
        return response;
    };
    if info.code == "unauthenticated" {
        if htmx {
            // htmx follows HX-Redirect with a full page load.
            return ([("HX-Redirect", "/login")], Redirect::to("/login")).into_response();
        }
        return Redirect::to("/login").into_response();
    }
    let status = response.status();
    if htmx {
        // htmx swaps a fragment where the user is looking, not a whole page.
        let fragment = maud::html! { p.alert role="alert" { (info.message) } };
        return (status, fragment).into_response();
    }
    let mut page = (status, crate::views::error_page(status, &info.message)).into_response();
    if let Some(retry) = response.headers().get(header::RETRY_AFTER) {
        page.headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    page
}
