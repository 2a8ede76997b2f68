//! Signing in and out: the HTML form, `POST /api/v1/login`, and `GET /api/v1/me`.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};

use super::cookies;
use super::extract::{ClientOf, MaybeSession, ValidForm, ValidJson};
use crate::domain::{Client, SessionToken};
use crate::error::{Error, Result};
use crate::review::{self, SignIn, SignInRequest};
use crate::state::AppState;
use crate::store::sessions::BrowserSession;
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

/// `POST /api/v1/login`'s answer.
#[derive(Serialize)]
struct LoginResponse {
    state: &'static str,
}

/// `GET /api/v1/me`'s answer.
#[derive(Serialize)]
struct MeResponse<'a> {
    user: MeUser<'a>,
    state: &'static str,
}

#[derive(Serialize)]
struct MeUser<'a> {
    id: &'a str,
    username: &'a str,
    display_name: &'a str,
    roles: Vec<&'static str>,
}

/// Hands the attempt to the review flow, with what the browser brought.
async fn attempt(
    app: &AppState,
    jar: &CookieJar,
    client: Client,
    session: Option<&BrowserSession>,
    credentials: Credentials,
) -> Result<SignIn> {
    let device = jar
        .get(cookies::device_name(app))
        .and_then(|c| SessionToken::parse(c.value()))
        .map(|t| t.hash());
    let request = SignInRequest {
        username: credentials.username,
        password: credentials.password,
        client,
        device,
        previous: session.map(|s| s.token_hash.clone()),
    };
    Ok(review::sign_in(&app.flow, request).await?)
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
    ClientOf(client): ClientOf,
    ValidForm(credentials): ValidForm<Credentials>,
) -> Result<Response> {
    let typed = credentials.username.clone();
    match attempt(&app, &jar, client, session.as_ref(), credentials).await {
        Ok(outcome) => {
            let to = match outcome {
                SignIn::Authenticated(_) => "/",
                SignIn::HalfAuthenticated(_) => "/pending",
            };
            let jar = jar.add(cookies::session(&app, outcome.token()));
            Ok((jar, Redirect::to(to)).into_response())
        }
        // Shown on the form, where the person is looking.
        Err(
            e @ (Error::BadCredentials
            | Error::AccountLocked
            | Error::RateLimited { .. }
            | Error::Busy { .. }),
        ) => {
            let page = views::auth::login(Some(&e.to_string()), &typed);
            Ok((e.status(), e.headers(), page).into_response())
        }
        Err(other) => Err(other),
    }
}

async fn login_api(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
    ClientOf(client): ClientOf,
    ValidJson(credentials): ValidJson<Credentials>,
) -> Result<Response> {
    let outcome = attempt(&app, &jar, client, session.as_ref(), credentials).await?;
    let state = match outcome {
        SignIn::Authenticated(_) => "authenticated",
        SignIn::HalfAuthenticated(_) => "half_authenticated",
    };
    let jar = jar.add(cookies::session(&app, outcome.token()));
    Ok((jar, Json(LoginResponse { state })).into_response())
}

/// Ends the browser session: a half-authenticated one withdraws its review.
async fn logout(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
) -> Result<Response> {
    if let Some(session) = session {
        review::sign_out(&app.flow, &session).await?;
    }
    let jar = jar.add(cookies::session_removal(&app));
    Ok((jar, Redirect::to("/login")).into_response())
}

async fn me(MaybeSession(session): MaybeSession) -> Result<Response> {
    let session = session.ok_or(Error::Unauthenticated)?;
    let user = &session.user;
    Ok(Json(MeResponse {
        user: MeUser {
            id: &user.id,
            username: &user.username,
            display_name: &user.display_name,
            roles: user.roles().names(),
        },
        state: session.state.as_str(),
    })
    .into_response())
}
