//! `peergate loadtest`: the instrument behind BENCHMARKS.md. Every scenario is
//! bounded in count and time, uses loopback only, and stops by itself.

pub mod flood;
pub mod ledger;
pub mod live;
pub mod server;
pub mod snapshot;

use serde::Serialize;

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
