//! The requester's side: the waiting page, a new code, cancelling, and
//! completing sign-in after approval; with their JSON twins.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::Serialize;
use utoipa::ToSchema;

use super::cookies;
use super::extract::{self, HalfAuthenticated, MaybeSession, ReturnToQuery};
use crate::clock::rfc3339;
use crate::domain::ReturnTo;
use crate::error::{Error, ErrorBody, Result};
use crate::review::{self, ReviewError};
use crate::state::AppState;
use crate::store::pending::{self, PendingStatus};
use crate::store::sessions::SessionState;
use crate::views;
use crate::views::pending::PendingView;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/pending", get(waiting_page))
        .route("/pending/code", post(new_code_form))
        .route("/pending/cancel", post(cancel_form))
        .route("/pending/complete", post(complete))
        .route("/api/v1/pending", get(pending_api))
        .route("/api/v1/pending/code", post(new_code_api))
}

/// `GET /api/v1/pending`'s answer.
#[derive(Serialize, ToSchema)]
struct PendingResponse<'a> {
    session_id: &'a str,
    /// The 6-digit code to read to the reviewer; null once the session no
    /// longer waits.
    #[schema(required = true, pattern = "^[0-9]{6}$")]
    code: Option<&'a str>,
    status: PendingStatus,
    /// RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    created_at: String,
    /// RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    expires_at: String,
    /// People (not tabs) with the inbox open.
    reviewers_online: usize,
}

/// `POST /api/v1/pending/code`'s answer.
#[derive(Serialize, ToSchema)]
struct CodeResponse<'a> {
    /// The new 6-digit code; the old one stops working at once.
    #[schema(pattern = "^[0-9]{6}$")]
    code: &'a str,
    /// RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    expires_at: String,
}

async fn waiting_page(
    State(app): State<AppState>,
    MaybeSession(session): MaybeSession,
    ReturnToQuery(asked): ReturnToQuery,
) -> Result<Response> {
    let Some(session) = session else {
        return Ok(Redirect::to("/login").into_response());
    };
    if session.state == SessionState::Authenticated {
        let to = asked.as_ref().map_or("/", ReturnTo::as_str);
        return Ok(Redirect::to(to).into_response());
    }
    let pending_id = session.pending_session_id.clone().unwrap_or_default();
    render_waiting(&app, &session.user.display_name, &pending_id, None, asked).await
}

/// Where the requester is going: the `rd` kept with the pending session
/// (checked again, as the configuration may have changed since), else the
/// one in this request.
async fn kept_return_to(
    app: &AppState,
    pending_id: &str,
    asked: Option<ReturnTo>,
) -> Result<Option<ReturnTo>> {
    let kept = pending::find(&app.db, pending_id)
        .await?
        .and_then(|row| extract::return_to(app, row.return_to.as_deref()));
    Ok(kept.or(asked))
}

async fn render_waiting(
    app: &AppState,
    display_name: &str,
    pending_id: &str,
    notice: Option<&str>,
    asked: Option<ReturnTo>,
) -> Result<Response> {
    let return_to = kept_return_to(app, pending_id, asked).await?;
    let continue_to = return_to.as_ref().map(ReturnTo::host);
    if let Some(live) = app.registry.get(pending_id) {
        let max = app.settings.peer_review.max_code_rotations;
        let claimed_by = live.claimed_by.as_ref().map(|r| r.display_name.as_str());
        let page = views::pending::waiting(&PendingView {
            display_name,
            code: &live.code,
            expires_at: live.expires_at,
            reviewers_online: app.registry.reviewers_online(),
            claimed_by,
            rotations_left: max.saturating_sub(live.code_rotations),
            notice,
            continue_to,
        });
        return Ok(page.into_response());
    }
    // Not waiting any more: approved (and not yet completed) is the only state
    // a half-authenticated browser session can still be in.
    match pending::find(&app.db, pending_id).await?.map(|p| p.status) {
        Some(PendingStatus::Approved) => Ok(views::pending::approved(continue_to).into_response()),
        _ => Err(Error::Expired),
    }
}

async fn new_code_form(
    State(app): State<AppState>,
    requester: HalfAuthenticated,
) -> Result<Response> {
    let notice = match review::rotate_code(&app.flow, &requester.pending_id).await {
        Ok(_) => None,
        Err(e @ ReviewError::RotationLimit { .. }) => Some(Error::from(e).to_string()),
        Err(other) => return Err(other.into()),
    };
    render_waiting(
        &app,
        &requester.session.user.display_name,
        &requester.pending_id,
        notice.as_deref(),
        None,
    )
    .await
}

/// Withdraws the review and ends the browser session: the old token can no
/// longer complete, even if a reviewer approved a moment before.
async fn cancel_form(
    State(app): State<AppState>,
    jar: CookieJar,
    requester: HalfAuthenticated,
) -> Result<Response> {
    review::sign_out(&app.flow, &requester.session).await?;
    let jar = jar.add(cookies::session_removal(&app));
    Ok((jar, Redirect::to("/login")).into_response())
}

/// Completes an approved sign-in: rotates the token and trusts the device,
/// then goes back to the app the requester came from, if any.
async fn complete(
    State(app): State<AppState>,
    jar: CookieJar,
    requester: HalfAuthenticated,
    ReturnToQuery(asked): ReturnToQuery,
) -> Result<Response> {
    let return_to = kept_return_to(&app, &requester.pending_id, asked).await?;
    let done = review::complete(&app.flow, &requester.session).await?;
    let jar = jar
        .add(cookies::session(&app, &done.session))
        .add(cookies::device(&app, &done.device));
    let to = return_to.as_ref().map_or("/", ReturnTo::as_str);
    Ok((jar, Redirect::to(to)).into_response())
}

/// The requester's pending review: its code, status and who can help.
#[utoipa::path(
    get,
    path = "/api/v1/pending",
    operation_id = "pending",
    tag = "requester",
    security(("session" = [])),
    responses(
        (status = 200, description = "The pending review", body = PendingResponse),
        (status = 401, description = "`unauthenticated`: no half-authenticated session", body = ErrorBody),
        (status = 404, description = "`not_found`: no pending review", body = ErrorBody),
    )
)]
async fn pending_api(
    State(app): State<AppState>,
    requester: HalfAuthenticated,
) -> Result<Response> {
    let id = &requester.pending_id;
    let reviewers_online = app.registry.reviewers_online();
    if let Some(live) = app.registry.get(id) {
        return Ok(Json(PendingResponse {
            session_id: &live.id,
            code: Some(live.code.expose()),
            status: PendingStatus::Pending,
            created_at: rfc3339(live.created_at),
            expires_at: rfc3339(live.expires_at),
            reviewers_online,
        })
        .into_response());
    }
    let row = pending::find(&app.db, id)
        .await?
        .ok_or_else(|| Error::NotFound("You have no pending sign-in.".into()))?;
    Ok(Json(PendingResponse {
        session_id: &row.id,
        code: None,
        status: row.status,
        created_at: row.created_at.clone(),
        expires_at: row.expires_at.clone(),
        reviewers_online,
    })
    .into_response())
}

/// Replaces the code (at most `max_code_rotations` times per review). Takes
/// no body, but like every JSON POST needs `Content-Type: application/json`.
#[utoipa::path(
    post,
    path = "/api/v1/pending/code",
    operation_id = "new_code",
    tag = "requester",
    security(("session" = [])),
    responses(
        (status = 200, description = "The new code", body = CodeResponse),
        (status = 401, description = "`unauthenticated`: no half-authenticated session", body = ErrorBody),
        (status = 403, description = "`forbidden`: the request came from another origin", body = ErrorBody),
        (status = 409, description = "`expired`: the review no longer waits", body = ErrorBody),
        (status = 422, description = "`invalid`: the rotation limit is reached, or the body is not JSON", body = ErrorBody),
    )
)]
async fn new_code_api(
    State(app): State<AppState>,
    requester: HalfAuthenticated,
) -> Result<Response> {
    let (code, expires_at) = review::rotate_code(&app.flow, &requester.pending_id).await?;
    Ok(Json(CodeResponse {
        code: code.expose(),
        expires_at: rfc3339(expires_at),
    })
    .into_response())
}
