//! The reviewer's side: the inbox page, the detail drawer, claims and
//! decisions; and their JSON twins. Opening a detail shows it; the drawer then
//! claims the session softly with a POST (a GET never changes state).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{IsHtmx, ReviewerSession, ValidForm, ValidJson};
use crate::domain::{Channel, Verdict};
use crate::error::{Error, ErrorBody, Result};
use crate::ledger::Receipt;
use crate::registry::{PendingSession, Summary};
use crate::review::{self, Decision};
use crate::state::AppState;
use crate::store::users::User;
use crate::views;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/inbox", get(inbox_page))
        .route("/inbox/{session_id}", get(detail_page))
        .route("/inbox/{session_id}/claim", post(claim))
        .route("/inbox/{session_id}/decision", post(decide_form))
        .route("/api/v1/inbox", get(inbox_api))
        .route("/api/v1/inbox/{session_id}", get(detail_api))
        .route("/api/v1/inbox/{session_id}/claim", post(claim))
        .route("/api/v1/inbox/{session_id}/decision", post(decide_api))
}

/// `GET /api/v1/inbox`'s answer.
#[derive(Serialize, ToSchema)]
struct InboxResponse {
    /// Oldest first; never the reviewer's own session, never a code.
    sessions: Vec<Summary>,
}

/// `GET /api/v1/inbox/{id}`'s answer: the summary and the code.
#[derive(Serialize, ToSchema)]
struct DetailResponse<'a> {
    #[serde(flatten)]
    summary: Summary,
    /// The code the requester should read back.
    #[schema(pattern = "^[0-9]{6}$")]
    code: &'a str,
}

/// A decision's answer: the ledger entry that records it.
#[derive(Serialize, ToSchema)]
struct DecisionResponse {
    entry: Receipt,
}

/// A decision as the API takes it. The words are checked by
/// [`Decision::parse`], which says what is wrong; the schema lists them.
#[derive(Deserialize, ToSchema)]
struct DecisionInput {
    /// `approve` needs `code_confirmed`; `deny` needs a note; `mismatch` (the
    /// code read back was not this one) needs `code_confirmed` false.
    #[schema(value_type = Verdict)]
    outcome: String,
    /// How the reviewer reached the requester.
    #[schema(value_type = Channel)]
    channel: String,
    /// The requester read this code back to the reviewer.
    code_confirmed: bool,
    /// The attestation: at most 1000 characters of printable text, newlines allowed.
    #[schema(max_length = 1000)]
    note: String,
}

/// The form posts `code_confirmed=on` when ticked and nothing otherwise.
#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    code_confirmed: Option<String>,
    #[serde(default)]
    note: String,
}

fn reviewer(me: &User) -> crate::domain::Reviewer {
    crate::domain::Reviewer {
        id: me.id.clone(),
        display_name: me.display_name.clone(),
    }
}

async fn inbox_page(State(app): State<AppState>, ReviewerSession(me): ReviewerSession) -> Response {
    let summaries = app.registry.summaries_for(&me.user.id, app.clock.now());
    views::inbox::inbox_page(
        super::viewer(&me.user),
        &summaries,
        app.registry.reviewers_online(),
    )
    .into_response()
}

/// A session a reviewer may look at: waiting, and not their own.
fn waiting_for(app: &AppState, me: &User, id: &str) -> Result<PendingSession> {
    let session = app
        .registry
        .get(id)
        .ok_or_else(|| Error::NotFound("This sign-in request is no longer waiting.".into()))?;
    if session.requester.id == me.id {
        return Err(Error::SelfReview);
    }
    Ok(session)
}

async fn detail_page(
    State(app): State<AppState>,
    ReviewerSession(me): ReviewerSession,
    Path(id): Path<String>,
    IsHtmx(htmx): IsHtmx,
) -> Result<Response> {
    let session = match waiting_for(&app, &me.user, &id) {
        Ok(s) => s,
        Err(e) if htmx => {
            let partial = views::inbox::drawer_message("Not available", &e.to_string());
            return Ok((e.status(), partial).into_response());
        }
        Err(e) => return Err(e),
    };
    let locks = app.settings.peer_review.lock_on_mismatch;
    let detail = views::inbox::detail(&session, app.clock.now(), None, locks);
    if htmx {
        Ok(detail.into_response())
    } else {
        Ok(views::inbox::detail_view(super::viewer(&me.user), &detail).into_response())
    }
}

/// Marks the session as being looked at by this reviewer (a soft claim: it
/// locks no one out) and tells the others and the requester.
#[utoipa::path(
    post,
    path = "/api/v1/inbox/{session_id}/claim",
    operation_id = "claim",
    tag = "reviewer",
    security(("session" = [])),
    params(("session_id" = String, Path, description = "The pending session")),
    responses(
        (status = 204, description = "Claimed: other reviewers see `claimed_by`, the requester sees who is looking"),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not a reviewer, or another origin) or `self_review`", body = ErrorBody),
        (status = 404, description = "`not_found`: the session no longer waits", body = ErrorBody),
    )
)]
async fn claim(
    State(app): State<AppState>,
    ReviewerSession(me): ReviewerSession,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    waiting_for(&app, &me.user, &id)?;
    app.registry
        .claim(&id, reviewer(&me.user), app.clock.now())
        .ok_or_else(|| Error::NotFound("This sign-in request is no longer waiting.".into()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn decide_form(
    State(app): State<AppState>,
    ReviewerSession(me): ReviewerSession,
    Path(id): Path<String>,
    IsHtmx(htmx): IsHtmx,
    ValidForm(form): ValidForm<DecisionForm>,
) -> Result<Response> {
    let name = app
        .registry
        .get(&id)
        .map(|s| s.requester.display_name)
        .unwrap_or_default();
    let confirmed = form.code_confirmed.as_deref() == Some("on");
    let result = match Decision::parse(&form.outcome, &form.channel, confirmed, &form.note) {
        Ok(decision) => {
            let recorded = (decision.verdict.outcome(), decision.note.clone());
            review::decide(&app.flow, reviewer(&me.user), &id, decision)
                .await
                .map(|receipt| (receipt, recorded))
                .map_err(Error::from)
        }
        Err(invalid) => Err(Error::from(invalid)),
    };
    let e = match result {
        Ok((receipt, (outcome, note))) if htmx => {
            let partial = views::inbox::recorded(
                outcome,
                receipt.seq,
                &receipt.entry_hash,
                &name,
                note.as_str(),
                app.settings.peer_review.lock_on_mismatch,
            );
            return Ok(partial.into_response());
        }
        Ok(_) => return Ok(Redirect::to("/inbox").into_response()),
        Err(e) if !htmx || matches!(e, Error::Internal(_)) => return Err(e),
        Err(e) => e,
    };
    // In the drawer, where the reviewer is looking: a form mistake shows the
    // form again with the reason; anything else says why nothing was recorded.
    let partial = match (&e, app.registry.get(&id)) {
        (Error::Invalid(message), Some(session)) => {
            let locks = app.settings.peer_review.lock_on_mismatch;
            views::inbox::detail(&session, app.clock.now(), Some(message), locks)
        }
        (Error::Invalid(message), None) => views::inbox::drawer_message("Not available", message),
        _ => views::inbox::drawer_message("Not recorded", &e.to_string()),
    };
    Ok((e.status(), partial).into_response())
}

/// The sessions waiting for review.
#[utoipa::path(
    get,
    path = "/api/v1/inbox",
    operation_id = "inbox",
    tag = "reviewer",
    security(("session" = [])),
    responses(
        (status = 200, description = "Pending sessions, oldest first, without codes", body = InboxResponse),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not a reviewer", body = ErrorBody),
    )
)]
async fn inbox_api(
    State(app): State<AppState>,
    ReviewerSession(me): ReviewerSession,
) -> Json<InboxResponse> {
    Json(InboxResponse {
        sessions: app.registry.summaries_for(&me.user.id, app.clock.now()),
    })
}

/// One pending session, with its current code. Looking does not claim it.
#[utoipa::path(
    get,
    path = "/api/v1/inbox/{session_id}",
    operation_id = "inbox_detail",
    tag = "reviewer",
    security(("session" = [])),
    params(("session_id" = String, Path, description = "The pending session")),
    responses(
        (status = 200, description = "The summary and the code", body = DetailResponse),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not a reviewer) or `self_review`", body = ErrorBody),
        (status = 404, description = "`not_found`: the session no longer waits", body = ErrorBody),
    )
)]
async fn detail_api(
    State(app): State<AppState>,
    ReviewerSession(me): ReviewerSession,
    Path(id): Path<String>,
) -> Result<Response> {
    let session = waiting_for(&app, &me.user, &id)?;
    Ok(Json(DetailResponse {
        summary: session.summary(app.clock.now()),
        code: session.code.expose(),
    })
    .into_response())
}

/// Approves, denies or records a mismatch. The answer comes once the ledger
/// entry is durable.
#[utoipa::path(
    post,
    path = "/api/v1/inbox/{session_id}/decision",
    operation_id = "decide",
    tag = "reviewer",
    security(("session" = [])),
    params(("session_id" = String, Path, description = "The pending session")),
    request_body = DecisionInput,
    responses(
        (status = 200, description = "Recorded in the ledger", body = DecisionResponse),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not a reviewer, or another origin) or `self_review`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such session", body = ErrorBody),
        (status = 409, description = "`already_decided` or `expired`", body = ErrorBody),
        (status = 422, description = "`invalid`: the message says what to fix", body = ErrorBody),
        (status = 503, description = "`unavailable`: the ledger could not record it, so nothing changed", body = ErrorBody),
    )
)]
async fn decide_api(
    State(app): State<AppState>,
    ReviewerSession(me): ReviewerSession,
    Path(id): Path<String>,
    ValidJson(input): ValidJson<DecisionInput>,
) -> Result<Json<DecisionResponse>> {
    let decision = Decision::parse(
        &input.outcome,
        &input.channel,
        input.code_confirmed,
        &input.note,
    )?;
    let entry = review::decide(&app.flow, reviewer(&me.user), &id, decision).await?;
    Ok(Json(DecisionResponse { entry }))
}
