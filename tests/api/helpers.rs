//! Test harness: a real server on 127.0.0.1:0 with a temporary data dir and a
//! manual clock, plus request helpers that act like a browser or a script.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Format, Toml};
use peergate::clock::{ManualClock, rfc3339};
use peergate::config::{DEFAULT_TOML, Settings};
use peergate::passwords::{self, Cost};
use peergate::startup::Application;
use peergate::state::AppState;
use peergate::store::users::{self, NewUser, User};
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// `http://127.0.0.1:PORT`, also the configured `public_url`.
    pub base: String,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub data_dir: PathBuf,
    dir: Option<TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Test settings: the embedded defaults with `overrides` (TOML) on top.
pub fn settings(data_dir: &Path, public_url: &str, overrides: &str) -> Settings {
    let base = format!(
        "[server]\nbind = \"127.0.0.1:0\"\npublic_url = \"{public_url}\"\n[storage]\ndata_dir = \"{}\"\n",
        data_dir.display()
    );
    let figment = Figment::from(Toml::string(DEFAULT_TOML))
        .merge(Toml::string(&base))
        .merge(Toml::string(overrides));
    Settings::from_figment(&figment).expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// Starts a server with extra TOML settings.
pub async fn spawn_app_with(overrides: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let mut app = spawn_app_in(&path, overrides, None).await;
    app.dir = Some(dir);
    app
}

/// Starts a server on an existing data dir (for restart tests), optionally on a
/// clock that carries on from an earlier run.
pub async fn spawn_app_in(
    data_dir: &Path,
    overrides: &str,
    clock: Option<Arc<ManualClock>>,
) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let settings = settings(data_dir, &base, overrides);
    let clock = clock.unwrap_or_else(ManualClock::starting_now);
    let app = Application::build_with_listener(settings, clock.clone(), listener)
        .await
        .expect("the app builds");
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base,
        state,
        clock,
        data_dir: data_dir.to_path_buf(),
        dir: None,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// Roles for a test account.
#[derive(Clone, Copy, Default)]
pub struct Roles {
    pub reviewer: bool,
    pub admin: bool,
    pub exempt: bool,
}

pub const PLAIN: Roles = Roles {
    reviewer: false,
    admin: false,
    exempt: false,
};
pub const REVIEWER: Roles = Roles {
    reviewer: true,
    admin: false,
    exempt: false,
};
/// A reviewer who signs in without review, so tests need no second approval.
pub const EXEMPT_REVIEWER: Roles = Roles {
    reviewer: true,
    admin: false,
    exempt: true,
};
/// The demo's bootstrap account: admin and reviewer, exempt.
pub const ADMIN_REVIEWER: Roles = Roles {
    reviewer: true,
    admin: true,
    exempt: true,
};
pub const ADMIN: Roles = Roles {
    reviewer: false,
    admin: true,
    exempt: true,
};

/// The password every test account gets.
pub fn password_of(username: &str) -> String {
    format!("pw-{username}-secret")
}

impl TestApp {
    /// Stops the server and waits for it (the data dir stays).
    pub async fn stop(mut self) -> Option<TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.state.db.close().await;
        self.state.ledger.reader.close().await;
        self.dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn add_user(&self, username: &str, display_name: &str, roles: Roles) -> User {
        users::insert_user(
            &self.state.db,
            &NewUser {
                username: username.into(),
                display_name: display_name.into(),
                password_hash: passwords::hash(password_of(username), Cost::Fast)
                    .await
                    .expect("hash"),
                is_reviewer: roles.reviewer,
                is_admin: roles.admin,
                is_exempt: roles.exempt,
            },
            &rfc3339(self.clock.now_utc()),
        )
        .await
        .expect("add user")
    }

    /// A browser-like client: keeps cookies, does not follow redirects.
    pub fn client(&self) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser {
            http,
            jar,
            base: self.base.clone(),
        }
    }

    /// Opens a socket as `browser`, from our own origin.
    pub async fn socket(&self, browser: &Browser, path: &str) -> Socket {
        self.socket_from(browser, path, &self.base.clone())
            .await
            .expect("the socket opens")
    }

    /// Opens a socket with a chosen Origin; `Err` carries the HTTP status of a refusal.
    pub async fn socket_from(
        &self,
        browser: &Browser,
        path: &str,
        origin: &str,
    ) -> Result<Socket, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://{}{}", self.addr, path);
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("origin"));
        if let Some(cookie) = browser.cookie_header() {
            request
                .headers_mut()
                .insert("Cookie", cookie.parse().expect("cookie"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => Ok(Socket { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("socket error: {e}"),
        }
    }

    /// A POST from our own origin.
    pub fn post(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        client.post(self.url(path)).header("Origin", &self.base)
    }

    /// `POST /api/v1/login` from our own origin.
    pub async fn login_api(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.post(client, "/api/v1/login")
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Signs in with the account's password and asserts the resulting state.
    pub async fn sign_in(&self, client: &reqwest::Client, username: &str, state: &str) {
        let response = self
            .login_api(client, username, &password_of(username))
            .await;
        assert_eq!(response.status(), 200, "sign-in of {username}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["state"], state, "state after sign-in of {username}");
    }

    pub async fn get_json(&self, client: &reqwest::Client, path: &str) -> (u16, Value) {
        let response = client.get(self.url(path)).send().await.expect("get");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .post(client, path)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// `now()` on the manual clock without importing the trait everywhere.
pub trait ClockExt {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc>;
}

impl ClockExt for ManualClock {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        use peergate::clock::Clock;
        self.now()
    }
}

/// The value of the named cookie in a response's `Set-Cookie` headers, with
/// the whole header line.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.starts_with(&format!("{name}=")))
        .map(|line| {
            let value = line[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or("")
                .to_string();
            (value, line.to_string())
        })
}

/// A cookie-keeping HTTP client, like one browser profile.
pub struct Browser {
    pub http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    base: String,
}

impl std::ops::Deref for Browser {
    type Target = reqwest::Client;
    fn deref(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Browser {
    /// The `Cookie` header this browser would send.
    pub fn cookie_header(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().expect("base url");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_string))
    }

    /// The session token in the jar.
    pub fn session_token(&self) -> Option<String> {
        self.cookie_header()?
            .split("; ")
            .find_map(|c| c.strip_prefix("peergate_session="))
            .map(str::to_string)
    }
}

/// A WebSocket client reading JSON events.
pub struct Socket {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What a socket read produced.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Text(String),
    Closed(Option<u16>),
}

impl Socket {
    /// The next text frame (pings are answered by the library), or the close.
    pub async fn next(&mut self, within: std::time::Duration) -> Option<Frame> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            match message {
                Some(Ok(Message::Text(t))) => {
                    return Some(match serde_json::from_str::<Value>(&t) {
                        Ok(v) => Frame::Json(v),
                        Err(_) => Frame::Text(t.to_string()),
                    });
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Frame::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Frame::Closed(None)),
            }
        }
    }

    /// Reads until a JSON event of `kind` arrives (skipping others); panics on timeout.
    pub async fn expect(&mut self, kind: &str, within: std::time::Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Frame::Json(v)) if v["type"] == kind => return v,
                Some(Frame::Json(_) | Frame::Text(_)) => {}
                Some(Frame::Closed(code)) => {
                    panic!("socket closed ({code:?}) while waiting for `{kind}`")
                }
                None => panic!("no `{kind}` event within {within:?}"),
            }
        }
    }

    /// Reads until the socket closes; returns the close code.
    pub async fn expect_close(&mut self, within: std::time::Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Frame::Closed(code)) => return code,
                Some(_) => {}
                None => panic!("the socket did not close within {within:?}"),
            }
        }
    }
}

/// A valid approval for the decision API.
pub fn approve() -> Value {
    json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": "Called back on the directory number."})
}

/// A valid denial for the decision API.
pub fn deny() -> Value {
    json!({"outcome": "deny", "channel": "chat", "code_confirmed": false, "note": "Not her: she is on holiday."})
}

/// A requester signed in and waiting; returns their browser and session id.
pub async fn waiting(app: &TestApp, username: &str) -> (Browser, String) {
    let browser = app.client();
    app.sign_in(&browser, username, "half_authenticated").await;
    let (code, pending) = app.get_json(&browser, "/api/v1/pending").await;
    assert_eq!(code, 200, "{pending}");
    (browser, pending["session_id"].as_str().unwrap().to_string())
}

/// A reviewer (an exempt one) signed in fully.
pub async fn reviewer(app: &TestApp, username: &str) -> Browser {
    let browser = app.client();
    app.sign_in(&browser, username, "authenticated").await;
    browser
}

/// Starts a server whose `public_url` is `http://{host}:PORT` (a name the
/// test's clients resolve to 127.0.0.1 themselves), with extra TOML settings.
pub async fn spawn_app_at_host(host: &str, overrides: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{host}:{}", addr.port());
    let settings = settings(dir.path(), &base, overrides);
    let clock = ManualClock::starting_now();
    let app = Application::build_with_listener(settings, clock.clone(), listener)
        .await
        .expect("the app builds");
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base,
        state,
        clock,
        data_dir: dir.path().to_path_buf(),
        dir: Some(dir),
        shutdown: Some(tx),
        server: Some(server),
    }
}
