//! Webhooks (DESIGN.md §12) against real HTTP receivers on loopback, started
//! here; every delivery's signature is checked with the `standardwebhooks`
//! crate, as a receiver would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::child::{CHILD_ORIGIN, spawn_child_with_args};
use crate::helpers::*;

/// The secret every test endpoint shares (24 bytes, as Standard Webhooks makes them).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How a test receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// 200 to everything.
    Ok,
    /// 500 to the first N requests, then 200.
    FailFirst(usize),
    /// Reads the request, then never answers.
    Hang,
}

/// One request a receiver answered.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
    pub status: u16,
}

#[derive(Clone)]
struct Shared {
    mode: Mode,
    hits: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Received>>>,
}

/// A webhook receiver on 127.0.0.1, recording what it is sent.
pub struct Receiver {
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    axum::extract::State(shared): axum::extract::State<Shared>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let n = shared.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let status = match shared.mode {
        Mode::Hang => std::future::pending().await,
        Mode::FailFirst(k) if n <= k => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    };
    shared.got.lock().unwrap().push(Received {
        headers,
        body,
        status: status.as_u16(),
    });
    status
}

impl Receiver {
    pub async fn start(mode: Mode) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), mode)
    }

    /// On a listener the test bound (a port reserved earlier).
    pub fn start_on(listener: TcpListener, mode: Mode) -> Self {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let shared = Shared {
            mode,
            hits: Arc::default(),
            got: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Requests that arrived, answered or not.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests have been answered.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for an accepted delivery of event `kind` about `session_id` and
    /// returns its checked body.
    pub async fn event(&self, kind: &str, session_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            for r in self.received() {
                let body = verified(&r);
                if r.status == 200
                    && body["type"] == kind
                    && body["data"]["session_id"] == session_id
                {
                    return body;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no `{kind}` for {session_id} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The body of a delivery whose Standard Webhooks signature checks out.
pub fn verified(r: &Received) -> Value {
    standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(r.body.as_bytes(), &r.headers)
        .unwrap_or_else(|e| panic!("bad signature ({e}) on {}", r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers["webhook-id"]
            .to_str()
            .unwrap()
            .starts_with("msg_")
    );
    serde_json::from_str(&r.body).expect("a JSON body")
}

/// One `[[alerts.webhook]]` table.
pub fn webhook(url: &str, events: &[&str]) -> String {
    format!(
        "[[alerts.webhook]]\nurl = \"{url}\"\nformat = \"standard\"\nsecret = \"{SECRET}\"\nevents = {}\n",
        serde_json::to_string(events).unwrap()
    )
}

const ALL_EVENTS: [&str; 6] = [
    "review.requested",
    "review.unattended",
    "review.overdue",
    "review.decided",
    "review.expired",
    "review.mismatch",
];

/// The reviewer's view of a session's code, then a decision; returns (code, entry).
async fn decide(app: &TestApp, reviewer: &Browser, id: &str, decision: Value) -> (String, Value) {
    let (_, detail) = app.get_json(reviewer, &format!("/api/v1/inbox/{id}")).await;
    let code = detail["code"].as_str().unwrap().to_string();
    let (status, body) = app
        .post_json(reviewer, &format!("/api/v1/inbox/{id}/decision"), decision)
        .await;
    assert_eq!(status, 200, "{body}");
    (code, body["entry"].clone())
}

/// Checks `data` against §12: every key, the requester, the inbox URL.
fn check_data(app: &TestApp, body: &Value, id: &str, username: &str, level: &str) {
    let data = body["data"].as_object().unwrap();
    for key in [
        "session_id",
        "requester",
        "reviewer",
        "outcome",
        "level",
        "inbox_url",
        "seq",
        "entry_hash",
    ] {
        assert!(data.contains_key(key), "`{key}` missing from {body}");
    }
    assert_eq!(data.len(), 8, "{body}");
    assert_eq!(data["requester"]["username"], username);
    assert_eq!(data["level"], level, "{body}");
    assert_eq!(data["inbox_url"], format!("{}/inbox/{id}", app.base));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn each_event_arrives_signed_with_its_documented_payload() {
    let receiver = Receiver::start(Mode::Ok).await;
    let app = spawn_app_with(&webhook(&receiver.url, &ALL_EVENTS)).await;
    let rita = app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    for name in ["uma", "una", "ola", "ulf"] {
        app.add_user(name, name, PLAIN).await;
    }
    let reviewer = app.client();
    app.sign_in(&reviewer, "rita", "authenticated").await;
    let wait = Duration::from_secs(5);

    // Requested, then unattended (no reviewer has the inbox open), then overdue.
    let uma = waiting(&app, "uma").await.1;
    let requested = receiver.event("review.requested", &uma, wait).await;
    check_data(&app, &requested, &uma, "uma", "new");
    assert!(requested["data"]["reviewer"].is_null() && requested["data"]["seq"].is_null());
    app.clock.advance(Duration::from_secs(3 * 60 + 5));
    let unattended = receiver.event("review.unattended", &uma, wait).await;
    check_data(&app, &unattended, &uma, "uma", "aging");
    app.clock.advance(Duration::from_mins(5));
    let overdue = receiver.event("review.overdue", &uma, wait).await;
    check_data(&app, &overdue, &uma, "uma", "overdue");

    // Decided: approved and denied, with the ledger row and the reviewer.
    let approve = json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": "NOTE-approve-7f3a"});
    let (code_uma, entry) = decide(&app, &reviewer, &uma, approve).await;
    let decided = receiver.event("review.decided", &uma, wait).await;
    check_data(&app, &decided, &uma, "uma", "overdue");
    assert_eq!(decided["data"]["outcome"], "approved");
    assert_eq!(decided["data"]["seq"], entry["seq"]);
    assert_eq!(decided["data"]["entry_hash"], entry["entry_hash"]);
    assert_eq!(
        decided["data"]["reviewer"],
        json!({"id": rita.id, "display_name": "Rita Reviewer"})
    );
    let ola = waiting(&app, "ola").await.1;
    let deny = json!({"outcome": "deny", "channel": "chat", "code_confirmed": false, "note": "NOTE-deny-91bc"});
    let (code_ola, _) = decide(&app, &reviewer, &ola, deny).await;
    assert_eq!(
        receiver.event("review.decided", &ola, wait).await["data"]["outcome"],
        "denied"
    );

    // A mismatch sends review.mismatch, not review.decided.
    let una = waiting(&app, "una").await.1;
    let mismatch = json!({"outcome": "mismatch", "channel": "call", "code_confirmed": false, "note": "NOTE-mismatch-c0de"});
    let (una_code, entry) = decide(&app, &reviewer, &una, mismatch).await;
    let alarm = receiver.event("review.mismatch", &una, wait).await;
    check_data(&app, &alarm, &una, "una", "new");
    assert_eq!(alarm["data"]["outcome"], "mismatch");
    assert_eq!(alarm["data"]["seq"], entry["seq"]);

    // Expired, with its ledger row and no reviewer.
    let ulf = waiting(&app, "ulf").await.1;
    app.clock.advance(Duration::from_mins(16));
    let expired = receiver.event("review.expired", &ulf, wait).await;
    assert_eq!(expired["data"]["outcome"], "expired");
    assert!(expired["data"]["reviewer"].is_null() && expired["data"]["seq"].is_i64());

    // Every body is signed, and none carries a code or a note.
    let all = receiver.received();
    for kind in ALL_EVENTS {
        assert!(all.iter().any(|r| verified(r)["type"] == kind), "no {kind}");
    }
    assert!(all.iter().all(|r| verified(r)["data"]["session_id"] != ""));
    assert!(
        !all.iter()
            .any(|r| verified(r)["type"] == "review.decided" && r.body.contains(&una))
    );
    for r in &all {
        for secret in [&code_uma, &code_ola, &una_code] {
            assert!(!r.body.contains(secret.as_str()), "a code in {}", r.body);
        }
        assert!(!r.body.contains("NOTE-"), "a note in {}", r.body);
        assert!(
            !r.body.contains("\"code\"") && !r.body.contains("\"note\""),
            "{}",
            r.body
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_event_on_the_third_try_with_the_same_id() {
    let receiver = Receiver::start(Mode::FailFirst(2)).await;
    let app = spawn_app_with(&webhook(&receiver.url, &["review.requested"])).await;
    app.add_user("uma", "Uma", PLAIN).await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let started = Instant::now();
    let uma = waiting(&app, "uma").await.1;
    let tries = receiver.wait_for(3, Duration::from_secs(15)).await;
    let statuses: Vec<u16> = tries.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    // 1 s, then 2 s of backoff between the tries.
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    let ids: Vec<&str> = tries
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for r in &tries {
        assert_eq!(verified(r)["data"]["session_id"], uma);
    }
    // The admin page lists the delivery, and the failures before it.
    let admin = app.client();
    app.sign_in(&admin, "ada", "authenticated").await;
    let page = admin
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(ids[0]), "the webhook-id is listed");
    assert!(
        page.contains("delivery-delivered") && page.contains("answered 500"),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_the_event() {
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let url = format!("http://{addr}/hook");
    let app = spawn_app_with(&webhook(&url, &["review.requested"])).await;
    app.add_user("uma", "Uma", PLAIN).await;
    let uma = waiting(&app, "uma").await.1;
    // Nobody listens: the first tries fail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let receiver = Receiver::start_on(TcpListener::bind(addr).await.unwrap(), Mode::Ok);
    let body = receiver
        .event("review.requested", &uma, Duration::from_secs(10))
        .await;
    assert_eq!(body["data"]["requester"]["username"], "uma");
    let failed: i64 =
        sqlx::query_scalar("SELECT attempts FROM webhook_outbox WHERE status = 'delivered'")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(failed >= 2, "delivered after {failed} attempts");
    app.stop().await;
}

#[tokio::test]
async fn a_killed_server_delivers_its_undelivered_events_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let pool = peergate::store::open(&data).await.unwrap();
        let hash = peergate::passwords::hash(password_of("uma"), peergate::passwords::Cost::Fast)
            .await
            .unwrap();
        peergate::store::users::insert_user(
            &pool,
            &peergate::store::users::NewUser {
                username: "uma".into(),
                display_name: "Uma".into(),
                password_hash: hash,
                is_reviewer: false,
                is_admin: false,
                is_exempt: false,
            },
            "2026-01-01T00:00:00.000Z",
        )
        .await
        .unwrap();
        pool.close().await;
    }
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let config = dir.path().join("peergate.toml");
    std::fs::write(
        &config,
        webhook(&format!("http://{addr}/hook"), &["review.requested"]),
    )
    .unwrap();
    let config = config.display().to_string();
    let args = ["--config", config.as_str()];

    let child = spawn_child_with_args(&data, &args, &[]).await;
    let signed_in = reqwest::Client::new()
        .post(child.url("/api/v1/login"))
        .header("Origin", CHILD_ORIGIN)
        .json(&json!({"username": "uma", "password": password_of("uma")}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    // The event is in the outbox before the sign-in answers; nobody has it yet.
    child.kill().await;

    let receiver = Receiver::start_on(TcpListener::bind(addr).await.unwrap(), Mode::Ok);
    let child = spawn_child_with_args(&data, &args, &[]).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let body = verified(&got[0]);
    assert_eq!(body["type"], "review.requested");
    assert_eq!(body["data"]["requester"]["username"], "uma");
    assert_eq!(
        body["data"]["inbox_url"]
            .as_str()
            .unwrap()
            .split("/inbox/")
            .next(),
        Some(CHILD_ORIGIN)
    );
    // Exactly once here: the restart does not record it again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits(), 1);
    child.stop().await;
}

#[tokio::test]
async fn a_hanging_receiver_delays_neither_another_receiver_nor_a_decision() {
    let hanging = Receiver::start(Mode::Hang).await;
    let healthy = Receiver::start(Mode::Ok).await;
    let config = format!(
        "{}{}",
        webhook(&hanging.url, &ALL_EVENTS),
        webhook(&healthy.url, &ALL_EVENTS)
    );
    let app = spawn_app_with(&config).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma", PLAIN).await;
    let reviewer = app.client();
    app.sign_in(&reviewer, "rita", "authenticated").await;

    let started = Instant::now();
    let uma = waiting(&app, "uma").await.1;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "sign-in took {:?}",
        started.elapsed()
    );
    healthy
        .event("review.requested", &uma, Duration::from_secs(2))
        .await;

    let started = Instant::now();
    let approve =
        json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": ""});
    decide(&app, &reviewer, &uma, approve).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the decision took {took:?}");
    healthy
        .event("review.decided", &uma, Duration::from_secs(2))
        .await;
    // The hanging endpoint has the first event open and answers nothing.
    assert!(hanging.hits() >= 1);
    assert!(hanging.received().is_empty());
    app.stop().await;
}
