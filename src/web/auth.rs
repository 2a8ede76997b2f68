//! Signing in and out: the HTML form, `POST /api/v1/login`, and `GET /api/v1/me`.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cookies;
use super::extract::{self, ClientOf, MaybeSession, ReturnToQuery, ValidForm, ValidJson};
use crate::domain::{Client, ReturnTo, Role, SessionToken};
use crate::error::{Error, ErrorBody, Result};
use crate::review::{self, SignIn, SignInRequest};
use crate::state::AppState;
use crate::store::sessions::{BrowserSession, SessionState};
use crate::views;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout))
        .route("/api/v1/login", post(login_api))
        .route("/api/v1/me", get(me))
}

/// A password sign-in, as the form and `POST /api/v1/login` take it.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    username: String,
    password: String,
    /// Where the person was going (DESIGN.md §10); checked before use.
    #[serde(default)]
    rd: Option<String>,
}

/// `POST /api/v1/login`'s answer.
#[derive(Serialize, ToSchema)]
struct LoginResponse {
    /// `half_authenticated`: go to `/pending` and wait for a reviewer.
    state: SessionState,
}

/// `GET /api/v1/me`'s answer.
#[derive(Serialize, ToSchema)]
struct MeResponse<'a> {
    user: MeUser<'a>,
    state: SessionState,
}

/// The signed-in user, as `/api/v1/me` shows them.
#[derive(Serialize, ToSchema)]
struct MeUser<'a> {
    id: &'a str,
    username: &'a str,
    display_name: &'a str,
    /// `reviewer` and `admin`, independent of each other; may be empty.
    #[schema(value_type = Vec<Role>)]
    roles: Vec<&'static str>,
}

/// Hands the attempt to the review flow, with what the browser brought.
async fn attempt(
    app: &AppState,
    jar: &CookieJar,
    client: Client,
    session: Option<&BrowserSession>,
    credentials: Credentials,
    return_to: Option<ReturnTo>,
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
        return_to,
    };
    Ok(review::sign_in(&app.flow, request).await?)
}

/// Where a fully signed-in browser goes: back to the app it came from, or home.
fn onward(return_to: Option<&ReturnTo>) -> Redirect {
    Redirect::to(return_to.map_or("/", ReturnTo::as_str))
}

async fn login_page(
    MaybeSession(session): MaybeSession,
    ReturnToQuery(return_to): ReturnToQuery,
) -> Response {
    match session {
        Some(s) if s.state == SessionState::Authenticated => {
            onward(return_to.as_ref()).into_response()
        }
        Some(_) => Redirect::to("/pending").into_response(),
        None => views::auth::login(None, "", return_to.as_ref()).into_response(),
    }
}

async fn login_form(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
    ClientOf(client): ClientOf,
    ValidForm(credentials): ValidForm<Credentials>,
) -> Result<Response> {
    let typed = credentials.username.clone();
    let return_to = extract::return_to(&app, credentials.rd.as_deref());
    let kept = return_to.clone();
    match attempt(&app, &jar, client, session.as_ref(), credentials, kept).await {
        Ok(outcome) => {
            let to = match outcome {
                SignIn::Authenticated(_) => onward(return_to.as_ref()),
                SignIn::HalfAuthenticated(_) => Redirect::to("/pending"),
            };
            let jar = jar.add(cookies::session(&app, outcome.token()));
            Ok((jar, to).into_response())
        }
        // Shown on the form, where the person is looking.
        Err(
            e @ (Error::BadCredentials
            | Error::AccountLocked
            | Error::RateLimited { .. }
            | Error::Busy { .. }),
        ) => {
            let page = views::auth::login(Some(&e.to_string()), &typed, return_to.as_ref());
            Ok((e.status(), e.headers(), page).into_response())
        }
        Err(other) => Err(other),
    }
}

/// Signs in with a password. The answer sets the session cookie; a
/// half-authenticated session then waits for peer review.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    operation_id = "login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie` carries the session", body = LoginResponse),
        (status = 401, description = "`unauthenticated`: wrong username or password (one message for every cause)", body = ErrorBody),
        (status = 403, description = "`forbidden`: the account is locked after a mismatch, or the request came from another origin", body = ErrorBody),
        (status = 422, description = "`invalid`: not a JSON body of this shape", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`unavailable`: too many password checks at once", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn login_api(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
    ClientOf(client): ClientOf,
    ValidJson(credentials): ValidJson<Credentials>,
) -> Result<Response> {
    let return_to = extract::return_to(&app, credentials.rd.as_deref());
    let outcome = attempt(&app, &jar, client, session.as_ref(), credentials, return_to).await?;
    let state = match outcome {
        SignIn::Authenticated(_) => SessionState::Authenticated,
        SignIn::HalfAuthenticated(_) => SessionState::HalfAuthenticated,
    };
    let jar = jar.add(cookies::session(&app, outcome.token()));
    Ok((jar, Json(LoginResponse { state })).into_response())
}

/// Ends the browser session: a half-authenticated one withdraws its review.
/// Then back to `rd` when it is safe, else to the sign-in page.
async fn logout(
    State(app): State<AppState>,
    jar: CookieJar,
    MaybeSession(session): MaybeSession,
    ReturnToQuery(return_to): ReturnToQuery,
) -> Result<Response> {
    if let Some(session) = session {
        review::sign_out(&app.flow, &session).await?;
        // The broadcast reaches the cache too, on its own task; forgetting
        // here as well means the proxies refuse this token before the
        // browser even has the answer.
        app.session_cache.forget(&session.token_hash);
    }
    let jar = jar.add(cookies::session_removal(&app));
    let to = return_to.as_ref().map_or("/login", ReturnTo::as_str);
    Ok((jar, Redirect::to(to)).into_response())
}

/// Who is signed in, and whether fully.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "auth",
    security(("session" = [])),
    responses(
        (status = 200, description = "The session's user", body = MeResponse),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
    )
)]
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
        state: session.state,
    })
    .into_response())
}
