//! `loadtest ledger`: durable appends per second with group commit, against
//! one transaction per entry, in the same run, through the same writer code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::{percentile, synthetic_draft};
use crate::clock::SystemClock;
use crate::ledger::{Ledger, WriterOptions};
use crate::transparency::{LogKey, SecretKey, Transparency};

/// Appenders running at once; each waits for its reply before the next append,
/// like request handlers do.
pub const CONCURRENCY: usize = 128;

/// The one-transaction-per-entry run is capped: at `synchronous=FULL` each
/// entry costs an fsync, and the rate is what is compared.
pub const SINGLE_TXN_MAX_ENTRIES: usize = 2_000;

/// No run takes longer than this; a slower machine reports what it managed.
const TIME_LIMIT: Duration = Duration::from_mins(2);

#[derive(Debug, Serialize)]
pub struct LedgerReport {
    pub scenario: &'static str,
    pub entries: usize,
    pub group_commit_per_sec: f64,
    pub single_txn_per_sec: f64,
    pub ratio: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// The transparency log's signer ran as the service runs it.
    pub checkpoint_interval_ms: u128,
    /// Checkpoints signed during the group-commit run.
    pub checkpoints: usize,
}

struct Run {
    appended: usize,
    elapsed: Duration,
    /// Enqueue-to-ack times, sorted, in milliseconds.
    acks_ms: Vec<f64>,
    checkpoints: usize,
}

/// Starts the checkpoint signer on `ledger` (a key in memory) and a counter
/// of the checkpoints it signs.
fn start_checkpointing(
    ledger: &Ledger,
    interval: Duration,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<usize>)> {
    let key = LogKey::new("loadtest.peergate.test/ledger", &SecretKey::generate())?;
    let log = Transparency::new(key, ledger.tree.clone(), ledger.writer.head(), 0)?;
    let signer = log.spawn_signer(ledger.writer.watch_head(), interval);
    let mut latest = log.subscribe();
    let counter = tokio::spawn(async move {
        let mut count = 0;
        while latest.changed().await.is_ok() {
            count += 1;
        }
        count
    });
    Ok((signer, counter))
}

async fn run_appends(
    options: WriterOptions,
    entries: usize,
    checkpoint_interval: Duration,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir().context("creating a temporary ledger dir")?;
    let (ledger, tasks) = Ledger::open_with(dir.path(), Arc::new(SystemClock), options).await?;
    let (signer, counter) = start_checkpointing(&ledger, checkpoint_interval)?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + TIME_LIMIT;
    let started = Instant::now();
    let mut workers = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY.min(entries.max(1)) {
        let writer = ledger.writer.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= entries || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                writer.append(synthetic_draft(n)).await?;
                acks.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(acks)
        }));
    }
    let mut acks_ms = Vec::with_capacity(entries);
    for worker in workers {
        acks_ms.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    acks_ms.sort_by(f64::total_cmp);
    let head = ledger.writer.head();
    anyhow::ensure!(
        usize::try_from(head.seq).ok() == Some(acks_ms.len()),
        "the ledger holds {} entries but {} appends were acknowledged",
        head.seq,
        acks_ms.len()
    );
    drop(ledger);
    tasks.writer.abort();
    tasks.checkpointer.abort();
    // The signer ends with the writer; the counter with the signer.
    let _ = signer.await;
    let checkpoints = counter.await.unwrap_or(0);
    Ok(Run {
        appended: acks_ms.len(),
        elapsed,
        acks_ms,
        checkpoints,
    })
}

/// Runs both measurements; group commit first. Both with the transparency
/// log's checkpoint signer running every `checkpoint_interval`.
pub async fn run(entries: usize, checkpoint_interval: Duration) -> anyhow::Result<LedgerReport> {
    let group = run_appends(WriterOptions::default(), entries, checkpoint_interval).await?;
    let single = run_appends(
        WriterOptions {
            max_batch: 1,
            ..WriterOptions::default()
        },
        entries.min(SINGLE_TXN_MAX_ENTRIES),
        checkpoint_interval,
    )
    .await?;
    let rate = |r: &Run| r.appended as f64 / r.elapsed.as_secs_f64().max(1e-9);
    let (group_rate, single_rate) = (rate(&group), rate(&single));
    Ok(LedgerReport {
        scenario: "ledger",
        entries: group.appended,
        group_commit_per_sec: group_rate.round(),
        single_txn_per_sec: single_rate.round(),
        ratio: (group_rate / single_rate.max(1e-9) * 10.0).round() / 10.0,
        ack_p50_ms: round3(percentile(&group.acks_ms, 50.0)),
        ack_p99_ms: round3(percentile(&group.acks_ms, 99.0)),
        checkpoint_interval_ms: checkpoint_interval.as_millis(),
        checkpoints: group.checkpoints,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The human-readable rows of a report.
pub fn rows(r: &LedgerReport) -> Vec<(&'static str, String)> {
    vec![
        ("scenario", r.scenario.to_string()),
        ("entries (group commit)", r.entries.to_string()),
        (
            "group commit appends/s",
            format!("{:.0}", r.group_commit_per_sec),
        ),
        (
            "one txn per entry appends/s",
            format!("{:.0}", r.single_txn_per_sec),
        ),
        ("ratio", format!("{:.1}x", r.ratio)),
        ("enqueue-to-ack p50", format!("{:.3} ms", r.ack_p50_ms)),
        ("enqueue-to-ack p99", format!("{:.3} ms", r.ack_p99_ms)),
        (
            "checkpoints signed (group commit run)",
            format!(
                "{} (every {} ms at most)",
                r.checkpoints, r.checkpoint_interval_ms
            ),
        ),
    ]
}
