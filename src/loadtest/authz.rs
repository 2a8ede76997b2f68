//! `loadtest auth-request`: forward auth's answers per second with a valid
//! session cookie, and their latency, at N concurrent clients (DESIGN.md §10;
//! the proxy asks on every request of every protected app).
//!
//! Each client holds one keep-alive HTTP/1.1 connection and asks the next
//! question as soon as the answer is in, as nginx's upstream keep-alive
//! would. The client speaks HTTP by hand over a `TcpStream`: a full HTTP
//! client costs more CPU per request than the server's answer, and on two
//! cores it would measure itself.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::percentile;
use super::server::{Target, TargetArgs, http};

/// The host the questions are about; the child server allows it.
const APP_HOST: &str = "app.loadtest";

/// Answers before this much time has passed are not counted (connections
/// open, the session is read into the cache).
const WARM_UP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, clap::Args)]
pub struct AuthRequestArgs {
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long to measure, after a one-second warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct AuthRequestReport {
    pub scenario: &'static str,
    pub clients: usize,
    pub seconds: f64,
    /// Answers `200` with `Remote-User`, counted after the warm-up.
    pub answers: usize,
    pub answers_per_sec: f64,
    /// Anything but `200` (there should be none).
    pub refused: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// `peergate loadtest auth-request`: runs, prints, and exits.
pub async fn main(args: &AuthRequestArgs) -> anyhow::Result<ExitCode> {
    let report = run(args).await?;
    super::print_report(&rows(&report), &report, args.json);
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: &AuthRequestArgs) -> anyhow::Result<AuthRequestReport> {
    if args.clients == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--clients and --seconds must be more than zero");
    }
    let env = [
        ("PEERGATE__FORWARD_AUTH__ENABLED", "true"),
        (
            "PEERGATE__FORWARD_AUTH__ALLOWED_HOSTS",
            "[\"app.loadtest\"]",
        ),
        ("PEERGATE__SERVER__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let target = Target::start_with_env(&args.target, &env).await?;
    let outcome = measure(&target, args).await;
    target.stop().await;
    outcome
}

async fn measure(target: &Target, args: &AuthRequestArgs) -> anyhow::Result<AuthRequestReport> {
    let users = target.add_users("fwd", 1, false, true).await?;
    let cookie = target.sign_in(&http()?, &users[0]).await?;
    let addr = target
        .base
        .strip_prefix("http://")
        .context("the target is not an http:// URL")?
        .to_string();
    let request = format!(
        "GET /api/v1/authz/auth-request HTTP/1.1\r\nHost: {addr}\r\n\
         X-Original-URL: http://{APP_HOST}/dashboards/7?from=now-6h\r\n\
         X-Original-Method: GET\r\nX-Forwarded-For: 203.0.113.9\r\n\
         Cookie: {cookie}\r\n\r\n"
    );
    let started = Instant::now();
    let measure_from = started + WARM_UP;
    let until = measure_from + Duration::from_secs_f64(args.seconds);
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (addr, request) = (addr.clone(), request.clone());
        clients.push(tokio::spawn(async move {
            client(&addr, request.as_bytes(), measure_from, until).await
        }));
    }
    let mut latencies_ms = Vec::new();
    let mut refused = 0;
    for handle in clients {
        let tally = handle.await.context("a client task failed")??;
        latencies_ms.extend(tally.latencies_ms);
        refused += tally.refused;
    }
    latencies_ms.sort_by(f64::total_cmp);
    let answers = latencies_ms.len();
    Ok(AuthRequestReport {
        scenario: "auth-request",
        clients: args.clients,
        seconds: args.seconds,
        answers,
        answers_per_sec: answers as f64 / args.seconds,
        refused,
        p50_ms: percentile(&latencies_ms, 50.0),
        p99_ms: percentile(&latencies_ms, 99.0),
        max_ms: latencies_ms.last().copied().unwrap_or(0.0),
    })
}

/// What one client saw after the warm-up.
struct Tally {
    latencies_ms: Vec<f64>,
    refused: usize,
}

/// Asks, reads the answer, asks again, until `until`.
async fn client(
    addr: &str,
    request: &[u8],
    measure_from: Instant,
    until: Instant,
) -> anyhow::Result<Tally> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut tally = Tally {
        latencies_ms: Vec::new(),
        refused: 0,
    };
    loop {
        let asked = Instant::now();
        if asked >= until {
            return Ok(tally);
        }
        stream.write_all(request).await?;
        let status = read_response(&mut stream, &mut buf).await?;
        if asked < measure_from {
            continue;
        }
        if status == 200 {
            tally
                .latencies_ms
                .push(asked.elapsed().as_secs_f64() * 1000.0);
        } else {
            tally.refused += 1;
        }
    }
}

/// Reads one response (head and `Content-Length` body); returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("a response head")?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .context("a status line")?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            if buf.len() >= total {
                buf.drain(..total);
                return Ok(status);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn rows(r: &AuthRequestReport) -> Vec<(&'static str, String)> {
    vec![
        ("scenario", r.scenario.to_string()),
        ("clients", r.clients.to_string()),
        ("measured for", format!("{:.1} s", r.seconds)),
        ("answers (200)", r.answers.to_string()),
        ("answers per second", format!("{:.0}", r.answers_per_sec)),
        ("refused (not 200)", r.refused.to_string()),
        ("p50", format!("{:.3} ms", r.p50_ms)),
        ("p99", format!("{:.3} ms", r.p99_ms)),
        ("max", format!("{:.3} ms", r.max_ms)),
    ]
}
