//! Upgrades: a data dir written by the first released version opens with this
//! one, loses nothing, and keeps working (issue 17).

use std::path::Path;

use serde_json::Value;

use crate::helpers::*;

/// The head the fixture's ledger had when it was made.
const FIXTURE_HEAD: &str = "2:aa3ef45f765522028538a6cf6aad70a806298958d9c796b04ffec8813ce525ad";

const FIXTURE_PASSWORD: &str = "fixture-password-1";

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datadir-v0.1.0");
    for file in ["app.sqlite", "ledger.sqlite"] {
        std::fs::copy(from.join(file), to.join(file)).expect("copy the fixture");
    }
}

#[tokio::test]
async fn a_data_dir_from_the_first_release_opens_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    // The fixture's clock: a minute after it was made, while its pending
    // session is still within its TTL.
    let clock = peergate::clock::ManualClock::starting_now();
    clock.set(peergate::clock::parse_rfc3339("2026-12-01T07:12:00.000Z").unwrap());
    let app = spawn_app_in(dir.path(), "", Some(clock)).await;

    // The ledger is untouched and still verifies to the head it had.
    let head = peergate::ledger::Head::parse_arg(FIXTURE_HEAD).unwrap();
    let verdict =
        peergate::ledger::verify_file(&dir.path().join("ledger.sqlite"), Some(head)).await;
    assert!(
        matches!(verdict, peergate::ledger::Verdict::Valid { entries: 2, .. }),
        "{verdict:?}"
    );

    // Every account signs in with its password and keeps its roles.
    let ada = app.client();
    let r = app.login_api(&ada, "ada", FIXTURE_PASSWORD).await;
    assert_eq!(r.status(), 200);
    let (_, me) = app.get_json(&ada, "/api/v1/me").await;
    assert_eq!(
        me["user"]["roles"],
        serde_json::json!(["reviewer", "admin"])
    );
    for name in ["uma", "ulf"] {
        let r = app.login_api(&app.client(), name, FIXTURE_PASSWORD).await;
        assert_eq!(r.status(), 200, "{name} signs in");
    }

    // The pending session ulf left was restored (with a fresh code), then
    // withdrawn by his new sign-in above; the ledger says so after the old
    // entries, chained onto them.
    let entries = peergate::ledger::read::all_entries(&app.state.ledger.reader)
        .await
        .unwrap();
    let outcomes: Vec<&str> = entries.iter().map(|e| e.fields.outcome.as_str()).collect();
    assert_eq!(outcomes[..2], ["approved", "denied"]);
    assert!(outcomes[2..].contains(&"withdrawn"), "{outcomes:?}");
    assert_eq!(entries[2].prev_hash, entries[1].entry_hash);

    // The admin pages read the old rows: the download log and the entries.
    let (code, head): (u16, Value) = app.get_json(&ada, "/api/v1/admin/ledger/head").await;
    assert_eq!(code, 200, "{head}");
    let page = ada.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("ledger-2.sqlite"),
        "the old download is listed"
    );
    app.stop().await;
}
