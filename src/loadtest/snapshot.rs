//! `loadtest snapshot`: build a ledger of N entries, then time a snapshot of
//! it (what a download costs after the head moved) and `ledger verify` of the
//! snapshot (what an auditor's check costs).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::clock::SystemClock;
use crate::ledger::build::{append_entries, sample_entry};
use crate::ledger::{Ledger, Verdict, verify_file};

#[derive(Debug, Serialize)]
pub struct SnapshotReport {
    pub scenario: &'static str,
    pub entries: usize,
    pub snapshot_s: f64,
    pub verify_s: f64,
    /// Not part of DESIGN.md's keys; useful context.
    pub build_s: f64,
    pub bytes: u64,
}

pub async fn run(entries: usize) -> anyhow::Result<SnapshotReport> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    append_entries(
        &dir.path().join(crate::ledger::FILE_NAME),
        entries,
        sample_entry,
    )
    .await?;
    let build_s = started.elapsed().as_secs_f64();

    let (ledger, tasks) = Ledger::open(dir.path(), Arc::new(SystemClock)).await?;
    let started = Instant::now();
    let snapshot = ledger.snapshots.current().await?;
    let snapshot_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let verdict = verify_file(&snapshot.path, Some(snapshot.head)).await;
    let verify_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        matches!(verdict, Verdict::Valid { entries: n, .. } if usize::try_from(n).ok() == Some(entries)),
        "the snapshot did not verify: {verdict:?}"
    );
    tasks.writer.abort();
    tasks.checkpointer.abort();
    Ok(SnapshotReport {
        scenario: "snapshot",
        entries,
        snapshot_s: round3(snapshot_s),
        verify_s: round3(verify_s),
        build_s: round3(build_s),
        bytes: snapshot.bytes,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn rows(r: &SnapshotReport) -> Vec<(&'static str, String)> {
    vec![
        ("scenario", r.scenario.to_string()),
        ("entries", r.entries.to_string()),
        ("ledger size", format!("{} bytes", r.bytes)),
        (
            "build (not timed against a target)",
            format!("{:.3} s", r.build_s),
        ),
        ("snapshot", format!("{:.3} s", r.snapshot_s)),
        ("ledger verify", format!("{:.3} s", r.verify_s)),
    ]
}
