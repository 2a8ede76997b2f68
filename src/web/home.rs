//! The signed-in home, the health check, and the embedded static assets.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::extract::MaybeSession;
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;
use crate::store::sessions::SessionState;
use crate::views;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(healthz))
        .route("/assets/{name}", get(asset))
}

async fn home(MaybeSession(session): MaybeSession) -> Response {
    match session {
        None => Redirect::to("/login").into_response(),
        Some(s) if s.state == SessionState::HalfAuthenticated => {
            Redirect::to("/pending").into_response()
        }
        Some(s) => views::auth::home(super::viewer(&s.user)).into_response(),
    }
}

/// `200 ok` when both databases answer.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Both databases answer", body = String, content_type = "text/plain", example = "ok"),
        (status = 503, description = "`unavailable`: the message names the failing database", body = ErrorBody),
    )
)]
async fn healthz(State(app): State<AppState>) -> Result<Response> {
    let app_db = crate::store::ping(&app.db).await;
    let ledger = crate::ledger::read::ping(&app.ledger.reader).await;
    match (app_db, ledger) {
        (Ok(()), Ok(())) => Ok((StatusCode::OK, "ok").into_response()),
        (a, l) => {
            let said =
                |r: anyhow::Result<()>| r.map_or_else(|e| format!("{e:#}"), |()| "ok".into());
            Err(Error::Unavailable(format!(
                "app.sqlite: {}; ledger.sqlite: {}",
                said(a),
                said(l)
            )))
        }
    }
}

/// Assets compiled into the binary: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx.min.js"),
    ),
    (
        "htmx-ext-ws.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-ext-ws.min.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
];

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
