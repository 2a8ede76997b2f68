//! The peer-review flow in the product's words: a sign-in starts a review (or
//! skips it), a reviewer decides, a session is withdrawn, expires or is
//! completed, and the registry is rebuilt at start-up. It takes validated
//! domain types, answers with [`ReviewError`], and knows nothing of HTTP.
//!
//! The rule everywhere: an outcome is appended to the ledger and acknowledged
//! durable before `app.sqlite` or the registry changes and before anyone is
//! told; and once the ledger is asked to write, that sequence runs to the end
//! even if the request that asked for it is dropped ([`run_to_end`]).

mod alarm;
mod decide;
mod error;
mod flow;
mod lifecycle;
mod restore;
mod sign_in;
mod ticker;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use decide::{Decision, InvalidDecision, decide};
pub use error::ReviewError;
pub use flow::{FAILURES_PER_USER_FACTOR, Flow, FlowParts};
pub use lifecycle::{browser_session, complete, rotate_code, sign_out};
pub use restore::restore;
pub use sign_in::{SignIn, SignInRequest, sign_in};
pub use ticker::run_ticker;

/// `now + by`, saturating instead of overflowing.
fn later(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX)
}
