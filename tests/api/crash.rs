//! The kill loop: a real `peergate serve` is killed with SIGKILL at random
//! moments while decisions flow through the HTTP API, then restarted. After
//! every restart nothing acknowledged is lost and nothing unapproved got in.
//!
//! `cargo test` runs 20 cycles; set `PEERGATE_KILL_CYCLES` for a longer run
//! (`PEERGATE_KILL_CYCLES=200 cargo test --release --test api kill_loop`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peergate::clock::rfc3339;
use peergate::ledger::{Verdict, verify_file};
use peergate::passwords::{self, Cost};
use peergate::store::users::{self, NewUser};
use serde_json::{Value, json};

use crate::child::{CHILD_ORIGIN, spawn_child};

const REQUESTERS_PER_CYCLE: usize = 3;

async fn add_users(dir: &std::path::Path, cycles: usize) {
    let pool = peergate::store::open(dir).await.unwrap();
    let hash = passwords::hash("kill-loop-pw".into(), Cost::Fast)
        .await
        .unwrap();
    let now = rfc3339(chrono::Utc::now());
    let add = |name: String, reviewer: bool| {
        let pool = pool.clone();
        let hash = hash.clone();
        let now = now.clone();
        async move {
            users::insert_user(
                &pool,
                &NewUser {
                    username: name.clone(),
                    display_name: name,
                    password_hash: hash,
                    is_reviewer: reviewer,
                    is_admin: false,
                    is_exempt: reviewer,
                },
                &now,
            )
            .await
            .unwrap();
        }
    };
    add("rita".into(), true).await;
    for i in 0..cycles * REQUESTERS_PER_CYCLE {
        add(format!("u{i}"), false).await;
    }
    pool.close().await;
}

fn random_ms(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    lo + u64::from_le_bytes(b) % (hi - lo)
}

async fn sign_in(base: &str, username: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .header("Origin", CHILD_ORIGIN)
        .json(&json!({"username": username, "password": "kill-loop-pw"}))
        .send()
        .await
        .ok()?;
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|l| {
            l.split(';')
                .next()
                .filter(|c| c.starts_with("peergate_session="))
        })
        .map(str::to_string)
}

#[tokio::test]
async fn kill_loop() {
    let cycles: usize = std::env::var("PEERGATE_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), cycles).await;
    // Decisions acknowledged with 200: session id -> outcome.
    let acked: Arc<Mutex<HashMap<String, &'static str>>> = Arc::default();
    // Sessions that were waiting when last seen.
    let mut waiting: Vec<String> = Vec::new();
    // The requesters' browser cookies, to complete approved sign-ins.
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut next_user = 0;
    for cycle in 0..cycles {
        let server = spawn_child(dir.path(), &[("RUST_LOG", "warn")]).await;
        let base = server.base.clone();
        let reviewer = sign_in(&base, "rita").await.expect("the reviewer signs in");
        let http = reqwest::Client::new();

        // Pending sessions survived the previous kill: each is still in the
        // inbox, unless its decision reached the ledger just before the kill.
        let inbox: Value = http
            .get(format!("{base}/api/v1/inbox"))
            .header("Cookie", &reviewer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed: Vec<String> = inbox["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap().to_string())
            .collect();
        let ledger_ids = ledger_outcomes(dir.path());
        for id in &waiting {
            assert!(
                listed.contains(id) || ledger_ids.contains_key(id),
                "cycle {cycle}: pending session {id} was lost"
            );
        }

        for _ in 0..REQUESTERS_PER_CYCLE {
            let name = format!("u{next_user}");
            next_user += 1;
            if let Some(cookie) = sign_in(&base, &name).await {
                let p: Value = http
                    .get(format!("{base}/api/v1/pending"))
                    .header("Cookie", &cookie)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(id) = p["session_id"].as_str() {
                    waiting.push(id.to_string());
                    cookies.insert(id.to_string(), cookie);
                }
            }
        }

        // Decide everything waiting, concurrently, while the kill comes.
        let before = acked.lock().unwrap().len();
        let mut tasks = Vec::new();
        for (i, id) in listed.iter().chain(waiting.iter()).cloned().enumerate() {
            let (http, base, reviewer, acked) =
                (http.clone(), base.clone(), reviewer.clone(), acked.clone());
            let requester = cookies.get(&id).cloned();
            tasks.push(tokio::spawn(async move {
                let (outcome, recorded) = if i % 2 == 0 { ("approve", "approved") } else { ("deny", "denied") };
                let body = json!({"outcome": outcome, "channel": "call", "code_confirmed": true, "note": "kill loop"});
                if let Ok(r) = http.post(format!("{base}/api/v1/inbox/{id}/decision")).header("Origin", CHILD_ORIGIN).header("Cookie", &reviewer).json(&body).send().await
                    && r.status() == 200
                {
                    acked.lock().unwrap().insert(id, recorded);
                    // The approved requester completes sign-in, racing the kill too.
                    if let (Some(cookie), "approved") = (requester, recorded) {
                        let _ = http.post(format!("{base}/pending/complete")).header("Origin", CHILD_ORIGIN).header("Cookie", cookie).send().await;
                    }
                }
            }));
        }
        // The kill comes while decisions flow: once the first of this cycle
        // is acknowledged (on a busy machine that may take a while), then
        // 5–60 ms later, mid-stream.
        let flowing = tokio::time::Instant::now() + Duration::from_secs(5);
        while acked.lock().unwrap().len() == before && tokio::time::Instant::now() < flowing {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(random_ms(5, 60))).await;
        server.kill().await;
        for t in tasks {
            let _ = t.await;
        }

        // After the crash: the chain verifies, the file is intact, every
        // acknowledged decision is there, no session has two entries.
        let path = dir.path().join("ledger.sqlite");
        let verdict = verify_file(&path, None).await;
        assert!(
            matches!(verdict, Verdict::Valid { .. }),
            "cycle {cycle}: {verdict:?}"
        );
        let outcomes = ledger_outcomes(dir.path());
        for (id, outcome) in acked.lock().unwrap().iter() {
            assert_eq!(
                outcomes.get(id).map(String::as_str),
                Some(*outcome),
                "cycle {cycle}: acknowledged decision on {id} lost"
            );
        }
        check_integrity_and_access(dir.path(), &outcomes, cycle);
        waiting.retain(|id| !outcomes.contains_key(id));
    }
    assert!(
        acked.lock().unwrap().len() >= cycles / 2,
        "decisions did flow: {}",
        acked.lock().unwrap().len()
    );
    let completed = completed_count(dir.path());
    assert!(completed > 0, "some approved requesters completed sign-in");
    eprintln!(
        "kill loop: {cycles} cycles, {} decisions acknowledged, {completed} sign-ins completed",
        acked.lock().unwrap().len()
    );
}

fn completed_count(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("app.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row(
        "SELECT count(*) FROM pending_sessions WHERE status = 'completed'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// session id -> outcome, straight from the file; duplicates are a failure.
fn ledger_outcomes(dir: &std::path::Path) -> HashMap<String, String> {
    let path = dir.join("ledger.sqlite");
    if !path.exists() {
        return HashMap::new();
    }
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn
        .prepare("SELECT session_id, outcome FROM ledger_entries")
        .unwrap();
    let rows: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let n = rows.len();
    let map: HashMap<String, String> = rows.into_iter().collect();
    assert_eq!(map.len(), n, "a session has two ledger entries");
    map
}

fn check_integrity_and_access(
    dir: &std::path::Path,
    outcomes: &HashMap<String, String>,
    cycle: usize,
) {
    for file in ["ledger.sqlite", "app.sqlite"] {
        let conn = rusqlite::Connection::open_with_flags(
            dir.join(file),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "cycle {cycle}: {file}");
    }
    // Nobody who needs review holds a full session without an approval.
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("app.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = conn
        .prepare(
            "SELECT p.id, p.status FROM pending_sessions p WHERE p.status IN ('approved', 'completed')
             UNION ALL
             SELECT coalesce((SELECT p.id FROM pending_sessions p
                              WHERE p.user_id = u.id AND p.status = 'completed' LIMIT 1), ''),
                    'authenticated ' || u.username
             FROM browser_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.state = 'authenticated' AND u.is_exempt = 0",
        )
        .unwrap();
    let rows: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (id, what) in rows {
        assert!(
            !id.is_empty(),
            "cycle {cycle}: {what} is signed in without review"
        );
        assert_eq!(
            outcomes.get(&id).map(String::as_str),
            Some("approved"),
            "cycle {cycle}: {id} is {what} without an approval in the ledger"
        );
    }
}
