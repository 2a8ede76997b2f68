//! Accessibility scenarios: the pages no other scenario reaches, checked with
//! axe; a whole review done with the keyboard alone; the live regions that
//! announce changes to screen readers; the dark scheme and reduced motion.
//!
//! What these do not replace is a person using a screen reader: they check
//! what is in the accessibility tree and in the live regions, not how a
//! particular screen reader speaks it.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use super::axe::{self, Scheme, audit};
use super::*;

/// Sends one key to whatever has focus, as a keyboard would.
async fn press(client: &Client, key: &str) {
    client
        .active_element()
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
}

const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";
const SPACE: &str = " ";
const ESCAPE: &str = "\u{e00c}";

/// How the focused element shows it has focus: its selector-ish name and
/// computed outline, or `None` when nothing (or the body) has focus.
async fn focus_ring(client: &Client) -> Option<(String, String, f64)> {
    let found = client
        .execute(
            "const e = document.activeElement;
             if (!e || e === document.body) { return null; }
             const s = getComputedStyle(e);
             return [e.outerHTML.slice(0, 80), s.outlineStyle, parseFloat(s.outlineWidth)];",
            vec![],
        )
        .await
        .unwrap();
    let found = found.as_array()?;
    Some((
        found[0].as_str().unwrap_or("").to_string(),
        found[1].as_str().unwrap_or("").to_string(),
        found[2].as_f64().unwrap_or(0.0),
    ))
}

/// Fails unless something has focus and shows it with an outline of at least
/// 2 px (the stylesheet draws 3 px in the accent colour).
async fn assert_focus_visible(client: &Client, when: &str) {
    let Some((element, style, width)) = focus_ring(client).await else {
        panic!("{when}: nothing has focus");
    };
    assert!(
        style != "none" && width >= 2.0,
        "{when}: focus on {element} is not visible (outline {style} {width}px)"
    );
}

async fn focused_matches(client: &Client, css: &str) -> bool {
    client
        .execute(
            "return !!(document.activeElement && document.activeElement.matches(arguments[0]));",
            vec![json!(css)],
        )
        .await
        .unwrap()
        == json!(true)
}

/// Waits until the element matching `css` has focus.
async fn wait_focus(client: &Client, css: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + LONG;
    while !focused_matches(client, css).await {
        let now = focus_ring(client).await.map(|f| f.0);
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: focus is on {now:?}, not `{css}`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tabs through the page until `css` has focus, checking at every stop on
/// the way that the focus is visible.
async fn tab_to(client: &Client, css: &str) {
    for _ in 0..30 {
        if focused_matches(client, css).await {
            assert_focus_visible(client, &format!("on `{css}`")).await;
            return;
        }
        press(client, TAB).await;
        assert_focus_visible(client, &format!("tabbing towards `{css}`")).await;
    }
    panic!("never reached `{css}` with Tab");
}

/// True when focus is inside the open drawer.
async fn focus_in_drawer(client: &Client) -> bool {
    client
        .execute(
            "return !!(document.activeElement && document.activeElement.closest('dialog#drawer[open]'));",
            vec![],
        )
        .await
        .unwrap()
        == json!(true)
}

#[tokio::test]
async fn a_review_from_the_keyboard_alone() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("ulf", "Ulf User", PLAIN).await;
    // Two requests: Uma's is the older.
    let uma = app.client();
    app.sign_in(&uma, "uma", "half_authenticated").await;
    let oldest = waiting_session_id(&app);
    app.clock.advance(Duration::from_secs(30));
    let ulf = app.client();
    app.sign_in(&ulf, "ulf", "half_authenticated").await;
    let next = app
        .state
        .registry
        .list()
        .into_iter()
        .map(|s| s.id.clone())
        .find(|id| *id != oldest)
        .expect("Ulf's request");
    let rita = driver.browser().await;

    // Sign in: the username field has focus when the page opens.
    rita.goto(&app.url("/login")).await.unwrap();
    wait_focus(&rita, "#username", "the sign-in page").await;
    press(&rita, "rita").await;
    press(&rita, TAB).await;
    assert!(focused_matches(&rita, "#password").await);
    assert_focus_visible(&rita, "the password field").await;
    press(&rita, &password_of("rita")).await;
    press(&rita, ENTER).await;
    wait_home(&rita, &app).await;
    // From the home page to the inbox by its link in the top bar.
    tab_to(&rita, "nav a[href='/inbox']").await;
    press(&rita, ENTER).await;
    wait_for(&rita, "body[data-live]", LONG).await;
    let first_row = "#inbox-rows li:first-child .row-open";
    let oldest_row = format!("#row-{oldest} .row-open");
    wait_for(&rita, &oldest_row, LONG).await;
    assert!(
        rita.find(Locator::Css(&format!("#row-{oldest}:first-child")))
            .await
            .is_ok(),
        "the oldest request comes first"
    );
    // The keys are documented on the page.
    let keys = rita
        .execute(
            "return document.querySelector('details.keys').textContent;",
            vec![],
        )
        .await
        .unwrap();
    let keys = keys.as_str().unwrap_or_default();
    for key in ["Tab", "Enter", "Space", "Escape"] {
        assert!(keys.contains(key), "the inbox documents {key}: {keys}");
    }

    // Open the oldest with Enter: focus moves into the drawer, visibly.
    tab_to(&rita, first_row).await;
    assert!(focused_matches(&rita, &oldest_row).await);
    press(&rita, ENTER).await;
    wait_for(&rita, "dialog#drawer[open] form.decision", LONG).await;
    wait_focus(
        &rita,
        "dialog#drawer input[name=outcome][value=approve]",
        "the drawer opened",
    )
    .await;
    assert!(focus_in_drawer(&rita).await);
    assert_focus_visible(&rita, "the drawer opened").await;
    // Escape closes it: focus is back on the row (a new element by now: the
    // claim replaced the row while the drawer was open).
    press(&rita, ESCAPE).await;
    wait_gone(&rita, "dialog#drawer[open]", LONG).await;
    wait_focus(&rita, &oldest_row, "the drawer closed").await;
    assert_focus_visible(&rita, "back on the row").await;

    // Open again and decide with the keyboard alone.
    press(&rita, ENTER).await;
    wait_for(&rita, "dialog#drawer[open] form.decision", LONG).await;
    wait_focus(
        &rita,
        "dialog#drawer input[name=outcome][value=approve]",
        "the drawer reopened",
    )
    .await;
    tab_to(&rita, "input[name=outcome][value=approve]").await;
    press(&rita, SPACE).await;
    tab_to(&rita, "input[name=code_confirmed]").await;
    press(&rita, SPACE).await;
    tab_to(&rita, "#note").await;
    press(&rita, "Confirmed by phone, read back.").await;
    tab_to(&rita, "form.decision button[type=submit]").await;
    assert!(focus_in_drawer(&rita).await, "Tab stays in the drawer");
    press(&rita, ENTER).await;
    wait_for(&rita, "dialog#drawer[open] .result", LONG).await;
    // Focus stays in the drawer, on its Close button.
    wait_focus(
        &rita,
        "dialog#drawer .result .actions button",
        "the decision was recorded",
    )
    .await;
    assert_focus_visible(&rita, "the recorded decision").await;
    audit(&rita, "the drawer, decided from the keyboard").await;
    press(&rita, ESCAPE).await;
    wait_gone(&rita, "dialog#drawer[open]", LONG).await;
    // The decided request has left: focus goes to the one now in its place.
    wait_gone(&rita, &oldest_row, LONG).await;
    wait_focus(
        &rita,
        &format!("#row-{next} .row-open"),
        "the drawer closed after the decision",
    )
    .await;
    assert_focus_visible(&rita, "on the next request").await;

    let outcome = peergate::ledger::read::outcome_of(&app.state.ledger.reader, &oldest)
        .await
        .unwrap();
    assert_eq!(outcome, Some(peergate::domain::Outcome::Approved));

    // The inbox fits a 360 px screen too.
    rita.set_window_size(360, 780).await.unwrap();
    open_inbox(&rita, &app).await;
    assert_fits(&rita, "/inbox").await;
    audit(&rita, "the inbox at 360 px").await;
    rita.close().await.unwrap();
    app.stop().await;
}

/// Starts recording every text the page's live regions take, with each
/// region's id and politeness, into the tab's sessionStorage: it survives the
/// page moving on by itself after an approval. Only regions already in the
/// page are watched, as a screen reader watches them: a region that a live
/// update replaced instead of filling would announce nothing, and nothing
/// would be recorded.
async fn record_announcements(client: &Client) {
    client
        .execute(
            "sessionStorage.setItem('announced', '[]');
             document.querySelectorAll('[aria-live]').forEach((region) => {
                 new MutationObserver(() => {
                     const text = region.textContent.trim();
                     if (!text) { return; }
                     const log = JSON.parse(sessionStorage.getItem('announced') || '[]');
                     log.push({ id: region.id, live: region.getAttribute('aria-live'), text });
                     sessionStorage.setItem('announced', JSON.stringify(log));
                 }).observe(region, { childList: true, subtree: true, characterData: true });
             });",
            vec![],
        )
        .await
        .unwrap();
}

/// Waits until the live region `id`, with politeness `live`, has announced a
/// text containing `expected`; returns everything recorded so far.
async fn wait_announced(client: &Client, id: &str, live: &str, expected: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let log = client
            .execute(
                "return JSON.parse(sessionStorage.getItem('announced') || '[]');",
                vec![],
            )
            .await
            .unwrap();
        let log = log.as_array().cloned().unwrap_or_default();
        let heard = log.iter().any(|a| {
            a["id"] == id
                && a["live"] == live
                && a["text"].as_str().is_some_and(|t| t.contains(expected))
        });
        if heard {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`#{id}` (aria-live={live}) never announced `{expected}`; announced: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks through a decision in the open drawer.
async fn decide(client: &Client, outcome: &str, confirmed: bool, note: &str) {
    click_css(
        client,
        &format!("dialog#drawer[open] input[name=outcome][value={outcome}]"),
    )
    .await;
    if confirmed {
        click_css(client, "dialog#drawer[open] input[name=code_confirmed]").await;
    }
    if !note.is_empty() {
        client
            .find(Locator::Css("dialog#drawer[open] #note"))
            .await
            .unwrap()
            .send_keys(note)
            .await
            .unwrap();
    }
    click_css(
        client,
        "dialog#drawer[open] form.decision button[type=submit]",
    )
    .await;
}

/// Opens a request's drawer from its row, after any earlier drawer closed.
async fn open_request(client: &Client, id: &str) {
    wait_gone(client, "dialog#drawer[open]", LONG).await;
    click_css(client, &format!("#row-{id} .row-open")).await;
    wait_for(client, "dialog#drawer[open] form.decision", LONG).await;
}

/// Waits until the browser is on the signed-in home page.
async fn wait_home(client: &Client, app: &TestApp) {
    let home = app.url("/").parse().unwrap();
    client.wait().at_most(LONG).for_url(&home).await.unwrap();
}

/// Signs a requester in through the form and waits for the live page.
async fn wait_in_browser(client: &Client, app: &TestApp, username: &str) -> String {
    sign_in_ui(client, app, username).await;
    wait_for(client, "body[data-live]", LONG).await;
    app.state
        .registry
        .list()
        .into_iter()
        .find(|s| s.requester.username == username)
        .map(|s| s.id.clone())
        .expect("a waiting session")
}

#[tokio::test]
async fn changes_are_announced_politely_or_assertively() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    for (name, display) in [
        ("uma", "Uma User"),
        ("ulf", "Ulf User"),
        ("ivy", "Ivy User"),
    ] {
        app.add_user(name, display, PLAIN).await;
    }
    let rita = driver.browser().await;
    let requester = driver.browser().await;
    sign_in_ui(&rita, &app, "rita").await;
    open_inbox(&rita, &app).await;
    record_announcements(&rita).await;

    // A new request: the inbox says so politely.
    let uma = wait_in_browser(&requester, &app, "uma").await;
    record_announcements(&requester).await;
    wait_announced(
        &rita,
        "inbox-announce",
        "polite",
        "New sign-in request from Uma User.",
    )
    .await;
    // Claimed: the requester hears it at once.
    open_request(&rita, &uma).await;
    wait_announced(
        &requester,
        "pending-outcome",
        "assertive",
        "Rita Reviewer is reviewing your request.",
    )
    .await;
    audit(&requester, "the waiting page, claimed").await;
    // Approved: announced, then the page moves on by itself.
    decide(&rita, "approve", true, "").await;
    wait_home(&requester, &app).await;
    wait_announced(
        &requester,
        "pending-outcome",
        "assertive",
        "Approved. Your colleague approved this sign-in.",
    )
    .await;
    click_css(&requester, "form.signout button").await;
    wait_for(&requester, "#username", LONG).await;
    press(&rita, ESCAPE).await;

    // Denied.
    let ulf = wait_in_browser(&requester, &app, "ulf").await;
    record_announcements(&requester).await;
    wait_announced(
        &rita,
        "inbox-announce",
        "polite",
        "New sign-in request from Ulf User.",
    )
    .await;
    open_request(&rita, &ulf).await;
    wait_announced(
        &requester,
        "pending-outcome",
        "assertive",
        "Rita Reviewer is reviewing",
    )
    .await;
    decide(&rita, "deny", false, "Ulf is on leave.").await;
    let log = wait_announced(
        &requester,
        "pending-outcome",
        "assertive",
        "Sign-in denied. A reviewer denied this sign-in.",
    )
    .await;
    assert!(
        !log.iter()
            .any(|a| a["text"].as_str().is_some_and(|t| t.contains("Approved"))),
        "a denial is not announced as an approval: {log:?}"
    );
    audit(&requester, "the waiting page, denied").await;
    press(&rita, ESCAPE).await;

    // Expired.
    click_css(&requester, ".ended a[href='/login']").await;
    wait_in_browser(&requester, &app, "ivy").await;
    record_announcements(&requester).await;
    wait_announced(
        &rita,
        "inbox-announce",
        "polite",
        "New sign-in request from Ivy User.",
    )
    .await;
    // Reviewers coming and going: said politely. Leaving the inbox counts
    // even though Chromium keeps the page in its back/forward cache (app.js
    // closes the socket on pagehide).
    rita.goto(&app.url("/")).await.unwrap();
    wait_announced(
        &requester,
        "pending-presence",
        "polite",
        "No reviewers are online right now.",
    )
    .await;
    open_inbox(&rita, &app).await;
    wait_announced(
        &requester,
        "pending-presence",
        "polite",
        "1 reviewer online",
    )
    .await;
    // Expired.
    app.clock.advance(Duration::from_mins(16));
    wait_announced(
        &requester,
        "pending-outcome",
        "assertive",
        "Sign-in expired. Nobody confirmed this sign-in in time.",
    )
    .await;
    audit(&requester, "the waiting page, expired").await;
    audit(&rita, "the inbox, empty after an expiry").await;

    for b in [rita, requester] {
        b.close().await.unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn every_other_state_passes_axe_in_both_schemes() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    for (name, display) in [
        ("uma", "Uma User"),
        ("ulf", "Ulf User"),
        ("ivy", "Ivy User"),
    ] {
        app.add_user(name, display, PLAIN).await;
    }
    let ada = driver.browser().await;

    // A failed sign-in.
    ada.goto(&app.url("/login")).await.unwrap();
    ada.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("ada")
        .await
        .unwrap();
    ada.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("not the password")
        .await
        .unwrap();
    click_css(&ada, "button[type=submit]").await;
    wait_for(&ada, "#login-error", LONG).await;
    audit(&ada, "the sign-in page with an error").await;
    sign_in_ui(&ada, &app, "ada").await;
    wait_home(&ada, &app).await;
    audit(&ada, "the home page of an admin and reviewer").await;
    open_inbox(&ada, &app).await;
    audit(&ada, "the inbox, empty").await;

    // A full inbox: one request of each age.
    let uma_browser = driver.browser().await;
    let uma = wait_in_browser(&uma_browser, &app, "uma").await;
    audit(&uma_browser, "the waiting page, pending").await;
    app.clock.advance(Duration::from_mins(9));
    app.sign_in(&app.client(), "ulf", "half_authenticated")
        .await;
    app.clock.advance(Duration::from_mins(4));
    app.sign_in(&app.client(), "ivy", "half_authenticated")
        .await;
    for level in ["overdue", "aging", "new"] {
        wait_for(&ada, &format!("#inbox-rows li.level-{level}"), LONG).await;
    }
    audit(&ada, "the inbox, full (new, aging, overdue)").await;

    // The drawer with a form error: approval without the read-back.
    let ulf = app
        .state
        .registry
        .list()
        .into_iter()
        .find(|s| s.requester.username == "ulf")
        .map(|s| s.id.clone())
        .unwrap();
    open_request(&ada, &ulf).await;
    decide(&ada, "approve", false, "").await;
    wait_for(&ada, "dialog#drawer[open] form.decision .alert", LONG).await;
    audit(&ada, "the drawer with a form error").await;
    click_css(&ada, "dialog#drawer[open] button.close").await;

    // A request that expires while its drawer is open, and its requester.
    open_request(&ada, &uma).await;
    app.clock.advance(Duration::from_mins(3));
    wait_for(&ada, &format!("#drawer-notice-{uma} .alert"), LONG).await;
    audit(&ada, "the drawer, its request expired").await;
    wait_for(&uma_browser, ".ended", LONG).await;
    audit(&uma_browser, "the waiting page, expired").await;
    click_css(&ada, "dialog#drawer[open] button.close").await;

    // The admin pages.
    ada.goto(&app.url("/admin")).await.unwrap();
    wait_for(&ada, "#ledger-head", LONG).await;
    audit(&ada, "the admin page").await;
    ada.goto(&app.url("/admin/ledger")).await.unwrap();
    wait_for(&ada, "table.entries tbody tr", LONG).await;
    audit(&ada, "the ledger browser").await;
    ada.goto(&app.url("/admin/ledger?outcome=denied"))
        .await
        .unwrap();
    wait_for(&ada, "form.filters", LONG).await;
    audit(&ada, "the ledger browser, nothing matches").await;

    // A page someone may not see.
    let rita = driver.browser().await;
    sign_in_ui(&rita, &app, "rita").await;
    wait_home(&rita, &app).await;
    rita.goto(&app.url("/admin")).await.unwrap();
    let refused = wait_text(&rita, "main h1").await;
    assert_eq!(refused, "Not allowed");
    audit(&rita, "a page the user may not see (403)").await;

    for b in [ada, uma_browser, rita] {
        b.close().await.unwrap();
    }
    app.stop().await;
}

/// The page's background colour, as computed.
async fn page_background(client: &Client) -> String {
    let colour = client
        .execute(
            "return getComputedStyle(document.documentElement).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    colour.as_str().unwrap_or_default().to_string()
}

/// Elements that animate or transition, as computed now.
async fn moving_elements(client: &Client) -> Vec<String> {
    let found = client
        .execute(
            "return Array.from(document.querySelectorAll('*')).filter((e) => {
                 const s = getComputedStyle(e);
                 const long = (d) => d.split(',').some((x) => parseFloat(x) > 0);
                 return s.animationName !== 'none' || long(s.transitionDuration);
             }).map((e) => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className);",
            vec![],
        )
        .await
        .unwrap();
    found
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The open drawer's animation name.
async fn drawer_animation(client: &Client) -> String {
    let name = client
        .execute(
            "return getComputedStyle(document.querySelector('dialog#drawer')).animationName;",
            vec![],
        )
        .await
        .unwrap();
    name.as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn dark_scheme_and_reduced_motion() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let rita = driver.browser().await;
    let uma = driver.browser().await;
    sign_in_ui(&rita, &app, "rita").await;
    open_inbox(&rita, &app).await;
    let id = wait_in_browser(&uma, &app, "uma").await;
    wait_for(&rita, &format!("#row-{id}"), LONG).await;
    wait_for(&uma, "#presence", LONG).await;

    // The stylesheet follows the scheme.
    for browser in [&rita, &uma] {
        axe::color_scheme(browser, Scheme::Light).await;
        assert_eq!(page_background(browser).await, "rgb(246, 247, 249)");
        axe::color_scheme(browser, Scheme::Dark).await;
        assert_eq!(page_background(browser).await, "rgb(16, 20, 25)");
    }
    screenshot(&rita, "inbox-dark").await;
    screenshot(&uma, "waiting-dark").await;

    // Motion for those who have not asked for less: the drawer slides in.
    axe::emulate(
        &rita,
        &[
            ("prefers-color-scheme", "dark"),
            ("prefers-reduced-motion", "no-preference"),
        ],
    )
    .await;
    open_request(&rita, &id).await;
    assert_eq!(drawer_animation(&rita).await, "drawer-in");
    tokio::time::sleep(Duration::from_millis(300)).await;
    screenshot(&rita, "inbox-drawer-dark").await;
    press(&rita, ESCAPE).await;
    wait_gone(&rita, "dialog#drawer[open]", LONG).await;

    // With reduced motion nothing animates or transitions, drawer included.
    axe::emulate(
        &rita,
        &[
            ("prefers-color-scheme", "dark"),
            ("prefers-reduced-motion", "reduce"),
        ],
    )
    .await;
    open_request(&rita, &id).await;
    assert_eq!(drawer_animation(&rita).await, "none");
    assert_eq!(
        moving_elements(&rita).await,
        Vec::<String>::new(),
        "the inbox moves"
    );
    axe::emulate(&uma, &[("prefers-reduced-motion", "reduce")]).await;
    assert_eq!(
        moving_elements(&uma).await,
        Vec::<String>::new(),
        "the waiting page moves"
    );

    audit(&rita, "the drawer, dark scheme test").await;
    audit(&uma, "the waiting page, claimed").await;
    for b in [rita, uma] {
        b.close().await.unwrap();
    }
    app.stop().await;
}
