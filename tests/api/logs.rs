//! Secrets stay out of the logs: a sign-in through the real binary at debug
//! level, with every code and token it handed out searched for in its stderr.

use reqwest::header::SET_COOKIE;
use serde_json::{Value, json};

use crate::child::{CHILD_ORIGIN, run_cli, spawn_child};

#[tokio::test]
async fn codes_and_tokens_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let env = [("PEERGATE__STORAGE__DATA_DIR", data)];
    let (code, out, err) = run_cli(
        &[
            "user",
            "add",
            "uma",
            "--display-name",
            "Uma User",
            "--password-stdin",
        ],
        &env,
        Some("uma-password-1\n"),
    )
    .await;
    assert_eq!(code, 0, "user add: {out}{err}");
    assert!(out.contains("added uma"));

    let server = spawn_child(dir.path(), &[("RUST_LOG", "trace")]).await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = server
        .post(&client, "/api/v1/login")
        .json(&json!({"username": "uma", "password": "uma-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|l| l.strip_prefix("peergate_session="))
        .and_then(|l| l.split(';').next())
        .expect("session cookie")
        .to_string();
    let pending: Value = client
        .get(server.url("/api/v1/pending"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_code = pending["code"].as_str().unwrap().to_string();
    let rotated: Value = server
        .post(&client, "/api/v1/pending/code")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second_code = rotated["code"].as_str().unwrap().to_string();
    let page = client
        .get(server.url("/pending"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&second_code[..3]));
    let _ = CHILD_ORIGIN;

    let log = server.stop().await;
    assert!(
        log.contains("peer review requested"),
        "the log is being captured:\n{log}"
    );
    assert!(log.contains("code rotated"));
    for secret in [
        &token,
        &first_code,
        &second_code,
        &"uma-password-1".to_string(),
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "`{secret}` leaked into the log:\n{log}"
        );
    }
    // Nor are they on disk in plain form.
    for file in [
        "app.sqlite",
        "app.sqlite-wal",
        "ledger.sqlite",
        "ledger.sqlite-wal",
    ] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&token), "token in {file}");
        }
    }
}
