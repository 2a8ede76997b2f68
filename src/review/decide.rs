//! A reviewer's decision: validated once, recorded in the ledger, then
//! mirrored and announced.

use std::time::Instant;

use super::alarm::{self, Recorded};
use super::{Flow, ReviewError, lifecycle};
use crate::domain::{Channel, Note, Outcome, Reviewer, Verdict};
use crate::ledger::{AppendError, LedgerDraft, Receipt};
use crate::registry::ClaimError;

/// A decision after validation: what the ledger will record.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    pub channel: Channel,
    pub code_confirmed: bool,
    pub note: Note,
}

/// Why a submitted decision is not a valid one; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDecision(pub String);

impl Decision {
    /// Validates once, at the edge: approval needs the code read back, denial
    /// needs a reason, and a mismatch says the code was *not* read back (its
    /// note is optional).
    pub fn parse(
        outcome: &str,
        channel: &str,
        code_confirmed: bool,
        note: &str,
    ) -> Result<Self, InvalidDecision> {
        let verdict = Verdict::parse(outcome).ok_or_else(|| {
            InvalidDecision(format!(
                "outcome must be \"approve\", \"deny\" or \"mismatch\", not \"{outcome}\""
            ))
        })?;
        let channel: Channel = channel.parse().map_err(|_| {
            InvalidDecision(format!(
                "channel must be one of call, chat, video, in_person, other; not \"{channel}\""
            ))
        })?;
        let note = Note::parse(note).map_err(InvalidDecision)?;
        if verdict == Verdict::Approve && !code_confirmed {
            return Err(InvalidDecision(
                "To approve, confirm that the requester read this code back to you.".into(),
            ));
        }
        if verdict == Verdict::Deny && note.is_blank() {
            return Err(InvalidDecision("To deny, say why in the note.".into()));
        }
        if verdict == Verdict::Mismatch && code_confirmed {
            return Err(InvalidDecision(
                "A mismatch means the code read back was not this one: untick \"The requester read this code back to me\"."
                    .into(),
            ));
        }
        Ok(Self {
            verdict,
            channel,
            code_confirmed,
            note,
        })
    }
}

/// Why a session cannot be decided any more.
async fn not_pending_reason(flow: &Flow, id: &str) -> ReviewError {
    match crate::ledger::read::outcome_of(&flow.ledger.reader, id).await {
        Ok(Some(Outcome::Expired)) => ReviewError::Expired,
        Ok(Some(_)) => ReviewError::AlreadyDecided,
        Ok(None) => ReviewError::NotFound,
        Err(e) => ReviewError::Storage(e),
    }
}

/// Records a reviewer's decision. The order is the contract: claim the session
/// (exactly one decider wins), append to the ledger and wait until it is
/// durable, mirror it into `app.sqlite`, and only then tell anyone. From the
/// claim on, it runs on its own task: a reviewer who hangs up cannot leave
/// the session half-decided.
pub async fn decide(
    flow: &Flow,
    reviewer: Reviewer,
    id: &str,
    decision: Decision,
) -> Result<Receipt, ReviewError> {
    let Some(snapshot) = flow.registry.get(id) else {
        return Err(not_pending_reason(flow, id).await);
    };
    if snapshot.requester.id == reviewer.id {
        return Err(ReviewError::SelfReview);
    }
    let (flow, id) = (flow.clone(), id.to_string());
    lifecycle::run_to_end(async move { decide_now(&flow, reviewer, &id, decision).await }).await
}

async fn decide_now(
    flow: &Flow,
    reviewer: Reviewer,
    id: &str,
    decision: Decision,
) -> Result<Receipt, ReviewError> {
    let session = match flow.registry.begin_decision(id) {
        Ok(session) => session,
        Err(ClaimError::AlreadyDeciding) => return Err(ReviewError::AlreadyDecided),
        Err(ClaimError::NotPending) => return Err(not_pending_reason(flow, id).await),
    };
    if flow.clock.now() >= session.expires_at {
        // Past its expiry, even if the ticker has not got to it yet.
        flow.registry.abort_decision(id);
        lifecycle::close(flow, id, Outcome::Expired).await?;
        return Err(ReviewError::Expired);
    }
    let outcome = decision.verdict.outcome();
    let decider = reviewer.clone();
    let draft = LedgerDraft::decision(
        lifecycle::facts(&session),
        decision.verdict,
        reviewer,
        decision.channel,
        decision.code_confirmed,
        decision.note,
    );
    let started = Instant::now();
    match flow.ledger.writer.append(draft).await {
        Ok(receipt) => {
            tracing::info!(session_id = %id, outcome = %outcome, reviewer_id = %decider.id, seq = receipt.seq, "decision recorded");
            // Before anyone is told: a mismatch locks the account first.
            let recorded = Recorded::live(&session, Some(decider), outcome, &receipt);
            alarm::follow_up(flow, &recorded).await;
            lifecycle::apply_outcome(flow, id, outcome).await;
            crate::metrics::decision(
                outcome,
                session.created_at,
                flow.clock.now(),
                started.elapsed(),
            );
            Ok(receipt)
        }
        Err(AppendError::Duplicate(_)) => {
            lifecycle::settle_from_ledger(flow, id).await;
            Err(ReviewError::AlreadyDecided)
        }
        Err(AppendError::Unavailable(reason)) => {
            flow.registry.abort_decision(id);
            Err(ReviewError::LedgerUnavailable(reason))
        }
    }
}
