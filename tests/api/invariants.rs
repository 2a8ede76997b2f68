//! Issue 12: the invariants of DESIGN.md §4 (the claim rule) and §13 ("Limits
//! under load"), attacked the way an attacker would: a running server, plain
//! HTTP clients, raw TCP connections reset mid-request, bursts of parallel
//! requests, and the real binary run as a child process.
//!
//! Where DESIGN.md is silent, the comment at the assertion says which
//! behaviour a security team would expect, and why.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use peergate::domain::Outcome;
use peergate::ledger::read::{all_entries, outcome_of};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::child::{peergate_command, run_cli, spawn_child};
use crate::helpers::*;

const SOON: Duration = Duration::from_secs(3);

/// "Within a second" (DESIGN §13, issue 12), with some slack for a CI machine
/// whose two cores are shared.
const SETTLE: Duration = Duration::from_millis(1500);

/// The ids of the sessions in a reviewer's inbox.
async fn inbox_ids(app: &TestApp, reviewer: &Browser) -> Vec<String> {
    let (code, inbox) = app.get_json(reviewer, "/api/v1/inbox").await;
    assert_eq!(code, 200, "{inbox}");
    inbox["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_string())
        .collect()
}

/// One Summary from a reviewer's inbox.
async fn summary(app: &TestApp, reviewer: &Browser, id: &str) -> Option<Value> {
    let (code, inbox) = app.get_json(reviewer, "/api/v1/inbox").await;
    assert_eq!(code, 200, "{inbox}");
    inbox["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == id)
        .cloned()
}

/// The status of a pending session in `app.sqlite`.
async fn row_status(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM pending_sessions WHERE id = ?")
        .bind(id)
        .fetch_optional(&app.state.db)
        .await
        .unwrap()
}

/// A client that sends exactly the cookie it is given (no jar), and does not
/// follow redirects.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Runs `peergate user add` on a data dir; returns (exit code, stdout, stderr).
async fn cli_add(
    data_dir: &std::path::Path,
    username: &str,
    display_name: &str,
    password: &str,
) -> (i32, String, String) {
    let data = data_dir.to_str().unwrap();
    run_cli(
        &[
            "user",
            "add",
            username,
            "--display-name",
            display_name,
            "--password-stdin",
        ],
        &[("PEERGATE__STORAGE__DATA_DIR", data)],
        Some(&format!("{password}\n")),
    )
    .await
}

/// The user id `user add` printed: "added NAME (DISPLAY) as ID".
fn added_id(out: &str) -> String {
    out.split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------
// 1. Dropped connections
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Action {
    Cancel,
    Approve,
    Deny,
}

impl Action {
    fn outcome(self) -> Outcome {
        match self {
            Action::Cancel => Outcome::Withdrawn,
            Action::Approve => Outcome::Approved,
            Action::Deny => Outcome::Denied,
        }
    }
}

/// A hand-written HTTP/1.1 POST, as a browser would send it: keep-alive (no
/// `Connection: close`), so the server keeps reading the connection while the
/// handler runs, and notices the reset.
fn raw_post(app: &TestApp, path: &str, cookie: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nCookie: {cookie}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {len}\r\nUser-Agent: invariants-test\r\n\r\n{body}",
        addr = app.addr,
        origin = app.base,
        len = body.len(),
    )
}

/// Writes the whole request, waits `delay`, then resets the connection
/// (`SO_LINGER` 0: an RST, no FIN), as a client that vanishes mid-request.
async fn send_and_reset(app: &TestApp, request: &str, delay: Duration) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    // tokio deprecates SO_LINGER because a non-zero linger blocks the thread
    // on drop; a zero linger does not block, it resets the connection at once.
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let until = std::time::Instant::now() + delay;
    // Sub-millisecond delays: yield instead of sleeping (tokio's timer has
    // millisecond granularity); the server runs on the other worker meanwhile.
    while std::time::Instant::now() < until {
        tokio::task::yield_now().await;
    }
    drop(stream);
}

/// What each copy of the truth says about one session.
#[derive(Debug, Default)]
struct Seen {
    ledger: Option<Outcome>,
    in_inbox: bool,
    row: Option<String>,
    /// What the requester's socket said last: "approved", "denied", "expired",
    /// or "closed" when it closed without an outcome event.
    told: Option<String>,
    socket_closed: bool,
    /// The requester's browser session, per `GET /api/v1/me`.
    requester_me: u16,
}

async fn observe(
    app: &TestApp,
    reviewer: &Browser,
    requester: &Browser,
    id: &str,
    socket: &mut Socket,
    seen: &mut Seen,
) {
    // Drain what the requester's socket has for us (briefly).
    while !seen.socket_closed {
        match socket.next(Duration::from_millis(20)).await {
            None => break,
            Some(Frame::Json(v)) => {
                if let Some(kind @ ("approved" | "denied" | "expired")) = v["type"].as_str() {
                    seen.told = Some(kind.to_string());
                }
            }
            Some(Frame::Text(_)) => {}
            Some(Frame::Closed(_)) => {
                seen.socket_closed = true;
                if seen.told.is_none() {
                    seen.told = Some("closed".into());
                }
            }
        }
    }
    seen.ledger = outcome_of(&app.state.ledger.reader, id).await.unwrap();
    seen.in_inbox = inbox_ids(app, reviewer).await.iter().any(|s| s == id);
    seen.row = row_status(app, id).await;
    let (me, _) = app.get_json(requester, "/api/v1/me").await;
    seen.requester_me = me;
}

/// Everything agrees with a recorded outcome.
fn agrees(seen: &Seen, outcome: Outcome) -> bool {
    let told = match outcome {
        Outcome::Approved => seen.told.as_deref() == Some("approved"),
        Outcome::Denied => seen.told.as_deref() == Some("denied"),
        // DESIGN has no `withdrawn` event: the requester's socket just closes.
        _ => seen.told.is_some(),
    };
    let session_ok = match outcome {
        // Approved: the half-authenticated session waits for completion.
        Outcome::Approved => seen.requester_me == 200,
        // Denied or withdrawn: the requester's session is over.
        _ => seen.requester_me == 401,
    };
    !seen.in_inbox && seen.row.as_deref() == Some(outcome.as_str()) && told && session_ok
}

/// Observes one session until the ledger's outcome (which must be the one
/// `action` asks for) is mirrored everywhere, for at most [`SETTLE`]; returns
/// early when the ledger has stayed empty for `quiet`. Panics when the ledger
/// holds an outcome that the other copies have not caught up with in time.
#[allow(clippy::too_many_arguments)]
async fn settle(
    app: &TestApp,
    reviewer: &Browser,
    requester: &Browser,
    id: &str,
    socket: &mut Socket,
    seen: &mut Seen,
    action: Action,
    what: &str,
    quiet: Duration,
) {
    let started = Instant::now();
    loop {
        observe(app, reviewer, requester, id, socket, seen).await;
        match seen.ledger {
            Some(outcome) => {
                assert_eq!(
                    outcome,
                    action.outcome(),
                    "{what}: the ledger holds {outcome}"
                );
                if agrees(seen, outcome) {
                    return;
                }
                assert!(
                    started.elapsed() < SETTLE,
                    "{what}: the ledger holds `{outcome}` but the copies disagree {SETTLE:?} later: {seen:?}"
                );
            }
            None if started.elapsed() >= quiet.min(SETTLE) => return,
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Holds the write lock of a `SQLite` file until [`unlock`].
async fn lock(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn unlock(mut conn: sqlx::SqliteConnection) {
    use sqlx::Connection;
    sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

/// When the connection is reset.
#[derive(Clone, Copy, Debug)]
enum Drop {
    /// This long after the request was written.
    After(Duration),
    /// While the ledger write is held up (another connection holds the
    /// ledger's write lock for 200 ms, well inside the writer's busy timeout):
    /// the reset surely comes while the handler awaits the ledger.
    WhileTheLedgerWrites,
}

async fn dropped_connection_case(
    app: &TestApp,
    reviewer: &Browser,
    username: &str,
    action: Action,
    drop_at: Drop,
) {
    let what = format!("{action:?} dropped {drop_at:?} ({username})");
    let (requester, id) = waiting(app, username).await;
    let mut socket = app.socket(&requester, "/ws/pending?format=json").await;
    socket.expect("status", SOON).await;

    let request = match action {
        Action::Cancel => raw_post(
            app,
            "/pending/cancel",
            &requester.cookie_header().unwrap(),
            "application/x-www-form-urlencoded",
            "",
        ),
        Action::Approve | Action::Deny => {
            let body = if matches!(action, Action::Approve) {
                approve()
            } else {
                deny()
            };
            raw_post(
                app,
                &format!("/api/v1/inbox/{id}/decision"),
                &reviewer.cookie_header().unwrap(),
                "application/json",
                &body.to_string(),
            )
        }
    };
    match drop_at {
        Drop::After(delay) => send_and_reset(app, &request, delay).await,
        Drop::WhileTheLedgerWrites => {
            let held = lock(&app.data_dir.join("ledger.sqlite")).await;
            send_and_reset(app, &request, Duration::from_millis(100)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            unlock(held).await;
        }
    }

    // Within about a second, the ledger, app.sqlite, the inbox and the
    // requester agree. A request that never reached the ledger leaves no
    // trace; after 400 ms of an empty ledger the session is taken as untouched
    // (and if the request was only slow, the approval below finds out).
    let mut seen = Seen::default();
    settle(
        app,
        reviewer,
        &requester,
        &id,
        &mut socket,
        &mut seen,
        action,
        &what,
        Duration::from_millis(400),
    )
    .await;
    eprintln!("{what}: ledger {:?}", seen.ledger);
    let mut outcome = seen.ledger;
    if outcome.is_none() {
        // Nothing recorded: the session is untouched, and still decidable.
        assert!(
            seen.in_inbox,
            "{what}: no outcome, yet gone from the inbox: {seen:?}"
        );
        assert_eq!(seen.row.as_deref(), Some("pending"), "{what}: {seen:?}");
        assert_eq!(
            seen.told, None,
            "{what}: told of nothing recorded: {seen:?}"
        );
        let (code, body) = app
            .post_json(reviewer, &format!("/api/v1/inbox/{id}/decision"), approve())
            .await;
        if code == 409 {
            // The dropped request was only slow and won after all: then it
            // must settle everywhere like any other.
            settle(
                app,
                reviewer,
                &requester,
                &id,
                &mut socket,
                &mut seen,
                action,
                &what,
                SETTLE,
            )
            .await;
            assert!(
                seen.ledger.is_some(),
                "{what}: 409 on an untouched session: {body} {seen:?}"
            );
            outcome = seen.ledger;
        } else {
            assert_eq!(
                code, 200,
                "{what}: the untouched session is decidable: {body}"
            );
            socket.expect("approved", SOON).await;
            outcome = Some(Outcome::Approved);
        }
    }
    if outcome == Some(Outcome::Approved) {
        let done = app
            .post(&requester, "/pending/complete")
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::SEE_OTHER, "{what}: completion");
        assert_eq!(done.headers()["location"], "/", "{what}: completion");
        let (_, me) = app.get_json(&requester, "/api/v1/me").await;
        assert_eq!(me["state"], "authenticated", "{what}");
    }

    // The user's next sign-in works: no `409 already_decided` left behind.
    let next = app.client();
    let r = app.login_api(&next, username, &password_of(username)).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{what}: the next sign-in: {body}");
    assert_eq!(body["state"], "half_authenticated", "{what}");
}

/// Issue 12, problem 1 and DESIGN §13: a decision or a cancel runs to the end
/// once the ledger is asked to write, whatever happens to the connection.
///
/// Against the code of issue 12 this catches a stranded session only now and
/// then (it did once, under CPU load from the other tests: a cancel reset
/// 100 µs after the request); it is a guard, not a reliable reproduction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_leave_ledger_database_inbox_and_requester_in_agreement() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    let rita = reviewer(&app, "rita").await;
    // Where exactly the reset lands depends on the machine: from "before the
    // request is read" to "after the answer". The window that matters (the
    // handler already asked the ledger, and has not mirrored the outcome yet)
    // is narrow and found by trial, so the delays are dense below half a
    // millisecond, where this test first caught a stranded session.
    let delays: Vec<Duration> = (0..=16u64)
        .map(|i| Duration::from_micros(i * 25))
        .chain([600, 1000, 2000, 5000].map(Duration::from_micros))
        .collect();
    let mut n = 0;
    for action in [Action::Cancel, Action::Approve, Action::Deny] {
        for delay in &delays {
            let username = format!("u{n}");
            n += 1;
            app.add_user(&username, &format!("User {n}"), PLAIN).await;
            dropped_connection_case(&app, &rita, &username, action, Drop::After(*delay)).await;
        }
    }
    app.stop().await;
}

/// The same, with the reset landing while the ledger write is held up: the
/// outcome reaches the ledger once the lock is released, and must then reach
/// `app.sqlite`, the inbox and the requester too (issue 12, problem 1).
/// (Against the code of issue 12 this passes: hyper did not cancel a handler
/// that was awaiting a held-up ledger write when the reset came.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_while_the_ledger_writes_still_settles_everywhere() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    let rita = reviewer(&app, "rita").await;
    for (n, action) in [Action::Cancel, Action::Approve, Action::Deny]
        .into_iter()
        .enumerate()
    {
        let username = format!("w{n}");
        app.add_user(&username, &format!("User {n}"), PLAIN).await;
        dropped_connection_case(&app, &rita, &username, action, Drop::WhileTheLedgerWrites).await;
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 2. The failed-login limit counts before it spends
// ---------------------------------------------------------------------------

/// Issue 12, problem 2 and DESIGN §13: a failed-login slot is taken before the
/// password is checked, so a burst gets no more real checks than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_gets_exactly_the_limit_of_real_checks() {
    // A real account (production argon2 cost, through the CLI), so that checks
    // take long enough for the burst to overlap them.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = cli_add(dir.path(), "uma", "Uma User", "uma-correct-pw").await;
    assert_eq!(code, 0, "user add: {out}{err}");
    let app = spawn_app_in(dir.path(), "", None).await;
    let limit = app.state.settings.auth.failed_logins_per_minute as usize;
    assert_eq!(limit, 5, "the default limit");

    // Raised once the limit is spent: at the first 429, or at the fifth 401.
    let spent = Arc::new(tokio::sync::Notify::new());
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let wrong: Vec<_> = (0..40)
        .map(|i| {
            let (client, url, origin, spent, failures) = (
                bare_client(),
                app.url("/api/v1/login"),
                app.base.clone(),
                spent.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("Origin", origin)
                    .json(&json!({"username": "uma", "password": format!("wrong-{i}")}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let failed = status == StatusCode::UNAUTHORIZED
                    && failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == limit;
                if status == StatusCode::TOO_MANY_REQUESTS || failed {
                    spent.notify_one();
                }
                status
            })
        })
        .collect();
    // The correct password goes out as the 41st of the same burst, once the
    // server has shown that the limit is spent (a first 429, or a fifth 401),
    // while the rest of the burst is still in flight; at the latest after 3 s.
    // (Sent any earlier, it could legitimately take one of the five slots,
    // succeed and give its slot back.)
    let _ = tokio::time::timeout(Duration::from_secs(3), spent.notified()).await;
    let right = app.login_api(&bare_client(), "uma", "uma-correct-pw").await;
    let right_status = right.status();
    let right_body: Value = right.json().await.unwrap_or(Value::Null);

    let mut statuses = Vec::new();
    for task in wrong {
        statuses.push(task.await.unwrap());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        (checked, limited),
        (limit, 40 - limit),
        "40 parallel wrong passwords: {checked} got a real check (401), {limited} got 429"
    );
    assert_eq!(
        right_status,
        StatusCode::TOO_MANY_REQUESTS,
        "the correct password in the same burst is refused, not signed in: {right_body}"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 3. One pending session per user, under concurrency
// ---------------------------------------------------------------------------

/// Issue 12, problem 4 and DESIGN §13: concurrent sign-ins of one user all
/// succeed and leave exactly one pending session; the others are withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_of_one_user_leave_one_pending_session_and_no_409() {
    // Failure slots are taken before the password check (and given back on
    // success), so 8 sign-ins in flight from one address need a limit of 8.
    let app =
        spawn_app_with("[auth]\nreview_starts_per_user = 1000\nfailed_logins_per_minute = 8").await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    let uma = app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;

    for round in 1..=3usize {
        let clients: Vec<Browser> = (0..8).map(|_| app.client()).collect();
        let answers = join_all(clients.iter().map(|c| async {
            let r = app.login_api(c, "uma", &password_of("uma")).await;
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }))
        .await;
        for (status, body) in &answers {
            assert_eq!(
                (*status, body["state"].as_str()),
                (StatusCode::OK, Some("half_authenticated")),
                "round {round}: every correct sign-in succeeds: {answers:?}"
            );
        }

        // Within about a second: one session in the inbox, the rest withdrawn.
        let deadline = Instant::now() + SETTLE;
        let (listed, withdrawn, open_rows) = loop {
            let (_, inbox) = app.get_json(&rita, "/api/v1/inbox").await;
            let listed: Vec<String> = inbox["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["requester"]["id"] == uma.id.as_str())
                .map(|s| s["session_id"].as_str().unwrap().to_string())
                .collect();
            let withdrawn = all_entries(&app.state.ledger.reader)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.fields.requester_id == uma.id && e.fields.outcome == "withdrawn")
                .count();
            let open_rows: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pending_sessions WHERE user_id = ? AND status = 'pending'",
            )
            .bind(&uma.id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
            let done = listed.len() == 1 && withdrawn == 8 * round - 1 && open_rows == 1;
            if done || Instant::now() >= deadline {
                break (listed, withdrawn, open_rows);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            listed.len(),
            1,
            "round {round}: uma's sessions in the inbox: {listed:?}"
        );
        assert_eq!(open_rows, 1, "round {round}: pending rows in app.sqlite");
        assert_eq!(
            withdrawn,
            8 * round - 1,
            "round {round}: every older session is withdrawn in the ledger"
        );
        // Exactly one of the eight browsers holds the surviving session.
        let mut holders = Vec::new();
        for c in &clients {
            let (code, pending) = app.get_json(c, "/api/v1/pending").await;
            if code == 200 && pending["status"] == "pending" {
                holders.push(pending["session_id"].as_str().unwrap_or("").to_string());
            }
        }
        assert_eq!(
            holders, listed,
            "round {round}: the browser that waits is the listed one"
        );
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Cancel after approval
// ---------------------------------------------------------------------------

/// Issue 12, problem 5: after approval, `POST /pending/cancel` must end the
/// sign-in for good. DESIGN is silent on cancel after approval; a security
/// team expects "cancel" to mean the requester does not want this sign-in, so
/// the old token must not complete into a full session afterwards.
#[tokio::test]
async fn cancel_after_approval_cannot_complete() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let (uma, id) = waiting(&app, "uma").await;
    let old_cookie = uma.cookie_header().unwrap();

    let (code, body) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), approve())
        .await;
    assert_eq!(code, 200, "{body}");
    let cancel = app.post(&uma, "/pending/cancel").send().await.unwrap();
    assert!(
        !cancel.status().is_server_error(),
        "cancel after approval: {}",
        cancel.status()
    );

    // The old token, replayed by hand.
    let bare = bare_client();
    let complete = bare
        .post(app.url("/pending/complete"))
        .header("Origin", &app.base)
        .header("Cookie", &old_cookie)
        .send()
        .await
        .unwrap();
    let status = complete.status();
    let location = complete
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let new_token = set_cookie(complete.headers(), "peergate_session").map(|(v, _)| v);
    assert!(
        !(status == StatusCode::SEE_OTHER && location == "/"),
        "the cancelled sign-in completed: {status} to {location}"
    );
    for cookie in std::iter::once(old_cookie.clone()).chain(
        new_token
            .filter(|t| !t.is_empty())
            .map(|t| format!("peergate_session={t}")),
    ) {
        let me = bare
            .get(app.url("/api/v1/me"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        let me_status = me.status();
        let me: Value = me.json().await.unwrap_or(Value::Null);
        assert_ne!(me["state"], "authenticated", "{me_status} {me}");
    }
    assert_ne!(row_status(&app, &id).await.as_deref(), Some("completed"));
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Usernames: one Unicode-aware normalisation
// ---------------------------------------------------------------------------

/// Issue 12, problem 5: `Ölaf` signs in as `ölaf` and `ÖLAF`; `ÉMILE` is
/// émile, and cannot be added as a second account.
#[tokio::test]
async fn usernames_fold_case_with_unicode_rules_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = cli_add(dir.path(), "Ölaf", "Olaf", "olaf-password-1").await;
    assert_eq!(code, 0, "user add Ölaf: {out}{err}");
    let olaf_id = added_id(&out);
    let (code, out, err) = cli_add(dir.path(), "émile", "Émile", "emile-password-1").await;
    assert_eq!(code, 0, "user add émile: {out}{err}");
    let emile_id = added_id(&out);
    let app = spawn_app_in(dir.path(), "", None).await;

    for (typed, password, id) in [
        ("ölaf", "olaf-password-1", &olaf_id),
        ("ÖLAF", "olaf-password-1", &olaf_id),
        ("Ölaf", "olaf-password-1", &olaf_id),
        ("ÉMILE", "emile-password-1", &emile_id),
    ] {
        let client = app.client();
        let r = app.login_api(&client, typed, password).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "sign-in as {typed}: {body}");
        let (_, me) = app.get_json(&client, "/api/v1/me").await;
        assert_eq!(me["user"]["id"], id.as_str(), "sign-in as {typed}: {me}");
    }

    // `ÉMILE` is the same username as `émile`.
    let (code, out, err) = cli_add(dir.path(), "ÉMILE", "Émile Two", "another-password").await;
    assert_ne!(code, 0, "a second émile was added: {out}{err}");
    assert!(err.contains("exists"), "the refusal says why: {err}");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 6, 7. One server per data dir; CLI writers start together
// ---------------------------------------------------------------------------

/// Issue 12, problem 5 and DESIGN §13: a second `peergate serve` on the same
/// data dir is refused, naming the first one's pid.
#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_child(dir.path(), &[("RUST_LOG", "warn")]).await;
    let first_pid = first.child.id().expect("the first server runs");

    let mut second = peergate_command();
    second
        .arg("serve")
        .env("PEERGATE__SERVER__BIND", "127.0.0.1:0")
        .env("PEERGATE__SERVER__PUBLIC_URL", crate::child::CHILD_ORIGIN)
        .env("PEERGATE__STORAGE__DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut second = second.spawn().unwrap();
    let stdout = second.stdout.take().unwrap();
    let mut stderr = second.stderr.take().unwrap();
    let (listening_tx, listening_rx) = tokio::sync::oneshot::channel::<String>();
    let out_task = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut all = String::new();
        let mut listening_tx = Some(listening_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening on")
                && let Some(tx) = listening_tx.take()
            {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let err_task = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let exit = tokio::select! {
        status = second.wait() => status.unwrap(),
        Ok(line) = listening_rx => {
            let _ = second.kill().await;
            first.stop().await;
            panic!("a second server started on the same data dir: {line}");
        }
        () = tokio::time::sleep(Duration::from_secs(15)) => {
            let _ = second.kill().await;
            first.stop().await;
            panic!("a second server on the same data dir neither exited nor listened in 15 s");
        }
    };
    let out = out_task.await.unwrap();
    let err = err_task.await.unwrap();
    assert!(
        !exit.success(),
        "the second server exited {exit}: {out}{err}"
    );
    assert!(
        !out.contains("peergate listening on"),
        "the second server listened: {out}"
    );
    assert!(
        err.contains(&first_pid.to_string()),
        "the refusal names the holder's pid {first_pid}: {err}"
    );
    // The first one is unharmed.
    let health = reqwest::get(first.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    first.stop().await;
}

/// Issue 12, problem 5 and DESIGN §13: several `user add` may start at once
/// on a fresh data dir (migrations must not race).
#[tokio::test]
async fn parallel_first_user_adds_on_a_fresh_data_dir_all_succeed() {
    // Three fresh data dirs: the race is on the very first migration.
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let results = join_all((0..8).map(|i| async move {
            let (username, display_name) = (format!("user{i}"), format!("User {i}"));
            cli_add(path, &username, &display_name, "a-good-password").await
        }))
        .await;
        for (i, (code, out, err)) in results.iter().enumerate() {
            assert_eq!(*code, 0, "round {round}: user add user{i}: {out}{err}");
        }
        let data = dir.path().to_str().unwrap();
        let (code, out, err) = run_cli(
            &["user", "list"],
            &[("PEERGATE__STORAGE__DATA_DIR", data)],
            None,
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let names: Vec<&str> = out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names.len(), 8, "round {round}: {out}");
        for i in 0..8 {
            assert!(
                names.contains(&format!("user{i}").as_str()),
                "round {round}: {out}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 8. A late approval completes within the grace
// ---------------------------------------------------------------------------

/// Issue 12, problem 5 and DESIGN §13: an approval recorded a moment before
/// the TTL can be completed for `peer_review.complete_grace` (default 2m).
/// Past the grace it cannot.
#[tokio::test]
async fn a_late_approval_completes_within_the_grace_and_not_after() {
    let app = spawn_app_with("[peer_review]\nsession_ttl = \"15m\"\ncomplete_grace = \"2m\"").await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("ulla", "Ulla User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let (uma, uma_id) = waiting(&app, "uma").await;
    let (ulla, ulla_id) = waiting(&app, "ulla").await;

    // One second before the TTL, both are approved.
    app.clock.advance(Duration::from_secs(15 * 60 - 1));
    for id in [&uma_id, &ulla_id] {
        let (code, body) = app
            .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), approve())
            .await;
        assert_eq!(code, 200, "approval just before the TTL: {body}");
    }

    // A minute past the TTL, within the grace: uma completes.
    app.clock.advance(Duration::from_mins(1));
    let done = app.post(&uma, "/pending/complete").send().await.unwrap();
    let status = done.status();
    let location = done
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/"),
        "completion 60 s past the TTL, within the grace"
    );
    let (_, me) = app.get_json(&uma, "/api/v1/me").await;
    assert_eq!(me["state"], "authenticated", "{me}");

    // Past the grace (whether counted from the TTL or from the approval):
    // ulla's approval can no longer be completed.
    app.clock.advance(Duration::from_secs(2 * 60 + 10));
    let late = app.post(&ulla, "/pending/complete").send().await.unwrap();
    let status = late.status();
    let location = late
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        !(status == StatusCode::SEE_OTHER && location == "/"),
        "completed past the grace: {status} {location}"
    );
    let (code, me) = app.get_json(&ulla, "/api/v1/me").await;
    assert_ne!(me["state"], "authenticated", "{code} {me}");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 9. The claim rule
// ---------------------------------------------------------------------------

/// Frames a socket sends within `within`, without waiting past it.
async fn frames_within(socket: &mut Socket, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match socket.next(left).await {
            Some(Frame::Json(v)) => frames.push(v),
            Some(Frame::Text(_)) => {}
            Some(Frame::Closed(_)) | None => return frames,
        }
    }
}

/// DESIGN §4, the claim rule: a GET never changes state (`/inbox/{id}` is
/// reachable cross-site with a Lax cookie); the drawer claims with a POST.
#[tokio::test]
async fn a_get_does_not_claim_and_the_claim_post_does() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let (uma, id) = waiting(&app, "uma").await;
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    status.expect("status", SOON).await;

    // Every way of reading the detail.
    let page = rita
        .get(app.url(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let fragment = rita
        .get(app.url(&format!("/inbox/{id}")))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(fragment.status(), 200);
    let (code, detail) = app.get_json(&rita, &format!("/api/v1/inbox/{id}")).await;
    assert_eq!(code, 200, "{detail}");

    let frames = frames_within(&mut status, Duration::from_millis(700)).await;
    assert!(
        !frames.iter().any(|f| f["type"] == "claimed"),
        "a GET claimed the session: {frames:?}"
    );
    let s = summary(&app, &rita, &id).await.expect("listed");
    assert_eq!(s["claimed_by"], Value::Null, "after GETs only: {s}");

    // A claim from another origin is refused like any unsafe request.
    let foreign = rita
        .post(app.url(&format!("/api/v1/inbox/{id}/claim")))
        .header("Origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);

    // The drawer's POST claims.
    let claim = app
        .post(&rita, &format!("/api/v1/inbox/{id}/claim"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), StatusCode::NO_CONTENT, "POST .../claim");
    let claimed = status.expect("claimed", SOON).await;
    assert_eq!(
        claimed,
        json!({"type": "claimed", "reviewer": {"display_name": "Rita Reviewer"}})
    );
    let s = summary(&app, &rita, &id).await.expect("listed");
    assert_eq!(s["claimed_by"], json!({"display_name": "Rita Reviewer"}));
    app.stop().await;
}

/// `reviewers_online` as the requester sees it.
async fn online_as_seen_by(app: &TestApp, requester: &Browser) -> u64 {
    let (code, pending) = app.get_json(requester, "/api/v1/pending").await;
    assert_eq!(code, 200, "{pending}");
    pending["reviewers_online"].as_u64().unwrap()
}

/// Waits up to a second for `reviewers_online` to read `want`; returns the last value.
async fn online_settles_at(app: &TestApp, requester: &Browser, want: u64) -> u64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let n = online_as_seen_by(app, requester).await;
        if n == want || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// DESIGN §4: `reviewers_online` counts people, not their tabs.
#[tokio::test]
async fn reviewers_online_counts_people_not_tabs() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let rob = reviewer(&app, "rob").await;
    let (uma, _) = waiting(&app, "uma").await;
    assert_eq!(online_as_seen_by(&app, &uma).await, 0);

    let mut tabs = Vec::new();
    for _ in 0..3 {
        let mut tab = app.socket(&rita, "/ws/inbox?format=json").await;
        tab.expect("snapshot", SOON).await;
        tabs.push(tab);
    }
    // Let every connection be counted before reading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        online_settles_at(&app, &uma, 1).await,
        1,
        "one reviewer, three tabs"
    );

    let mut robs = app.socket(&rob, "/ws/inbox?format=json").await;
    robs.expect("snapshot", SOON).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(online_settles_at(&app, &uma, 2).await, 2, "two reviewers");

    // Rita closes two tabs: she is still online.
    tabs.truncate(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        online_settles_at(&app, &uma, 2).await,
        2,
        "rita keeps one tab"
    );
    // And the last one: only Rob is left.
    tabs.clear();
    assert_eq!(online_settles_at(&app, &uma, 1).await, 1, "rita left");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 10. Username rules
// ---------------------------------------------------------------------------

/// Issue 12, "Validated once, into types": `user add` refuses usernames with
/// spaces, control characters or mixed-script confusables, naming the rule.
#[tokio::test]
async fn user_add_refuses_confusable_and_invisible_usernames_and_names_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    // A plain name goes through, so the refusals below are about the names.
    let (code, out, err) = cli_add(dir.path(), "anna.smith", "Anna Smith", "a-good-password").await;
    assert_eq!(code, 0, "{out}{err}");

    let cases: [(&str, &str, &[&str]); 3] = [
        ("anna smith", "a space", &["space"]),
        ("anna\u{7}smith", "a control character", &["control"]),
        // Latin "paypal" with a Cyrillic "а" (U+0430).
        (
            "p\u{430}ypal",
            "mixed scripts",
            &["confusable", "mixed", "script"],
        ),
    ];
    for (username, what, words) in cases {
        let (code, out, err) = cli_add(dir.path(), username, "Someone", "a-good-password").await;
        assert_ne!(code, 0, "{what}: {username:?} was added: {out}");
        let message = err.to_lowercase();
        assert!(
            words.iter().any(|w| message.contains(w)),
            "{what}: the error names the rule ({words:?}): {err}"
        );
    }
    let data = dir.path().to_str().unwrap();
    let (_, list, _) = run_cli(
        &["user", "list"],
        &[("PEERGATE__STORAGE__DATA_DIR", data)],
        None,
    )
    .await;
    assert_eq!(list.lines().count(), 2, "only anna.smith: {list}");
}

// ---------------------------------------------------------------------------
// 11. The client IP behind a trusted proxy
// ---------------------------------------------------------------------------

async fn sign_in_via(app: &TestApp, username: &str, forwarded_for: &str) -> String {
    let client = app.client();
    let r = app
        .post(&client, "/api/v1/login")
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"username": username, "password": password_of(username)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "sign-in of {username}");
    let (_, pending) = app.get_json(&client, "/api/v1/pending").await;
    pending["session_id"].as_str().unwrap().to_string()
}

/// Issue 12 and DESIGN §10: behind a trusted proxy the client IP is the
/// right-most X-Forwarded-For address outside the list; from anyone else the
/// header is ignored.
#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let app = spawn_app_with("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]").await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("ulla", "Ulla User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;

    let id = sign_in_via(&app, "uma", "203.0.113.7, 127.0.0.1").await;
    let s = summary(&app, &rita, &id).await.expect("listed");
    assert_eq!(s["client"]["ip"], "203.0.113.7", "{s}");
    // A client cannot choose its address by prepending one: the right-most
    // untrusted address counts.
    let spoofed = sign_in_via(&app, "ulla", "6.6.6.6, 203.0.113.9").await;
    let s = summary(&app, &rita, &spoofed).await.expect("listed");
    assert_eq!(s["client"]["ip"], "203.0.113.9", "{s}");
    // The ledger records the same address.
    let (code, body) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), deny())
        .await;
    assert_eq!(code, 200, "{body}");
    let entries = all_entries(&app.state.ledger.reader).await.unwrap();
    let entry = entries
        .iter()
        .find(|e| e.fields.session_id == id)
        .expect("the denial is recorded");
    assert_eq!(entry.fields.requester_ip, "203.0.113.7");
    app.stop().await;

    // Without trusted proxies, the header is ignored.
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    for forwarded_for in ["203.0.113.7, 127.0.0.1", "203.0.113.7"] {
        let id = sign_in_via(&app, "uma", forwarded_for).await;
        let s = summary(&app, &rita, &id).await.expect("listed");
        assert_eq!(s["client"]["ip"], "127.0.0.1", "{forwarded_for}: {s}");
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 12. The bounded password-check queue
// ---------------------------------------------------------------------------

/// Issue 12, problem 3 and DESIGN §13: argon2 runs on a bounded pool; past
/// the queue the answer is `503 unavailable` with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_past_the_queue_are_refused_with_503() {
    let app = spawn_app_with(
        "[auth]\npassword_checks_in_parallel = 1\npassword_check_queue = 2\nfailed_logins_per_minute = 1000",
    )
    .await;
    app.add_user("uma", "Uma User", PLAIN).await;
    // Unknown usernames: each is checked against the dummy hash, which has
    // the production cost, so the checks queue up.
    let answers = join_all((0..30).map(|i| {
        let client = bare_client();
        let (url, origin) = (app.url("/api/v1/login"), app.base.clone());
        async move {
            let r = client
                .post(url)
                .header("Origin", origin)
                .json(&json!({"username": format!("ghost{i}"), "password": "not-a-password"}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, retry_after, body)
        }
    }))
    .await;
    for (status, _, body) in &answers {
        assert!(
            *status == StatusCode::UNAUTHORIZED || *status == StatusCode::SERVICE_UNAVAILABLE,
            "only 401 or 503: {status} {body}"
        );
    }
    let refused: Vec<_> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !refused.is_empty(),
        "30 concurrent checks with 1 in parallel and a queue of 2: none refused"
    );
    for (_, retry_after, body) in refused {
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        let secs: u64 = retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .expect("503 carries Retry-After in seconds");
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
    }
    // Once the flood has passed, a real sign-in goes through.
    app.sign_in(&app.client(), "uma", "half_authenticated")
        .await;
    app.stop().await;
}
