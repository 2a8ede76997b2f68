//! Accessibility checks for the browser scenarios: axe-core 4 (a test
//! fixture, never served) injected into the page under test and run with the
//! WCAG 2.1 A and AA rules, once in each colour scheme; and the Chrome
//! DevTools Protocol commands, sent through chromedriver, that emulate the
//! media features (`prefers-color-scheme`, `prefers-reduced-motion`).

use std::fmt::Write as _;

use axum::http::Method;
use fantoccini::Client;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};
use url::{ParseError, Url};

/// axe-core's browser build, from `npm pack axe-core@4` (see its README).
const AXE: &str = include_str!("../../fixtures/axe-core/axe.min.js");

/// The rule sets the issue asks for: WCAG 2.0 and 2.1, levels A and AA.
const WCAG_21_AA: [&str; 4] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/// A Chrome DevTools Protocol command, sent through chromedriver's
/// `POST /session/{id}/goog/cdp/execute` (fantoccini has no CDP client; this
/// is chromedriver's own route to it). Settings made this way stay on the tab
/// across navigations.
#[derive(Debug)]
struct Cdp {
    method: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &Url, session_id: Option<&str>) -> Result<Url, ParseError> {
        let session = session_id.expect("a CDP command needs a browser session");
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _request_url: &Url) -> (Method, Option<String>) {
        let body = json!({ "cmd": self.method, "params": self.params });
        (Method::POST, Some(body.to_string()))
    }
}

/// A colour scheme, as `prefers-color-scheme` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Light,
    Dark,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Light => "light",
            Scheme::Dark => "dark",
        }
    }
}

/// Emulates the given CSS media features on the tab (all others back to the
/// browser's own), then checks the page sees them through `matchMedia`.
pub async fn emulate(client: &Client, features: &[(&str, &str)]) {
    let list: Vec<Value> = features
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    client
        .issue_cmd(Cdp {
            method: "Emulation.setEmulatedMedia",
            params: json!({ "features": list }),
        })
        .await
        .expect("chromedriver runs Emulation.setEmulatedMedia");
    for (name, value) in features {
        let query = format!("({name}: {value})");
        let seen = client
            .execute(
                "return matchMedia(arguments[0]).matches;",
                vec![json!(query)],
            )
            .await
            .expect("matchMedia");
        assert_eq!(seen, json!(true), "the page does not see {query}");
    }
}

/// Emulates a colour scheme on the tab.
pub async fn color_scheme(client: &Client, scheme: Scheme) {
    emulate(client, &[("prefers-color-scheme", scheme.as_str())]).await;
}

/// Runs axe on the page as it is now, in the light and then the dark colour
/// scheme, and fails on any serious or critical violation. Every violation
/// found (whatever its impact) is printed with its targets. Leaves the tab in
/// the light scheme.
pub async fn audit(client: &Client, state: &str) {
    let mut report = Vec::new();
    let mut blocking = 0;
    for scheme in [Scheme::Light, Scheme::Dark] {
        color_scheme(client, scheme).await;
        for violation in run_axe(client).await {
            let impact = violation["impact"].as_str().unwrap_or("unknown");
            if matches!(impact, "serious" | "critical") {
                blocking += 1;
            }
            report.push(describe(state, scheme, &violation));
        }
    }
    color_scheme(client, Scheme::Light).await;
    for line in &report {
        eprintln!("{line}");
    }
    assert!(
        blocking == 0,
        "axe: {blocking} serious or critical violation(s) on {state}:\n{}",
        report.join("\n")
    );
}

/// axe's violations on the current page (injecting axe first when the page
/// does not have it yet).
async fn run_axe(client: &Client) -> Vec<Value> {
    let present = client
        .execute("return typeof window.axe === 'object';", vec![])
        .await
        .expect("probe for axe");
    if present != json!(true) {
        client.execute(AXE, vec![]).await.expect("axe-core loads");
    }
    // Contrast is measured on the settled page: first let running animations
    // and transitions (the drawer sliding in, colours fading after the scheme
    // changed) finish, for at most two seconds.
    let script = r"
        const done = arguments[arguments.length - 1];
        void document.body.offsetHeight;
        const settled = Promise.all(document.getAnimations().map((a) => a.finished.catch(() => null)));
        const enough = new Promise((resolve) => setTimeout(resolve, 2000));
        Promise.race([settled, enough])
            .then(() => window.axe.run(document, {
                runOnly: { type: 'tag', values: arguments[0] },
                resultTypes: ['violations'],
            }))
            .then((r) => done({ ok: r.violations }))
            .catch((e) => done({ error: String(e && e.stack || e) }));
    ";
    let result = client
        .execute_async(script, vec![json!(WCAG_21_AA)])
        .await
        .expect("axe.run answers");
    if let Some(error) = result.get("error") {
        panic!("axe.run failed: {error}");
    }
    result["ok"].as_array().cloned().unwrap_or_default()
}

/// One violation, readable: rule, impact, help, and each target with axe's
/// summary of what failed.
fn describe(state: &str, scheme: Scheme, violation: &Value) -> String {
    let mut text = format!(
        "axe [{}] {} on {state} ({} scheme): {} ({})",
        violation["impact"].as_str().unwrap_or("unknown"),
        violation["id"].as_str().unwrap_or("?"),
        scheme.as_str(),
        violation["help"].as_str().unwrap_or(""),
        violation["helpUrl"].as_str().unwrap_or(""),
    );
    for node in violation["nodes"].as_array().into_iter().flatten() {
        let summary = node["failureSummary"]
            .as_str()
            .unwrap_or("")
            .replace('\n', " ");
        let _ = write!(text, "\n    target {}: {summary}", node["target"]);
    }
    text
}
