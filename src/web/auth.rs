//! Signing in and out: the HTML form, `POST /api/v1/login`, and `GET /api/v1/me`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use maud::Markup;
use serde::Deserialize;
use serde_json::json;

use super::cookies;
use super::extract::{Client, MaybeSession, ValidForm, ValidJson};
use crate::clock::rfc3339;
use crate::domain::SessionToken;
use crate::error::{Error, Result};
use crate::review::{self, ClientInfo, SignIn};
use crate::state::AppState;
use crate::store::{devices, sessions, users};
use crate::views;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout))
        .route("/api/v1/login", post(login_api))
        .route("/api/v1/me", get(me))
}

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// Longest username or password looked at; anything longer cannot match.
const MAX_CREDENTIAL_LEN: usize = 1024;

/// Checks a password and starts the session, counting failures per username
/// and per client IP. Every failure looks the same from outside.
async fn attempt(
    app: &AppState,
    jar: &CookieJar,
    client: &ClientInfo,
    previous: Option<&crate::domain::TokenHash>,
    credentials: Credentials,
) -> Result<SignIn> {
    let username = credentials.username.trim().to_lowercase();
    let ip_key = format!("ip:{}", client.ip);
    let user_key = format!("user:{username}");
    let keys = [ip_key.as_str(), user_key.as_str()];
    app.login_failures
        .check(&keys)
        .map_err(|retry_after_secs| Error::RateLimited { retry_after_secs })?;

    let too_long =
        username.len() > MAX_CREDENTIAL_LEN || credentials.password.len() > MAX_CREDENTIAL_LEN;
    let found = if too_long {
        None
    } else {
        users::password_hash(&app.db, &username).await?
    };
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let password_ok = crate::passwords::verify(credentials.password, stored).await?;
    let user = match user {
        Some(user) if password_ok && !user.disabled => user,
        _ => {
            app.login_failures.record(&keys);
            tracing::info!(ip = %client.ip, "failed sign-in");
            return Err(Error::BadCredentials);
        }
    };

    let now = rfc3339(app.clock.now());
    let device_trusted = match jar
        .get(cookies::device_name(app))
        .and_then(|c| SessionToken::parse(c.value()))
    {
        Some(device) => devices::is_trusted(&app.db, &device.hash(), &user.id, &now).await?,
        None => false,
    };
    review::sign_in(app, &user, client, device_trusted, previous).await
}

fn state_name(outcome: &SignIn) -> &'static str {
    match outcome {
        SignIn::Authenticated(_) => "authenticated",
        SignIn::HalfAuthenticated(_) => "half_authenticated",
    }
}

fn token(outcome: &SignIn) -> &SessionToken {
    match outcome {
        SignIn::Authenticated(t) | SignIn::HalfAuthenticated(t) => t,
    }
}

async fn login_page(MaybeSession(session): MaybeSession) -> Response {
    if session.is_some() {
        return Redirect::to("/").into_response();
    }
    views::auth::login(None, "").into_response()
}

async fn login_form(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
    Client(client): Client,
    ValidForm(credentials): ValidForm<Credentials>,
) -> Result<Response> {
    let typed = credentials.username.clone();
    let previous = session.as_ref().map(|s| s.token_hash.clone());
    match attempt(&app, &jar, &client, previous.as_ref(), credentials).await {
        Ok(outcome) => {
            let to = match outcome {
                SignIn::Authenticated(_) => "/",
                SignIn::HalfAuthenticated(_) => "/pending",
            };
            let jar = jar.add(cookies::session(&app, token(&outcome)));
            Ok((jar, Redirect::to(to)).into_response())
        }
        Err(e @ (Error::BadCredentials | Error::RateLimited { .. })) => {
            let page: Markup = views::auth::login(Some(&e.to_string()), &typed);
            let mut response = (e.status(), page).into_response();
            if let Error::RateLimited { retry_after_secs } = e
                && let Ok(v) = retry_after_secs.to_string().parse()
            {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
            Ok(response)
        }
        Err(other) => Err(other),
    }
}

async fn login_api(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
    Client(client): Client,
    ValidJson(credentials): ValidJson<Credentials>,
) -> Result<Response> {
    let previous = session.as_ref().map(|s| s.token_hash.clone());
    let outcome = attempt(&app, &jar, &client, previous.as_ref(), credentials).await?;
    let jar = jar.add(cookies::session(&app, token(&outcome)));
    Ok((jar, Json(json!({"state": state_name(&outcome)}))).into_response())
}

/// Ends the browser session: a half-authenticated one withdraws its review.
async fn logout(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
) -> Result<Response> {
    if let Some(session) = session {
        if let Some(pending_id) = &session.pending_session_id {
            review::close(&app, pending_id, crate::domain::Outcome::Withdrawn).await?;
        }
        let mut conn = app.db.acquire().await?;
        sessions::delete(&mut conn, &session.token_hash).await?;
        // Its sockets close now; nobody listening is fine.
        let _ = app.session_ended.send(session.token_hash.clone());
        tracing::info!(user_id = %session.user.id, "signed out");
    }
    let jar = jar.add(cookies::session_removal(&app));
    Ok((jar, Redirect::to("/login")).into_response())
}

async fn me(MaybeSession(session): MaybeSession) -> Result<Response> {
    let session = session.ok_or(Error::Unauthenticated)?;
    let user = &session.user;
    Ok((
        StatusCode::OK,
        Json(json!({
            "user": {
                "id": user.id,
                "username": user.username,
                "display_name": user.display_name,
                "roles": user.roles(),
            },
            "state": session.state.as_str(),
        })),
    )
        .into_response())
}
