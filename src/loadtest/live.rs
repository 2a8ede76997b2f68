//! The live scenarios: sockets held, broadcast latency to every reviewer, and
//! decision-to-requester latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::percentile;
use super::server::{Socket, Target, TargetArgs, http};

/// Reviewer sockets per signed-in reviewer session.
const SOCKETS_PER_SESSION: usize = 8;
/// Sockets opened at once while connecting.
const CONNECT_CONCURRENCY: usize = 64;
/// How long one measurement may wait for its event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct SocketsReport {
    pub scenario: &'static str,
    pub reviewers: usize,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub bytes_per_socket: u64,
}

#[derive(Debug, Serialize)]
pub struct LatencyReport {
    pub scenario: &'static str,
    pub reviewers: usize,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Signs in reviewer sessions and opens `n` inbox sockets (JSON).
async fn connect_reviewers(target: &Target, n: usize) -> anyhow::Result<Vec<Socket>> {
    let sessions = n.div_ceil(SOCKETS_PER_SESSION).max(1);
    let names = target.add_users("lt_rev", sessions, true, true).await?;
    let client = http()?;
    let mut cookies = Vec::with_capacity(sessions);
    for name in &names {
        cookies.push(target.sign_in(&client, name).await?);
    }
    let cookies = Arc::new(cookies);
    let mut sockets = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..(next + CONNECT_CONCURRENCY).min(n))
            .map(|i| {
                let cookie = cookies[i / SOCKETS_PER_SESSION].clone();
                async move { target.socket("/ws/inbox?format=json", &cookie).await }
            })
            .collect();
        for result in futures_util::future::join_all(batch).await {
            let mut socket = result?;
            // The snapshot proves the socket is live before counting it.
            loop {
                match tokio::time::timeout(EVENT_TIMEOUT, socket.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("\"snapshot\"") => break,
                    Ok(Some(Ok(_))) => {}
                    other => bail!("a reviewer socket did not get its snapshot: {other:?}"),
                }
            }
            sockets.push(socket);
        }
        next += CONNECT_CONCURRENCY;
    }
    Ok(sockets)
}

pub async fn sockets(args: &TargetArgs, reviewers: usize) -> anyhow::Result<SocketsReport> {
    let target = Target::start(args).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = target.rss_bytes().unwrap_or(0);
    let sockets = connect_reviewers(&target, reviewers).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = target.rss_bytes().unwrap_or(0);
    drop(sockets);
    target.stop().await;
    Ok(SocketsReport {
        scenario: "sockets",
        reviewers,
        rss_before_bytes: before,
        rss_after_bytes: after,
        bytes_per_socket: after.saturating_sub(before) / reviewers.max(1) as u64,
    })
}

/// Per sign-in: how many sockets have seen its `added`, and when the last did.
struct Arrivals {
    seen: Vec<AtomicUsize>,
    last_ns: Vec<AtomicU64>,
}

pub async fn broadcast(
    args: &TargetArgs,
    reviewers: usize,
    sessions: usize,
) -> anyhow::Result<LatencyReport> {
    let target = Target::start(args).await?;
    let sockets = connect_reviewers(&target, reviewers).await?;
    let requesters = target.add_users("lt_req", sessions, false, false).await?;
    let origin = Instant::now();
    let arrivals = Arc::new(Arrivals {
        seen: (0..sessions).map(|_| AtomicUsize::new(0)).collect(),
        last_ns: (0..sessions).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut readers = Vec::with_capacity(reviewers);
    for mut socket in sockets {
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    // Cheap: find the requester's index without parsing JSON.
                    if !text.contains("\"type\":\"added\"") {
                        continue;
                    }
                    if let Some(i) = text
                        .split("\"username\":\"lt_req")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|i| *i < arrivals.seen.len())
                    {
                        let now = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        arrivals.last_ns[i].fetch_max(now, Ordering::SeqCst);
                        arrivals.seen[i].fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    let client = http()?;
    let mut samples = Vec::with_capacity(sessions);
    for (i, name) in requesters.iter().enumerate() {
        target.sign_in(&client, name).await?;
        let signed_in = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while arrivals.seen[i].load(Ordering::SeqCst) < reviewers {
            if Instant::now() > deadline {
                bail!(
                    "sign-in {i} reached {} of {reviewers} reviewers",
                    arrivals.seen[i].load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let last = arrivals.last_ns[i].load(Ordering::SeqCst);
        samples.push(last.saturating_sub(signed_in) as f64 / 1e6);
        // Space the sign-ins out, so each is measured on its own.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.abort();
    }
    target.stop().await;
    Ok(latency_report("broadcast", reviewers, samples))
}

/// `loadtest decide`: with `webhooks`, two endpoints get every event, one of
/// them hanging (see `hooks`), so the numbers compare with and without.
pub async fn decide(
    args: &TargetArgs,
    reviewers: usize,
    decisions: usize,
    webhooks: bool,
) -> anyhow::Result<LatencyReport> {
    let receivers = if webhooks {
        Some(super::hooks::start().await?)
    } else {
        None
    };
    let env = receivers
        .as_ref()
        .map(|r| r.env.clone())
        .unwrap_or_default();
    let target = Target::start_with_env(args, &env).await?;
    let sockets = connect_reviewers(&target, reviewers).await?;
    // The watching reviewers drain their sockets, like browsers do.
    let mut readers = Vec::with_capacity(reviewers);
    for mut socket in sockets {
        readers.push(tokio::spawn(async move {
            while let Some(Ok(_)) = socket.next().await {}
        }));
    }
    let decider = target.add_users("lt_decider", 1, true, true).await?;
    let client = http()?;
    let decider_cookie = target.sign_in(&client, &decider[0]).await?;
    let requesters = target.add_users("lt_req", decisions, false, false).await?;
    let mut samples = Vec::with_capacity(decisions);
    for name in &requesters {
        samples.push(one_decision(&target, &client, &decider_cookie, name).await?);
    }
    for r in readers {
        r.abort();
    }
    if let Some(r) = &receivers {
        eprintln!(
            "webhooks: {} delivered to the healthy endpoint, {} taken and left hanging",
            r.delivered.load(Ordering::Relaxed),
            r.hung.load(Ordering::Relaxed)
        );
    }
    target.stop().await;
    let name = if webhooks {
        "decide (two webhooks, one hanging)"
    } else {
        "decide"
    };
    Ok(latency_report(name, reviewers, samples))
}

/// One requester signs in and waits; the decider approves; returns the
/// milliseconds from sending the decision to the requester's socket having it.
async fn one_decision(
    target: &Target,
    client: &reqwest::Client,
    decider_cookie: &str,
    name: &str,
) -> anyhow::Result<f64> {
    let cookie = target.sign_in(client, name).await?;
    let pending: serde_json::Value = client
        .get(format!("{}/api/v1/pending", target.base))
        .header("Cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    let id = pending["session_id"]
        .as_str()
        .context("no session id")?
        .to_string();
    let mut status = target.socket("/ws/pending?format=json", &cookie).await?;
    match tokio::time::timeout(EVENT_TIMEOUT, status.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"status\"") => {}
        other => bail!("the requester socket did not get its status: {other:?}"),
    }
    // Let the sign-in's broadcast to every reviewer finish first: this
    // measures a decision, not the tail of the `added` fan-out before it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The decision goes out on its own task: what is timed is the
    // requester's socket, not the decider's HTTP response.
    let started = Instant::now();
    let post = client
        .post(format!("{}/api/v1/inbox/{id}/decision", target.base))
        .header("Origin", &target.origin)
        .header("Cookie", decider_cookie)
        .json(&json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": "load test"}))
        .send();
    let decision = tokio::spawn(post);
    loop {
        match tokio::time::timeout(EVENT_TIMEOUT, status.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"approved\"") => break,
            Ok(Some(Ok(_))) => {}
            other => bail!("the requester never heard of the approval: {other:?}"),
        }
    }
    let heard = started.elapsed();
    let response = decision.await??;
    if !response.status().is_success() {
        bail!("decision failed: {}", response.status());
    }
    let _ = status.close(None).await;
    Ok(heard.as_secs_f64() * 1000.0)
}

fn latency_report(
    scenario: &'static str,
    reviewers: usize,
    mut samples: Vec<f64>,
) -> LatencyReport {
    samples.sort_by(f64::total_cmp);
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    LatencyReport {
        scenario,
        reviewers,
        samples: samples.len(),
        p50_ms: r3(percentile(&samples, 50.0)),
        p99_ms: r3(percentile(&samples, 99.0)),
        max_ms: r3(samples.last().copied().unwrap_or(0.0)),
    }
}

pub fn socket_rows(r: &SocketsReport) -> Vec<(&'static str, String)> {
    vec![
        ("scenario", r.scenario.into()),
        ("reviewer sockets", r.reviewers.to_string()),
        (
            "server RSS before",
            format!("{:.1} MB", r.rss_before_bytes as f64 / 1e6),
        ),
        (
            "server RSS after",
            format!("{:.1} MB", r.rss_after_bytes as f64 / 1e6),
        ),
        ("bytes per socket", r.bytes_per_socket.to_string()),
    ]
}

pub fn latency_rows(r: &LatencyReport) -> Vec<(&'static str, String)> {
    vec![
        ("scenario", r.scenario.into()),
        ("reviewer sockets", r.reviewers.to_string()),
        ("samples", r.samples.to_string()),
        ("p50", format!("{:.3} ms", r.p50_ms)),
        ("p99", format!("{:.3} ms", r.p99_ms)),
        ("max", format!("{:.3} ms", r.max_ms)),
    ]
}
