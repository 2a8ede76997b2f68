//! The one error type at the HTTP boundary.
//!
//! Handlers return `Result<_, Error>`. The response carries an [`ErrorInfo`]
//! extension; the `render_errors` middleware turns it into the JSON error shape
//! of DESIGN.md §4 on the API and sockets, and into a readable page (or a
//! redirect to `/login`) on HTML routes. Below this layer, code uses
//! `anyhow::Result` with context; such errors are logged and shown as an opaque 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::review::{InvalidDecision, ReviewError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401 `unauthenticated`: no session, or the wrong kind. Pages redirect to `/login`.
    #[error("Please sign in.")]
    Unauthenticated,
    /// 401 `unauthenticated`: a failed sign-in, with one message for every cause.
    #[error("Wrong username or password.")]
    BadCredentials,
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `forbidden`: the account is locked after a code mismatch.
    #[error(
        "This account is locked: during a sign-in check the code read back did not match, so someone else may know your password. Contact your security team; they can unlock it once the password is changed."
    )]
    AccountLocked,
    /// 403 `self_review`.
    #[error("You cannot review your own sign-in.")]
    SelfReview,
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `already_decided`.
    #[error("This sign-in request has already been decided.")]
    AlreadyDecided,
    /// 409 `expired`.
    #[error("This sign-in request has expired.")]
    Expired,
    /// 409 `not_approved`: `/pending/complete` before approval (an HTML route only).
    #[error("Your sign-in has not been approved yet.")]
    NotApproved,
    /// 422 `invalid`, with what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 429 `rate_limited`, with `Retry-After`.
    #[error("Too many attempts. Try again in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    /// 503 `unavailable`, with `Retry-After`: too many sign-ins wait for a password check.
    #[error(
        "Too many sign-ins are being checked right now. Try again in {retry_after_secs} seconds."
    )]
    Busy { retry_after_secs: u64 },
    /// 503 `unavailable`: a dependency (the ledger, the database) is failing; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged in full, shown opaquely.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the error renderer needs, attached to the response; also the inner
/// object of the JSON error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorInfo {
    /// What went wrong, for programs: one of [`API_ERROR_CODES`] on the API.
    #[schema(schema_with = api_error_codes)]
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

/// The JSON error body of DESIGN.md §4: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// Every `code` the JSON API can answer with: DESIGN.md §4's list, and
/// `internal` for a 500. (`not_approved` is only ever shown as a page.)
pub const API_ERROR_CODES: [&str; 10] = [
    "unauthenticated",
    "forbidden",
    "self_review",
    "not_found",
    "already_decided",
    "expired",
    "invalid",
    "rate_limited",
    "unavailable",
    "internal",
];

/// [`ErrorInfo::code`]'s schema: a string, one of [`API_ERROR_CODES`].
fn api_error_codes() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("What went wrong, for programs."))
        .enum_values(Some(API_ERROR_CODES))
        .build()
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated | Error::BadCredentials => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::SelfReview | Error::AccountLocked => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::AlreadyDecided | Error::Expired | Error::NotApproved => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) | Error::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated | Error::BadCredentials => "unauthenticated",
            Error::Forbidden(_) | Error::AccountLocked => "forbidden",
            Error::SelfReview => "self_review",
            Error::NotFound(_) => "not_found",
            Error::AlreadyDecided => "already_decided",
            Error::Expired => "expired",
            Error::NotApproved => "not_approved",
            Error::Invalid(_) => "invalid",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) | Error::Busy { .. } => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// Seconds to put in `Retry-After`, for the errors that have one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after_secs } | Error::Busy { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }

    /// The response headers this error carries (`Retry-After`).
    pub fn headers(&self) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        headers
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        // A database that is locked, read-only or full is a passing fault the
        // user can retry, not a bug: say so (503), not "internal error".
        let this = match self {
            Error::Internal(e) if storage_unavailable(&e) => {
                tracing::error!(error = format!("{e:#}"), "storage cannot be written");
                Error::Unavailable(
                    "The database is busy or cannot be written right now, so nothing was changed. Try again in a moment."
                        .into(),
                )
            }
            other => other,
        };
        let message = match &this {
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                "Something went wrong on our side. Nothing was changed; please try again."
                    .to_string()
            }
            Error::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "service unavailable");
                reason.clone()
            }
            other => other.to_string(),
        };
        let info = ErrorInfo {
            code: this.code(),
            message,
        };
        let body = Json(ErrorBody {
            error: info.clone(),
        });
        let mut response = (this.status(), this.headers(), body).into_response();
        response.extensions_mut().insert(info);
        response
    }
}

/// The one place a review step's refusal becomes a status and a message.
impl From<ReviewError> for Error {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::BadCredentials => Error::BadCredentials,
            ReviewError::AccountLocked => Error::AccountLocked,
            ReviewError::RateLimited { retry_after_secs } => {
                Error::RateLimited { retry_after_secs }
            }
            ReviewError::Busy { retry_after_secs } => Error::Busy { retry_after_secs },
            ReviewError::NotFound => Error::NotFound("There is no such sign-in request.".into()),
            ReviewError::AlreadyDecided => Error::AlreadyDecided,
            ReviewError::Expired => Error::Expired,
            ReviewError::SelfReview => Error::SelfReview,
            ReviewError::NotApproved => Error::NotApproved,
            ReviewError::RotationLimit { max } => Error::Invalid(format!(
                "You have asked for a new code {max} times already; that is the limit for one sign-in. Cancel and sign in again if you need to."
            )),
            ReviewError::LedgerUnavailable(reason) => Error::Unavailable(format!(
                "The outcome could not be recorded in the ledger, so nothing was approved, denied or ended. Try again shortly. ({reason})"
            )),
            ReviewError::Storage(e) => Error::Internal(e),
        }
    }
}

impl From<InvalidDecision> for Error {
    fn from(e: InvalidDecision) -> Self {
        Error::Invalid(e.0)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(e.into())
    }
}

/// Whether an error comes from SQLite being busy, locked, read-only, out of
/// space or failing I/O (primary result codes 5, 6, 8, 13, 10).
fn storage_unavailable(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 8 | 10 | 13)),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's list of codes covers every error the API can return.
    #[test]
    fn api_error_codes_cover_every_variant() {
        let every = [
            Error::Unauthenticated,
            Error::BadCredentials,
            Error::Forbidden(String::new()),
            Error::AccountLocked,
            Error::SelfReview,
            Error::NotFound(String::new()),
            Error::AlreadyDecided,
            Error::Expired,
            Error::Invalid(String::new()),
            Error::RateLimited {
                retry_after_secs: 1,
            },
            Error::Busy {
                retry_after_secs: 1,
            },
            Error::Unavailable(String::new()),
            Error::Internal(anyhow::anyhow!("boom")),
        ];
        for e in every {
            assert!(API_ERROR_CODES.contains(&e.code()), "{}", e.code());
        }
        // Only `/pending/complete`, a page, answers `not_approved`.
        assert!(!API_ERROR_CODES.contains(&Error::NotApproved.code()));
    }
}
