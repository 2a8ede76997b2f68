//! The reviewer's side: the inbox page, the detail drawer, decisions; and
//! their JSON twins. Opening a detail claims the session softly.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Reviewer, ValidForm, ValidJson};
use crate::error::{Error, Result};
use crate::registry::{PendingSession, ReviewerRef};
use crate::review::{self, Decision, DecisionInput};
use crate::state::AppState;
use crate::store::users::User;
use crate::views;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/inbox", get(inbox_page))
        .route("/inbox/{session_id}", get(detail_page))
        .route("/inbox/{session_id}/decision", post(decide_form))
        .route("/api/v1/inbox", get(inbox_api))
        .route("/api/v1/inbox/{session_id}", get(detail_api))
        .route("/api/v1/inbox/{session_id}/decision", post(decide_api))
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// The sessions a reviewer sees: everyone's but their own, oldest first.
fn visible(app: &AppState, me: &User) -> Vec<PendingSession> {
    app.registry
        .list()
        .into_iter()
        .filter(|s| s.requester.id != me.id)
        .collect()
}

async fn inbox_page(State(app): State<AppState>, Reviewer(session): Reviewer) -> Response {
    let now = app.clock.now();
    let summaries: Vec<_> = visible(&app, &session.user)
        .iter()
        .map(|s| s.summary(now))
        .collect();
    views::inbox::inbox_page(&session.user, &summaries, app.registry.reviewers_online())
        .into_response()
}

/// Looks up a session for a reviewer and claims it softly.
fn open_detail(app: &AppState, me: &User, id: &str) -> Result<PendingSession> {
    let session = app
        .registry
        .get(id)
        .ok_or_else(|| Error::NotFound("This sign-in request is no longer waiting.".into()))?;
    if session.requester.id == me.id {
        return Err(Error::SelfReview);
    }
    let reviewer = ReviewerRef {
        id: me.id.clone(),
        display_name: me.display_name.clone(),
    };
    app.registry
        .claim(id, reviewer, app.clock.now())
        .ok_or_else(|| Error::NotFound("This sign-in request is no longer waiting.".into()))
}

async fn detail_page(
    State(app): State<AppState>,
    Reviewer(me): Reviewer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let htmx = is_htmx(&headers);
    let session = match open_detail(&app, &me.user, &id) {
        Ok(s) => s,
        Err(e) if htmx => {
            let status = e.status();
            return Ok((
                status,
                views::inbox::drawer_message("Not available", &e.to_string()),
            )
                .into_response());
        }
        Err(e) => return Err(e),
    };
    let detail = views::inbox::detail(&session, app.clock.now(), None);
    if htmx {
        Ok(detail.into_response())
    } else {
        Ok(views::page(
            "Review",
            Some(&me.user),
            maud::html! { section.card { (detail) } },
        )
        .into_response())
    }
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

async fn decide_form(
    State(app): State<AppState>,
    Reviewer(me): Reviewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    ValidForm(form): ValidForm<DecisionForm>,
) -> Result<Response> {
    let input = DecisionInput {
        outcome: form.outcome,
        channel: form.channel,
        code_confirmed: form.code_confirmed.as_deref() == Some("on"),
        note: form.note,
    };
    let name = app
        .registry
        .get(&id)
        .map(|s| s.requester.display_name)
        .unwrap_or_default();
    let note = crate::domain::Note::parse(&input.note)
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    let result = match Decision::parse(&input) {
        Ok(decision) => review::decide(&app, &me.user, &id, decision).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(receipt) => {
            let outcome = if input.outcome == "approve" {
                crate::domain::Outcome::Approved
            } else {
                crate::domain::Outcome::Denied
            };
            let recorded =
                views::inbox::recorded(outcome, receipt.seq, &receipt.entry_hash, &name, &note);
            if is_htmx(&headers) {
                Ok(recorded.into_response())
            } else {
                Ok(Redirect::to("/inbox").into_response())
            }
        }
        // A form mistake: show the form again with the reason, in the drawer.
        Err(Error::Invalid(message)) if is_htmx(&headers) => {
            let again = match app.registry.get(&id) {
                Some(session) => views::inbox::detail(&session, app.clock.now(), Some(&message)),
                None => views::inbox::drawer_message("Not available", &message),
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, again).into_response())
        }
        Err(e) if is_htmx(&headers) => {
            let status = e.status();
            let body = views::inbox::drawer_message("Not recorded", &e.to_string());
            if matches!(e, Error::Internal(_)) {
                return Err(e);
            }
            Ok((status, body).into_response())
        }
        Err(e) => Err(e),
    }
}

async fn inbox_api(State(app): State<AppState>, Reviewer(me): Reviewer) -> Json<Value> {
    let now = app.clock.now();
    let sessions: Vec<_> = visible(&app, &me.user)
        .iter()
        .map(|s| s.summary(now))
        .collect();
    Json(json!({ "sessions": sessions }))
}

async fn detail_api(
    State(app): State<AppState>,
    Reviewer(me): Reviewer,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let session = open_detail(&app, &me.user, &id)?;
    let mut value = serde_json::to_value(session.summary(app.clock.now()))
        .map_err(|e| Error::Internal(e.into()))?;
    value["code"] = json!(session.code.expose());
    Ok(Json(value))
}

async fn decide_api(
    State(app): State<AppState>,
    Reviewer(me): Reviewer,
    Path(id): Path<String>,
    ValidJson(input): ValidJson<DecisionInput>,
) -> Result<Json<Value>> {
    let decision = Decision::parse(&input)?;
    let receipt = review::decide(&app, &me.user, &id, decision).await?;
    Ok(Json(json!({
        "entry": {
            "seq": receipt.seq,
            "entry_id": receipt.entry_id,
            "entry_hash": receipt.entry_hash,
            "decided_at": receipt.decided_at,
        }
    })))
}
