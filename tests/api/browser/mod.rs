//! peergate in a real browser: headless Chromium driven through chromedriver.
//!
//! Locally, without Chromium, these tests say they were skipped and pass; in
//! CI (`CI=true`) a missing browser fails them.
//!
//! Every scenario runs axe-core ([`axe::audit`]) on each page and state it
//! visits, in the light and the dark colour scheme; `a11y` holds the
//! scenarios about accessibility itself (keyboard, announcements, schemes).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::helpers::*;
pub use axe::audit;

mod a11y;
mod axe;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium is heavy on two cores: at most two browser tests at once.
pub fn browser_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(2))
}

/// A chromedriver started for one test, stopped when dropped.
pub struct Driver {
    child: tokio::process::Child,
    url: String,
    profiles: Vec<tempfile::TempDir>,
}

/// Starts chromedriver on a free port; `None` (with a message) when Chromium is
/// not installed and this is not CI.
pub async fn driver() -> Option<Driver> {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: install chromium and chromium-driver"
        );
        eprintln!(
            "SKIPPED browser test: {CHROMIUM} or {CHROMEDRIVER} not found (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Some(Driver {
                child,
                url,
                profiles: Vec::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not answer on {url}");
}

impl Driver {
    /// A new browser session with its own empty profile.
    pub async fn browser(&mut self) -> Client {
        self.browser_downloading_to(None).await
    }

    /// A browser session that saves downloads into `downloads`.
    pub async fn browser_downloading_to(&mut self, downloads: Option<&std::path::Path>) -> Client {
        self.browser_with(downloads, &[]).await
    }

    /// A browser session with extra Chromium arguments (e.g.
    /// `--host-resolver-rules`).
    pub async fn browser_with(
        &mut self,
        downloads: Option<&std::path::Path>,
        extra_args: &[&str],
    ) -> Client {
        let profile = tempfile::tempdir().expect("profile dir");
        let prefs = match downloads {
            Some(dir) => json!({
                "download.default_directory": dir.display().to_string(),
                "download.prompt_for_download": false,
            }),
            None => json!({}),
        };
        let mut caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "prefs": prefs,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        if let Some(args) = caps["goog:chromeOptions"]["args"].as_array_mut() {
            args.extend(extra_args.iter().map(|a| json!(a)));
        }
        self.profiles.push(profile);
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("capabilities are a JSON object")
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Where screenshots go: `target/screenshots/`.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Signs in through the form.
pub async fn sign_in_ui(client: &Client, app: &TestApp, username: &str) {
    client.goto(&app.url("/login")).await.unwrap();
    client
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(&password_of(username))
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn wait_for(
    client: &Client,
    css: &str,
    within: Duration,
) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(within)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}` did not appear within {within:?}: {e}"))
}

/// Waits until `css` matches nothing.
async fn wait_gone(client: &Client, css: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if client.find_all(Locator::Css(css)).await.unwrap().is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{css}` still there after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the first element matching `css`, read in the page (live
/// updates replace elements, so a held element reference can go stale).
pub async fn wait_text(client: &Client, css: &str) -> String {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let text = client
            .execute(
                &format!(
                    "const e = document.querySelector({css:?}); return e ? e.innerText : null;"
                ),
                vec![],
            )
            .await
            .unwrap();
        if let Some(t) = text.as_str() {
            return t.trim().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{css}` did not appear within {LONG:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the element matching `css`, finding it again if a live update
/// replaced it between finding and clicking.
pub async fn click_css(client: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && element.click().await.is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "could not click `{css}` within {LONG:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens the inbox and waits until its socket's first snapshot is applied, so
/// rows found afterwards are not replaced under the test's feet.
pub async fn open_inbox(client: &Client, app: &TestApp) {
    client.goto(&app.url("/inbox")).await.unwrap();
    wait_for(client, "body[data-live]", LONG).await;
}

pub fn waiting_session_id(app: &TestApp) -> String {
    app.state
        .registry
        .list()
        .last()
        .expect("a waiting session")
        .id
        .clone()
}

pub const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn approval_in_the_drawer_moves_the_requester_on_by_itself() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let reviewer = driver.browser().await;
    let requester = driver.browser().await;

    sign_in_ui(&reviewer, &app, "rita").await;
    open_inbox(&reviewer, &app).await;
    wait_for(&reviewer, "#inbox-empty", LONG).await;
    audit(&reviewer, "the inbox, empty").await;

    requester.goto(&app.url("/login")).await.unwrap();
    screenshot(&requester, "login").await;
    audit(&requester, "the sign-in page").await;
    sign_in_ui(&requester, &app, "uma").await;
    wait_for(&requester, "body[data-live]", LONG).await;
    let code = wait_text(&requester, "#code-block .code").await;
    assert!(regex_like_grouped(&code), "grouped code, got `{code}`");
    let id = waiting_session_id(&app);

    // The new row appears in the open inbox without a reload.
    let row = format!("#row-{id} .row-open");
    wait_for(&reviewer, &row, LONG).await;
    let title = reviewer.title().await.unwrap();
    assert!(title.starts_with("(1)"), "count in the tab title: {title}");
    audit(&reviewer, "the inbox, one request").await;
    // The requester sees who is online once the reviewer's socket is up.
    wait_for(&requester, "#presence", LONG).await;
    screenshot(&requester, "waiting").await;
    audit(&requester, "the waiting page, pending").await;
    // Readable on a 360 px phone: nothing wider than the screen.
    requester.set_window_size(360, 780).await.unwrap();
    assert_fits(&requester, "/pending").await;
    screenshot(&requester, "waiting-360px").await;

    click_css(&reviewer, &row).await;
    let drawer_code = wait_text(&reviewer, "dialog#drawer[open] .code").await;
    assert_eq!(drawer_code, code, "the drawer shows the requester's code");
    // The requester is told who is looking.
    let claimed = wait_text(&requester, "#presence .claimed").await;
    assert!(claimed.contains("Rita Reviewer"), "{claimed}");
    audit(&reviewer, "the drawer, open").await;
    audit(&requester, "the waiting page, claimed").await;

    reviewer
        .find(Locator::Css("input[name=outcome][value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    reviewer
        .find(Locator::Css("input[name=code_confirmed]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    reviewer
        .find(Locator::Id("note"))
        .await
        .unwrap()
        .send_keys("Called Uma back on her desk phone.")
        .await
        .unwrap();
    screenshot(&reviewer, "inbox-drawer").await;
    let decided = std::time::Instant::now();
    reviewer
        .find(Locator::Css("form.decision button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The requester lands on the signed-in home, with no click, within 2 s.
    let home = app.url("/").parse().unwrap();
    requester
        .wait()
        .at_most(Duration::from_secs(2))
        .for_url(&home)
        .await
        .expect("home within 2 s");
    let took = decided.elapsed();
    let body = requester
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("Signed in as Uma User"), "{body}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // The reviewer sees the recorded entry.
    let result = wait_text(&reviewer, "dialog#drawer .result").await;
    assert!(result.contains("#1"), "{result}");
    audit(&reviewer, "the drawer, approval recorded").await;
    audit(&requester, "the signed-in home").await;
    reviewer.close().await.unwrap();
    requester.close().await.unwrap();
    app.stop().await;
}

/// The page does not scroll sideways (wide tables scroll inside their own box).
async fn assert_fits(client: &Client, what: &str) {
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (page, window) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
    assert!(
        page <= window,
        "{what} is {page}px wide in a {window}px window"
    );
}

fn regex_like_grouped(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 7
        && b[3] == b' '
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || c.is_ascii_digit())
}

#[tokio::test]
async fn a_denial_tells_the_requester_and_clears_every_inbox() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("rob", "Rob Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = driver.browser().await;
    let rob = driver.browser().await;
    let requester = driver.browser().await;
    for (browser, name) in [(&rita, "rita"), (&rob, "rob")] {
        sign_in_ui(browser, &app, name).await;
        open_inbox(browser, &app).await;
        wait_for(browser, "#inbox-rows", LONG).await;
    }
    sign_in_ui(&requester, &app, "uma").await;
    wait_for(&requester, "#code-block", LONG).await;
    let id = waiting_session_id(&app);
    let row = format!("#row-{id}");
    wait_for(&rob, &row, LONG).await;
    click_css(&rita, &format!("{row} .row-open")).await;
    wait_for(&rita, "dialog#drawer[open] form.decision", LONG).await;
    // Rob sees that Rita is on it.
    let claimed = wait_text(&rob, &format!("{row} .claimed-by")).await;
    assert!(claimed.contains("Rita Reviewer"));
    audit(&rob, "the inbox, a request another reviewer has open").await;

    rita.find(Locator::Css("input[name=outcome][value=deny]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    rita.find(Locator::Id("note"))
        .await
        .unwrap()
        .send_keys("Uma is on leave; she did not sign in.")
        .await
        .unwrap();
    rita.find(Locator::Css("form.decision button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let message = wait_text(&requester, ".ended").await;
    assert!(message.contains("denied"), "{message}");
    audit(&requester, "the waiting page, denied").await;
    wait_gone(&rob, &row, LONG).await;
    let title = rob.title().await.unwrap();
    assert!(
        !title.starts_with('('),
        "no count left in the title: {title}"
    );
    audit(&rob, "the inbox, emptied by another reviewer's decision").await;
    wait_for(&rita, "dialog#drawer[open] .result", LONG).await;
    audit(&rita, "the drawer, denial recorded").await;
    for b in [rita, rob, requester] {
        b.close().await.unwrap();
    }
    app.stop().await;
}

/// Every `src` and `href` on a page, resolved by the browser.
async fn external_references(client: &Client, origin: &str) -> Vec<String> {
    let urls = client
        .execute(
            "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.src || e.href)
                .concat(performance.getEntriesByType('resource').map(r => r.name));",
            vec![],
        )
        .await
        .unwrap();
    urls.as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u.as_str())
        .filter(|u| !u.starts_with(origin) && !u.starts_with("ws://127.0.0.1") && !u.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn no_page_loads_anything_from_elsewhere() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let uma = driver.browser().await;
    sign_in_ui(&uma, &app, "uma").await;
    wait_for(&uma, "#code-block", LONG).await;
    assert_eq!(
        external_references(&uma, &app.base).await,
        Vec::<String>::new(),
        "/pending"
    );
    audit(&uma, "/pending").await;
    let ada = driver.browser().await;
    ada.goto(&app.url("/login")).await.unwrap();
    assert_eq!(
        external_references(&ada, &app.base).await,
        Vec::<String>::new(),
        "/login"
    );
    audit(&ada, "/login").await;
    sign_in_ui(&ada, &app, "ada").await;
    for path in ["/", "/inbox", "/admin", "/admin/ledger"] {
        ada.goto(&app.url(path)).await.unwrap();
        wait_for(&ada, "main", LONG).await;
        assert_eq!(
            external_references(&ada, &app.base).await,
            Vec::<String>::new(),
            "{path}"
        );
        audit(&ada, path).await;
    }
    uma.close().await.unwrap();
    ada.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_admin_page_hands_over_a_file_with_the_checksum_it_shows() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    for i in 0..7 {
        app.state
            .ledger
            .writer
            .append(peergate::loadtest::synthetic_draft(i))
            .await
            .unwrap();
    }
    let downloads = tempfile::tempdir().unwrap();
    let ada = driver.browser_downloading_to(Some(downloads.path())).await;
    sign_in_ui(&ada, &app, "ada").await;
    ada.goto(&app.url("/admin")).await.unwrap();
    let shown = wait_text(&ada, "#snapshot-sha256").await;
    assert_eq!(shown.len(), 64);
    let head = ada
        .find(Locator::Id("ledger-head"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(head.starts_with("7:"), "{head}");
    screenshot(&ada, "admin").await;
    audit(&ada, "the admin page, seven entries").await;
    ada.set_window_size(360, 780).await.unwrap();
    assert_fits(&ada, "/admin").await;
    screenshot(&ada, "admin-360px").await;

    ada.find(Locator::Id("download-ledger"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let file = downloads.path().join("ledger-7.sqlite");
    let deadline = tokio::time::Instant::now() + LONG;
    while !file.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the download did not arrive: {:?}",
            std::fs::read_dir(downloads.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Chrome writes to a .crdownload file and renames it when done.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        shown,
        "the page's SHA-256 is the file's"
    );
    assert!(matches!(
        peergate::ledger::verify_file(
            &file,
            Some(peergate::ledger::Head::parse_arg(&head).unwrap())
        )
        .await,
        peergate::ledger::Verdict::Valid { entries: 7, .. }
    ));
    ada.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn markup_in_a_note_stays_text_everywhere() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    app.add_user("uma", "<i>Uma</i> User", PLAIN).await;
    let uma = app.client();
    app.sign_in(&uma, "uma", "half_authenticated").await;
    let id = waiting_session_id(&app);
    let ada = driver.browser().await;
    sign_in_ui(&ada, &app, "ada").await;
    open_inbox(&ada, &app).await;
    click_css(&ada, &format!("#row-{id} .row-open")).await;
    wait_for(&ada, "dialog#drawer[open] form.decision", LONG).await;
    let note = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">";
    ada.find(Locator::Css("input[name=outcome][value=deny]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ada.find(Locator::Id("note"))
        .await
        .unwrap()
        .send_keys(note)
        .await
        .unwrap();
    ada.find(Locator::Css("form.decision button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let quote = wait_text(&ada, "dialog#drawer .result blockquote.note").await;
    assert_eq!(quote, note, "the inbox shows the note as text");
    audit(&ada, "the drawer, a note with markup recorded").await;
    for (path, css) in [("/admin/ledger", "td.note"), ("/admin", "td.note")] {
        ada.goto(&app.url(path)).await.unwrap();
        let shown = wait_text(&ada, css).await;
        assert_eq!(shown, note, "{path} shows the note as text");
        let name = ada
            .find(Locator::Css("table.entries tbody tr td:nth-child(3)"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(name.contains("<i>Uma</i> User"), "{path}: {name}");
        audit(&ada, &format!("{path} with a note holding markup")).await;
    }
    let pwned = ada
        .execute("return window.pwned === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, json!(true), "no script ran");
    ada.close().await.unwrap();
    app.stop().await;
}

/// A reviewer hears a code that is not on the screen and says so in the
/// drawer; the requester reads only "denied", and the admin page raises the
/// alarm until an admin acknowledges it.
#[tokio::test]
async fn a_mismatch_in_the_drawer_raises_the_alarm_on_the_admin_page() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let ada = driver.browser().await;
    let requester = driver.browser().await;
    sign_in_ui(&ada, &app, "ada").await;
    open_inbox(&ada, &app).await;
    sign_in_ui(&requester, &app, "uma").await;
    wait_for(&requester, "#code-block", LONG).await;
    let id = waiting_session_id(&app);
    click_css(&ada, &format!("#row-{id} .row-open")).await;
    wait_for(&ada, "dialog#drawer[open] form.decision", LONG).await;
    let help = wait_text(&ada, "#mismatch-help").await;
    assert!(
        help.contains("someone else most likely typed the password"),
        "{help}"
    );
    click_css(&ada, "input[name=outcome][value=mismatch]").await;
    screenshot(&ada, "mismatch-drawer").await;
    audit(&ada, "the drawer, mismatch chosen").await;
    click_css(&ada, "form.decision button[type=submit]").await;
    let recorded = wait_text(&ada, "#mismatch-recorded").await;
    assert!(
        recorded.contains("told only that the sign-in was denied"),
        "{recorded}"
    );

    let message = wait_text(&requester, ".ended").await;
    assert!(message.contains("denied"), "{message}");
    assert!(!message.to_lowercase().contains("match"), "{message}");

    ada.goto(&app.url("/admin")).await.unwrap();
    let alarm = wait_text(&ada, "#mismatches").await;
    assert!(
        alarm.contains("Uma User") && alarm.to_lowercase().contains("account locked"),
        "{alarm}"
    );
    screenshot(&ada, "mismatch-admin").await;
    audit(&ada, "the admin page with a mismatch alarm").await;
    audit(&requester, "the waiting page, denied after a mismatch").await;
    click_css(&ada, &format!("#mismatch-{id} button[type=submit]")).await;
    wait_for(&ada, "#webhooks", LONG).await;
    wait_gone(&ada, "#mismatches", LONG).await;
    for b in [ada, requester] {
        b.close().await.unwrap();
    }
    app.stop().await;
}
