//! Accessibility scenarios.

use std::time::Duration;

use fantoccini::Locator;

use super::axe::{self, Scheme};
use super::*;

#[tokio::test]
async fn baseline_probe() {
    let _slot = browser_slots().acquire().await.unwrap();
    let Some(mut driver) = driver().await else {
        return;
    };
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    let uma = driver.browser().await;
    uma.goto(&app.url("/login")).await.unwrap();
    axe::color_scheme(&uma, Scheme::Dark).await;
    axe::color_scheme(&uma, Scheme::Light).await;
    sign_in_ui(&uma, &app, "uma").await;
    wait_for(&uma, "body[data-live]", LONG).await;
    axe::probe(&uma, "pending").await;
    let id = waiting_session_id(&app);
    let ada = driver.browser().await;
    sign_in_ui(&ada, &app, "ada").await;
    open_inbox(&ada, &app).await;
    axe::probe(&ada, "inbox").await;
    click_css(&ada, &format!("#row-{id} .row-open")).await;
    wait_for(&ada, "dialog#drawer[open] form.decision", LONG).await;
    axe::probe(&ada, "drawer").await;
    wait_text(&uma, "#presence .claimed").await;
    axe::probe(&uma, "claimed").await;
    ada.find(Locator::Css("input[name=outcome][value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ada.find(Locator::Css("form.decision button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&ada, "dialog#drawer[open] .alert", LONG).await;
    axe::probe(&ada, "drawer error").await;
    for path in ["/", "/admin", "/admin/ledger"] {
        ada.goto(&app.url(path)).await.unwrap();
        wait_for(&ada, "main", LONG).await;
        axe::probe(&ada, path).await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    app.stop().await;
}
