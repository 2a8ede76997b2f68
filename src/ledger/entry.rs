//! What callers ask the ledger to record, shaped so that the column rules of
//! DESIGN.md §5 cannot be broken: only decisions carry a reviewer and channel.

use crate::domain::{Channel, Note, Outcome};

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

/// The reviewer who decided, by stable id and display name at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub id: String,
    pub name: String,
}

/// An outcome waiting to be appended; the writer adds `seq`, `entry_id`,
/// `decided_at` and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDraft {
    pub session: SessionFacts,
    pub outcome: Outcome,
    pub reviewer_id: String,
    pub reviewer_name: String,
    pub channel: String,
    pub code_confirmed: bool,
    pub note: Note,
}

impl LedgerDraft {
    /// A reviewer's approval or denial.
    pub fn decision(
        session: SessionFacts,
        approve: bool,
        reviewer: Decider,
        channel: Channel,
        code_confirmed: bool,
        note: Note,
    ) -> Self {
        Self {
            session,
            outcome: if approve {
                Outcome::Approved
            } else {
                Outcome::Denied
            },
            reviewer_id: reviewer.id,
            reviewer_name: reviewer.name,
            channel: channel.as_str().to_string(),
            code_confirmed,
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
/// holding the entry has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub entry_id: String,
    pub entry_hash: String,
    pub decided_at: String,
}
