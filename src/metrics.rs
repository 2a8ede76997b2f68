//! The metrics peergate records, named in one place. They go through the
//! `metrics` facade; `/metrics` renders them when the Prometheus recorder is
//! installed, and they cost next to nothing when it is not.

use std::time::Duration;

/// A ledger batch committed with `entries` entries, taking `took`.
pub fn ledger_batch(entries: usize, took: Duration) {
    metrics::counter!("peergate_ledger_appends_total").increment(entries as u64);
    metrics::histogram!("peergate_ledger_batch_size").record(entries as f64);
    metrics::histogram!("peergate_ledger_commit_seconds").record(took.as_secs_f64());
}

/// One append acknowledged, `waited` after it was enqueued.
pub fn ledger_ack(waited: Duration) {
    metrics::histogram!("peergate_ledger_ack_seconds").record(waited.as_secs_f64());
}

/// A reviewer's decision recorded: by outcome, time from sign-in to decision,
/// and how long the request took to record it.
pub fn decision(
    outcome: crate::domain::Outcome,
    created_at: chrono::DateTime<chrono::Utc>,
    decided_at: chrono::DateTime<chrono::Utc>,
    took: Duration,
) {
    metrics::counter!("peergate_decisions_total", "outcome" => outcome.as_str()).increment(1);
    let waited = (decided_at - created_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("peergate_time_to_decision_seconds").record(waited);
    metrics::histogram!("peergate_decision_record_seconds").record(took.as_secs_f64());
}

/// A socket of `kind` (`inbox`, `pending`) opened.
pub fn socket_opened(kind: &'static str) {
    metrics::gauge!("peergate_sockets", "kind" => kind).increment(1.0);
}

/// A socket of `kind` closed.
pub fn socket_closed(kind: &'static str) {
    metrics::gauge!("peergate_sockets", "kind" => kind).decrement(1.0);
}
