//! Rebuilding the registry from `app.sqlite` at start-up, and the settling
//! sweep that mirrors any ledger outcome `app.sqlite` has not caught up with.

use super::alarm::{self, Recorded};
use super::{Flow, lifecycle};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::domain::{Client, Level, Outcome, PendingCode, Requester};
use crate::ledger::read::StoredEntry;
use crate::registry::PendingSession;
use crate::store::flows;
use crate::store::pending::{self, PendingRow, PendingStatus};

/// Rebuilds the registry at start-up. Sessions the ledger has already settled
/// are settled from it; every waiting session gets a fresh code, since codes
/// are never stored.
pub async fn restore(flow: &Flow) -> anyhow::Result<()> {
    let open = pending::list_open(&flow.db).await?;
    let now = flow.clock.now();
    let (mut restored, mut settled) = (0, 0);
    for row in open {
        let entry = recorded_entry(flow, &row.id).await?;
        match (entry.as_ref().map(|(_, o)| *o), row.status) {
            (Some(Outcome::Approved), PendingStatus::Approved) => {}
            (Some(outcome), _) => {
                if let Some((entry, _)) = &entry {
                    follow_up(flow, entry, &row).await;
                }
                flows::mirror_outcome(&flow.db, &row.id, outcome, &rfc3339(now)).await?;
                settled += 1;
            }
            (None, status) => {
                if status == PendingStatus::Approved {
                    // Approved here but not in the ledger: the ledger is the
                    // truth, so the session waits again (fail closed).
                    tracing::warn!(session_id = %row.id, "approval missing from the ledger; the session is pending again");
                    flows::reopen(&flow.db, &row.id, &rfc3339(now)).await?;
                }
                flow.registry.insert(restored_session(&row)?, now);
                restored += 1;
            }
        }
    }
    tracing::info!(restored, settled, "pending sessions restored");
    Ok(())
}

/// Mirrors every outcome the ledger holds for a session that `app.sqlite` (or
/// the registry) still shows as waiting. Runs on the ticker; normally it finds
/// nothing. Applying an outcome twice is harmless (the registry removes a
/// session once; `app.sqlite` moves only from `pending`), so a decision in
/// flight right now needs no exception.
pub async fn settle_sweep(flow: &Flow) -> anyhow::Result<usize> {
    let mut settled = 0;
    for row in pending::list_open(&flow.db).await? {
        if row.status != PendingStatus::Pending {
            continue;
        }
        if let Some((entry, outcome)) = recorded_entry(flow, &row.id).await? {
            if flow.registry.get(&row.id).is_some_and(|s| s.deciding) {
                // Most likely a decision finishing right now (it mirrors
                // itself a moment later); applying it twice is harmless.
                tracing::debug!(session_id = %row.id, outcome = %outcome, "settling an outcome being mirrored");
            } else {
                tracing::warn!(session_id = %row.id, outcome = %outcome, "settling an outcome that was not mirrored");
            }
            follow_up(flow, &entry, &row).await;
            lifecycle::apply_outcome(flow, &row.id, outcome).await;
            settled += 1;
        }
    }
    Ok(settled)
}

/// The ledger's entry for a session and its outcome, if it has one.
async fn recorded_entry(flow: &Flow, id: &str) -> anyhow::Result<Option<(StoredEntry, Outcome)>> {
    let Some(entry) = crate::ledger::read::entry_of(&flow.ledger.reader, id).await? else {
        return Ok(None);
    };
    let outcome = entry
        .fields
        .outcome
        .parse::<Outcome>()
        .map_err(anyhow::Error::msg)?;
    Ok(Some((entry, outcome)))
}

/// The alarm and webhook event of an outcome whose writer may have stopped
/// before writing them (written once, however often this runs).
async fn follow_up(flow: &Flow, entry: &StoredEntry, row: &PendingRow) {
    if let Some(recorded) = Recorded::from_ledger(entry, requester_of(row), &flow.ages()) {
        alarm::follow_up(flow, &recorded).await;
    }
}

fn requester_of(row: &PendingRow) -> Requester {
    Requester {
        id: row.user.id.clone(),
        username: row.user.username.clone(),
        display_name: row.user.display_name.clone(),
    }
}

fn restored_session(row: &PendingRow) -> anyhow::Result<PendingSession> {
    Ok(PendingSession {
        id: row.id.clone(),
        requester: requester_of(row),
        client: Client {
            ip: row.client_ip.clone(),
            user_agent: row.user_agent.clone(),
        },
        created_at: parse_rfc3339(&row.created_at)?,
        expires_at: parse_rfc3339(&row.expires_at)?,
        code: PendingCode::generate(),
        code_rotations: row.code_rotations,
        level: Level::New,
        claimed_by: None,
        deciding: false,
    })
}
