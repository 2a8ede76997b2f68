//! Test harness: a real server on 127.0.0.1:0 with a temporary data dir and a
//! manual clock, plus request helpers that act like a browser or a script.

// Shared by every test module; not each one uses every helper.
#![allow(dead_code)]

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
    _dir: Option<TempDir>,
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
    Settings::from_figment(figment).expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// Starts a server with extra TOML settings.
pub async fn spawn_app_with(overrides: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let mut app = spawn_app_in(&path, overrides, None).await;
    app._dir = Some(dir);
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
        _dir: None,
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
        self._dir.take()
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
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
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
