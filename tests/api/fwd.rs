//! Forward auth through real proxies (DESIGN.md §10, issue 13): nginx and
//! Caddy started as foreground children with the configs from `deploy/` (host
//! names and ports filled in), in front of a small upstream that reports the
//! headers it received. The clients resolve `*.peergate.test` to 127.0.0.1
//! themselves and send those names as `Host`.
//!
//! Locally, without nginx or Caddy, these tests say they were skipped and
//! pass; in CI (`CI=true`) a missing proxy fails them.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::json;

use crate::child::run_cli;
use crate::helpers::*;

const NGINX: &str = "/usr/sbin/nginx";
const CADDY: &str = "/usr/bin/caddy";

/// peergate's settings for these tests: the proxies on 127.0.0.1 are
/// trusted; `admin.peergate.test` needs the admin role.
const FORWARD_AUTH: &str = r#"
[server]
trusted_proxies = ["127.0.0.1/32"]
[forward_auth]
enabled = true
cookie_domain = "peergate.test"
allowed_hosts = ["app.peergate.test", "admin.peergate.test"]
[[forward_auth.rule]]
host = "admin.peergate.test"
roles = ["admin"]
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Nginx => NGINX,
            Kind::Caddy => CADDY,
        }
    }
}

/// peergate, a proxy in front of the upstream, and the upstream.
pub struct Stack {
    pub app: TestApp,
    /// The proxy's port: `http://app.peergate.test:{port}/` is the app.
    pub port: u16,
    proxy: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Stack {
    /// `http://{host}.peergate.test:{proxy port}{path}`.
    pub fn at(&self, host: &str, path: &str) -> String {
        format!("http://{host}.peergate.test:{}{path}", self.port)
    }

    async fn stop(mut self) {
        let _ = self.proxy.kill().await;
        let _ = self.proxy.wait().await;
        drop(self.dir);
        self.app.stop().await;
    }
}

/// `Some(binary)` when the proxy is installed; `None` (with a message) when
/// it is not and this is not CI.
fn installed(kind: Kind) -> bool {
    if Path::new(kind.binary()).exists() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "CI=true but {} is missing: apt-get install nginx caddy",
        kind.binary()
    );
    eprintln!(
        "SKIPPED forward-auth test: {} not found (apt-get install nginx caddy)",
        kind.binary()
    );
    false
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("addr").port()
}

/// The protected app: answers every request with a page listing the headers
/// it received, one `name: value` a line.
async fn upstream() -> SocketAddr {
    async fn echo(uri: axum::http::Uri, headers: HeaderMap) -> axum::response::Html<String> {
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut lines = format!("path: {}\n", escape(&uri.to_string()));
        for (name, value) in &headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            let _ = writeln!(lines, "{name}: {}", escape(&value));
        }
        let who = headers
            .get("remote-name")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        axum::response::Html(format!(
            "<!doctype html><html><head><title>Protected app</title></head><body>\
             <h1 id=\"hello\">The protected app welcomes {}</h1><pre id=\"headers\">{lines}</pre></body></html>",
            escape(&who)
        ))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let router = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The deploy file for `kind`, with this test's hosts and ports.
fn site_config(kind: Kind, peergate: u16, upstream: u16, port: u16) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let (file, listen_from, listen_to) = match kind {
        Kind::Nginx => (
            "nginx.conf",
            "listen 80;".to_string(),
            format!("listen 127.0.0.1:{port};"),
        ),
        Kind::Caddy => (
            "Caddyfile",
            "app.example.com {".to_string(),
            format!("http://:{port} {{\n\tbind 127.0.0.1"),
        ),
    };
    let text = std::fs::read_to_string(root.join(file)).expect("deploy file");
    assert!(text.contains(&listen_from), "{file} has `{listen_from}`");
    text.replace(&listen_from, &listen_to)
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{peergate}"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{upstream}"))
        .replace("app.example.com", "app.peergate.test")
}

/// Starts `kind` in the foreground with its own files in `dir`.
fn start_proxy(kind: Kind, dir: &Path, site: &str) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(kind.binary());
    match kind {
        Kind::Nginx => {
            let d = dir.display();
            std::fs::write(dir.join("site.conf"), site).expect("site.conf");
            let main = format!(
                "master_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
                 http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n include {d}/site.conf;\n}}\n"
            );
            std::fs::write(dir.join("nginx.conf"), main).expect("nginx.conf");
            command
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-g")
                .arg("daemon off;");
        }
        Kind::Caddy => {
            let file = dir.join("Caddyfile");
            std::fs::write(
                &file,
                format!("{{\n\tadmin off\n\tauto_https off\n}}\n{site}"),
            )
            .expect("Caddyfile");
            command
                .arg("run")
                .arg("--config")
                .arg(&file)
                .arg("--adapter")
                .arg("caddyfile")
                .env("HOME", dir)
                .env("XDG_DATA_HOME", dir)
                .env("XDG_CONFIG_HOME", dir);
        }
    }
    let log = std::fs::File::create(dir.join("proxy.log")).expect("proxy log");
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", kind.binary()))
}

/// peergate with forward auth (plus `extra` TOML), the upstream, and `kind`
/// in front of it; `None` when `kind` is not installed (outside CI).
pub async fn stack(kind: Kind, extra: &str) -> Option<Stack> {
    if !installed(kind) {
        return None;
    }
    let app = spawn_app_at_host("auth.peergate.test", &format!("{FORWARD_AUTH}\n{extra}")).await;
    let upstream = upstream().await;
    let dir = tempfile::tempdir().expect("proxy dir");
    let port = free_port();
    let site = site_config(kind, app.addr.port(), upstream.port(), port);
    let mut proxy = start_proxy(kind, dir.path(), &site);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        let log = || std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
        if let Ok(Some(status)) = proxy.try_wait() {
            panic!("{kind:?} exited ({status}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?} did not listen:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(Stack {
        app,
        port,
        proxy,
        dir,
    })
}

/// A browser-like client: keeps cookies, follows no redirects, and finds
/// every `*.peergate.test` name used here at 127.0.0.1 (the URL's port is used).
pub struct Client {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl std::ops::Deref for Client {
    type Target = reqwest::Client;
    fn deref(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Client {
    /// The `Cookie` header this client would send to `url`.
    fn cookies_for(&self, url: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let header = self.jar.cookies(&url.parse().expect("url"))?;
        header.to_str().ok().map(str::to_string)
    }
}

pub fn browser() -> Client {
    browser_from(None)
}

/// Like [`browser`], connecting from a chosen loopback address.
fn browser_from(local: Option<IpAddr>) -> Client {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let mut builder = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local);
    for host in ["auth", "app", "admin", "unlisted"] {
        builder = builder.resolve(&format!("{host}.peergate.test"), loopback);
    }
    Client {
        http: builder.build().expect("client"),
        jar,
    }
}

/// A page request, as a browser sends it.
async fn page(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .header("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
        .send()
        .await
        .expect("page request")
}

/// The headers the upstream reported, as (lowercase name, value).
fn received(body: &str) -> Vec<(String, String)> {
    let start = body
        .find("<pre id=\"headers\">")
        .expect("the upstream's page")
        + 18;
    let end = body[start..].find("</pre>").expect("end of headers") + start;
    body[start..end]
        .lines()
        .filter_map(|l| {
            l.split_once(": ")
                .or_else(|| l.strip_suffix(':').map(|n| (n, "")))
        })
        .map(|(n, v)| {
            let v = v
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            (n.to_string(), v)
        })
        .collect()
}

fn values_of<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Where peergate sends an anonymous browser that asked for `original`.
fn sign_in_url(stack: &Stack, original: &str) -> String {
    let rd: String = url::form_urlencoded::byte_serialize(original.as_bytes()).collect();
    format!("{}/login?rd={rd}", stack.app.base)
}

/// The form sign-in, with `rd`; returns the response (a 303).
async fn sign_in_form(
    stack: &Stack,
    client: &reqwest::Client,
    username: &str,
    rd: &str,
) -> reqwest::Response {
    stack
        .app
        .post(client, "/login")
        .form(&[
            ("username", username),
            ("password", &password_of(username)),
            ("rd", rd),
        ])
        .send()
        .await
        .expect("sign-in")
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location in {}", response.status()))
        .to_string()
}

/// Asks the proxy for `url` until it refuses (not 200); the time it took.
async fn refused_within(client: &reqwest::Client, url: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = page(client, url).await.status();
        if status != StatusCode::OK {
            assert!(
                status == StatusCode::FOUND || status == StatusCode::UNAUTHORIZED,
                "refused with {status}"
            );
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{url} still admitted after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Done means 1: each scenario through nginx and through Caddy.

async fn anonymous_pages_go_to_sign_in_and_api_calls_get_401(kind: Kind) {
    let Some(stack) = stack(kind, "").await else {
        return;
    };
    let client = browser();
    let original = stack.at("app", "/dashboards/7?from=now-6h&to=now");
    let response = page(&client, &original).await;
    assert_eq!(response.status(), StatusCode::FOUND, "{kind:?}");
    assert_eq!(location(&response), sign_in_url(&stack, &original));

    // The sign-in page names the app and carries the way back.
    let login = page(&client, &location(&response)).await;
    assert_eq!(login.status(), 200);
    let body = login.text().await.unwrap();
    assert!(
        body.contains("to continue to") && body.contains("app.peergate.test"),
        "{body}"
    );
    assert!(body.contains("name=\"rd\""), "{body}");

    let api = client
        .get(stack.at("app", "/api/dashboards"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
    let post = client
        .post(stack.at("app", "/save"))
        .header("Accept", "text/html")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.status(),
        StatusCode::UNAUTHORIZED,
        "{kind:?}: a POST is not redirected"
    );
    stack.stop().await;
}

#[tokio::test]
async fn nginx_anonymous_pages_go_to_sign_in_and_api_calls_get_401() {
    anonymous_pages_go_to_sign_in_and_api_calls_get_401(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_anonymous_pages_go_to_sign_in_and_api_calls_get_401() {
    anonymous_pages_go_to_sign_in_and_api_calls_get_401(Kind::Caddy).await;
}

/// A non-exempt user: sign-in, the waiting page (naming the app, also after
/// a reload), a reviewer approves, completion lands on the original URL, and
/// the upstream sees who it is, never what the client claimed. Logout then
/// shuts the app within a second.
async fn peer_review_leads_back_to_the_app(kind: Kind) {
    let Some(stack) = stack(kind, "").await else {
        return;
    };
    let app = &stack.app;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    // Not exempt, with a role, so that Remote-Groups has something in it.
    app.add_user("uma", "Uma Ünal", REVIEWER).await;
    let uma = browser();
    let original = stack.at("app", "/dashboards/7?from=now-6h&to=now");
    let to_sign_in = page(&uma, &original).await;
    assert_eq!(location(&to_sign_in), sign_in_url(&stack, &original));

    let signed = sign_in_form(&stack, &uma, "uma", &original).await;
    assert_eq!(location(&signed), "/pending", "{kind:?}");
    let cookie = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("peergate_session="))
        .expect("a session cookie");
    assert!(cookie.contains("Domain=peergate.test"), "{cookie}");
    // Half-authenticated is not signed in, as far as the app is concerned.
    assert_eq!(page(&uma, &original).await.status(), StatusCode::FOUND);
    for _ in 0..2 {
        // The waiting page names the app, and still does after a reload.
        let waiting = page(&uma, &app.url("/pending")).await.text().await.unwrap();
        assert!(waiting.contains("to continue to") && waiting.contains("app.peergate.test"));
    }

    let rita = browser();
    app.sign_in(&rita, "rita", "authenticated").await;
    let id = app
        .state
        .registry
        .list()
        .last()
        .expect("waiting")
        .id
        .clone();
    let (status, body) = app
        .post_json(
            &rita,
            &format!("/api/v1/inbox/{id}/decision"),
            json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": "Called Uma back."}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let done = app.post(&uma, "/pending/complete").send().await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&done),
        original,
        "{kind:?}: back on the original URL"
    );

    // The client's own Remote-* headers never reach the app.
    let arrived = uma
        .get(&original)
        .header("Accept", "text/html")
        .header("Remote-User", "admin")
        .header("Remote-Name", "The Administrator")
        .header("Remote-Groups", "admin")
        .header("Remote-Session-Expires", "2099-01-01T00:00:00Z")
        .send()
        .await
        .unwrap();
    assert_eq!(arrived.status(), 200, "{kind:?}");
    let body = arrived.text().await.unwrap();
    let seen = received(&body);
    assert_eq!(values_of(&seen, "remote-user"), ["uma"], "{kind:?}: {body}");
    assert_eq!(
        values_of(&seen, "remote-name"),
        ["Uma Ünal"],
        "{kind:?}: {body}"
    );
    assert_eq!(
        values_of(&seen, "remote-groups"),
        ["reviewer"],
        "{kind:?}: {body}"
    );
    let expires = values_of(&seen, "remote-session-expires");
    assert!(expires.len() == 1 && expires[0].ends_with('Z') && !expires[0].starts_with("2099"));
    assert_eq!(
        values_of(&seen, "path"),
        ["/dashboards/7?from=now-6h&to=now"]
    );

    // Logout: the app refuses within a second.
    let out = app.post(&uma, "/logout").send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let took = refused_within(&uma, &original, Duration::from_secs(1)).await;
    eprintln!("{kind:?}: refused {took:?} after logout");
    stack.stop().await;
}

#[tokio::test]
async fn nginx_peer_review_leads_back_to_the_app() {
    peer_review_leads_back_to_the_app(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_peer_review_leads_back_to_the_app() {
    peer_review_leads_back_to_the_app(Kind::Caddy).await;
}

/// An exempt user goes straight back; a role rule refuses a plain user and
/// admits an admin; a client's own headers never reach the app, even when
/// peergate's `Remote-Groups` is empty; `user disable` shuts the app within a
/// second.
async fn exempt_users_roles_and_disable(kind: Kind) {
    let Some(stack) = stack(kind, "").await else {
        return;
    };
    let app = &stack.app;
    let plain_exempt = Roles {
        exempt: true,
        ..PLAIN
    };
    app.add_user("pat", "Pat Plain", plain_exempt).await;
    app.add_user("ada", "Ada Admin", ADMIN).await;

    let pat = browser();
    let original = stack.at("app", "/wiki/Start");
    let signed = sign_in_form(&stack, &pat, "pat", &original).await;
    assert_eq!(
        location(&signed),
        original,
        "{kind:?}: exempt goes straight back"
    );
    let arrived = pat
        .get(&original)
        .header("Remote-User", "ada")
        .header("Remote-Groups", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(arrived.status(), 200);
    let seen = received(&arrived.text().await.unwrap());
    assert_eq!(values_of(&seen, "remote-user"), ["pat"], "{kind:?}");
    let groups = values_of(&seen, "remote-groups");
    assert!(
        groups.iter().all(|g| g.is_empty()),
        "{kind:?}: spoofed groups {groups:?}"
    );

    // admin.peergate.test needs the admin role.
    let admin_page = stack.at("admin", "/settings");
    assert_eq!(
        page(&pat, &admin_page).await.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}"
    );
    let ada = browser();
    let signed = sign_in_form(&stack, &ada, "ada", &admin_page).await;
    assert_eq!(location(&signed), admin_page);
    let admitted = page(&ada, &admin_page).await;
    assert_eq!(admitted.status(), 200, "{kind:?}");
    let seen = received(&admitted.text().await.unwrap());
    assert_eq!(values_of(&seen, "remote-groups"), ["admin"]);

    // `peergate user disable`, from another process: refused within a second.
    let data_dir = app.data_dir.display().to_string();
    let (code, out, err) = run_cli(
        &["user", "disable", "pat"],
        &[("PEERGATE__STORAGE__DATA_DIR", &data_dir)],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let took = refused_within(&pat, &original, Duration::from_secs(1)).await;
    eprintln!("{kind:?}: refused {took:?} after user disable");
    stack.stop().await;
}

#[tokio::test]
async fn nginx_exempt_users_roles_and_disable() {
    exempt_users_roles_and_disable(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_exempt_users_roles_and_disable() {
    exempt_users_roles_and_disable(Kind::Caddy).await;
}

/// `X-Forwarded-Host` straight from a peer outside `trusted_proxies`, and a
/// host not in `allowed_hosts` through the proxy, are refused whatever the
/// session.
async fn untrusted_peers_and_unlisted_hosts_are_refused(kind: Kind) {
    let Some(stack) = stack(kind, "").await else {
        return;
    };
    let app = &stack.app;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let ada = browser();
    let signed = sign_in_form(&stack, &ada, "ada", "").await;
    assert_eq!(location(&signed), "/");
    assert_eq!(page(&ada, &stack.at("app", "/")).await.status(), 200);

    // Through the proxy, a host peergate does not answer for.
    let unlisted = page(&ada, &stack.at("unlisted", "/")).await;
    assert_eq!(unlisted.status(), StatusCode::FORBIDDEN, "{kind:?}");

    // Straight to peergate from 127.0.0.2, which is not a trusted proxy,
    // with the session cookie and forwarded headers naming an allowed host.
    let cookie = ada.cookies_for(&app.base).expect("ada's session");
    assert!(cookie.contains("peergate_session="), "{cookie}");
    let outsider = browser_from(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    for path in ["/api/v1/authz/forward-auth", "/api/v1/authz/auth-request"] {
        let direct = outsider
            .get(app.url(path))
            .header("Cookie", &cookie)
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", "app.peergate.test")
            .header("X-Forwarded-Uri", "/")
            .header("X-Forwarded-Method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(direct.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(direct.headers().get("remote-user").is_none());
        // The same question from the trusted address passes.
        let trusted = ada
            .get(app.url(path))
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", "app.peergate.test")
            .header("X-Forwarded-Uri", "/")
            .send()
            .await
            .unwrap();
        assert_eq!(trusted.status(), 200, "{path}");
        assert_eq!(trusted.headers()["remote-user"], "ada");
    }
    stack.stop().await;
}

#[tokio::test]
async fn nginx_untrusted_peers_and_unlisted_hosts_are_refused() {
    untrusted_peers_and_unlisted_hosts_are_refused(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_untrusted_peers_and_unlisted_hosts_are_refused() {
    untrusted_peers_and_unlisted_hosts_are_refused(Kind::Caddy).await;
}

/// With forward auth off, both endpoints refuse, whoever asks.
#[tokio::test]
async fn forward_auth_off_refuses_everything() {
    let app = spawn_app_with("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]").await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let client = app.client();
    app.sign_in(&client, "ada", "authenticated").await;
    for path in ["/api/v1/authz/forward-auth", "/api/v1/authz/auth-request"] {
        let response = client
            .get(app.url(path))
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", "app.peergate.test")
            .header("X-Forwarded-Uri", "/")
            .header("X-Original-URL", "http://app.peergate.test/")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Done means 2: no open redirect. Each of these leads back to peergate's own
// home (or, after sign-out, its sign-in), never to the target.

const HOSTILE_RD: [&str; 6] = [
    "http://evil.example/",
    "//evil.example",
    "javascript:alert(document.cookie)",
    "javascript:",
    "http://app.peergate.test.evil.example/",
    "http://unlisted.peergate.test/",
];

/// Settings for the redirect tests: no proxy needed.
const RD_SETTINGS: &str = r#"
[forward_auth]
enabled = true
allowed_hosts = ["app.peergate.test"]
"#;

#[tokio::test]
async fn hostile_rd_after_an_exempt_sign_in_leads_home() {
    let app = spawn_app_with(RD_SETTINGS).await;
    app.add_user("ada", "Ada Admin", ADMIN).await;
    for rd in HOSTILE_RD {
        let client = app.client();
        let shown = client
            .get(app.url(&format!("/login?rd={}", urlencoded(rd))))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!shown.contains("to continue to"), "{rd}: {shown}");
        assert!(!shown.contains("evil"), "{rd} is not carried in the form");
        let response = app
            .post(&client, "/login")
            .form(&[
                ("username", "ada"),
                ("password", &password_of("ada")),
                ("rd", rd),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{rd}");
        assert_eq!(response.headers()["location"], "/", "{rd}");
        // Signed in already: /login?rd= does not follow it either.
        let again = client
            .get(app.url(&format!("/login?rd={}", urlencoded(rd))))
            .send()
            .await
            .unwrap();
        assert_eq!(again.headers()["location"], "/", "{rd}");
    }
    // The allowed one is followed, as a check that the test can tell.
    let client = app.client();
    let ok = app
        .post(&client, "/login")
        .form(&[
            ("username", "ada"),
            ("password", &password_of("ada")),
            ("rd", "http://app.peergate.test/x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.headers()["location"], "http://app.peergate.test/x");
    app.stop().await;
}

#[tokio::test]
async fn hostile_rd_through_peer_review_leads_home() {
    let app = spawn_app_with(RD_SETTINGS).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    for (n, rd) in HOSTILE_RD.iter().enumerate() {
        let username = format!("user{n}");
        app.add_user(&username, "A User", PLAIN).await;
        let client = app.client();
        // Through the JSON sign-in this time; the rd is kept (or not) the same way.
        let (status, _) = app
            .post_json(
                &client,
                "/api/v1/login",
                json!({"username": username, "password": password_of(&username), "rd": rd}),
            )
            .await;
        assert_eq!(status, 200);
        let waiting = client
            .get(app.url(&format!("/pending?rd={}", urlencoded(rd))))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!waiting.contains("to continue to"), "{rd}");
        let id = app
            .state
            .registry
            .list()
            .last()
            .expect("waiting")
            .id
            .clone();
        let (status, body) = app
            .post_json(
                &rita,
                &format!("/api/v1/inbox/{id}/decision"),
                json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": ""}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let done = app
            .post(&client, &format!("/pending/complete?rd={}", urlencoded(rd)))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 303, "{rd}");
        assert_eq!(done.headers()["location"], "/", "{rd}");

        // And sign-out with it goes to the sign-in page.
        let out = app
            .post(&client, &format!("/logout?rd={}", urlencoded(rd)))
            .send()
            .await
            .unwrap();
        assert_eq!(out.headers()["location"], "/login", "{rd}");
    }
    app.stop().await;
}

fn urlencoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The kept `rd` survives a restart: it is in app.sqlite, not only in memory.
#[tokio::test]
async fn the_way_back_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), RD_SETTINGS, None).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let uma = app.client();
    let (status, _) = app
        .post_json(
            &uma,
            "/api/v1/login",
            json!({"username": "uma", "password": password_of("uma"), "rd": "http://app.peergate.test/report?q=1"}),
        )
        .await;
    assert_eq!(status, 200);
    let cookie = uma.cookie_header().expect("cookie");
    let clock = app.clock.clone();
    app.stop().await;

    let app = spawn_app_in(dir.path(), RD_SETTINGS, Some(clock)).await;
    let uma = app.client();
    let page = uma
        .get(app.url("/pending"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("app.peergate.test"), "{page}");
    let rita = app.client();
    app.sign_in(&rita, "rita", "authenticated").await;
    let id = app
        .state
        .registry
        .list()
        .last()
        .expect("waiting")
        .id
        .clone();
    let (status, _) = app
        .post_json(
            &rita,
            &format!("/api/v1/inbox/{id}/decision"),
            json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": ""}),
        )
        .await;
    assert_eq!(status, 200);
    let done = app
        .post(&uma, "/pending/complete")
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.headers()["location"],
        "http://app.peergate.test/report?q=1"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Done means 3: the whole way in a real browser, through nginx.

/// From the first click on the protected app to its page after approval,
/// with two browser sessions (requester and reviewer). Screenshots:
/// `fwd-sign-in-names-the-app.png`, `fwd-waiting.png`, `fwd-app-after-approval.png`.
#[tokio::test]
async fn chromium_through_nginx_from_first_click_to_the_app() {
    use crate::browser::{
        LONG, audit, browser_slots, click_css, driver, open_inbox, screenshot, sign_in_ui,
        wait_for, wait_text, waiting_session_id,
    };
    use fantoccini::Locator;

    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let Some(stack) = stack(Kind::Nginx, "").await else {
        return;
    };
    let app = &stack.app;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rules = ["--host-resolver-rules=MAP *.peergate.test 127.0.0.1"];
    let reviewer = driver.browser_with(None, &rules).await;
    let requester = driver.browser_with(None, &rules).await;

    sign_in_ui(&reviewer, app, "rita").await;
    open_inbox(&reviewer, app).await;

    // The first click: the app, anonymous, goes to peergate's sign-in.
    let original = stack.at("app", "/dashboards/7?from=now-6h");
    requester.goto(&original).await.unwrap();
    let continuing = wait_text(&requester, ".continue-to").await;
    assert!(continuing.contains("app.peergate.test"), "{continuing}");
    screenshot(&requester, "fwd-sign-in-names-the-app").await;
    audit(&requester, "the sign-in page naming the app").await;
    requester
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("uma")
        .await
        .unwrap();
    requester
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(&password_of("uma"))
        .await
        .unwrap();
    click_css(&requester, "button[type=submit]").await;
    wait_for(&requester, "body[data-live]", LONG).await;
    let continuing = wait_text(&requester, ".continue-to").await;
    assert!(continuing.contains("app.peergate.test"), "{continuing}");
    screenshot(&requester, "fwd-waiting").await;
    audit(&requester, "the waiting page naming the app").await;

    // The reviewer approves in the drawer.
    let id = waiting_session_id(app);
    click_css(&reviewer, &format!("#row-{id} .row-open")).await;
    wait_for(&reviewer, "dialog#drawer[open] form.decision", LONG).await;
    click_css(&reviewer, "input[name=outcome][value=approve]").await;
    click_css(&reviewer, "input[name=code_confirmed]").await;
    reviewer
        .find(Locator::Id("note"))
        .await
        .unwrap()
        .send_keys("Called Uma back.")
        .await
        .unwrap();
    click_css(&reviewer, "form.decision button[type=submit]").await;

    // The requester's page moves on by itself, back to the app.
    let hello = wait_text(&requester, "#hello").await;
    assert!(hello.contains("Uma User"), "{hello}");
    assert_eq!(requester.current_url().await.unwrap().as_str(), original);
    let headers = wait_text(&requester, "#headers").await;
    assert!(headers.contains("remote-user: uma"), "{headers}");
    screenshot(&requester, "fwd-app-after-approval").await;

    reviewer.close().await.unwrap();
    requester.close().await.unwrap();
    stack.stop().await;
}
