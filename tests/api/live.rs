//! Live peer review over real sockets: the inbox, decisions, the requester's
//! page moving on, expiry, withdrawal, claims, races, restarts, slow sockets.

use std::time::Duration;

use peergate::domain::Outcome;
use peergate::ledger::read::{all_entries, outcome_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const SOON: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_sign_in_reaches_the_reviewers_socket_within_a_second() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let mut inbox = app.socket(&rita, "/ws/inbox?format=json").await;
    let snapshot = inbox.expect("snapshot", SOON).await;
    assert_eq!(snapshot["sessions"], json!([]));

    let started = std::time::Instant::now();
    let (_uma, id) = waiting(&app, "uma").await;
    let added = inbox.expect("added", Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let session = &added["session"];
    assert_eq!(session["session_id"], id.as_str());
    assert_eq!(session["requester"]["username"], "uma");
    assert_eq!(session["requester"]["display_name"], "Uma User");
    assert_eq!(session["level"], "new");
    assert_eq!(session["client"]["ip"], "127.0.0.1");
    assert_eq!(session["claimed_by"], Value::Null);
    assert!(session.get("code").is_none(), "no codes in the inbox");
    // The Summary carries exactly the documented keys.
    let mut keys: Vec<&str> = session
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "age_seconds",
            "claimed_by",
            "client",
            "created_at",
            "level",
            "requester",
            "session_id"
        ]
    );

    // The HTML socket carries a fragment for htmx with the new row.
    let mut html = app.socket(&rita, "/ws/inbox").await;
    match html.next(SOON).await {
        Some(Frame::Text(t)) => {
            assert!(t.contains("id=\"inbox-rows\""), "{t}");
            assert!(t.contains(&format!("row-{id}")), "{t}");
        }
        other => panic!("{other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn approval_moves_the_requester_on_and_rotates_the_token() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let (uma, id) = waiting(&app, "uma").await;
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    let first = status.expect("status", SOON).await;
    assert_eq!(first["status"], "pending");
    let (_, pending) = app.get_json(&uma, "/api/v1/pending").await;
    assert_eq!(first["code"], pending["code"]);

    // The reviewer sees the same code in the detail.
    let (code, detail) = app.get_json(&rita, &format!("/api/v1/inbox/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(detail["code"], pending["code"]);

    let (code, body) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), approve())
        .await;
    assert_eq!(code, 200, "{body}");
    let entry = &body["entry"];
    assert_eq!(entry["seq"], 1);
    assert_eq!(entry["entry_hash"].as_str().unwrap().len(), 64);
    assert!(entry["decided_at"].as_str().unwrap().ends_with('Z'));

    let approved = status.expect("approved", SOON).await;
    assert_eq!(approved["complete_url"], "/pending/complete");
    let old_token = uma.session_token().unwrap();

    let done = app.post(&uma, "/pending/complete").send().await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], "/");
    assert!(
        set_cookie(done.headers(), "peergate_device").is_some(),
        "a trusted-device cookie"
    );
    let new_token = uma.session_token().unwrap();
    assert_ne!(old_token, new_token);
    let (_, me) = app.get_json(&uma, "/api/v1/me").await;
    assert_eq!(me["state"], "authenticated");
    // The old token is refused.
    let old = reqwest::Client::new()
        .get(app.url("/api/v1/me"))
        .header("Cookie", format!("peergate_session={old_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    // Completing twice is refused, and a completed session cannot be decided again.
    let again = app.post(&uma, "/pending/complete").send().await.unwrap();
    assert_ne!(again.status(), StatusCode::SEE_OTHER);
    let (code, body) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), deny())
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("already_decided"))
    );

    // The ledger holds the decision with the reviewer's stable id.
    let entries = all_entries(&app.state.ledger.reader).await.unwrap();
    assert_eq!(entries.len(), 1);
    let f = &entries[0].fields;
    assert_eq!(
        (f.outcome.as_str(), f.channel.as_str(), f.code_confirmed),
        ("approved", "call", 1)
    );
    assert!(f.reviewer_id.starts_with("usr_") && f.reviewer_name == "Rita Reviewer");

    // The trusted browser skips review next time.
    app.sign_in(&uma, "uma", "authenticated").await;
    app.stop().await;
}

#[tokio::test]
async fn denial_ends_the_session_and_closes_its_socket() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let rob = reviewer(&app, "rob").await;
    let (uma, id) = waiting(&app, "uma").await;
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    status.expect("status", SOON).await;
    let mut robs_inbox = app.socket(&rob, "/ws/inbox?format=json").await;
    robs_inbox.expect("snapshot", SOON).await;

    let (code, body) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), deny())
        .await;
    assert_eq!(code, 200, "{body}");
    status.expect("denied", SOON).await;
    assert_eq!(status.expect_close(SOON).await, Some(1008));
    let removed = robs_inbox.expect("removed", SOON).await;
    assert_eq!(
        removed,
        json!({"type": "removed", "session_id": id, "outcome": "denied"})
    );

    let (code, _) = app.get_json(&uma, "/api/v1/me").await;
    assert_eq!(code, 401, "the denied session is over");
    assert_eq!(
        outcome_of(&app.state.ledger.reader, &id).await.unwrap(),
        Some(Outcome::Denied)
    );
    // Denied cannot be approved afterwards.
    let (code, body) = app
        .post_json(&rob, &format!("/api/v1/inbox/{id}/decision"), approve())
        .await;
    assert_eq!(code, 409);
    assert_eq!(body["error"]["code"], "already_decided");
    app.stop().await;
}

#[tokio::test]
async fn expiry_is_recorded_and_announced() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let mut inbox = app.socket(&rita, "/ws/inbox?format=json").await;
    inbox.expect("snapshot", SOON).await;
    let (uma, id) = waiting(&app, "uma").await;
    inbox.expect("added", SOON).await;
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    status.expect("status", SOON).await;

    // Ageing first: new -> aging -> overdue, each announced.
    app.clock.advance(Duration::from_secs(3 * 60 + 1));
    let aging = inbox.expect("updated", SOON).await;
    assert_eq!(aging["session"]["level"], "aging");
    app.clock.advance(Duration::from_mins(5));
    let overdue = inbox.expect("updated", SOON).await;
    assert_eq!(overdue["session"]["level"], "overdue");

    // Then past the 15-minute TTL.
    app.clock.advance(Duration::from_mins(7));
    status.expect("expired", SOON).await;
    assert_eq!(status.expect_close(SOON).await, Some(1008));
    let removed = inbox.expect("removed", SOON).await;
    assert_eq!(removed["outcome"], "expired");

    let entries = all_entries(&app.state.ledger.reader).await.unwrap();
    assert_eq!(entries.len(), 1);
    let f = &entries[0].fields;
    assert_eq!(f.session_id, id);
    assert_eq!(f.outcome, "expired");
    assert_eq!(
        (
            f.reviewer_id.as_str(),
            f.reviewer_name.as_str(),
            f.channel.as_str()
        ),
        ("", "", "")
    );
    let (code, _) = app.get_json(&uma, "/api/v1/me").await;
    assert_eq!(code, 401);
    // Too late to approve.
    let (code, body) = app
        .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), approve())
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("expired"))
    );
    app.stop().await;
}

#[tokio::test]
async fn cancelling_and_signing_in_again_withdraw() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let mut inbox = app.socket(&rita, "/ws/inbox?format=json").await;
    inbox.expect("snapshot", SOON).await;

    let (first, first_id) = waiting(&app, "uma").await;
    let mut first_status = app.socket(&first, "/ws/pending?format=json").await;
    first_status.expect("status", SOON).await;
    let (second, second_id) = waiting(&app, "uma").await;
    let removed = inbox.expect("removed", SOON).await;
    assert_eq!(
        removed,
        json!({"type": "removed", "session_id": first_id, "outcome": "withdrawn"})
    );
    assert_eq!(first_status.expect_close(SOON).await, Some(1008));

    let r = app.post(&second, "/pending/cancel").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let removed = inbox.expect("removed", SOON).await;
    assert_eq!(
        removed,
        json!({"type": "removed", "session_id": second_id, "outcome": "withdrawn"})
    );
    for id in [&first_id, &second_id] {
        assert_eq!(
            outcome_of(&app.state.ledger.reader, id).await.unwrap(),
            Some(Outcome::Withdrawn)
        );
    }
    // A withdrawn session cannot be approved afterwards.
    let (code, _) = app
        .post_json(
            &rita,
            &format!("/api/v1/inbox/{second_id}/decision"),
            approve(),
        )
        .await;
    assert_eq!(code, 409);
    app.stop().await;
}

#[tokio::test]
async fn the_inbox_stays_oldest_first() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    let rita = reviewer(&app, "rita").await;
    let mut ids = Vec::new();
    for name in ["uma", "ulf", "una", "ugo"] {
        app.add_user(name, name, PLAIN).await;
        ids.push(waiting(&app, name).await.1);
        app.clock.advance(Duration::from_secs(5));
    }
    // Withdraw the second and sign in again: it moves to the end.
    let (_, again) = waiting(&app, "ulf").await;
    ids.remove(1);
    ids.push(again);
    let (_, inbox) = app.get_json(&rita, "/api/v1/inbox").await;
    let listed: Vec<&str> = inbox["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let mut socket = app.socket(&rita, "/ws/inbox?format=json").await;
    let snapshot = socket.expect("snapshot", SOON).await;
    let listed: Vec<&str> = snapshot["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // And the page lists them in the same order.
    let html = rita
        .get(app.url("/inbox"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let positions: Vec<usize> = ids
        .iter()
        .map(|id| html.find(&format!("row-{id}")).expect("row on the page"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_claim_reaches_other_reviewers_and_the_requester() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let rob = reviewer(&app, "rob").await;
    let (uma, id) = waiting(&app, "uma").await;
    let mut robs_inbox = app.socket(&rob, "/ws/inbox?format=json").await;
    robs_inbox.expect("snapshot", SOON).await;
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    status.expect("status", SOON).await;

    let detail = rita
        .get(app.url(&format!("/inbox/{id}")))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(detail.status(), 200);
    let html = detail.text().await.unwrap();
    assert!(
        html.contains("call them back") || html.contains("Call them back"),
        "the callback warning"
    );
    // The drawer claims with a POST once it has opened (a GET claims nothing).
    assert!(html.contains(&format!("hx-post=\"/inbox/{id}/claim\"")));
    let claimed = app
        .post(&rita, &format!("/inbox/{id}/claim"))
        .send()
        .await
        .unwrap();
    assert_eq!(claimed.status(), 204);

    let updated = robs_inbox.expect("updated", SOON).await;
    assert_eq!(
        updated["session"]["claimed_by"],
        json!({"display_name": "Rita Reviewer"})
    );
    let claimed = status.expect("claimed", SOON).await;
    assert_eq!(
        claimed,
        json!({"type": "claimed", "reviewer": {"display_name": "Rita Reviewer"}})
    );
    // The claim is soft: Rob can still decide.
    let (code, _) = app
        .post_json(&rob, &format!("/api/v1/inbox/{id}/decision"), approve())
        .await;
    assert_eq!(code, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_code_rotation_reaches_the_requester_socket() {
    let app = spawn_app().await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let (uma, _) = waiting(&app, "uma").await;
    let mut status = app.socket(&uma, "/ws/pending?format=json").await;
    let first = status.expect("status", SOON).await;
    let (_, rotated) = app.post_json(&uma, "/api/v1/pending/code", json!({})).await;
    let code = status.expect("code", SOON).await;
    assert_eq!(code["code"], rotated["code"]);
    assert_ne!(code["code"], first["code"]);
    app.stop().await;
}

/// Twenty decisions at once from two reviewers: one wins, the rest get 409,
/// the ledger holds one entry. Repeated, because races hide.
#[tokio::test]
async fn exactly_one_concurrent_decision_wins() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    let rita = reviewer(&app, "rita").await;
    let rob = reviewer(&app, "rob").await;
    for round in 0..15 {
        let name = format!("user{round}");
        app.add_user(&name, "Racer", PLAIN).await;
        let (_, id) = waiting(&app, &name).await;
        let mut requests = Vec::new();
        for i in 0..20 {
            let browser = if i % 2 == 0 { &rita } else { &rob };
            let body = if i % 3 == 0 { deny() } else { approve() };
            requests.push(
                app.post(browser, &format!("/api/v1/inbox/{id}/decision"))
                    .json(&body)
                    .send(),
            );
        }
        let results = futures_util::future::join_all(requests).await;
        let statuses: Vec<u16> = results
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "round {round}: {statuses:?}"
        );
        let entries = all_entries(&app.state.ledger.reader).await.unwrap();
        assert_eq!(
            entries.iter().filter(|e| e.fields.session_id == id).count(),
            1
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn who_may_review_what() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("rex", "Rex Requester-Reviewer", REVIEWER)
        .await;
    let (uma, id) = waiting(&app, "uma").await;

    // Self-review: Rex, a reviewer, is signed in (after an approval) in one
    // browser and waiting on a new sign-in in another.
    let rita = reviewer(&app, "rita").await;
    let (rex_full, rex_first) = waiting(&app, "rex").await;
    let (code, _) = app
        .post_json(
            &rita,
            &format!("/api/v1/inbox/{rex_first}/decision"),
            approve(),
        )
        .await;
    assert_eq!(code, 200);
    app.post(&rex_full, "/pending/complete")
        .send()
        .await
        .unwrap();
    let (_, me) = app.get_json(&rex_full, "/api/v1/me").await;
    assert_eq!(me["state"], "authenticated");
    let (_rex_other, rex_own) = waiting(&app, "rex").await;
    let before = all_entries(&app.state.ledger.reader).await.unwrap().len();
    let (code, body) = app
        .post_json(
            &rex_full,
            &format!("/api/v1/inbox/{rex_own}/decision"),
            approve(),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("self_review"))
    );
    assert_eq!(
        all_entries(&app.state.ledger.reader).await.unwrap().len(),
        before,
        "nothing written"
    );
    let (_, inbox) = app.get_json(&rex_full, "/api/v1/inbox").await;
    assert!(
        inbox["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["session_id"] != rex_own.as_str()),
        "own session hidden"
    );

    // Non-reviewers (an admin here), half-authenticated and anonymous users.
    let ada = reviewer(&app, "ada").await;
    let anonymous = app.client();
    for (who, browser, page_status, api_status) in [
        ("admin without the reviewer role", &ada, 403u16, 403u16),
        ("half-authenticated", &uma, 303, 401),
        ("anonymous", &anonymous, 303, 401),
    ] {
        for path in ["/inbox".to_string(), format!("/inbox/{id}")] {
            let r = browser.get(app.url(&path)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), page_status, "{who}: GET {path}");
        }
        let r = app
            .post(browser, &format!("/inbox/{id}/decision"))
            .form(&[("outcome", "approve")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), page_status, "{who}: form decision");
        for path in ["/api/v1/inbox".to_string(), format!("/api/v1/inbox/{id}")] {
            let (code, _) = app.get_json(browser, &path).await;
            assert_eq!(code, api_status, "{who}: GET {path}");
        }
        let (code, _) = app
            .post_json(browser, &format!("/api/v1/inbox/{id}/decision"), approve())
            .await;
        assert_eq!(code, api_status, "{who}: API decision");
        let refused = app
            .socket_from(browser, "/ws/inbox?format=json", &app.base)
            .await;
        assert_eq!(refused.err(), Some(api_status), "{who}: /ws/inbox");
    }
    assert_eq!(
        outcome_of(&app.state.ledger.reader, &id).await.unwrap(),
        None
    );

    // A foreign Origin is refused on both upgrades.
    for (browser, path) in [(&rita, "/ws/inbox"), (&uma, "/ws/pending")] {
        let refused = app.socket_from(browser, path, "http://evil.example").await;
        assert_eq!(refused.err(), Some(403), "{path}");
    }

    // Invalid input: 422, nothing written.
    let before = all_entries(&app.state.ledger.reader).await.unwrap().len();
    for body in [
        json!({"outcome": "approve", "channel": "call", "code_confirmed": false, "note": ""}),
        json!({"outcome": "deny", "channel": "call", "code_confirmed": false, "note": "   "}),
        json!({"outcome": "maybe", "channel": "call", "code_confirmed": true, "note": ""}),
        json!({"outcome": "approve", "channel": "pigeon", "code_confirmed": true, "note": ""}),
        json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": "x".repeat(1001)}),
        json!({"outcome": "deny", "channel": "call", "code_confirmed": false, "note": "bell\u{7}"}),
        json!({"outcome": "approve", "channel": "call"}),
    ] {
        let (code, response) = app
            .post_json(&rita, &format!("/api/v1/inbox/{id}/decision"), body.clone())
            .await;
        assert_eq!(code, 422, "{body} -> {response}");
        assert_eq!(response["error"]["code"], "invalid");
    }
    assert_eq!(
        all_entries(&app.state.ledger.reader).await.unwrap().len(),
        before
    );
    assert!(app.state.registry.get(&id).is_some(), "still waiting");
    app.stop().await;
}

#[tokio::test]
async fn a_pending_session_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), "", None).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("ulf", "Ulf User", PLAIN).await;
    let (uma, uma_id) = waiting(&app, "uma").await;
    let (ulf, ulf_id) = waiting(&app, "ulf").await;
    let (_, before) = app.get_json(&uma, "/api/v1/pending").await;
    let uma_cookie = uma.cookie_header().unwrap();
    let clock = app.clock.clone();
    app.stop().await;

    // A decision that reached the ledger just before a crash, but not app.sqlite.
    {
        let (ledger, tasks) = peergate::ledger::Ledger::open(dir.path(), clock.clone())
            .await
            .unwrap();
        let draft = peergate::ledger::LedgerDraft::decision(
            peergate::ledger::SessionFacts {
                session_id: ulf_id.clone(),
                requester_id: "usr_X".into(),
                requester_name: "Ulf User".into(),
                requester_ip: "127.0.0.1".into(),
                requester_user_agent: String::new(),
                session_created_at: "2026-11-28T00:00:00.000Z".into(),
            },
            peergate::domain::Verdict::Approve,
            peergate::domain::Reviewer {
                id: "usr_R".into(),
                display_name: "Rita Reviewer".into(),
            },
            peergate::domain::Channel::Call,
            true,
            peergate::domain::Note::parse("approved before the crash").unwrap(),
        );
        ledger.writer.append(draft).await.unwrap();
        tasks.writer.abort();
        tasks.checkpointer.abort();
        ledger.reader.close().await;
    }

    let app = spawn_app_in(dir.path(), "", Some(clock)).await;
    let rita = reviewer(&app, "rita").await;
    let (_, inbox) = app.get_json(&rita, "/api/v1/inbox").await;
    let ids: Vec<&str> = inbox["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![uma_id.as_str()],
        "uma still waits; ulf was settled from the ledger"
    );

    // The same browser carries on, with a fresh code.
    let uma = {
        let b = app.client();
        let r = b
            .get(app.url("/api/v1/pending"))
            .header("Cookie", &uma_cookie)
            .send()
            .await
            .unwrap();
        let after: Value = r.json().await.unwrap();
        assert_eq!(after["session_id"], uma_id.as_str());
        assert_ne!(after["code"], before["code"], "a fresh code after restart");
        uma_cookie
    };
    let (code, _) = app
        .post_json(
            &rita,
            &format!("/api/v1/inbox/{uma_id}/decision"),
            approve(),
        )
        .await;
    assert_eq!(code, 200);
    let done = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/pending/complete"))
        .header("Origin", &app.base)
        .header("Cookie", &uma)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);

    // Ulf's approval from the ledger lets his browser complete.
    let ulf_done = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/pending/complete"))
        .header("Origin", &app.base)
        .header("Cookie", ulf.cookie_header().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(ulf_done.status(), StatusCode::SEE_OTHER);
    app.stop().await;
    drop(dir);
}

/// A reviewer socket that stops reading falls behind alone: the others keep
/// getting events at once, and the laggard is resynchronised with a snapshot.
#[tokio::test]
async fn a_lagging_reviewer_socket_does_not_delay_the_others() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("ulf", "Ulf User", PLAIN).await;
    let rita = reviewer(&app, "rita").await;
    let rob = reviewer(&app, "rob").await;
    let mut fast = app.socket(&rita, "/ws/inbox?format=json").await;
    fast.expect("snapshot", SOON).await;
    let mut slow = app.socket(&rob, "/ws/inbox?format=json").await;
    slow.expect("snapshot", SOON).await;
    let (_uma, id) = waiting(&app, "uma").await;
    fast.expect("added", SOON).await;

    // A flood of claim changes (~20 MB of events) that the slow socket never reads.
    let flooding = {
        let registry = app.state.registry.clone();
        let clock = app.clock.clone();
        let id = id.clone();
        tokio::spawn(async move {
            for i in 0..50_000 {
                let who = peergate::domain::Reviewer {
                    id: format!("usr_{}", i % 2),
                    display_name: format!("Reviewer {}", i % 2),
                };
                registry.claim(&id, who, peergate::clock::Clock::now(&*clock));
                if i % 500 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // The fast reader drains everything while the flood runs.
    let drain = tokio::spawn(async move {
        let mut updates = 0;
        loop {
            match fast.next(Duration::from_secs(5)).await {
                Some(Frame::Json(v)) if v["type"] == "updated" => updates += 1,
                Some(Frame::Json(v)) if v["type"] == "added" => return (fast, updates, v),
                Some(Frame::Json(_)) => {}
                other => panic!("fast socket: {other:?}"),
            }
        }
    });
    flooding.await.unwrap();
    let started = std::time::Instant::now();
    let (_ulf, ulf_id) = waiting(&app, "ulf").await;
    let (_fast, updates, added) = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(added["session"]["session_id"], ulf_id.as_str());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the fast socket got the new sign-in at once: {:?}",
        started.elapsed()
    );
    assert!(updates > 1000, "the fast socket saw the flood ({updates})");

    // The slow one, reading at last, is resynchronised with a snapshot that
    // holds both sessions.
    let snapshot = slow.expect("snapshot", Duration::from_secs(10)).await;
    let ids: Vec<&str> = snapshot["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()));
    app.stop().await;
}
