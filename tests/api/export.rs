//! `peergate ledger export` and the admin's JSONL and CSV downloads
//! (issue 17): every column, the chain fields, CSV that survives hostile
//! notes, and a JSONL file from which the chain can be recomputed.

use peergate::ledger::chain::EntryFields;
use serde_json::{Value, json};

use crate::child::run_cli;
use crate::helpers::*;

const AWKWARD: &str = "Called back, said \"yes\";\nsecond line, 100% sure";
const FORMULA: &str = "=HYPERLINK(\"http://evil.example\",\"click\")";

#[tokio::test]
async fn exports_keep_every_column_and_recompute_the_chain() {
    let app = spawn_app().await;
    app.add_user("ada", "Ada Admin", ADMIN_REVIEWER).await;
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("ulf", "Ulf, \"the\" User", PLAIN).await;
    let ada = reviewer(&app, "ada").await;
    let (_uma, uma_id) = waiting(&app, "uma").await;
    let (_ulf, ulf_id) = waiting(&app, "ulf").await;
    let approve_note =
        json!({"outcome": "approve", "channel": "call", "code_confirmed": true, "note": AWKWARD});
    let deny_note =
        json!({"outcome": "deny", "channel": "chat", "code_confirmed": false, "note": FORMULA});
    for (id, body) in [(&uma_id, approve_note), (&ulf_id, deny_note)] {
        let (code, reply) = app
            .post_json(&ada, &format!("/api/v1/inbox/{id}/decision"), body)
            .await;
        assert_eq!(code, 200, "{reply}");
    }

    // JSON Lines from the admin page: one object an entry, every column.
    let jsonl = ada
        .get(app.url("/admin/exports/ledger.jsonl"))
        .send()
        .await
        .unwrap();
    assert_eq!(jsonl.status(), 200);
    let text = jsonl.text().await.unwrap();
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["note"], AWKWARD);
    assert_eq!(entries[1]["requester_name"], "Ulf, \"the\" User");
    for column in [
        "seq",
        "entry_id",
        "session_id",
        "outcome",
        "requester_id",
        "requester_name",
        "requester_ip",
        "requester_user_agent",
        "reviewer_id",
        "reviewer_name",
        "channel",
        "code_confirmed",
        "note",
        "session_created_at",
        "decided_at",
        "prev_hash",
        "entry_hash",
    ] {
        assert!(entries[0].get(column).is_some(), "column {column}");
    }

    // Re-imported, the entries recompute the chain exactly.
    let mut prev = [0u8; 32];
    for e in &entries {
        let fields = fields_of(e);
        assert_eq!(e["prev_hash"], hex::encode(prev));
        let hash = fields.hash(&prev);
        assert_eq!(e["entry_hash"], hex::encode(hash), "entry {}", e["seq"]);
        prev = hash;
    }

    // The command line writes the same JSON Lines from the file itself.
    let ledger = app.data_dir.join("ledger.sqlite");
    let (code, out, err) = run_cli(
        &[
            "ledger",
            "export",
            ledger.to_str().unwrap(),
            "--format",
            "jsonl",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, text);

    // CSV: quoting survives commas, quotes and newlines; formulas are text.
    let (code, csv_text, err) = run_cli(
        &[
            "ledger",
            "export",
            ledger.to_str().unwrap(),
            "--format",
            "csv",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header.len(), 17);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let note = header.iter().position(|h| h == "note").unwrap();
    let name = header.iter().position(|h| h == "requester_name").unwrap();
    assert_eq!(&rows[0][note], AWKWARD);
    assert_eq!(&rows[1][name], "Ulf, \"the\" User");
    assert_eq!(
        &rows[1][note],
        format!("'{FORMULA}"),
        "the formula is guarded"
    );
    let from_admin = ada
        .get(app.url("/admin/exports/ledger.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(from_admin.status(), 200);
    assert_eq!(from_admin.text().await.unwrap(), csv_text);

    // Only admins get them.
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    let rita = reviewer(&app, "rita").await;
    let refused = rita
        .get(app.url("/admin/exports/ledger.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    app.stop().await;
}

fn fields_of(e: &Value) -> EntryFields {
    // The hashes are extra keys; every other column is a field.
    serde_json::from_value(e.clone()).expect("every column of an entry")
}
