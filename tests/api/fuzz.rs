//! Property-based fuzzing with a fixed seed (so CI is repeatable): request
//! bodies, socket frames and ledger files that no one should send. Nothing
//! may panic, nothing may answer 500, and the server keeps serving.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::helpers::*;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    )
}

/// Bytes that look like the inputs the parsers expect, and bytes that do not.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        "[a-z_]{0,12}=[^&]{0,40}(&[a-z_]{0,12}=[^&]{0,200}){0,5}".prop_map(String::into_bytes),
        r#"\{("[a-z_]{1,14}": ?("[^"]{0,80}"|true|false|null|-?[0-9]{1,20}|\[\]|\{\})(, )?){0,6}\}"#.prop_map(String::into_bytes),
    ]
}

#[test]
fn request_bodies_never_break_the_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, rita, id) = rt.block_on(async {
        let app = spawn_app_with("[auth]\nfailed_logins_per_minute = 100000").await;
        app.add_user("rita", "Rita", EXEMPT_REVIEWER).await;
        app.add_user("uma", "Uma", PLAIN).await;
        let rita = app.client();
        app.sign_in(&rita, "rita", "authenticated").await;
        let uma = app.client();
        app.sign_in(&uma, "uma", "half_authenticated").await;
        let (_, p) = app.get_json(&uma, "/api/v1/pending").await;
        let id = p["session_id"].as_str().unwrap().to_string();
        (app, rita, id)
    });
    let targets = [
        ("/login", "application/x-www-form-urlencoded"),
        ("/api/v1/login", "application/json"),
        ("/api/v1/pending/code", "application/json"),
        ("/inbox/ID/decision", "application/x-www-form-urlencoded"),
        ("/api/v1/inbox/ID/decision", "application/json"),
    ];
    runner(300)
        .run(&(0..targets.len(), body()), |(which, bytes)| {
            let (path, content_type) = targets[which];
            let path = path.replace("ID", &id);
            let status = rt.block_on(async {
                app.post(&rita, &path)
                    .header("Content-Type", content_type)
                    .body(bytes.clone())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            });
            prop_assert!(
                status < 500,
                "{path} answered {status} to {:?}",
                String::from_utf8_lossy(&bytes)
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        // Still serving, and the session was not decided by garbage.
        let r = reqwest::get(app.url("/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
        let entries = peergate::ledger::read::all_entries(&app.state.ledger.reader)
            .await
            .unwrap();
        assert!(
            entries
                .iter()
                .all(|e| e.fields.note.chars().all(|c| c == '\n' || !c.is_control()))
        );
        app.stop().await;
    });
}

#[test]
fn socket_frames_never_break_the_server() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(async {
        let app = spawn_app().await;
        app.add_user("rita", "Rita", EXEMPT_REVIEWER).await;
        app
    });
    runner(60)
        .run(
            &proptest::collection::vec(
                (
                    any::<bool>(),
                    proptest::collection::vec(any::<u8>(), 0..6000),
                ),
                1..5,
            ),
            |frames| {
                rt.block_on(async {
                    // A session per case: dropped sockets must not eat the per-session cap.
                    let rita = app.client();
                    app.sign_in(&rita, "rita", "authenticated").await;
                    let mut socket = app.socket(&rita, "/ws/inbox?format=json").await;
                    for (text, bytes) in frames {
                        let message = if text {
                            Message::text(String::from_utf8_lossy(&bytes).into_owned())
                        } else {
                            Message::binary(bytes)
                        };
                        if socket.stream.send(message).await.is_err() {
                            break;
                        }
                    }
                    drop(socket);
                    let (code, _) = app.get_json(&rita, "/api/v1/inbox").await;
                    assert_eq!(code, 200);
                });
                Ok(())
            },
        )
        .unwrap();
    rt.block_on(app.stop());
}

#[test]
fn verify_never_panics_on_any_file() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.sqlite");
    rt.block_on(peergate::ledger::build::append_entries(
        &valid,
        40,
        peergate::ledger::build::sample_entry,
    ))
    .unwrap();
    let original = std::fs::read(&valid).unwrap();
    let probe = dir.path().join("probe.sqlite");
    runner(200)
        .run(
            &prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..4096).prop_map(|b| (None, b)),
                proptest::collection::vec((0..original.len(), any::<u8>()), 1..20)
                    .prop_map(|edits| (Some(edits), Vec::new())),
            ],
            |(edits, random)| {
                let bytes = match edits {
                    Some(edits) => {
                        let mut b = original.clone();
                        for (at, value) in edits {
                            b[at] = value;
                        }
                        b
                    }
                    None => random,
                };
                std::fs::write(&probe, &bytes).unwrap();
                let verdict = peergate::ledger::verify::verify_blocking(&probe, None);
                prop_assert!(verdict.exit_code() <= 2);
                Ok(())
            },
        )
        .unwrap();
}
