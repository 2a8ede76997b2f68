//! Admin: downloads that match their checksums, consistent snapshots, the
//! ledger browser, KPIs on an injected clock, access rules, metrics.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::TimeZone;
use peergate::clock::{ManualClock, rfc3339};
use peergate::ledger::build::{append_entries, sample_entry};
use peergate::ledger::read::kpis;
use peergate::ledger::{Head, Ledger, Verdict, verify_file};
use reqwest::StatusCode;
use sha2::Digest;

use crate::child::run_cli;
use crate::helpers::*;

struct Download {
    bytes: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

async fn download(app: &TestApp, admin: &Browser) -> Download {
    let r = admin
        .get(app.url("/admin/exports/ledger.sqlite"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    Download {
        bytes: r.bytes().await.unwrap().to_vec(),
        headers,
    }
}

async fn text(app: &TestApp, admin: &Browser, path: &str) -> String {
    let r = admin.get(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

async fn add_entries(app: &TestApp, n: usize) {
    for i in 0..n {
        app.state
            .ledger
            .writer
            .append(peergate::loadtest::synthetic_draft(i))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn downloads_are_stable_and_match_every_checksum() {
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let ada = app.client();
    app.sign_in(&ada, "ada", "authenticated").await;
    add_entries(&app, 12).await;

    let first = download(&app, &ada).await;
    let second = download(&app, &ada).await;
    assert_eq!(
        first.bytes, second.bytes,
        "byte-identical without new entries"
    );

    let sha = hex::encode(sha2::Sha256::digest(&first.bytes));
    let b3 = blake3::hash(&first.bytes).to_hex().to_string();
    let h = &first.headers;
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"ledger-12.sqlite\""
    );
    assert_eq!(h["etag"].to_str().unwrap(), format!("\"{b3}\""));
    let digest =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&first.bytes));
    assert_eq!(
        h["repr-digest"].to_str().unwrap(),
        format!("sha-256=:{digest}:")
    );
    let head = h["x-ledger-head"].to_str().unwrap().to_string();
    assert_eq!(head, app.state.ledger.writer.head().to_arg());
    assert_eq!(
        text(&app, &ada, "/admin/exports/ledger.sqlite.sha256").await,
        format!("{sha}  ledger-12.sqlite\n")
    );
    assert_eq!(
        text(&app, &ada, "/admin/exports/ledger.sqlite.b3").await,
        format!("{b3}  ledger-12.sqlite\n")
    );
    let (code, json) = app.get_json(&ada, "/api/v1/admin/ledger/head").await;
    assert_eq!(code, 200);
    assert_eq!(json["seq"], 12);
    assert_eq!(format!("12:{}", json["head_hash"].as_str().unwrap()), head);
    assert_eq!(json["snapshot"]["sha256"], sha.as_str());
    assert_eq!(json["snapshot"]["blake3"], b3.as_str());
    assert_eq!(json["snapshot"]["filename"], "ledger-12.sqlite");
    assert_eq!(json["snapshot"]["bytes"], first.bytes.len());

    // The admin page shows the same numbers and the commands to check them.
    let page = text(&app, &ada, "/admin").await;
    for needle in [
        &sha,
        &b3,
        &head,
        &"sha256sum -c ledger-12.sqlite.sha256".to_string(),
        &format!("peergate ledger verify ledger-12.sqlite --expect-head {head}"),
    ] {
        assert!(page.contains(needle.as_str()), "admin page lacks {needle}");
    }

    // The downloaded file verifies offline against the head it came with,
    // and sha256sum agrees with the checksum file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger-12.sqlite");
    std::fs::write(&file, &first.bytes).unwrap();
    let (code, out, err) = run_cli(
        &[
            "ledger",
            "verify",
            file.to_str().unwrap(),
            "--expect-head",
            &head,
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(
        dir.path().join("ledger-12.sqlite.sha256"),
        format!("{sha}  ledger-12.sqlite\n"),
    )
    .unwrap();
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("ledger-12.sqlite.sha256")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A new entry changes the file name, the head and the checksums.
    add_entries(&app, 1).await;
    let third = download(&app, &ada).await;
    assert_ne!(third.bytes, first.bytes);
    assert_eq!(
        third.headers["content-disposition"],
        "attachment; filename=\"ledger-13.sqlite\""
    );
    assert_ne!(
        third.headers["x-ledger-head"],
        first.headers["x-ledger-head"]
    );
    assert_ne!(third.headers["etag"], first.headers["etag"]);
    let (_, json) = app.get_json(&ada, "/api/v1/admin/ledger/head").await;
    assert_eq!(json["seq"], 13);

    // Every download is on record and listed.
    let page = text(&app, &ada, "/admin").await;
    assert!(page.contains("ledger-13.sqlite") && page.contains("ledger-12.sqlite"));
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_downloads WHERE username = 'ada'")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(count, 3);
    app.stop().await;
}

#[tokio::test]
async fn snapshots_taken_during_appends_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _tasks) = Ledger::open(dir.path(), Arc::new(peergate::clock::SystemClock))
        .await
        .unwrap();
    let writer = ledger.writer.clone();
    let appending = tokio::spawn(async move {
        let mut handles = Vec::new();
        for t in 0..8 {
            let writer = writer.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..300 {
                    writer
                        .append(peergate::loadtest::synthetic_draft(t * 1000 + i))
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    let mut seen = Vec::new();
    while !appending.is_finished() {
        let snapshot = ledger.snapshots.current().await.unwrap();
        // Copy it out before the next snapshot replaces the file.
        let copy = dir.path().join(format!("copy-{}.sqlite", seen.len()));
        std::fs::copy(&snapshot.path, &copy).unwrap();
        match verify_file(&copy, Some(snapshot.head)).await {
            Verdict::Valid { entries, head } => {
                assert_eq!(head, snapshot.head, "the snapshot's last entry is its head");
                assert_eq!(entries, snapshot.head.seq);
            }
            other => panic!("snapshot at {:?}: {other:?}", snapshot.head),
        }
        seen.push(snapshot.head.seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    appending.await.unwrap();
    assert!(
        seen.len() >= 2,
        "several snapshots were taken while appending: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn only_admins_reach_the_admin_routes() {
    let app = spawn_app_with("[server]\nmetrics_token = \"s3cret-metrics\"").await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let uma = app.client();
    app.sign_in(&uma, "uma", "half_authenticated").await;
    let anonymous = app.client();
    let pages = [
        "/admin",
        "/admin/ledger",
        "/admin/exports/ledger.sqlite",
        "/admin/exports/ledger.sqlite.sha256",
        "/admin/exports/ledger.sqlite.b3",
    ];
    for (who, browser, page_status, api_status) in [
        ("reviewer", &rita, 403u16, 403u16),
        ("half-authenticated", &uma, 303, 401),
        ("anonymous", &anonymous, 303, 401),
    ] {
        for path in pages {
            let r = browser.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), page_status, "{who}: {path}");
        }
        let (code, body) = app.get_json(browser, "/api/v1/admin/ledger/head").await;
        assert_eq!(code, api_status, "{who}: head API {body}");
    }
    // Nobody downloaded anything.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_downloads")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0);

    let metrics = |token: Option<&str>| {
        let mut r = reqwest::Client::new().get(app.url("/metrics"));
        if let Some(t) = token {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        r.send()
    };
    assert_eq!(
        metrics(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        metrics(Some("wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let ok = metrics(Some("s3cret-metrics")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let body = ok.text().await.unwrap();
    assert!(body.contains("peergate_pending_sessions"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn metrics_carry_the_service_numbers() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let uma = app.client();
    app.sign_in(&uma, "uma", "half_authenticated").await;
    let (_, pending) = app.get_json(&uma, "/api/v1/pending").await;
    let id = pending["session_id"].as_str().unwrap();
    let mut socket = app.socket(&rita, "/ws/inbox?format=json").await;
    socket.expect("snapshot", Duration::from_secs(2)).await;
    let (code, _) = app.post_json(&rita, &format!("/api/v1/inbox/{id}/decision"),
        serde_json::json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": ""})).await;
    assert_eq!(code, 200);
    let body = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "peergate_pending_sessions",
        "peergate_sockets{kind=\"inbox\"}",
        "peergate_decisions_total{outcome=\"approved\"}",
        "peergate_time_to_decision_seconds_bucket",
        "peergate_ledger_appends_total",
        "peergate_ledger_batch_size_bucket",
        "peergate_ledger_commit_seconds_bucket",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_ledger_browser_pages_filters_and_keeps_notes_inert() {
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let ada = app.client();
    app.sign_in(&ada, "ada", "authenticated").await;
    add_entries(&app, 60).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let uma = app.client();
    app.sign_in(&uma, "uma", "half_authenticated").await;
    let (_, pending) = app.get_json(&uma, "/api/v1/pending").await;
    let id = pending["session_id"].as_str().unwrap();
    let note = "<script>alert('x')</script> & <b>bold</b>";
    let (code, _) = app.post_json(&rita, &format!("/api/v1/inbox/{id}/decision"),
        serde_json::json!({"outcome": "deny", "channel": "chat", "code_confirmed": false, "note": note})).await;
    assert_eq!(code, 200);

    let first = text(&app, &ada, "/admin/ledger").await;
    assert!(
        first.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
            || first.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
        "note escaped"
    );
    assert!(!first.contains("<script>alert"), "no live script");
    assert!(first.contains(">61<"), "newest first");
    assert!(
        first.contains("/admin/ledger?before=12"),
        "a link to older entries"
    );
    let older = text(&app, &ada, "/admin/ledger?before=12").await;
    assert!(older.contains(">11<") && older.contains(">1<") && !older.contains(">12<"));

    let denied = text(&app, &ada, "/admin/ledger?outcome=denied").await;
    assert!(denied.contains("Rita Reviewer") && !denied.contains(">60<"));
    let by_rita = text(&app, &ada, "/admin/ledger?user=rita").await;
    assert!(by_rita.contains(">61<") && !by_rita.contains(">60<"));
    let by_uma = text(&app, &ada, "/admin/ledger?user=uma").await;
    assert!(by_uma.contains(">61<"));
    let nobody = text(&app, &ada, "/admin/ledger?user=nobody").await;
    assert!(nobody.contains("There is no user named"));
    let r = ada
        .get(app.url("/admin/ledger?before=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = ada
        .get(app.url("/admin/ledger?outcome=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

/// KPIs from entries with known times: the median, p90 and the 10-minute
/// share, exactly.
#[tokio::test]
async fn kpis_are_computed_exactly_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
        .unwrap();
    // (outcome, hours before now that it was decided, seconds it waited)
    let rows: Vec<(&str, i64, i64)> = vec![
        ("approved", 200, 30), // older than 7 days: ignored
        ("approved", 100, 60), // 4 days ago
        ("denied", 90, 120),
        ("approved", 80, 240),
        ("expired", 70, 900),
        ("approved", 30, 300),
        ("withdrawn", 20, 50), // not counted
        ("approved", 10, 480), // within 24 h
        ("denied", 5, 700),    // within 24 h, over 10 minutes
        ("approved", 2, 90),   // within 24 h
        ("expired", 1, 900),   // within 24 h
    ];
    let mut it = rows.iter();
    append_entries(&path, rows.len(), |seq| {
        let (outcome, hours_ago, waited) = it.next().unwrap();
        let decided = now - chrono::Duration::hours(*hours_ago);
        let mut e = sample_entry(seq);
        e.outcome = (*outcome).into();
        e.decided_at = rfc3339(decided);
        e.session_created_at = rfc3339(decided - chrono::Duration::seconds(*waited));
        e
    })
    .await
    .unwrap();
    let clock = ManualClock::starting_now();
    clock.set(now);
    let (ledger, _tasks) = Ledger::open(dir.path(), clock.clone()).await.unwrap();
    let k = kpis(&ledger.reader, peergate::clock::Clock::now(&*clock))
        .await
        .unwrap();
    // Decisions in 7 days: 60, 120, 240, 300, 480, 700, 90 -> sorted 60 90 120 240 300 480 700.
    assert_eq!(k.decisions_7d, 7);
    assert_eq!(k.decisions_24h, 3);
    assert_eq!(k.expired_7d, 2);
    assert_eq!(k.expired_24h, 1);
    assert_eq!(
        k.median_decision_secs,
        Some(240.0),
        "nearest rank: 4th of 7"
    );
    assert_eq!(
        k.p90_decision_secs,
        Some(700.0),
        "nearest rank: ceil(6.3) = 7th of 7"
    );
    // Ended: 7 decisions + 2 expiries = 9; within 10 min: 6 (all but 700 s).
    assert_eq!(k.decided_within_10m, Some(6.0 / 9.0));

    // A day later, the 24-hour numbers move and the 7-day window slides.
    clock.advance(Duration::from_hours(24));
    let k = kpis(&ledger.reader, peergate::clock::Clock::now(&*clock))
        .await
        .unwrap();
    assert_eq!(k.decisions_24h, 0);
    assert_eq!(k.decisions_7d, 7);
    let _: Head = ledger.writer.head();
}
