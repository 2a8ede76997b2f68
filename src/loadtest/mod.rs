//! `peergate loadtest`: the instrument behind BENCHMARKS.md. Every scenario is
//! bounded in count and time, uses loopback only, and stops by itself.

pub mod authz;
pub mod flood;
pub mod hooks;
pub mod ledger;
pub mod live;
pub mod server;
pub mod snapshot;
pub mod tlog;

use serde::Serialize;

pub use crate::domain::percentile;

/// Prints a report: a table for people, then (with `json`) one JSON object on
/// the last line for scripts.
pub fn print_report<T: Serialize>(rows: &[(&str, String)], report: &T, json: bool) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
    if json {
        match serde_json::to_string(report) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("cannot encode the report: {e}"),
        }
    }
}

/// A synthetic withdrawn-session draft with a unique session id.
pub fn synthetic_draft(n: usize) -> crate::ledger::LedgerDraft {
    crate::ledger::LedgerDraft::withdrawn(crate::ledger::SessionFacts {
        session_id: format!("ps_load{n:012}_{}", crate::domain::ids::new_pending_id()),
        requester_id: "usr_LOADTEST00000000".into(),
        requester_name: "Load Test".into(),
        requester_ip: "127.0.0.1".into(),
        requester_user_agent: "peergate-loadtest".into(),
        session_created_at: crate::clock::rfc3339(chrono::Utc::now()),
    })
}
