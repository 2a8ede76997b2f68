//! Each `peergate loadtest` scenario, small and fast: it runs end to end
//! through the real binary and prints well-formed numbers. Speed is measured
//! in BENCHMARKS.md, not asserted here.

use serde_json::Value;

use crate::child::run_cli;

async fn scenario(args: &[&str]) -> Value {
    let mut all = vec!["loadtest"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, out, err) = run_cli(&all, &[], None).await;
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    let last = out.lines().last().expect("output");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{args:?}: last line is not JSON ({e}): {last}"))
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn latency_is_well_formed(v: &Value, reviewers: u64, samples: u64) {
    assert_eq!(v["reviewers"], reviewers);
    assert_eq!(v["samples"], samples);
    let (p50, p99, max) = (
        number(v, "p50_ms"),
        number(v, "p99_ms"),
        number(v, "max_ms"),
    );
    // An event can beat the HTTP response it follows: such samples count as 0.
    assert!(p50 >= 0.0 && p50 <= p99 && p99 <= max && max > 0.0, "{v}");
}

#[tokio::test]
async fn sockets_scenario() {
    let v = scenario(&["sockets", "--reviewers", "50"]).await;
    assert_eq!(v["scenario"], "sockets");
    assert_eq!(v["reviewers"], 50);
    assert!(number(&v, "rss_before_bytes") > 0.0);
    assert!(number(&v, "rss_after_bytes") >= number(&v, "rss_before_bytes"));
    assert!(v["bytes_per_socket"].is_u64());
}

#[tokio::test]
async fn broadcast_scenario() {
    let v = scenario(&["broadcast", "--reviewers", "50", "--sessions", "20"]).await;
    assert_eq!(v["scenario"], "broadcast");
    latency_is_well_formed(&v, 50, 20);
}

#[tokio::test]
async fn decide_scenario() {
    let v = scenario(&["decide", "--reviewers", "50", "--decisions", "10"]).await;
    assert_eq!(v["scenario"], "decide");
    latency_is_well_formed(&v, 50, 10);
}

#[tokio::test]
async fn ledger_scenario() {
    let v = scenario(&["ledger", "--entries", "2000"]).await;
    assert_eq!(v["scenario"], "ledger");
    assert_eq!(v["entries"], 2000);
    for key in [
        "group_commit_per_sec",
        "single_txn_per_sec",
        "ratio",
        "ack_p50_ms",
        "ack_p99_ms",
    ] {
        assert!(number(&v, key) > 0.0, "{key}: {v}");
    }
    assert!(number(&v, "ack_p50_ms") <= number(&v, "ack_p99_ms"));
}

#[tokio::test]
async fn snapshot_scenario() {
    let v = scenario(&["snapshot", "--entries", "2000"]).await;
    assert_eq!(v["scenario"], "snapshot");
    assert_eq!(v["entries"], 2000);
    assert!(number(&v, "snapshot_s") > 0.0 && number(&v, "verify_s") > 0.0);
}

#[tokio::test]
async fn flood_scenario() {
    let v = scenario(&["flood", "--requests", "60", "--addresses", "6"]).await;
    assert_eq!(v["scenario"], "flood");
    assert_eq!(v["requests"], 60);
    assert_eq!(v["addresses"], 6);
    let by_status = v["by_status"].as_object().expect("by_status is a map");
    let answered: u64 = by_status.values().filter_map(Value::as_u64).sum();
    assert_eq!(answered, 60, "every request is counted once: {v}");
    assert_eq!(v["unexpected"], 0, "only 401, 429 and 503: {v}");
    assert_eq!(v["real_sign_in_ok"], true, "{v}");
    assert!(v["aborted"].is_null(), "{v}");
    for key in [
        "healthz_p50_ms",
        "healthz_p99_ms",
        "peak_rss_mb",
        "final_rss_mb",
        "seconds",
    ] {
        assert!(number(&v, key) >= 0.0, "{key}: {v}");
    }
    assert!(number(&v, "healthz_samples") > 0.0, "{v}");
    assert!(number(&v, "peak_rss_mb") > 0.0, "{v}");
}

#[tokio::test]
async fn auth_request_scenario() {
    let v = scenario(&["auth-request", "--clients", "4", "--seconds", "1"]).await;
    assert_eq!(v["scenario"], "auth-request");
    assert_eq!(v["clients"], 4);
    assert_eq!(
        v["refused"], 0,
        "every answer with a valid cookie is 200: {v}"
    );
    assert!(number(&v, "answers") > 0.0, "{v}");
    assert!(number(&v, "answers_per_sec") > 0.0, "{v}");
    let (p50, p99, max) = (
        number(&v, "p50_ms"),
        number(&v, "p99_ms"),
        number(&v, "max_ms"),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{v}");
}
