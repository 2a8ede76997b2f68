//! Validated newtypes and pure rules: codes, tokens, ids, outcomes and notes.
//! Nothing here touches axum or sqlx; handlers parse input into these types once.

pub mod code;
pub mod ids;
pub mod outcome;
mod people;
mod review_rules;
pub mod token;

pub use code::PendingCode;
pub use outcome::{Channel, Note, Outcome};
pub use people::{Client, Requester, Reviewer};
pub use review_rules::{Ages, Level, Verdict};
pub use token::{SessionToken, TokenHash};

/// Fills `buf` from the operating system's CSPRNG.
///
/// An OS without a working random source cannot run peergate safely, so this
/// is one of the few places that may abort.
pub(crate) fn os_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}
