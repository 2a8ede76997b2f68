//! Why a step of the review flow did not happen, in the product's words. The
//! web layer turns each into a status and a message, in one place.

/// A review step that could not be taken. Nothing changed unless the variant
/// says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Wrong username or password, unknown or disabled user: one answer for all.
    #[error("wrong username or password")]
    BadCredentials,
    /// The password was right, but a code mismatch locked the account until
    /// an admin unlocks it.
    #[error("account locked")]
    AccountLocked,
    /// Too many attempts from this user or address.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Too many sign-ins are waiting for a password check.
    #[error("too many sign-ins at once; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    /// No such session is waiting, and the ledger has nothing about it.
    #[error("no such sign-in request")]
    NotFound,
    /// The session has an outcome already (or another decision is in flight).
    #[error("already decided")]
    AlreadyDecided,
    /// The session ran out of time.
    #[error("expired")]
    Expired,
    /// A reviewer tried to decide their own sign-in.
    #[error("self review")]
    SelfReview,
    /// `complete` on a session the ledger has not approved (or no longer can).
    #[error("not approved")]
    NotApproved,
    /// The requester has asked for a new code `max` times already.
    #[error("rotation limit {max}")]
    RotationLimit { max: u32 },
    /// The ledger could not record the outcome, so nothing was decided.
    #[error("the ledger is unavailable: {0}")]
    LedgerUnavailable(String),
    /// `app.sqlite` or another internal step failed.
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}
