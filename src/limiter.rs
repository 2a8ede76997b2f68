//! Counting events per key (a username, a client IP) in a sliding window, on
//! the service clock: failed sign-ins, and sign-ins that start a peer review.
//!
//! Written here rather than taken from `governor`: governor's keyed limiter has
//! no way to ask "is this key over its limit?" without spending a cell (its
//! issue #15 and PR #211 are open), so successful sign-ins would count, and an
//! office behind one address would lock itself out. Here only failures count,
//! and the check before verifying a password spends nothing.

use std::collections::VecDeque;
use std::sync::Mutex;
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
    /// Makes [`WindowLimiter::reserve`] and [`Reservation::refund`] one step
    /// across all their keys. One `std::sync::Mutex` for the whole limiter,
    /// not a lock per key: a reservation touches two keys (username and IP),
    /// and holding two DashMap entries at once deadlocks when both keys hash
    /// to the same shard. It is held for a few map operations and never across
    /// an `.await`, so it costs nothing next to the argon2 check it guards.
    reserving: Mutex<()>,
}

/// One event counted against each of some keys by [`WindowLimiter::reserve`]:
/// a sign-in attempt whose password is about to be checked. Dropping it keeps
/// the event (the attempt counts as a failure, which is also what happens when
/// the request is cancelled mid-check); [`Reservation::refund`] gives it back.
#[must_use = "dropping a reservation keeps the event; call refund() on success"]
pub struct Reservation<'a> {
    limiter: &'a WindowLimiter,
    /// The distinct keys the event was counted against.
    keys: Vec<String>,
    /// When it was counted: identifies the event in each key's list. Events
    /// with the same time are interchangeable, so removing any one of them
    /// refunds exactly one event.
    at: DateTime<Utc>,
}

impl WindowLimiter {
    pub fn new(limit: u32, window: Duration, clock: SharedClock) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window,
            clock,
            failures: DashMap::new(),
            reserving: Mutex::new(()),
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

    /// Checks *and* counts one event against every key, as one step: if any
    /// key has used up its events in the window, `Err(seconds to wait)` and
    /// nothing is counted; otherwise one event is counted against each
    /// distinct key and the returned [`Reservation`] can give it back.
    ///
    /// This is how a sign-in takes a failed-login slot before argon2 runs
    /// (DESIGN §13): with `check` then `record`, forty parallel wrong
    /// passwords all passed the check before any was recorded. Concurrent
    /// `reserve` calls are serialised, so with a limit of 5 exactly 5 of any
    /// number of simultaneous callers get `Ok`. (Mixing in the older
    /// `check`/`record` pair concurrently is not covered by that promise.)
    pub fn reserve(&self, keys: &[&str]) -> Result<Reservation<'_>, u64> {
        let mut distinct: Vec<String> = Vec::with_capacity(keys.len());
        for key in keys {
            if !distinct.iter().any(|k| k == key) {
                distinct.push((*key).to_string());
            }
        }
        // A poisoned lock only means another reservation panicked between
        // map operations; the map itself is still consistent.
        let _one_at_a_time = self
            .reserving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.check(keys)?;
        let now = self.clock.now();
        if self.failures.len() > SWEEP_ABOVE {
            self.sweep(now);
        }
        for key in &distinct {
            let mut times = self.failures.entry(key.clone()).or_default();
            times.push_back(now);
            while times.len() > self.limit {
                times.pop_front();
            }
        }
        Ok(Reservation {
            limiter: self,
            keys: distinct,
            at: now,
        })
    }

    fn sweep(&self, now: DateTime<Utc>) {
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        self.failures
            .retain(|_, times| times.back().is_some_and(|t| now - *t < window));
    }
}

impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("keys", &self.keys)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Reservation<'_> {
    /// Gives the event back on every key (a correct password: successful
    /// sign-ins do not count). If the event has already aged out of a key's
    /// window, or been pushed out by newer ones, there is nothing to give
    /// back on that key.
    pub fn refund(self) {
        let limiter = self.limiter;
        let _one_at_a_time = limiter
            .reserving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &self.keys {
            let now_empty = match limiter.failures.get_mut(key) {
                Some(mut times) => {
                    if let Some(i) = times.iter().rposition(|t| *t == self.at) {
                        times.remove(i);
                    }
                    times.is_empty()
                }
                None => false,
            };
            // The entry guard is dropped above: removing while holding it
            // would deadlock on its shard.
            if now_empty {
                limiter.failures.remove_if(key, |_, times| times.is_empty());
            }
        }
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
        let limiter = WindowLimiter::new(3, Duration::from_mins(1), clock.clone());
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

    fn limiter(limit: u32) -> (WindowLimiter, Arc<ManualClock>) {
        let clock = ManualClock::starting_now();
        (
            WindowLimiter::new(limit, Duration::from_mins(1), clock.clone()),
            clock,
        )
    }

    fn events(limiter: &WindowLimiter, key: &str) -> usize {
        limiter.failures.get(key).map_or(0, |t| t.len())
    }

    #[test]
    fn reserve_counts_before_the_password_is_checked() {
        let (limiter, clock) = limiter(5);
        let held: Vec<_> = (0..5)
            .map(|_| limiter.reserve(&["user:alice", "ip:10.0.0.1"]).unwrap())
            .collect();
        let wait = limiter.reserve(&["user:alice", "ip:10.0.0.9"]).unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        assert!(
            limiter.check(&["user:alice"]).is_err(),
            "check sees reservations"
        );
        assert_eq!(
            events(&limiter, "ip:10.0.0.9"),
            0,
            "a refusal counts nothing"
        );
        assert_eq!(events(&limiter, "user:alice"), 5);
        drop(held);
        assert_eq!(
            events(&limiter, "user:alice"),
            5,
            "dropping keeps the events"
        );
        clock.advance(Duration::from_secs(61));
        assert!(limiter.reserve(&["user:alice", "ip:10.0.0.1"]).is_ok());
    }

    #[test]
    fn any_full_key_refuses_and_records_on_none() {
        let (limiter, _clock) = limiter(2);
        for _ in 0..2 {
            let _kept = limiter.reserve(&["ip:10.0.0.1"]).unwrap();
        }
        let before = events(&limiter, "user:bob");
        assert!(limiter.reserve(&["user:bob", "ip:10.0.0.1"]).is_err());
        assert!(limiter.reserve(&["ip:10.0.0.1", "user:bob"]).is_err());
        assert_eq!(events(&limiter, "user:bob"), before);
        assert_eq!(events(&limiter, "ip:10.0.0.1"), 2);
    }

    #[test]
    fn refund_gives_back_exactly_that_event() {
        let (limiter, clock) = limiter(5);
        let first = limiter.reserve(&["user:alice", "ip:1"]).unwrap();
        clock.advance(Duration::from_secs(1));
        let second = limiter.reserve(&["user:alice", "ip:2"]).unwrap();
        let second_at = second.at;
        clock.advance(Duration::from_secs(1));
        let _third = limiter.reserve(&["user:alice", "ip:1"]).unwrap();
        second.refund();
        let alice: Vec<_> = limiter
            .failures
            .get("user:alice")
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(alice.len(), 2);
        assert!(!alice.contains(&second_at));
        assert_eq!(events(&limiter, "ip:1"), 2);
        assert!(
            !limiter.failures.contains_key("ip:2"),
            "an emptied key is dropped"
        );
        first.refund();
        assert_eq!(events(&limiter, "user:alice"), 1);
        assert_eq!(events(&limiter, "ip:1"), 1);
    }

    #[test]
    fn refunds_make_room_again_and_late_refunds_are_harmless() {
        let (limiter, clock) = limiter(1);
        let r = limiter.reserve(&["user:carol"]).unwrap();
        assert!(limiter.reserve(&["user:carol"]).is_err());
        r.refund();
        let r = limiter.reserve(&["user:carol"]).unwrap();
        clock.advance(Duration::from_secs(61));
        // A newer event pushes the old one out (limit 1); refunding the old
        // one must not take the newer one with it.
        let _newer = limiter.reserve(&["user:carol"]).unwrap();
        r.refund();
        assert_eq!(events(&limiter, "user:carol"), 1);
        assert!(limiter.reserve(&["user:carol"]).is_err());
    }

    #[test]
    fn a_key_given_twice_counts_once() {
        let (limiter, _clock) = limiter(2);
        let r = limiter.reserve(&["k", "k"]).unwrap();
        assert_eq!(events(&limiter, "k"), 1);
        r.refund();
        assert_eq!(events(&limiter, "k"), 0);
    }

    #[test]
    fn forty_threads_at_once_get_exactly_five() {
        let (limiter, _clock) = limiter(5);
        let start = std::sync::Barrier::new(40);
        let ok = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..40 {
                let (limiter, start, ok) = (&limiter, &start, &ok);
                s.spawn(move || {
                    let ip = format!("ip:10.0.0.{}", i % 7);
                    start.wait();
                    if let Ok(r) = limiter.reserve(&["user:alice", &ip]) {
                        ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::mem::forget(r);
                    }
                });
            }
        });
        assert_eq!(ok.into_inner(), 5);
        assert_eq!(events(&limiter, "user:alice"), 5);
    }

    #[test]
    fn concurrent_reserve_and_refund_never_exceed_the_limit() {
        let (limiter, _clock) = limiter(3);
        let start = std::sync::Barrier::new(16);
        let held = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                let (limiter, start, held, peak) = (&limiter, &start, &held, &peak);
                s.spawn(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    start.wait();
                    for _ in 0..200 {
                        if let Ok(r) = limiter.reserve(&["user:dave", "ip:1"]) {
                            let now = held.fetch_add(1, SeqCst) + 1;
                            peak.fetch_max(now, SeqCst);
                            held.fetch_sub(1, SeqCst);
                            r.refund();
                        }
                    }
                });
            }
        });
        assert!(peak.into_inner() <= 3);
        assert_eq!(
            events(&limiter, "user:dave"),
            0,
            "every refund found its event"
        );
        assert_eq!(events(&limiter, "ip:1"), 0);
    }
}
