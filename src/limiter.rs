//! Counting events per key (a username, a client IP) in a sliding window, on
//! the service clock: failed sign-ins, and sign-ins that start a peer review.
//!
//! Written here rather than taken from `governor`: governor's keyed limiter has
//! no way to ask "is this key over its limit?" without spending a cell (its
//! issue #15 and PR #211 are open), so successful sign-ins would count, and an
//! office behind one address would lock itself out. Here only failures count,
//! and the check before verifying a password spends nothing.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::clock::SharedClock;

/// Keys kept before stale ones are swept, so a flood of made-up usernames
/// cannot grow the map without bound.
const SWEEP_ABOVE: usize = 10_000;

pub struct WindowLimiter {
    limit: usize,
    window: Duration,
    clock: SharedClock,
    /// Recent event times per key, oldest first, at most `limit` long.
    failures: DashMap<String, VecDeque<DateTime<Utc>>>,
}

impl WindowLimiter {
    pub fn new(limit: u32, window: Duration, clock: SharedClock) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window,
            clock,
            failures: DashMap::new(),
        }
    }

    /// `Err(seconds)` if any key has used up its events in the window.
    pub fn check(&self, keys: &[&str]) -> Result<(), u64> {
        let now = self.clock.now();
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        let mut wait = 0i64;
        for key in keys {
            if let Some(times) = self.failures.get(*key) {
                let recent: Vec<&DateTime<Utc>> =
                    times.iter().filter(|t| now - **t < window).collect();
                if recent.len() >= self.limit
                    && let Some(oldest) = recent.first()
                {
                    let until = **oldest + window;
                    wait = wait.max((until - now).num_milliseconds());
                }
            }
        }
        if wait > 0 {
            Err(u64::try_from((wait + 999) / 1000).unwrap_or(1).max(1))
        } else {
            Ok(())
        }
    }

    /// Counts one event against each key.
    pub fn record(&self, keys: &[&str]) {
        let now = self.clock.now();
        if self.failures.len() > SWEEP_ABOVE {
            self.sweep(now);
        }
        for key in keys {
            let mut times = self.failures.entry((*key).to_string()).or_default();
            times.push_back(now);
            while times.len() > self.limit {
                times.pop_front();
            }
        }
    }

    fn sweep(&self, now: DateTime<Utc>) {
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        self.failures
            .retain(|_, times| times.back().is_some_and(|t| now - *t < window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn only_failures_count_and_they_age_out() {
        let clock = ManualClock::starting_now();
        let limiter = WindowLimiter::new(3, Duration::from_secs(60), clock.clone());
        for _ in 0..3 {
            assert!(limiter.check(&["alice", "10.0.0.1"]).is_ok());
            limiter.record(&["alice", "10.0.0.1"]);
        }
        let wait = limiter.check(&["alice"]).unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        assert!(limiter.check(&["10.0.0.1"]).is_err());
        assert!(limiter.check(&["bob"]).is_ok());
        clock.advance(Duration::from_secs(61));
        assert!(limiter.check(&["alice", "10.0.0.1"]).is_ok());
        let _: Arc<ManualClock> = clock;
    }
}
