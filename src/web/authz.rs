//! Forward auth (DESIGN.md §10): a reverse proxy asks whether a request for
//! another app may pass, and peergate answers from the browser's session
//! cookie. `forward-auth` is for Caddy and Traefik, `auth-request` for nginx.
//!
//! The refusals that do not depend on the session come first (forward auth
//! off, forwarded headers from an untrusted peer, a host not allowed). Only
//! then is the session looked at, once, through the [`session_cache`]. Every
//! path that is not a clear yes is a refusal; nothing here writes anything or
//! checks a password.
//!
//! These routes sit outside the page middleware: they take no body and change
//! nothing (so no origin check), and look up the session themselves (so no
//! second lookup).
//!
//! [`session_cache`]: super::session_cache

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum_extra::extract::CookieJar;

use super::cookies;
use super::session_cache::{self, Passport};
use crate::domain::{OriginalRequest, SessionToken, admits};
use crate::error::{Error, ErrorBody};
use crate::state::AppState;

/// The headers a successful answer carries, in [`Passport::headers`]' order.
const REMOTE_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("remote-user"),
    HeaderName::from_static("remote-name"),
    HeaderName::from_static("remote-groups"),
    HeaderName::from_static("remote-session-expires"),
];

pub fn router() -> Router<AppState> {
    // Any method: nginx may ask with the original request's method. The
    // answer never changes anything.
    Router::new()
        .route("/api/v1/authz/forward-auth", any(forward_auth))
        .route("/api/v1/authz/auth-request", any(auth_request))
}

/// Which proxy hook is asking; they differ in how the original request is
/// described and in what an anonymous browser gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// Caddy, Traefik: `X-Forwarded-*` only; anonymous pages get a redirect.
    ForwardAuth,
    /// nginx: `X-Original-URL` first; anonymous always gets 401.
    AuthRequest,
}

/// Caddy's `forward_auth` and Traefik's `ForwardAuth` (any method is answered).
#[utoipa::path(
    get,
    path = "/api/v1/authz/forward-auth",
    operation_id = "forward_auth",
    tag = "forward auth",
    params(
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original request's method (GET when absent)"),
        ("X-Forwarded-Proto" = String, Header, description = "Its scheme"),
        ("X-Forwarded-Host" = String, Header, description = "Its host: one of `forward_auth.allowed_hosts`"),
        ("X-Forwarded-Uri" = String, Header, description = "Its path and query"),
    ),
    responses(
        (status = 200, description = "Admitted; empty body", headers(
            ("Remote-User" = String, description = "The username"),
            ("Remote-Name" = String, description = "The display name"),
            ("Remote-Groups" = String, description = "Roles, comma-separated; sent even when empty"),
            ("Remote-Session-Expires" = String, description = "When the session ends (RFC 3339)"),
        )),
        (status = 302, description = "Not signed in, and the original request is a GET or HEAD for a page: sign in first", headers(
            ("Location" = String, description = "`{public_url}/login?rd={original URL, percent-encoded}`"),
        )),
        (status = 401, description = "`unauthenticated`: not fully signed in", body = ErrorBody),
        (status = 403, description = "`forbidden`: the rule refuses this user, the host is not allowed, forward auth is off, or forwarded headers came from an untrusted peer", body = ErrorBody),
    )
)]
async fn forward_auth(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    answer(&app, peer, &jar, &headers, Hook::ForwardAuth).await
}

/// nginx's `auth_request` (any method is answered).
#[utoipa::path(
    get,
    path = "/api/v1/authz/auth-request",
    operation_id = "auth_request",
    tag = "forward auth",
    params(
        ("X-Original-URL" = Option<String>, Header, description = "The original request's URL; else the `X-Forwarded-*` headers are read"),
        ("X-Original-Method" = Option<String>, Header, description = "Its method (GET when absent)"),
    ),
    responses(
        (status = 200, description = "Admitted; empty body", headers(
            ("Remote-User" = String, description = "The username"),
            ("Remote-Name" = String, description = "The display name"),
            ("Remote-Groups" = String, description = "Roles, comma-separated; sent even when empty"),
            ("Remote-Session-Expires" = String, description = "When the session ends (RFC 3339)"),
        )),
        (status = 401, description = "`unauthenticated`: not fully signed in (nginx turns it into the redirect)", body = ErrorBody),
        (status = 403, description = "`forbidden`: the rule refuses this user, the host is not allowed, forward auth is off, or forwarded headers came from an untrusted peer", body = ErrorBody),
    )
)]
async fn auth_request(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    answer(&app, peer, &jar, &headers, Hook::AuthRequest).await
}

async fn answer(
    app: &AppState,
    peer: SocketAddr,
    jar: &CookieJar,
    headers: &HeaderMap,
    hook: Hook,
) -> Response {
    let original = match original_request(app, peer, headers, hook) {
        Ok(original) => original,
        Err(why) => return forbidden(why),
    };
    let token = jar
        .get(cookies::session_name(app))
        .and_then(|c| SessionToken::parse(c.value()));
    let passport = match token {
        Some(token) => match session_cache::passport(app, &token.hash()).await {
            Ok(found) => found,
            Err(e) => return Error::Internal(e).into_response(),
        },
        None => None,
    };
    match passport {
        None => sign_in_first(app, &original, headers, hook),
        Some(p) if !admits(&app.settings.forward_auth.rule, original.host(), p.roles) => {
            forbidden("Your account does not have a role this app needs.")
        }
        Some(p) => admitted(&p),
    }
}

/// The refusals that come first, whatever the session (`Err` says why);
/// then the original request, read from the headers the hook uses.
fn original_request(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    hook: Hook,
) -> Result<OriginalRequest, &'static str> {
    let settings = &app.settings;
    if !settings.forward_auth.enabled {
        return Err("Forward auth is not enabled on this peergate.");
    }
    let forwarded = headers.keys().any(|name| {
        name.as_str().starts_with("x-forwarded-") || name.as_str().starts_with("x-original-")
    });
    if forwarded && !settings.server.trusted_proxies.trusts(peer.ip()) {
        tracing::warn!(peer = %peer.ip(), "forwarded headers from a peer outside server.trusted_proxies");
        return Err("Forwarded headers are accepted only from server.trusted_proxies.");
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let method = text("x-forwarded-method")
        .or_else(|| text("x-original-method"))
        .unwrap_or("GET");
    let from_url = match (hook, text("x-original-url")) {
        (Hook::AuthRequest, Some(url)) => Some(OriginalRequest::from_url(method, url)),
        _ => None,
    };
    let original = from_url.unwrap_or_else(|| {
        OriginalRequest::from_parts(
            method,
            text("x-forwarded-proto")?,
            text("x-forwarded-host")?,
            text("x-forwarded-uri")?,
        )
    });
    let Some(original) = original else {
        return Err("The proxy did not say which request it is asking about.");
    };
    if !settings.forward_auth.allowed_hosts.allows(original.host()) {
        return Err("This host is not in forward_auth.allowed_hosts.");
    }
    Ok(original)
}

/// Anonymous, half-authenticated or ended: a browser asking for a page via
/// `forward-auth` is sent to sign in, with the way back; anything else is 401.
fn sign_in_first(
    app: &AppState,
    original: &OriginalRequest,
    headers: &HeaderMap,
    hook: Hook,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if hook == Hook::ForwardAuth && original.wants_a_page(accept) {
        let rd: String =
            url::form_urlencoded::byte_serialize(original.url.as_str().as_bytes()).collect();
        let login = format!("{}/login?rd={rd}", app.origin);
        return (StatusCode::FOUND, [(header::LOCATION, login)]).into_response();
    }
    Error::Unauthenticated.into_response()
}

fn admitted(passport: &Passport) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    for (name, value) in REMOTE_HEADERS.iter().zip(&passport.headers) {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn forbidden(why: &str) -> Response {
    Error::Forbidden(why.to_string()).into_response()
}
