//! The ageing ticker: promotes sessions `new → aging → overdue`, expires them
//! at their TTL, and now and then runs the settling sweep.

use std::time::Duration;

use super::{Flow, alarm, lifecycle, restore};
use crate::alerts::EventKind;
use crate::domain::{Level, Outcome};
use crate::registry::Summary;

/// How often the ticker looks at the registry.
pub const TICK: Duration = Duration::from_millis(250);

/// The settling sweep runs every this many ticks (about every 5 s).
const SWEEP_EVERY_TICKS: u32 = 20;

/// Runs until its owner (startup) stops it.
pub async fn run_ticker(flow: Flow) {
    let ages = flow.ages();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks = 0u32;
    loop {
        interval.tick().await;
        let ticked = flow.registry.tick(flow.clock.now(), &ages);
        announce_levels(&flow, &ticked.promoted).await;
        // Expire concurrently so the appends share group commits.
        let mut closing = tokio::task::JoinSet::new();
        for id in ticked.expired {
            let flow = flow.clone();
            closing.spawn(async move {
                if let Err(e) = lifecycle::close(&flow, &id, Outcome::Expired).await {
                    tracing::warn!(session_id = %id, error = %e, "expiry not recorded yet; retrying on the next tick");
                }
            });
        }
        while closing.join_next().await.is_some() {}
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(SWEEP_EVERY_TICKS)
            && let Err(e) = restore::settle_sweep(&flow).await
        {
            tracing::warn!(
                error = format!("{e:#}"),
                "the settling sweep failed; retrying later"
            );
        }
    }
}

/// The webhook events of sessions that changed level: `review.overdue`, and
/// `review.unattended` for one that turned `aging` while no reviewer had the
/// inbox open.
async fn announce_levels(flow: &Flow, promoted: &[Summary]) {
    for s in promoted {
        let kind = match s.level {
            Level::Aging if flow.registry.reviewers_online() == 0 => EventKind::Unattended,
            Level::Overdue => EventKind::Overdue,
            _ => continue,
        };
        alarm::waiting(flow, kind, &s.session_id, &s.requester, s.level).await;
    }
}
