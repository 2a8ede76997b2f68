//! Password sign-in, the half-authenticated state, cookies, the origin check.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_plain_user_lands_half_authenticated_with_a_six_digit_code() {
    let app = spawn_app().await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let client = app.client();
    app.sign_in(&client, "uma", "half_authenticated").await;

    let (status, me) = app.get_json(&client, "/api/v1/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["state"], "half_authenticated");
    assert_eq!(me["user"]["username"], "uma");

    let (status, pending) = app.get_json(&client, "/api/v1/pending").await;
    assert_eq!(status, 200);
    let code = pending["code"].as_str().expect("a code");
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(pending["status"], "pending");
    assert!(pending["session_id"].as_str().unwrap().starts_with("ps_"));
    assert!(pending["expires_at"].as_str().unwrap().ends_with('Z'));

    // The waiting page shows the code grouped.
    let page = client.get(app.url("/pending")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("{} {}", &code[..3], &code[3..])),
        "grouped code on the page"
    );

    // The form sign-in leads to /pending as well.
    let other = app.client();
    let response = app
        .post(&other, "/login")
        .form(&[("username", "uma"), ("password", &password_of("uma"))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/pending");
    app.stop().await;
}

#[tokio::test]
async fn an_exempt_user_is_authenticated_at_once() {
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let client = app.client();
    app.sign_in(&client, "ada", "authenticated").await;
    let (_, me) = app.get_json(&client, "/api/v1/me").await;
    assert_eq!(me["state"], "authenticated");
    assert_eq!(me["user"]["roles"], json!(["admin"]));
    let home = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(
        home.text()
            .await
            .unwrap()
            .contains("Signed in as Ada Admin")
    );
    // Nothing is waiting for review.
    assert!(app.state.registry.list().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_unknown_user_and_disabled_user_get_the_same_answer() {
    let app = spawn_app_with("[auth]\nfailed_logins_per_minute = 50").await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("dora", "Dora Disabled", PLAIN).await;
    peergate::store::users::disable(&app.state.db, &"dora".parse().unwrap())
        .await
        .unwrap();

    let mut answers = Vec::new();
    for (username, password) in [
        ("uma", "not-her-password".to_string()),
        ("nobody", "whatever-it-is".to_string()),
        ("dora", password_of("dora")),
    ] {
        let response = app.login_api(&app.client(), username, &password).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].1["error"]["code"], "unauthenticated");

    // The HTML form says the same for all three, with one generic message.
    let mut pages = Vec::new();
    for (username, password) in [
        ("uma", "nope-nope"),
        ("nobody", "nope-nope"),
        ("dora", "nope-nope"),
    ] {
        let response = app
            .post(&app.client(), "/login")
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let html = response.text().await.unwrap();
        assert!(html.contains("Wrong username or password."));
        pages.push(html.replace(username, "USER"));
    }
    assert!(pages.iter().all(|p| p == &pages[0]));
    app.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited_but_successes_do_not_count() {
    let app = spawn_app_with("[auth]\nfailed_logins_per_minute = 3").await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("ada", "Ada Admin", ADMIN).await;

    // Successful sign-ins from one address never trip the limit.
    for _ in 0..8 {
        app.sign_in(&app.client(), "ada", "authenticated").await;
    }
    for _ in 0..3 {
        let r = app.login_api(&app.client(), "uma", "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // The fourth attempt is refused before the password is even looked at,
    // so the right password does not get through either.
    let r = app
        .login_api(&app.client(), "uma", &password_of("uma"))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Per IP too: every test client shares 127.0.0.1.
    let r = app
        .login_api(&app.client(), "ada", &password_of("ada"))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // A minute later (on the injected clock) the window has passed.
    app.clock.advance(std::time::Duration::from_secs(61));
    app.sign_in(&app.client(), "uma", "half_authenticated")
        .await;
    app.stop().await;
}

#[tokio::test]
async fn the_token_rotates_at_sign_in_and_the_old_one_is_refused() {
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let client = app.client();
    let first = app.login_api(&client, "ada", &password_of("ada")).await;
    let (token_a, _) = set_cookie(first.headers(), "peergate_session").expect("cookie");
    let second = app.login_api(&client, "ada", &password_of("ada")).await;
    let (token_b, _) = set_cookie(second.headers(), "peergate_session").expect("cookie");
    assert_ne!(token_a, token_b);
    assert_eq!(token_a.len(), 43, "256 bits, base64url");

    let bare = reqwest::Client::new();
    let old = bare
        .get(app.url("/api/v1/me"))
        .header("Cookie", format!("peergate_session={token_a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = bare
        .get(app.url("/api/v1/me"))
        .header("Cookie", format!("peergate_session={token_b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), StatusCode::OK);

    // Only the hash is stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM browser_sessions")
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert!(!stored.iter().any(|h| h == &token_b));
    assert!(stored.contains(&blake3::hash(token_b.as_bytes()).to_hex().to_string()));

    // Logout ends the session server-side.
    let out = app.post(&client, "/logout").send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = bare
        .get(app.url("/api/v1/me"))
        .header("Cookie", format!("peergate_session={token_b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn cookies_carry_the_documented_attributes() {
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let r = app
        .login_api(&app.client(), "ada", &password_of("ada"))
        .await;
    let (_, line) = set_cookie(r.headers(), "peergate_session").expect("cookie");
    let lower = line.to_ascii_lowercase();
    assert!(lower.contains("httponly"), "{line}");
    assert!(lower.contains("samesite=lax"), "{line}");
    assert!(lower.contains("path=/"), "{line}");
    assert!(
        !lower.contains("secure"),
        "plain http is not Secure: {line}"
    );
    app.stop().await;

    // With an https public_url: Secure and the __Host- prefix.
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = settings(dir.path(), "https://login.example.test", "");
    let built = peergate::startup::Application::build_with_listener(
        settings,
        peergate::clock::ManualClock::starting_now(),
        listener,
    )
    .await
    .unwrap();
    let state = built.state();
    tokio::spawn(built.run_until_stopped(std::future::pending()));
    peergate::store::users::insert_user(
        &state.db,
        &peergate::store::users::NewUser {
            username: "ada".into(),
            display_name: "Ada".into(),
            password_hash: peergate::passwords::hash(
                password_of("ada"),
                peergate::passwords::Cost::Fast,
            )
            .await
            .unwrap(),
            is_reviewer: false,
            is_admin: true,
            is_exempt: true,
        },
        "2026-11-28T00:00:00.000Z",
    )
    .await
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/login"))
        .header("Origin", "https://login.example.test")
        .json(&json!({"username": "ada", "password": password_of("ada")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, line) = set_cookie(r.headers(), "__Host-peergate_session").expect("__Host- cookie");
    let lower = line.to_ascii_lowercase();
    assert!(lower.contains("secure") && lower.contains("httponly") && lower.contains("path=/"));
    assert!(
        !lower.contains("domain="),
        "__Host- cookies have no Domain: {line}"
    );
}

/// Every route outside DESIGN.md §4's list is closed to a half-authenticated
/// session: pages send it to /pending, the API answers 401.
#[tokio::test]
async fn a_half_authenticated_session_reaches_only_its_routes() {
    let app = spawn_app().await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let client = app.client();
    app.sign_in(&client, "uma", "half_authenticated").await;

    let refused_pages = [
        ("GET", "/"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/inbox"),
        ("GET", "/inbox/ps_x"),
        ("POST", "/inbox/ps_x/decision"),
        ("GET", "/admin"),
        ("GET", "/admin/ledger"),
        ("GET", "/admin/exports/ledger.sqlite"),
        ("GET", "/admin/exports/ledger.sqlite.sha256"),
        ("GET", "/admin/exports/ledger.sqlite.b3"),
    ];
    for (method, path) in refused_pages {
        let request = match method {
            "GET" => client.get(app.url(path)),
            _ => app.post(&client, path).form(&[("x", "y")]),
        };
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{method} {path}");
        assert_eq!(r.headers()["location"], "/pending", "{method} {path}");
    }
    let refused_api = [
        ("GET", "/api/v1/inbox"),
        ("GET", "/api/v1/inbox/ps_x"),
        ("POST", "/api/v1/inbox/ps_x/decision"),
        ("GET", "/api/v1/admin/ledger/head"),
        ("POST", "/api/v1/login"),
        ("GET", "/ws/inbox"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    ];
    for (method, path) in refused_api {
        let request = match method {
            "GET" => client.get(app.url(path)),
            _ => app.post(&client, path).json(&json!({})),
        };
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated", "{method} {path}");
    }
    // And what it may reach, it reaches.
    for path in [
        "/pending",
        "/api/v1/me",
        "/api/v1/pending",
        "/assets/app.css",
    ] {
        let r = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_new_sign_in_withdraws_the_older_pending_session() {
    let app = spawn_app().await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let first = app.client();
    app.sign_in(&first, "uma", "half_authenticated").await;
    let (_, old) = app.get_json(&first, "/api/v1/pending").await;
    let old_id = old["session_id"].as_str().unwrap().to_string();

    let second = app.client();
    app.sign_in(&second, "uma", "half_authenticated").await;
    let (_, new) = app.get_json(&second, "/api/v1/pending").await;
    assert_ne!(new["session_id"], old["session_id"]);

    // The older browser session is over, and only the new one waits.
    let (status, _) = app.get_json(&first, "/api/v1/me").await;
    assert_eq!(status, 401);
    let waiting: Vec<String> = app
        .state
        .registry
        .list()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        waiting,
        vec![new["session_id"].as_str().unwrap().to_string()]
    );

    // The withdrawal is on record.
    let outcome = peergate::ledger::read::outcome_of(&app.state.ledger.reader, &old_id)
        .await
        .unwrap();
    assert_eq!(outcome, Some(peergate::domain::Outcome::Withdrawn));

    // Cancelling withdraws too, and ends the session.
    let r = app.post(&second, "/pending/cancel").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    assert!(app.state.registry.list().is_empty());
    let (status, _) = app.get_json(&second, "/api/v1/me").await;
    assert_eq!(status, 401);
    let entries = peergate::ledger::read::all_entries(&app.state.ledger.reader)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| e.fields.outcome == "withdrawn" && e.fields.reviewer_id.is_empty())
    );
    app.stop().await;
}

#[tokio::test]
async fn codes_rotate_up_to_the_configured_limit() {
    let app = spawn_app_with("[peer_review]\nmax_code_rotations = 3").await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let client = app.client();
    app.sign_in(&client, "uma", "half_authenticated").await;
    let (_, pending) = app.get_json(&client, "/api/v1/pending").await;
    let mut seen = vec![pending["code"].as_str().unwrap().to_string()];
    for _ in 0..3 {
        let (status, body) = app
            .post_json(&client, "/api/v1/pending/code", json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        let code = body["code"].as_str().unwrap().to_string();
        assert_eq!(code.len(), 6);
        // The current code is what the API reports now.
        let (_, now) = app.get_json(&client, "/api/v1/pending").await;
        assert_eq!(now["code"], code.as_str());
        seen.push(code);
    }
    let (status, body) = app
        .post_json(&client, "/api/v1/pending/code", json!({}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid");
    // The page says so instead of offering the button.
    let html = app
        .post(&client, "/pending/code")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("that is the limit"), "{html}");
    assert!(!html.contains("Get a new code"));
    app.stop().await;
}

#[tokio::test]
async fn unsafe_requests_from_another_origin_are_refused() {
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let login = json!({"username": "ada", "password": password_of("ada")});
    let client = app.client();

    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "foreign Origin",
            client
                .post(app.url("/api/v1/login"))
                .header("Origin", "http://evil.example")
                .json(&login),
        ),
        (
            "missing Origin",
            client.post(app.url("/api/v1/login")).json(&login),
        ),
        (
            "Sec-Fetch-Site: cross-site",
            client
                .post(app.url("/api/v1/login"))
                .header("Origin", &app.base)
                .header("Sec-Fetch-Site", "cross-site")
                .json(&login),
        ),
        (
            "foreign Origin on a form",
            client
                .post(app.url("/login"))
                .header("Origin", "http://evil.example")
                .form(&[
                    ("username", "ada"),
                    ("password", password_of("ada").as_str()),
                ]),
        ),
        (
            "null Origin on logout",
            client.post(app.url("/logout")).header("Origin", "null"),
        ),
    ];
    for (what, request) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
        assert!(
            set_cookie(r.headers(), "peergate_session").is_none(),
            "{what}: no session"
        );
    }
    // The JSON API takes only JSON.
    let r = app
        .post(&client, "/api/v1/login")
        .header("Content-Type", "text/plain")
        .body(login.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // And the same request from our origin works.
    app.sign_in(&client, "ada", "authenticated").await;
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_the_json_error_shape() {
    let app = spawn_app().await;
    let client = app.client();
    for body in ["{", "[]", "{\"username\": 1}", "null"] {
        let r = app
            .post(&client, "/api/v1/login")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let json: Value = r.json().await.unwrap();
        assert_eq!(json["error"]["code"], "invalid", "{body}");
        assert!(json["error"]["message"].as_str().unwrap().len() > 5);
    }
    let (status, _) = app.get_json(&client, "/api/v1/me").await;
    assert_eq!(status, 401);
    let r = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    app.stop().await;
}
