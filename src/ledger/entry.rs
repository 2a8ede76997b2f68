//! What callers ask the ledger to record, shaped so that the column rules of
//! DESIGN.md §5 cannot be broken: only decisions carry a reviewer and channel.

use crate::domain::{Channel, Note, Outcome, Reviewer, Verdict};

/// The session an outcome is about, as it was when the outcome happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    pub session_id: String,
    pub requester_id: String,
    /// Display name at the time of the outcome.
    pub requester_name: String,
    pub requester_ip: String,
    pub requester_user_agent: String,
    pub session_created_at: String,
}

/// An outcome waiting to be appended; the writer adds `seq`, `entry_id`,
/// `decided_at` and the hashes. Its fields are private to the ledger: the
/// constructors are the only way to make one, so the column rules hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDraft {
    pub(super) session: SessionFacts,
    pub(super) outcome: Outcome,
    pub(super) reviewer_id: String,
    pub(super) reviewer_name: String,
    pub(super) channel: String,
    pub(super) code_confirmed: bool,
    pub(super) note: Note,
}

impl LedgerDraft {
    /// A reviewer's approval, denial or mismatch. A mismatch is written like a
    /// denial, and never with `code_confirmed` 1.
    pub fn decision(
        session: SessionFacts,
        verdict: Verdict,
        reviewer: Reviewer,
        channel: Channel,
        code_confirmed: bool,
        note: Note,
    ) -> Self {
        Self {
            session,
            outcome: verdict.outcome(),
            reviewer_id: reviewer.id,
            reviewer_name: reviewer.display_name,
            channel: channel.as_str().to_string(),
            code_confirmed: code_confirmed && verdict != Verdict::Mismatch,
            note,
        }
    }

    /// The session ran out of time.
    pub fn expired(session: SessionFacts) -> Self {
        Self::closure(session, Outcome::Expired)
    }

    /// The requester cancelled, or signed in again elsewhere.
    pub fn withdrawn(session: SessionFacts) -> Self {
        Self::closure(session, Outcome::Withdrawn)
    }

    /// The outcome this draft records.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The session it is about.
    pub fn session(&self) -> &SessionFacts {
        &self.session
    }

    fn closure(session: SessionFacts, outcome: Outcome) -> Self {
        Self {
            session,
            outcome,
            reviewer_id: String::new(),
            reviewer_name: String::new(),
            channel: String::new(),
            code_confirmed: false,
            note: Note::empty(),
        }
    }
}

/// The durable record of an append: the reply the writer sends once the batch
/// holding the entry has committed. Serialised as the API's `entry` object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// The entry's position in the chain, from 1.
    pub seq: i64,
    pub entry_id: String,
    /// The entry's hash (hex), as DESIGN.md §5 computes it.
    pub entry_hash: String,
    /// RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    pub decided_at: String,
}
