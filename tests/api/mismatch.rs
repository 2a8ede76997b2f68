//! The mismatch outcome (DESIGN.md §12): the code read back was not the one
//! on the screen. Written like a denial; the requester hears only "denied";
//! the account is locked until `peergate user unlock`; `/admin` raises the
//! alarm until an admin acknowledges it.

use std::time::Duration;

use peergate::ledger::read::{all_entries, kpis};
use serde_json::{Value, json};

use crate::child::run_cli;
use crate::helpers::*;

const SOON: Duration = Duration::from_secs(3);

fn mismatch(note: &str) -> Value {
    json!({"outcome": "mismatch", "channel": "call", "code_confirmed": false, "note": note})
}

#[tokio::test]
async fn a_mismatch_is_recorded_like_a_denial_and_the_requester_hears_denied() {
    let app = spawn_app().await;
    let rita = app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let reviewer = reviewer(&app, "rita").await;
    let other = crate::helpers::reviewer(&app, "rob").await;
    let (uma, id) = waiting(&app, "uma").await;
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    status.expect("status", SOON).await;
    let mut inbox = app.socket(&other, "/ws/inbox?format=json").await;
    inbox.expect("snapshot", SOON).await;

    let (code, body) = app
        .post_json(
            &reviewer,
            &format!("/api/v1/inbox/{id}/decision"),
            mismatch(""),
        )
        .await;
    assert_eq!(code, 200, "a mismatch needs no note: {body}");

    // The requester is told only that the sign-in was denied.
    let mut heard = Vec::new();
    while let Some(crate::helpers::Frame::Json(v)) = status.next(SOON).await {
        heard.push(v);
    }
    heard.retain(|v| v["type"] != "presence");
    assert_eq!(heard, [json!({"type": "denied"})]);
    // The other reviewers hear the real outcome.
    let removed = inbox.expect("removed", SOON).await;
    assert_eq!(
        removed,
        json!({"type": "removed", "session_id": id, "outcome": "mismatch"})
    );

    // The ledger row: like a denial, with code_confirmed 0.
    let entries = all_entries(&app.state.ledger.reader).await.unwrap();
    let row = &entries.last().unwrap().fields;
    assert_eq!(row.session_id, id);
    assert_eq!(row.outcome, "mismatch");
    assert_eq!(row.code_confirmed, 0);
    assert_eq!(
        (row.reviewer_id.as_str(), row.reviewer_name.as_str()),
        (rita.id.as_str(), "Rita Reviewer")
    );
    assert_eq!(row.channel, "call");
    assert_eq!(body["entry"]["seq"], row.seq);
    // `ledger verify` accepts it, and the KPIs count it as a decision.
    let snapshot = app.state.ledger.snapshots.current().await.unwrap();
    let verdict = peergate::ledger::verify_file(&snapshot.path, Some(snapshot.head)).await;
    assert!(
        matches!(verdict, peergate::ledger::Verdict::Valid { .. }),
        "{verdict:?}"
    );
    let k = kpis(&app.state.ledger.reader, app.clock.now_utc())
        .await
        .unwrap();
    assert_eq!(k.decisions_24h, 1);
    assert_eq!(k.decided_within_10m, Some(1.0));
    // The session is over for the requester.
    let (code, _) = app.get_json(&uma, "/api/v1/me").await;
    assert_eq!(code, 401);
    app.stop().await;
}

#[tokio::test]
async fn a_mismatch_that_says_the_code_was_read_back_is_refused() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let reviewer = reviewer(&app, "rita").await;
    let (_, id) = waiting(&app, "uma").await;
    let (code, body) = app
        .post_json(
            &reviewer,
            &format!("/api/v1/inbox/{id}/decision"),
            json!({"outcome": "mismatch", "channel": "call", "code_confirmed": true, "note": ""}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid");
    assert!(app.state.registry.get(&id).is_some(), "still waiting");
    app.stop().await;
}

#[tokio::test]
async fn a_locked_account_is_refused_until_user_unlock() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let reviewer = reviewer(&app, "rita").await;
    let (_, id) = waiting(&app, "uma").await;
    let (code, _) = app
        .post_json(
            &reviewer,
            &format!("/api/v1/inbox/{id}/decision"),
            mismatch("not her voice"),
        )
        .await;
    assert_eq!(code, 200);
    let mut inbox = app.socket(&reviewer, "/ws/inbox?format=json").await;
    inbox.expect("snapshot", SOON).await;
    let count = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pending_sessions")
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let before = count(&app).await;

    // The right password: refused with a clear message, and nothing created.
    let browser = app.client();
    let response = app.login_api(&browser, "uma", &password_of("uma")).await;
    assert_eq!(response.status(), 403);
    let cookie = response.headers().get("set-cookie").is_some();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("security team"),
        "{body}"
    );
    assert!(!cookie, "no session cookie");
    // The HTML form says so too.
    let form = app
        .post(&browser, "/login")
        .form(&[("username", "uma"), ("password", &password_of("uma"))])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    assert!(
        form.text()
            .await
            .unwrap()
            .contains("This account is locked")
    );
    // A wrong password still gets the one generic answer: no account oracle.
    let wrong = app.login_api(&browser, "uma", "not-the-password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(count(&app).await, before, "no pending session");
    assert_eq!(app.state.registry.len(), 0);
    while let Some(frame) = inbox.next(Duration::from_millis(500)).await {
        if let crate::helpers::Frame::Json(v) = frame {
            assert_eq!(v["type"], "presence", "nothing reached the inbox: {v}");
        }
    }

    // `peergate user unlock` (from the command line, while the server runs).
    let dir = app.data_dir.display().to_string();
    let env = [("PEERGATE__STORAGE__DATA_DIR", dir.as_str())];
    let (code, out, err) = run_cli(&["user", "unlock", "uma"], &env, None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unlocked"), "{out}");
    let (code, _, err) = run_cli(&["user", "unlock", "nobody"], &env, None).await;
    assert_ne!(code, 0);
    assert!(err.contains("no user named"), "{err}");
    app.sign_in(&app.client(), "uma", "half_authenticated")
        .await;
    inbox.expect("added", SOON).await;
    app.stop().await;
}

#[tokio::test]
async fn with_lock_on_mismatch_off_the_account_stays_open() {
    let app = spawn_app_with("[peer_review]\nlock_on_mismatch = false\n").await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let reviewer = reviewer(&app, "rita").await;
    let (_, id) = waiting(&app, "uma").await;
    let (code, _) = app
        .post_json(
            &reviewer,
            &format!("/api/v1/inbox/{id}/decision"),
            mismatch(""),
        )
        .await;
    assert_eq!(code, 200);
    app.sign_in(&app.client(), "uma", "half_authenticated")
        .await;
    app.stop().await;
}

#[tokio::test]
async fn the_admin_page_shows_a_mismatch_until_an_admin_acknowledges_it() {
    let app = spawn_app().await;
    let ada = app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let admin = reviewer(&app, "ada").await;
    let (_, id) = waiting(&app, "uma").await;
    let (code, _) = app
        .post_json(
            &admin,
            &format!("/api/v1/inbox/{id}/decision"),
            mismatch(""),
        )
        .await;
    assert_eq!(code, 200);
    let page = |admin: &Browser| {
        let url = app.url("/admin");
        let client = admin.http.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let shown = page(&admin).await;
    assert!(shown.contains(&format!("id=\"mismatch-{id}\"")), "{shown}");
    assert!(shown.contains("account locked"));
    // Still there on the next visit: only an acknowledgement clears it.
    assert!(page(&admin).await.contains(&format!("mismatch-{id}")));

    let path = format!("/admin/mismatches/{id}/acknowledge");
    // Like every POST, it must come from our own origin.
    let forged = admin
        .post(app.url(&path))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(page(&admin).await.contains(&format!("mismatch-{id}")));
    let acked = app.post(&admin, &path).send().await.unwrap();
    assert_eq!(acked.status(), 303);
    assert!(!page(&admin).await.contains(&format!("mismatch-{id}")));

    // Recorded in app.sqlite, with who and when.
    let (by, name, at): (String, String, String) = sqlx::query_as(
        "SELECT acknowledged_by, acknowledged_by_name, acknowledged_at FROM mismatches WHERE session_id = ?",
    )
    .bind(&id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!((by.as_str(), name.as_str()), (ada.id.as_str(), "Ada Admin"));
    assert!(at.ends_with('Z'));
    app.stop().await;
}
