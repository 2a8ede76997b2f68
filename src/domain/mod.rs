//! Validated newtypes and pure rules: codes, tokens, ids, outcomes, notes,
//! usernames, the public URL and forward auth's host and return-to rules.
//! No I/O, no web framework, no database library: handlers parse input into
//! these types once, at the edge.

pub mod code;
mod forward_auth;
pub mod ids;
pub mod outcome;
mod people;
mod public_url;
mod review_rules;
pub mod token;
mod trusted_proxies;
mod username;

pub use code::PendingCode;
pub use forward_auth::{
    AccessRule, AllowedHosts, HostPattern, OriginalRequest, ReturnTo, Role, admits,
};
pub use outcome::{Channel, Note, Outcome};
pub use people::{Client, Requester, Reviewer, Roles};
pub use public_url::{PublicUrl, PublicUrlError};
pub use review_rules::{Ages, Level, Verdict};
pub use token::{SessionToken, TokenHash};
pub use trusted_proxies::TrustedProxies;
pub use username::{Username, UsernameError};

/// Fills `buf` from the operating system's CSPRNG.
///
/// An OS without a working random source cannot run peergate safely, so this
/// is one of the few places that may abort.
pub(crate) fn os_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank: what the
/// KPIs report and what the load generator measures.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // The nearest rank: the first whose share of the samples reaches `p`.
    let wanted = p / 100.0 * sorted.len() as f64;
    let rank = (1..=sorted.len())
        .find(|&r| r as f64 >= wanted)
        .unwrap_or(sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&v, 50.0) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 99.0) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 100.0) - 100.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 50.0).abs() < f64::EPSILON);
    }

    #[test]
    fn constant_time_eq_compares_whole_secrets() {
        assert!(super::constant_time_eq(b"token", b"token"));
        assert!(!super::constant_time_eq(b"token", b"tokeN"));
        assert!(!super::constant_time_eq(b"token", b"token2"));
        assert!(super::constant_time_eq(b"", b""));
    }
}
