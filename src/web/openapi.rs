//! `GET /api/v1/openapi.json`: the JSON API described as OpenAPI 3.1,
//! generated from the request and response types the handlers use, so the
//! document cannot drift from the code.
//!
//! Each handler carries its own `#[utoipa::path]` next to its code; this module
//! only gathers them (the schemas they name are collected with them), adds the
//! session cookie as a security scheme, and serves the result.

use std::sync::LazyLock;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, authz, home, inbox, pending};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(document))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        auth::login_api,
        auth::me,
        pending::pending_api,
        pending::new_code_api,
        inbox::inbox_api,
        inbox::detail_api,
        inbox::claim,
        inbox::decide_api,
        admin::head_api,
        authz::forward_auth,
        authz::auth_request,
        home::healthz,
        document,
    ),
    modifiers(&SessionCookie),
    tags(
        (name = "auth", description = "Signing in with a password, and who is signed in"),
        (name = "requester", description = "A half-authenticated session waiting for peer review"),
        (name = "reviewer", description = "The inbox: pending sessions, claims and decisions"),
        (name = "admin", description = "The ledger head, for auditors' scripts"),
        (name = "forward auth", description = "Answers for reverse proxies protecting other apps (DESIGN.md §10)"),
        (name = "operations", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// The session cookie, as the security scheme the signed-in routes name.
struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "peergate_session",
                "Set by `POST /api/v1/login`. Named `__Host-peergate_session` when public_url is https, and `__Secure-peergate_session` with forward_auth.cookie_domain set. Every POST must also carry an `Origin` equal to public_url's, and a JSON body type.",
            ))),
        );
    }
}

/// Built once: the document depends only on the code.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// This document. Public: it says nothing a client could not learn by trying.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object)),
)]
async fn document() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&DOCUMENT)
}
