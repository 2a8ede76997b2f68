//! What follows a recorded outcome before anyone is told of it: a mismatch
//! locks the account (`peer_review.lock_on_mismatch`) and raises the alarm on
//! `/admin`; every outcome but a withdrawal goes to the webhook outbox. Also
//! the webhook events of a waiting session (requested, unattended, overdue).
//!
//! None of this can undo or hold up the outcome: the ledger already has it.
//! Failures are logged; the outbox and the mismatch table are written
//! idempotently, so start-up and the settling sweep can derive them again.

use super::Flow;
use crate::alerts::{AlertEvent, EventKind, LedgerRef};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::domain::{Ages, Level, Outcome, Requester, Reviewer};
use crate::ledger::Receipt;
use crate::ledger::read::StoredEntry;
use crate::registry::PendingSession;
use crate::store::mismatches::{self, NewMismatch};

/// An outcome the ledger holds, with what the follow-ups need.
pub struct Recorded {
    pub session_id: String,
    pub requester: Requester,
    pub requester_ip: String,
    /// The deciding reviewer (decisions only).
    pub reviewer: Option<Reviewer>,
    pub outcome: Outcome,
    /// The session's level when the outcome was recorded.
    pub level: Level,
    pub entry: LedgerRef,
}

impl Recorded {
    /// An outcome this process just appended.
    pub fn live(
        session: &PendingSession,
        reviewer: Option<Reviewer>,
        outcome: Outcome,
        receipt: &Receipt,
    ) -> Self {
        Self {
            session_id: session.id.clone(),
            requester: session.requester.clone(),
            requester_ip: session.client.ip.clone(),
            reviewer,
            outcome,
            level: session.level,
            entry: LedgerRef {
                seq: receipt.seq,
                entry_hash: receipt.entry_hash.clone(),
            },
        }
    }

    /// An outcome read back from the ledger (start-up, the settling sweep).
    pub fn from_ledger(entry: &StoredEntry, requester: Requester, ages: &Ages) -> Option<Self> {
        let f = &entry.fields;
        let outcome = f.outcome.parse::<Outcome>().ok()?;
        let waited = match (
            parse_rfc3339(&f.session_created_at),
            parse_rfc3339(&f.decided_at),
        ) {
            (Ok(created), Ok(decided)) => decided - created,
            _ => chrono::Duration::zero(),
        };
        Some(Self {
            session_id: f.session_id.clone(),
            requester,
            requester_ip: f.requester_ip.clone(),
            reviewer: (!f.reviewer_id.is_empty()).then(|| Reviewer {
                id: f.reviewer_id.clone(),
                display_name: f.reviewer_name.clone(),
            }),
            outcome,
            level: ages.level(waited),
            entry: LedgerRef {
                seq: f.seq,
                entry_hash: entry.entry_hash.clone(),
            },
        })
    }
}

/// Locks and alarms on a mismatch, then writes the outcome's webhook event.
pub async fn follow_up(flow: &Flow, recorded: &Recorded) {
    if recorded.outcome == Outcome::Mismatch {
        raise_alarm(flow, recorded).await;
    }
    let Some(kind) = EventKind::for_outcome(recorded.outcome) else {
        return;
    };
    flow.alerts
        .record(&AlertEvent {
            kind,
            at: flow.clock.now(),
            session_id: recorded.session_id.clone(),
            requester: recorded.requester.clone(),
            reviewer: recorded.reviewer.clone(),
            outcome: Some(recorded.outcome),
            level: recorded.level,
            entry: Some(recorded.entry.clone()),
        })
        .await;
}

/// Records the mismatch for `/admin` and locks the account, in one
/// transaction, before the requester is told "denied": whoever holds the
/// password cannot start another review in between.
async fn raise_alarm(flow: &Flow, r: &Recorded) {
    let lock = flow.settings.peer_review.lock_on_mismatch;
    let (reviewer_id, reviewer_name) = r
        .reviewer
        .as_ref()
        .map_or(("", ""), |rv| (rv.id.as_str(), rv.display_name.as_str()));
    let recorded = mismatches::record(
        &flow.db,
        &NewMismatch {
            session_id: &r.session_id,
            user_id: &r.requester.id,
            requester_name: &r.requester.display_name,
            requester_ip: &r.requester_ip,
            reviewer_id,
            reviewer_name,
            seq: r.entry.seq,
            entry_hash: &r.entry.entry_hash,
            recorded_at: &rfc3339(flow.clock.now()),
        },
        lock,
    )
    .await;
    match recorded {
        Ok(()) => {
            tracing::warn!(session_id = %r.session_id, user_id = %r.requester.id, reviewer_id, account_locked = lock, seq = r.entry.seq, "code mismatch: someone else may hold this password");
        }
        Err(e) => {
            tracing::error!(session_id = %r.session_id, user_id = %r.requester.id, error = format!("{e:#}"), "code mismatch recorded in the ledger, but the alarm and account lock could not be written");
        }
    }
}

/// A webhook event about a session that is still waiting.
pub async fn waiting(
    flow: &Flow,
    kind: EventKind,
    session_id: &str,
    requester: &Requester,
    level: Level,
) {
    flow.alerts
        .record(&AlertEvent {
            kind,
            at: flow.clock.now(),
            session_id: session_id.to_string(),
            requester: requester.clone(),
            reviewer: None,
            outcome: None,
            level,
            entry: None,
        })
        .await;
}
