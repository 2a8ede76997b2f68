//! Extractors: who is asking (written once, used by every handler), where they
//! come from, and request bodies parsed with clear errors.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::domain::{Client, ReturnTo};
use crate::error::Error;
use crate::state::AppState;
use crate::store::sessions::{BrowserSession, SessionState};

/// The longest user agent kept; longer ones are cut (they go into the ledger).
const MAX_USER_AGENT: usize = 512;

/// The browser session the `load_session` middleware found, if any.
#[derive(Debug, Clone)]
pub struct CurrentSession(pub Option<BrowserSession>);

fn current(parts: &Parts) -> Option<BrowserSession> {
    parts
        .extensions
        .get::<CurrentSession>()
        .and_then(|c| c.0.clone())
}

/// Any session or none.
pub struct MaybeSession(pub Option<BrowserSession>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeSession {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(Self(current(parts)))
    }
}

/// A fully authenticated user.
pub struct SignedIn(pub BrowserSession);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        match current(parts) {
            Some(s) if s.state == SessionState::Authenticated => Ok(Self(s)),
            _ => Err(Error::Unauthenticated),
        }
    }
}

/// A signed-in user with the reviewer role.
pub struct ReviewerSession(pub BrowserSession);

impl<S: Send + Sync> FromRequestParts<S> for ReviewerSession {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        if session.may_review() {
            Ok(Self(session))
        } else {
            Err(Error::Forbidden("Only reviewers can see the inbox.".into()))
        }
    }
}

/// A signed-in user with the admin role.
pub struct Admin(pub BrowserSession);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        if session.user.is_admin {
            Ok(Self(session))
        } else {
            Err(Error::Forbidden("Only admins can see this page.".into()))
        }
    }
}

/// Someone who may read the transparency log (DESIGN.md §11): anyone when
/// `transparency.public` is on; else the bearer of `transparency.read_token`,
/// or an admin. A wrong token is 401, a signed-in non-admin 403.
pub struct LogReader;

impl FromRequestParts<AppState> for LogReader {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        let config = &app.settings.transparency;
        if config.public {
            return Ok(Self);
        }
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(given) = bearer {
            let token = config.read_token.as_bytes();
            return if !token.is_empty() && crate::domain::constant_time_eq(given.as_bytes(), token)
            {
                Ok(Self)
            } else {
                Err(Error::Unauthenticated)
            };
        }
        Admin::from_request_parts(parts, app).await.map(|_| Self)
    }
}

/// A half-authenticated requester and the pending session they wait on.
pub struct HalfAuthenticated {
    pub session: BrowserSession,
    pub pending_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for HalfAuthenticated {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        match current(parts) {
            Some(session) if session.state == SessionState::HalfAuthenticated => {
                let pending_id = session
                    .pending_session_id
                    .clone()
                    .ok_or_else(|| Error::NotFound("You have no pending sign-in.".into()))?;
                Ok(Self {
                    session,
                    pending_id,
                })
            }
            Some(_) => Err(Error::NotFound("You have no pending sign-in.".into())),
            None => Err(Error::Unauthenticated),
        }
    }
}

/// The client's address and user agent, as limits and the ledger see them.
/// Behind a trusted proxy (`server.trusted_proxies`) the address comes from
/// `X-Forwarded-For`; from anyone else that header is ignored.
pub struct ClientOf(pub Client);

impl FromRequestParts<AppState> for ClientOf {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        let forwarded_for = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(
                || "unknown".into(),
                |ConnectInfo(addr)| {
                    let proxies = &app.settings.server.trusted_proxies;
                    proxies.client_ip(addr.ip(), forwarded_for).to_string()
                },
            );
        let user_agent: String = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT)
            .collect();
        Ok(Self(Client { ip, user_agent }))
    }
}

/// A form body; a malformed one is a 422 that says what is wrong.
pub struct ValidForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ValidForm<T> {
    type Rejection = Error;
    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Self(v))
            .map_err(|e| Error::Invalid(e.body_text()))
    }
}

/// A JSON body; a malformed one is a 422 that says what is wrong.
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ValidJson<T> {
    type Rejection = Error;
    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Self(v))
            .map_err(|e| Error::Invalid(e.body_text()))
    }
}

/// Whether the request came from htmx (`HX-Request`): such requests get a
/// fragment (a *Partial*), others a whole page (a *View*).
pub struct IsHtmx(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for IsHtmx {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.contains_key("hx-request")))
    }
}

/// Checks an `rd` (return-to) address against `forward_auth.allowed_hosts`
/// and peergate's own origin; anything else is dropped silently (DESIGN.md
/// §10: no open redirect).
pub fn return_to(app: &AppState, rd: Option<&str>) -> Option<ReturnTo> {
    let settings = &app.settings;
    ReturnTo::parse(
        rd?,
        &settings.forward_auth.allowed_hosts,
        &settings.server.public_url,
    )
}

/// The `rd` query parameter, checked; `None` when absent or not safe.
pub struct ReturnToQuery(pub Option<ReturnTo>);

impl FromRequestParts<AppState> for ReturnToQuery {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let rd = url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "rd")
            .map(|(_, value)| value.into_owned());
        Ok(Self(return_to(app, rd.as_deref())))
    }
}
