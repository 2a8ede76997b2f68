//! Validated newtypes and pure rules: codes, tokens, ids, outcomes, notes,
//! usernames and the public URL.
//! Nothing here touches axum or sqlx; handlers parse input into these types once.

pub mod code;
pub mod ids;
pub mod outcome;
mod public_url;
pub mod token;
mod username;

pub use code::PendingCode;
pub use outcome::{Channel, Note, Outcome};
pub use public_url::{PublicUrl, PublicUrlError};
pub use token::{SessionToken, TokenHash};
pub use username::{Username, UsernameError};

/// Fills `buf` from the operating system's CSPRNG.
///
/// An OS without a working random source cannot run peergate safely, so this
/// is one of the few places that may abort.
pub(crate) fn os_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}
