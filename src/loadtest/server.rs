//! The server under load and the clients that load it: a `peergate serve`
//! child process on a temporary data dir (or a running one at `--url`),
//! accounts created through the library, sign-ins through HTTP, and sockets
//! through tokio-tungstenite. Loopback only.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::clock::rfc3339;
use crate::passwords::{self, Cost};
use crate::store::{self, users};

/// The Origin the child server is configured to accept.
pub const ORIGIN: &str = "http://peergate.loadtest";

/// The password of every load-test account.
pub const PASSWORD: &str = "loadtest-password";

/// Where the server under test is, and how to reach its process.
pub struct Target {
    pub base: String,
    pub origin: String,
    pub pid: Option<u32>,
    data_dir: PathBuf,
    child: Option<tokio::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

/// How to find or start the server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetArgs {
    /// A running server to load instead of starting one (loopback only).
    #[arg(long)]
    pub url: Option<String>,
    /// The running server's data dir, where load-test accounts are created.
    #[arg(long, requires = "url")]
    pub data_dir: Option<PathBuf>,
    /// The running server's process id, for RSS.
    #[arg(long, requires = "url")]
    pub pid: Option<u32>,
    /// The running server's public_url origin.
    #[arg(long, requires = "url", default_value = "http://127.0.0.1:8080")]
    pub origin: String,
}

impl Target {
    /// Starts `peergate serve` as a child on a temporary data dir, or takes
    /// the server at `--url`.
    pub async fn start(args: &TargetArgs) -> anyhow::Result<Self> {
        Self::start_with_env(args, &[]).await
    }

    /// Like [`Target::start`]; `env` (`PEERGATE__...` settings) is given to a
    /// child server last, so it overrides the load-test defaults.
    pub async fn start_with_env(
        args: &TargetArgs,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        match &args.url {
            Some(url) => Self::running_at(args, url),
            None => Self::spawn_child(env).await,
        }
    }

    /// The server already running at `--url` (loopback only).
    fn running_at(args: &TargetArgs, url: &str) -> anyhow::Result<Self> {
        let host = url.split("://").nth(1).unwrap_or("");
        if !(host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]"))
        {
            bail!("the load generator only targets loopback addresses, not {url}");
        }
        let data_dir = args
            .data_dir
            .clone()
            .context("--url needs --data-dir, to create the load-test accounts")?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            origin: args.origin.clone(),
            pid: args.pid,
            data_dir,
            child: None,
            _dir: None,
        })
    }

    /// Starts `peergate serve` as a child on a temporary data dir, with
    /// `env` over the load-test defaults, and waits for it to listen.
    async fn spawn_child(env: &[(String, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temporary data dir")?;
        let exe = std::env::current_exe().context("finding the peergate binary")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("serve")
            .env("PEERGATE__SERVER__BIND", "127.0.0.1:0")
            .env("PEERGATE__SERVER__PUBLIC_URL", ORIGIN)
            .env("PEERGATE__STORAGE__DATA_DIR", dir.path())
            .env("PEERGATE__AUTH__FAILED_LOGINS_PER_MINUTE", "1000")
            .env("PEERGATE__AUTH__REVIEW_STARTS_PER_IP", "1000000")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting peergate serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let base = listening_url(stdout).await?;
        Ok(Self {
            base,
            origin: ORIGIN.into(),
            pid: child.id(),
            data_dir: dir.path().to_path_buf(),
            child: Some(child),
            _dir: Some(dir),
        })
    }

    /// Creates accounts `prefix0..prefixN` (cheap argon2 parameters: these
    /// accounts exist only for the load test).
    pub async fn add_users(
        &self,
        prefix: &str,
        n: usize,
        reviewer: bool,
        exempt: bool,
    ) -> anyhow::Result<Vec<String>> {
        self.add_users_with_cost(prefix, n, reviewer, exempt, Cost::Fast)
            .await
    }

    /// Creates accounts `prefix0..prefixN` with [`PASSWORD`] hashed at `cost`.
    pub async fn add_users_with_cost(
        &self,
        prefix: &str,
        n: usize,
        reviewer: bool,
        exempt: bool,
        cost: Cost,
    ) -> anyhow::Result<Vec<String>> {
        let pool = store::open(&self.data_dir).await?;
        let hash = passwords::hash(PASSWORD.into(), cost).await?;
        let now = rfc3339(chrono::Utc::now());
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            let username = format!("{prefix}{i}");
            users::insert_user(
                &pool,
                &users::NewUser {
                    username: username.clone(),
                    display_name: format!("Load {prefix}{i}"),
                    password_hash: hash.clone(),
                    is_reviewer: reviewer,
                    is_admin: false,
                    is_exempt: exempt,
                },
                &now,
            )
            .await?;
            names.push(username);
        }
        pool.close().await;
        Ok(names)
    }

    /// Signs in over HTTP; returns the session cookie (`name=value`).
    pub async fn sign_in(&self, http: &reqwest::Client, username: &str) -> anyhow::Result<String> {
        let response = http
            .post(format!("{}/api/v1/login", self.base))
            .header("Origin", &self.origin)
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("sign-in of {username} failed: {}", response.status());
        }
        response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|line| {
                line.split(';')
                    .next()
                    .filter(|c| c.contains("peergate_session="))
            })
            .map(str::to_string)
            .context("no session cookie")
    }

    /// Opens a socket with a session cookie.
    pub async fn socket(&self, path: &str, cookie: &str) -> anyhow::Result<Socket> {
        let ws = self.base.replacen("http://", "ws://", 1);
        let mut request = format!("{ws}{path}").into_client_request()?;
        request.headers_mut().insert("Origin", self.origin.parse()?);
        request.headers_mut().insert("Cookie", cookie.parse()?);
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (stream, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .with_context(|| format!("opening {path}"))?;
        Ok(stream)
    }

    /// The server's resident memory, from `/proc/<pid>/status`.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Stops a child server.
    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill().await;
        }
    }
}

/// Reads the child's stdout until `peergate listening on <url>` (30 s at
/// most), then keeps draining it in the background so the child never blocks
/// on a full pipe.
async fn listening_url(stdout: tokio::process::ChildStdout) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("peergate listening on ") {
                return Some(url.trim().to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .context("the server did not start")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(base)
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An HTTP client for the load test.
pub fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()?)
}
