//! `loadtest tlog`: the transparency log at scale. Builds a ledger of N
//! entries, times the Merkle tree's rebuild on its own (what this log adds to
//! start-up) and a real `peergate serve` child's whole start-up on that
//! ledger, reads the child's memory, then fetches full hash tiles and entry
//! bundles from it with concurrent clients.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tlog_tiles::Tile;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::percentile;
use crate::ledger::build::{append_entries, sample_entry};
use crate::ledger::tree::{TILE_HEIGHT, TILE_WIDTH};

/// No phase of the run takes longer than this.
const TIME_LIMIT: Duration = Duration::from_mins(2);

#[derive(Debug, Clone, clap::Args)]
pub struct TlogArgs {
    /// Entries in the ledger to build.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// Tile and bundle requests, half each.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Clients fetching at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct TlogReport {
    pub scenario: &'static str,
    pub entries: usize,
    /// Building the ledger file (not a target; context).
    pub build_s: f64,
    /// Rebuilding the Merkle tree from the file, alone: what start-up gained.
    pub tree_rebuild_s: f64,
    /// `peergate serve` started until it printed its listening line.
    pub startup_s: f64,
    /// The server's resident memory once listening.
    pub rss_mb: f64,
    pub requests: usize,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn run(args: &TlogArgs) -> anyhow::Result<TlogReport> {
    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let ledger = dir.path().join(crate::ledger::FILE_NAME);
    let started = Instant::now();
    append_entries(&ledger, args.entries, sample_entry).await?;
    let build_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let tree = crate::ledger::tree::load(&ledger).await?;
    let tree_rebuild_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(usize::try_from(tree.size()).ok() == Some(args.entries));
    drop(tree);

    let started = Instant::now();
    let (mut child, base) = start_server(dir.path()).await?;
    let startup_s = started.elapsed().as_secs_f64();
    let rss_mb = child.id().and_then(rss_bytes).unwrap_or(0) as f64 / 1e6;
    let fetched = fetch_tiles(&base, args).await;
    let _ = child.kill().await;
    let (elapsed, mut latencies) = fetched?;
    latencies.sort_by(f64::total_cmp);
    Ok(TlogReport {
        scenario: "tlog",
        entries: args.entries,
        build_s: round3(build_s),
        tree_rebuild_s: round3(tree_rebuild_s),
        startup_s: round3(startup_s),
        rss_mb: round3(rss_mb),
        requests: latencies.len(),
        requests_per_sec: (latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9)).round(),
        p50_ms: round3(percentile(&latencies, 50.0)),
        p99_ms: round3(percentile(&latencies, 99.0)),
    })
}

/// `peergate serve` on `data_dir`, with the log public; returns its base URL.
async fn start_server(
    data_dir: &std::path::Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let exe = std::env::current_exe().context("finding the peergate binary")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .env("PEERGATE__SERVER__BIND", "127.0.0.1:0")
        .env("PEERGATE__SERVER__PUBLIC_URL", super::server::ORIGIN)
        .env("PEERGATE__STORAGE__DATA_DIR", data_dir)
        .env("PEERGATE__TRANSPARENCY__PUBLIC", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting peergate serve")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let base = tokio::time::timeout(TIME_LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("peergate listening on ") {
                return Some(url.trim().to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .context("the server did not start")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, base))
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The URL path of full tile `n`: a hash tile at level 0, or an entry bundle.
fn tile_path(n: u64, bundle: bool) -> String {
    let path = Tile::new(TILE_HEIGHT, 0, n, 1 << TILE_HEIGHT, bundle).path();
    path.replacen("tile/8/data/", "/ledger/tile/entries/", 1)
        .replacen("tile/8/", "/ledger/tile/", 1)
}

/// Fetches `requests` full tiles (alternating hash tiles and entry bundles,
/// spread over the log) with `concurrency` clients; returns the elapsed time
/// and each request's latency in milliseconds.
async fn fetch_tiles(base: &str, args: &TlogArgs) -> anyhow::Result<(Duration, Vec<f64>)> {
    let full_tiles = args.entries as u64 / TILE_WIDTH;
    if full_tiles == 0 {
        bail!("--entries must be at least {TILE_WIDTH} for a full tile");
    }
    let http = super::server::http()?;
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + TIME_LIMIT;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (http, next, base, requests) =
            (http.clone(), next.clone(), base.to_string(), args.requests);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || Instant::now() > deadline {
                    return anyhow::Ok(latencies);
                }
                // Spread over the log: a multiplicative step, coprime in practice.
                let n = (i as u64).wrapping_mul(2_654_435_761) % full_tiles;
                let bundle = i % 2 == 1;
                let t = Instant::now();
                let body = http
                    .get(format!("{base}{}", tile_path(n, bundle)))
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                let want = if bundle { 256 * 34 } else { 256 * 32 };
                anyhow::ensure!(body.len() == want, "tile {n} has {} bytes", body.len());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(args.requests);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok((started.elapsed(), latencies))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn rows(r: &TlogReport) -> Vec<(&'static str, String)> {
    vec![
        ("scenario", r.scenario.to_string()),
        ("entries", r.entries.to_string()),
        (
            "build (not timed against a target)",
            format!("{:.3} s", r.build_s),
        ),
        (
            "Merkle tree rebuild alone",
            format!("{:.3} s", r.tree_rebuild_s),
        ),
        (
            "serve start-up to listening",
            format!("{:.3} s", r.startup_s),
        ),
        ("server RSS when listening", format!("{:.1} MB", r.rss_mb)),
        ("tile + bundle requests", r.requests.to_string()),
        ("requests/s", format!("{:.0}", r.requests_per_sec)),
        ("latency p50", format!("{:.3} ms", r.p50_ms)),
        ("latency p99", format!("{:.3} ms", r.p99_ms)),
    ]
}
