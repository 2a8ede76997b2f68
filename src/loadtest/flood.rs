//! The flood scenario (DESIGN.md §9): thousands of concurrent failing
//! sign-ins from many loopback addresses against accounts hashed at the
//! production argon2 cost, while `/healthz` is polled and the server's memory
//! is sampled; then one real sign-in from an address that took no part.
//!
//! Bounded three ways: a fixed number of requests, a per-request timeout and
//! `--max-seconds` for the whole flood. A child server whose RSS passes
//! `--abort-rss-mb` is killed at once, so a server without a bound on its
//! argon2 memory cannot take the machine down with it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;

use super::percentile;
use super::server::{PASSWORD, Target, TargetArgs};
use crate::passwords::Cost;

/// How often `/healthz` is asked.
const HEALTHZ_EVERY: Duration = Duration::from_millis(20);
/// How long one `/healthz` may take before it counts as failed.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the server's RSS is read.
const RSS_EVERY: Duration = Duration::from_millis(50);
/// Accounts with a real (production cost) hash that the flood guesses at.
const KNOWN_ACCOUNTS: usize = 4;
/// The address of the real sign-in after the flood: outside 127.0.1.0/24.
const REAL_SIGN_IN_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);

/// DESIGN.md §9 targets for this scenario.
const TARGET_PEAK_RSS_MB: f64 = 200.0;
const TARGET_HEALTHZ_P99_MS: f64 = 100.0;

#[derive(Debug, Clone, clap::Args)]
pub struct FloodArgs {
    /// Failing sign-ins, all started at once.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Loopback source addresses, 127.0.1.1 to 127.0.1.N.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=254))]
    pub addresses: u16,
    /// Upper bound on the flood; requests still open then are cut and counted.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// Per-request timeout (capped by --max-seconds).
    #[arg(long, default_value_t = 30)]
    pub request_timeout_seconds: u64,
    /// Kill the child server when its RSS passes this (protects the machine).
    #[arg(long, default_value_t = 8000)]
    pub abort_rss_mb: u64,
    /// The child's auth.failed_logins_per_minute (the production default).
    #[arg(long, default_value_t = 5)]
    pub failed_logins_per_minute: u32,
    /// Extra settings for the child server, e.g.
    /// `--server-env PEERGATE__AUTH__PASSWORD_CHECK_QUEUE=64` (repeatable).
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, not {s:?}"))?;
    if !k.starts_with("PEERGATE__") {
        return Err(format!("{k} is not a PEERGATE__ setting"));
    }
    Ok((k.to_string(), v.to_string()))
}

#[derive(Debug, Serialize)]
pub struct FloodReport {
    pub scenario: &'static str,
    pub requests: usize,
    pub addresses: u16,
    /// Answers by HTTP status; `timeout`, `error` (transport) and `unfinished`
    /// (still open at --max-seconds, or cut by an abort) count too.
    pub by_status: BTreeMap<String, usize>,
    /// Everything in `by_status` other than 401, 429 and 503.
    pub unexpected: usize,
    pub healthz_samples: usize,
    pub healthz_failures: usize,
    pub healthz_p50_ms: f64,
    pub healthz_p99_ms: f64,
    pub healthz_max_ms: f64,
    pub rss_before_mb: f64,
    /// The larger of VmHWM at the end and the largest VmRSS sample.
    pub peak_rss_mb: f64,
    /// VmRSS a second after the real sign-in; 0 when the server was killed.
    pub final_rss_mb: f64,
    pub real_sign_in_ok: bool,
    pub real_sign_in_ms: f64,
    pub real_sign_in_answer: String,
    /// Why the flood was stopped early, if it was.
    pub aborted: Option<String>,
    /// How long the flood took, first request to last answer.
    pub seconds: f64,
}

impl FloodReport {
    pub fn peak_rss_met(&self) -> bool {
        self.peak_rss_mb > 0.0 && self.peak_rss_mb <= TARGET_PEAK_RSS_MB
    }
    pub fn healthz_met(&self) -> bool {
        self.healthz_failures == 0 && self.healthz_p99_ms <= TARGET_HEALTHZ_P99_MS
    }
    pub fn answers_met(&self) -> bool {
        self.unexpected == 0
    }
}

/// The `index`-th flood source address (0-based): 127.0.1.1 onwards.
fn source(index: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, index + 1))
}

/// One client per flood source address, `addresses` of them (1 to 254).
fn flood_clients(addresses: u16, timeout: Duration) -> anyhow::Result<Vec<reqwest::Client>> {
    let addresses = u8::try_from(addresses)
        .ok()
        .filter(|n| (1..=254).contains(n))
        .context("--addresses is 1 to 254")?;
    (0..addresses)
        .map(|i| client_from(source(i), timeout))
        .collect()
}

fn client_from(ip: IpAddr, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .timeout(timeout)
        .build()?)
}

/// A field of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What one flood request came to.
fn outcome_key(result: Result<reqwest::StatusCode, reqwest::Error>) -> String {
    match result {
        Ok(status) => status.as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "error".into(),
    }
}

pub async fn run(args: &FloodArgs) -> anyhow::Result<FloodReport> {
    let (target, known, real) = start_target(args).await?;
    let (base, origin, pid) = (target.base.clone(), target.origin.clone(), target.pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = pid.and_then(|p| proc_status_bytes(p, "VmRSS")).unwrap_or(0);

    let max = Duration::from_secs(args.max_seconds.max(1));
    let request_timeout = Duration::from_secs(args.request_timeout_seconds.max(1)).min(max);
    let clients = flood_clients(args.addresses, request_timeout)?;

    let monitors = Monitors::start(pid, rss_before, args.abort_rss_mb, &base)?;
    // Let the poller take a baseline before the flood starts.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let url = format!("{base}/api/v1/login");
    let started = Instant::now();
    let mut flood = launch_flood(args.requests, &clients, &known, &url, &origin);
    let (mut by_status, aborted) =
        collect_answers(&mut flood, max, args, &monitors.over_limit).await;
    let seconds = started.elapsed().as_secs_f64();
    let killed = aborted
        .as_deref()
        .is_some_and(|a| a.contains("--abort-rss-mb"));
    // The peak, read before a kill can take the process away.
    let hwm = pid.and_then(|p| proc_status_bytes(p, "VmHWM")).unwrap_or(0);
    let mut target = Some(target);
    if killed && let Some(t) = target.take() {
        t.stop().await;
    }
    let unfinished = flood.len();
    flood.abort_all();
    if unfinished > 0 {
        by_status.insert("unfinished".into(), unfinished);
    }
    let (healthz, peak_rss) = monitors.finish().await;

    let sign_in = match &target {
        Some(_) => real_sign_in(&url, &origin, &real, request_timeout).await?,
        None => SignIn::not_tried(),
    };
    let final_rss = match &target {
        Some(_) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            pid.and_then(|p| proc_status_bytes(p, "VmRSS")).unwrap_or(0)
        }
        None => 0,
    };
    if let Some(t) = target.take() {
        t.stop().await;
    }
    Ok(build_report(
        args,
        Measured {
            by_status,
            aborted,
            seconds,
            healthz,
            rss_before,
            peak_rss: hwm.max(peak_rss),
            final_rss,
            sign_in,
        },
    ))
}

/// Starts the child server (or takes the one at `--url`) and creates the
/// accounts: the known usernames the flood guesses at, and the exempt one for
/// the real sign-in afterwards.
async fn start_target(args: &FloodArgs) -> anyhow::Result<(Target, Vec<String>, String)> {
    let mut env = vec![(
        "PEERGATE__AUTH__FAILED_LOGINS_PER_MINUTE".to_string(),
        args.failed_logins_per_minute.to_string(),
    )];
    env.extend(args.server_env.iter().cloned());
    let target = Target::start_with_env(&args.target, &env).await?;

    // Real accounts: production argon2 cost, so a known username costs what
    // it costs in production. One exempt account for the sign-in afterwards,
    // which the flood never names.
    let known = target
        .add_users_with_cost("flood_user", KNOWN_ACCOUNTS, false, false, Cost::Strong)
        .await?;
    let real = target
        .add_users_with_cost("flood_ops", 1, false, true, Cost::Strong)
        .await?
        .remove(0);
    Ok((target, known, real))
}

/// The watchers that run beside the flood: the RSS sampler and the
/// `/healthz` poller, both stopped by one flag.
struct Monitors {
    stop: Arc<AtomicBool>,
    peak_rss: Arc<AtomicU64>,
    /// Notified once when the server's RSS passes `--abort-rss-mb`.
    over_limit: Arc<tokio::sync::Notify>,
    sampler: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<Healthz>,
}

/// What the `/healthz` poller saw: latencies in ms, and how many failed.
#[derive(Default)]
struct Healthz {
    samples: Vec<f64>,
    failures: usize,
}

impl Monitors {
    fn start(
        pid: Option<u32>,
        rss_before: u64,
        abort_rss_mb: u64,
        base: &str,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_rss = Arc::new(AtomicU64::new(rss_before));
        let over_limit = Arc::new(tokio::sync::Notify::new());
        let sampler = spawn_rss_sampler(
            pid,
            abort_rss_mb.saturating_mul(1024 * 1024),
            stop.clone(),
            peak_rss.clone(),
            over_limit.clone(),
        );
        let poller = spawn_healthz_poller(base, stop.clone())?;
        Ok(Self {
            stop,
            peak_rss,
            over_limit,
            sampler,
            poller,
        })
    }

    /// Stops both watchers; returns the `/healthz` samples and the largest
    /// RSS seen.
    async fn finish(self) -> (Healthz, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let healthz = self.poller.await.unwrap_or_default();
        let _ = self.sampler.await;
        (healthz, self.peak_rss.load(Ordering::Relaxed))
    }
}

/// Memory: VmRSS every [`RSS_EVERY`] into `peak`; past `limit` (bytes),
/// notifies `over` and stops.
fn spawn_rss_sampler(
    pid: Option<u32>,
    limit: u64,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    over: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(pid) = pid else { return };
        while !stop.load(Ordering::Relaxed) {
            if let Some(rss) = proc_status_bytes(pid, "VmRSS") {
                peak.fetch_max(rss, Ordering::Relaxed);
                if rss > limit {
                    over.notify_one();
                    return;
                }
            }
            tokio::time::sleep(RSS_EVERY).await;
        }
    })
}

/// Liveness: `/healthz` from 127.0.0.1 every [`HEALTHZ_EVERY`], one at a
/// time, until `stop`.
fn spawn_healthz_poller(
    base: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<Healthz>> {
    let client = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST), HEALTHZ_TIMEOUT)?;
    let url = format!("{base}/healthz");
    Ok(tokio::spawn(async move {
        let mut seen = Healthz::default();
        let mut tick = tokio::time::interval(HEALTHZ_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let started = Instant::now();
            let ok = match client.get(&url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            seen.samples.push(started.elapsed().as_secs_f64() * 1000.0);
            if !ok {
                seen.failures += 1;
            }
        }
        seen
    }))
}

/// The flood: every request started at once, spread over the addresses,
/// alternating a known username (wrong password) and an unknown one. Each
/// task comes to its [`outcome_key`].
fn launch_flood(
    requests: usize,
    clients: &[reqwest::Client],
    known: &[String],
    url: &str,
    origin: &str,
) -> JoinSet<String> {
    let mut flood = JoinSet::new();
    for i in 0..requests {
        let client = clients[i % clients.len()].clone();
        let username = if i % 2 == 0 {
            known[(i / 2) % known.len()].clone()
        } else {
            format!("nobody{i}")
        };
        let body = json!({"username": username, "password": format!("wrong-password-{i}")});
        let (url, origin) = (url.to_string(), origin.to_string());
        flood.spawn(async move {
            let result = async {
                let response = client
                    .post(&url)
                    .header("Origin", &origin)
                    .json(&body)
                    .send()
                    .await?;
                let status = response.status();
                response.bytes().await?;
                Ok(status)
            }
            .await;
            outcome_key(result)
        });
    }
    flood
}

/// Counts the flood's answers by outcome until every request has one, `max`
/// has passed, or the server's RSS passed the abort limit; returns the counts
/// and why the flood was stopped early, if it was. Requests still open are
/// left in `flood`.
async fn collect_answers(
    flood: &mut JoinSet<String>,
    max: Duration,
    args: &FloodArgs,
    over_limit: &tokio::sync::Notify,
) -> (BTreeMap<String, usize>, Option<String>) {
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut aborted = None;
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = flood.join_next() => match next {
                Some(Ok(key)) => *by_status.entry(key).or_default() += 1,
                Some(Err(_)) => *by_status.entry("error".into()).or_default() += 1,
                None => break,
            },
            () = &mut deadline => {
                aborted = Some(format!("--max-seconds {} reached", args.max_seconds));
                break;
            }
            () = over_limit.notified() => {
                aborted = Some(format!(
                    "server RSS passed --abort-rss-mb {}; flood stopped, a child server killed",
                    args.abort_rss_mb
                ));
                break;
            }
        }
    }
    (by_status, aborted)
}

/// The real sign-in after the flood.
struct SignIn {
    ok: bool,
    ms: f64,
    answer: String,
}

impl SignIn {
    fn not_tried() -> Self {
        Self {
            ok: false,
            ms: 0.0,
            answer: "not tried: the flood was stopped for memory".into(),
        }
    }
}

/// One real sign-in, right after, from an address that took no part.
async fn real_sign_in(
    url: &str,
    origin: &str,
    username: &str,
    timeout: Duration,
) -> anyhow::Result<SignIn> {
    let client = client_from(IpAddr::V4(REAL_SIGN_IN_FROM), timeout)?;
    let at = Instant::now();
    let answer = async {
        let response = client
            .post(url)
            .header("Origin", origin)
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::Ok((status, body))
    }
    .await;
    let ms = at.elapsed().as_secs_f64() * 1000.0;
    Ok(match answer {
        Ok((status, body)) => SignIn {
            ok: status.is_success() && body["state"] == "authenticated",
            ms,
            answer: format!("{} {}", status.as_u16(), body),
        },
        Err(e) => SignIn {
            ok: false,
            ms,
            answer: format!("{e:#}"),
        },
    })
}

/// Everything measured in one run, before it is summed up.
struct Measured {
    by_status: BTreeMap<String, usize>,
    aborted: Option<String>,
    seconds: f64,
    healthz: Healthz,
    rss_before: u64,
    peak_rss: u64,
    final_rss: u64,
    sign_in: SignIn,
}

fn build_report(args: &FloodArgs, m: Measured) -> FloodReport {
    let mut sorted = m.healthz.samples;
    sorted.sort_by(f64::total_cmp);
    let unexpected = m
        .by_status
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "401" | "429" | "503"))
        .map(|(_, n)| n)
        .sum();
    FloodReport {
        scenario: "flood",
        requests: args.requests,
        addresses: args.addresses,
        by_status: m.by_status,
        unexpected,
        healthz_samples: sorted.len(),
        healthz_failures: m.healthz.failures,
        healthz_p50_ms: percentile(&sorted, 50.0),
        healthz_p99_ms: percentile(&sorted, 99.0),
        healthz_max_ms: sorted.last().copied().unwrap_or(0.0),
        rss_before_mb: mb(m.rss_before),
        peak_rss_mb: mb(m.peak_rss),
        final_rss_mb: mb(m.final_rss),
        real_sign_in_ok: m.sign_in.ok,
        real_sign_in_ms: m.sign_in.ms,
        real_sign_in_answer: m.sign_in.answer,
        aborted: m.aborted,
        seconds: m.seconds,
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

pub fn rows(r: &FloodReport) -> Vec<(&'static str, String)> {
    let statuses = r
        .by_status
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows = vec![
        ("scenario", r.scenario.to_string()),
        (
            "requests",
            format!("{} from {} addresses", r.requests, r.addresses),
        ),
        ("answers", statuses),
        ("unexpected", r.unexpected.to_string()),
        ("flood took", format!("{:.2} s", r.seconds)),
        (
            "aborted",
            r.aborted.clone().unwrap_or_else(|| "no".to_string()),
        ),
        ("/healthz", healthz_summary(r)),
        ("server RSS", rss_summary(r)),
        (
            "real sign-in after",
            format!(
                "{} in {:.1} ms ({})",
                if r.real_sign_in_ok { "ok" } else { "FAILED" },
                r.real_sign_in_ms,
                r.real_sign_in_answer
            ),
        ),
    ];
    rows.extend(target_rows(r));
    rows
}

fn healthz_summary(r: &FloodReport) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples, {} failed)",
        r.healthz_p50_ms, r.healthz_p99_ms, r.healthz_max_ms, r.healthz_samples, r.healthz_failures
    )
}

fn rss_summary(r: &FloodReport) -> String {
    if r.final_rss_mb > 0.0 {
        format!(
            "before {:.1} MB, peak {:.1} MB, final {:.1} MB",
            r.rss_before_mb, r.peak_rss_mb, r.final_rss_mb
        )
    } else {
        format!(
            "before {:.1} MB, peak {:.1} MB, final not measured",
            r.rss_before_mb, r.peak_rss_mb
        )
    }
}

/// Whether each DESIGN.md §9 target is met.
fn target_rows(r: &FloodReport) -> [(&'static str, String); 4] {
    [
        (
            "target: peak RSS <= 200 MB",
            met(r.peak_rss_met()).to_string(),
        ),
        (
            "target: /healthz p99 <= 100 ms",
            met(r.healthz_met()).to_string(),
        ),
        ("target: only 401/429/503", met(r.answers_met()).to_string()),
        (
            "target: real sign-in succeeds",
            met(r.real_sign_in_ok).to_string(),
        ),
    ]
}
