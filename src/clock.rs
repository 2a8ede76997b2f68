//! Where peergate reads the time. Every time rule (ageing, expiry, rate limits,
//! KPIs) asks a [`Clock`], so tests can move time forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// A cheap, cloneable handle to the clock the service runs on.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests and the load generator.
#[derive(Debug)]
pub struct ManualClock {
    /// Milliseconds since the Unix epoch. An atomic, because handlers on many
    /// threads read it while a test advances it.
    millis: AtomicI64,
}

impl ManualClock {
    /// A manual clock that starts at the current wall-clock time.
    pub fn starting_now() -> Arc<Self> {
        Arc::new(Self {
            millis: AtomicI64::new(Utc::now().timestamp_millis()),
        })
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.millis.store(at.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let ms = self.millis.load(Ordering::SeqCst);
        Utc.timestamp_millis_opt(ms)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }
}

/// Formats a time as DESIGN.md writes it: RFC 3339, UTC, milliseconds, `Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a timestamp written by [`rfc3339`].
pub fn parse_rfc3339(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        let at = Utc
            .timestamp_millis_opt(1_795_836_038_123)
            .single()
            .unwrap();
        assert_eq!(rfc3339(at), "2026-11-28T03:20:38.123Z");
        assert_eq!(parse_rfc3339("2026-11-28T03:20:38.123Z").unwrap(), at);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_now();
        let before = clock.now();
        clock.advance(Duration::from_secs(90));
        assert_eq!((clock.now() - before).num_seconds(), 90);
    }
}
