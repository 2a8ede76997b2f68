//! Rebuilding the registry from `app.sqlite` at start-up, and the settling
//! sweep that mirrors any ledger outcome `app.sqlite` has not caught up with.

use super::{Flow, lifecycle};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::domain::{Client, Level, Outcome, PendingCode, Requester};
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
        let recorded = crate::ledger::read::outcome_of(&flow.ledger.reader, &row.id).await?;
        match (recorded, row.status) {
            (Some(Outcome::Approved), PendingStatus::Approved) => {}
            (Some(outcome), _) => {
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
        if let Some(outcome) = crate::ledger::read::outcome_of(&flow.ledger.reader, &row.id).await?
        {
            tracing::warn!(session_id = %row.id, outcome = %outcome, "settling an outcome that was not mirrored");
            lifecycle::apply_outcome(flow, &row.id, outcome).await;
            settled += 1;
        }
    }
    Ok(settled)
}

fn restored_session(row: &PendingRow) -> anyhow::Result<PendingSession> {
    Ok(PendingSession {
        id: row.id.clone(),
        requester: Requester {
            id: row.user.id.clone(),
            username: row.user.username.clone(),
            display_name: row.user.display_name.clone(),
        },
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
