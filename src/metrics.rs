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
