//! Graceful shutdown (issue 17): SIGTERM while decisions stream in. Every
//! request the server accepted gets its answer, every acknowledged decision is
//! in the ledger, sockets close with 1001 "going away", both WAL files are
//! folded in, and the process exits 0.

use std::time::Duration;

use futures_util::StreamExt;
use peergate::ledger::{Verdict, verify_file};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::child::{CHILD_ORIGIN, spawn_child};
use crate::crash::{REQUESTERS_PER_CYCLE, add_users, sign_in};

/// Decisions in the stream; the SIGTERM comes after about a third of them.
const CYCLES: usize = 8;

#[tokio::test]
async fn sigterm_finishes_what_was_accepted_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), CYCLES).await;
    let mut server = spawn_child(dir.path(), &[("RUST_LOG", "info")]).await;
    let base = server.base.clone();
    let reviewer = sign_in(&base, "rita").await.expect("the reviewer signs in");
    let mut ids = Vec::new();
    for i in 0..CYCLES * REQUESTERS_PER_CYCLE {
        let cookie = sign_in(&base, &format!("u{i}")).await.expect("signs in");
        let pending: Value = reqwest::Client::new()
            .get(format!("{base}/api/v1/pending"))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(pending["session_id"].as_str().unwrap().to_string());
    }
    let url = format!("{}/ws/inbox?format=json", base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_request(&url, &reviewer))
        .await
        .expect("the inbox socket opens");

    // Each decision on a connection of its own, so that "accepted" is clear:
    // a request either reaches the server (and must be answered) or finds
    // the listener closed (connection refused).
    let mut stream = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (base, reviewer, id) = (base.clone(), reviewer.clone(), id.clone());
        stream.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let body = json!({"outcome": "deny", "channel": "call", "code_confirmed": false, "note": "shutdown test"});
            let sent = client
                .post(format!("{base}/api/v1/inbox/{id}/decision"))
                .header("Origin", CHILD_ORIGIN)
                .header("Cookie", &reviewer)
                .json(&body)
                .send()
                .await;
            (id, sent.map(|r| r.status().as_u16()))
        }));
    }
    tokio::time::sleep(Duration::from_millis(20 * (ids.len() as u64) / 3)).await;
    let pid = server.child.id().expect("the server runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let mut acknowledged = Vec::new();
    for task in stream {
        let (id, sent) = task.await.unwrap();
        match sent {
            Ok(200) => acknowledged.push(id),
            Ok(other) => panic!("decision on {id} answered {other}"),
            Err(e) => assert!(e.is_connect(), "decision on {id} was cut off: {e:?}"),
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "decisions flowed before the signal"
    );

    // The socket was told the server is going away.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Close(frame)) = frame {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the socket closes");
    assert_eq!(closed, Some(1001));

    let exit = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("the server exits within its grace")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let ledger = dir.path().join("ledger.sqlite");
    let wal = dir.path().join("ledger.sqlite-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the ledger's WAL was folded in"
    );
    let verdict = verify_file(&ledger, None).await;
    assert!(matches!(verdict, Verdict::Valid { .. }), "{verdict:?}");
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    for id in &acknowledged {
        let outcome: String = conn
            .query_row(
                "SELECT outcome FROM ledger_entries WHERE session_id = ?",
                [id],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("acknowledged decision on {id} lost: {e}"));
        assert_eq!(outcome, "denied");
    }
}

/// A WebSocket request from our origin, carrying the session cookie.
fn ws_request(
    url: &str,
    cookie: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("Cookie", cookie.parse().unwrap());
    headers.insert("Origin", CHILD_ORIGIN.parse().unwrap());
    request
}
