//! Defences attacked on the running server: failing closed when the ledger or
//! app.sqlite cannot be written, floods, oversized input, sessions that end.

use std::time::Duration;

use peergate::ledger::read::all_entries;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use crate::helpers::*;

const SOON: Duration = Duration::from_secs(3);

async fn lock(path: &std::path::Path) -> SqliteConnection {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn unlock(mut conn: SqliteConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_unwritable_ledger_approves_nothing_and_recovers() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let uma = app.client();
    app.sign_in(&uma, "uma", "half_authenticated").await;
    let (_, pending) = app.get_json(&uma, "/api/v1/pending").await;
    let id = pending["session_id"].as_str().unwrap().to_string();
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    status.expect("status", SOON).await;

    let blocker = lock(&app.data_dir.join("ledger.sqlite")).await;
    let (code, body) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), approve())
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(
        all_entries(&app.state.ledger.reader)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(app.state.registry.get(&id).is_some(), "still pending");
    let (_, me) = app.get_json(&uma, "/api/v1/me").await;
    assert_eq!(me["state"], "half_authenticated");
    let complete = app.post(&uma, "/pending/complete").send().await.unwrap();
    assert_eq!(
        complete.status(),
        StatusCode::CONFLICT,
        "nothing to complete"
    );

    unlock(blocker).await;
    let (code, _) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), approve())
        .await;
    assert_eq!(code, 200, "recovered once the fault cleared");
    status.expect("approved", SOON).await;
    app.stop().await;
}

#[tokio::test]
async fn an_unwritable_app_database_fails_sign_in_cleanly() {
    let app = spawn_app().await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let blocker = lock(&app.data_dir.join("app.sqlite")).await;
    let uma = app.client();
    let r = app.login_api(&uma, "uma", &password_of("uma")).await;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        app.state.registry.list().is_empty(),
        "no half-created pending session"
    );
    unlock(blocker).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_sessions")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    app.sign_in(&uma, "uma", "half_authenticated").await;
    app.stop().await;
}

#[tokio::test]
async fn repeated_sign_ins_cannot_flood_the_reviewers() {
    let app = spawn_app_with("[auth]\nreview_starts_per_user = 3").await;
    app.add_user("uma", "Uma User", PLAIN).await;
    for _ in 0..3 {
        app.sign_in(&app.client(), "uma", "half_authenticated")
            .await;
    }
    assert_eq!(app.state.registry.len(), 1, "one pending session per user");
    let r = app
        .login_api(&app.client(), "uma", &password_of("uma"))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    app.clock.advance(Duration::from_secs(15 * 60 + 1));
    app.sign_in(&app.client(), "uma", "half_authenticated")
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_session_holds_a_limited_number_of_sockets_and_others_stay_fast() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(app.socket(&rita, "/ws/inbox?format=json").await);
    }
    let refused = app
        .socket_from(&rita, "/ws/inbox?format=json", &app.base)
        .await;
    assert_eq!(refused.err(), Some(429));
    // Someone else is served at once all the same.
    let rob = app.client();
    app.sign_in(&rob, "rob", "authenticated").await;
    let mut robs = app.socket(&rob, "/ws/inbox?format=json").await;
    robs.expect("snapshot", SOON).await;
    app.sign_in(&app.client(), "uma", "half_authenticated")
        .await;
    robs.expect("added", Duration::from_secs(1)).await;
    // Closing one frees a place.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.socket(&rita, "/ws/inbox?format=json").await;
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_frames_are_refused() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let big = "x".repeat(64 * 1024);
    let r = app
        .post(&rita, "/api/v1/login")
        .json(&json!({"username": big, "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let mut socket = app.socket(&rita, "/ws/inbox?format=json").await;
    socket.expect("snapshot", SOON).await;
    let _ = futures_util::SinkExt::send(
        &mut socket.stream,
        tokio_tungstenite::tungstenite::Message::text("y".repeat(16 * 1024)),
    )
    .await;
    let code = socket.expect_close(SOON).await;
    assert!(
        matches!(code, None | Some(1009)),
        "closed for a too-large message: {code:?}"
    );
    // The server is fine.
    let (code, _) = app.get_json(&rita, "/api/v1/inbox").await;
    assert_eq!(code, 200);
    app.stop().await;
}

#[tokio::test]
async fn sessions_that_end_close_their_sockets() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("dora", "Dora Reviewer", EXEMPT_REVIEWER).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let rob = app.client();
    app.sign_in(&rob, "rob", "authenticated").await;
    let dora = app.client();
    app.sign_in(&dora, "dora", "authenticated").await;
    let mut ritas = app.socket(&rita, "/ws/inbox?format=json").await;
    let mut robs = app.socket(&rob, "/ws/inbox?format=json").await;
    let mut doras = app.socket(&dora, "/ws/inbox?format=json").await;
    for s in [&mut ritas, &mut robs, &mut doras] {
        s.expect("snapshot", SOON).await;
    }
    // Logout: at once.
    app.post(&rita, "/logout").send().await.unwrap();
    assert_eq!(ritas.expect_close(Duration::from_secs(1)).await, Some(1008));
    // The reviewer role removed (as `peergate user set-roles` does): within ~1 s.
    peergate::store::users::set_roles(
        &app.state.db,
        &"rob".parse().unwrap(),
        peergate::domain::Roles {
            reviewer: false,
            admin: false,
            exempt: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(robs.expect_close(SOON).await, Some(1008));
    let (code, _) = app.get_json(&rob, "/api/v1/inbox").await;
    assert_eq!(code, 403, "and on the next request");
    // A disabled user: the session ends server-side and the socket closes.
    peergate::store::users::disable(&app.state.db, &"dora".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(doras.expect_close(SOON).await, Some(1008));
    let (code, _) = app.get_json(&dora, "/api/v1/me").await;
    assert_eq!(code, 401);
    app.stop().await;
}
