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

/// A pending session ended without a reviewer (expired, withdrawn).
pub fn closed(outcome: crate::domain::Outcome) {
    metrics::counter!("peergate_decisions_total", "outcome" => outcome.as_str()).increment(1);
}

/// The Prometheus recorder, installed once per process (tests run several
/// services in one process; they share it).
pub fn prometheus() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("peergate_time_to_decision_seconds".into()),
                    &[30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_seconds".into()),
                        &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("peergate_ledger_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                });
            match builder.and_then(metrics_exporter_prometheus::PrometheusBuilder::install_recorder) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// A webhook delivery the receiver took (2xx).
pub fn webhook_delivered(endpoint: &str) {
    metrics::counter!("peergate_webhook_deliveries_total", "endpoint" => endpoint.to_string())
        .increment(1);
}

/// A webhook attempt that failed; `gave_up` when it was the last one.
pub fn webhook_failed(endpoint: &str, gave_up: bool) {
    metrics::counter!("peergate_webhook_failed_attempts_total", "endpoint" => endpoint.to_string())
        .increment(1);
    if gave_up {
        metrics::counter!("peergate_webhook_failures_total", "endpoint" => endpoint.to_string())
            .increment(1);
    }
}

/// Undelivered webhook events given up because the endpoint's queue was full.
pub fn webhook_dropped(endpoint: &str, events: u64) {
    metrics::counter!("peergate_webhook_failures_total", "endpoint" => endpoint.to_string())
        .increment(events);
}

/// An event that could not be written to the outbox at all.
pub fn webhook_not_recorded() {
    metrics::counter!("peergate_webhook_outbox_errors_total").increment(1);
}

/// Undelivered events per endpoint, read at scrape time from the outbox.
pub fn set_webhook_queue(endpoint: &str, depth: i64) {
    metrics::gauge!("peergate_webhook_queue_depth", "endpoint" => endpoint.to_string())
        .set(depth as f64);
}

/// Gauges read at scrape time from their source of truth.
pub fn set_pending(pending: usize, reviewers_online: usize) {
    metrics::gauge!("peergate_pending_sessions").set(pending as f64);
    metrics::gauge!("peergate_reviewers_online").set(reviewers_online as f64);
}
