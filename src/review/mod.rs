//! The peer-review flow in the product's words: a sign-in starts a review (or
//! skips it), a reviewer decides, a session is withdrawn, expires or is
//! completed, and the registry is rebuilt at start-up. It takes validated
//! domain types, answers with [`ReviewError`], and knows nothing of HTTP.
//!
//! The rule everywhere: an outcome is appended to the ledger and acknowledged
//! durable before `app.sqlite` or the registry changes and before anyone is
//! told; and once the ledger is asked to write, that sequence runs to the end
//! even if the request that asked for it is dropped ([`run_to_end`]).

mod alarm;
mod decide;
mod error;
mod flow;
mod lifecycle;
mod restore;
mod sign_in;
mod ticker;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use decide::{Decision, InvalidDecision, decide};
pub use error::ReviewError;
pub use flow::{FAILURES_PER_USER_FACTOR, Flow, FlowParts};
pub use lifecycle::{browser_session, complete, rotate_code, sign_out};
pub use restore::restore;
pub use sign_in::{SignIn, SignInRequest, sign_in};
pub use ticker::run_ticker;

/// `now + by`, saturating instead of overflowing.
fn later(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    //! Cancellation safety: a caller dropped at its first `.await` (a client
    //! that hung up) must not leave a decision, a cancel or a sign-out half
    //! done. Real SQLite files in a temporary dir, no HTTP in between.

    use std::time::Duration;

    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{DEFAULT_TOML, Settings};
    use crate::domain::{Client, Outcome, Reviewer};
    use crate::password_checks::PasswordChecks;
    use crate::passwords::{Cost, hash_blocking};
    use crate::store::users::{NewUser, insert_user};

    async fn flow(dir: &std::path::Path) -> Flow {
        let toml = format!("[storage]\ndata_dir = \"{}\"", dir.display());
        let settings = Settings::from_figment(
            &Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(&toml)),
        )
        .unwrap();
        let clock: crate::clock::SharedClock = ManualClock::starting_now();
        let db = crate::store::open(dir).await.unwrap();
        let (ledger, _tasks) = crate::ledger::Ledger::open(dir, clock.clone())
            .await
            .unwrap();
        let limiter =
            |n| crate::limiter::WindowLimiter::new(n, Duration::from_mins(1), clock.clone());
        let alerts =
            crate::alerts::Alerts::new(&settings, crate::store::open_outbox(dir).await.unwrap());
        let flow = Flow::new(FlowParts {
            alerts,
            login_failures: limiter(100),
            login_failures_per_user: limiter(100),
            review_starts_per_user: limiter(100),
            review_starts_per_ip: limiter(100),
            password_checks: PasswordChecks::start(1, 8).unwrap(),
            settings,
            db,
            ledger,
            registry: crate::registry::Registry::new(),
            clock,
            session_ended: tokio::sync::broadcast::channel(8).0,
            sign_in_locks: dashmap::DashMap::new(),
        });
        for name in ["uma", "rita"] {
            let user = NewUser {
                username: name.into(),
                display_name: name.into(),
                password_hash: hash_blocking("a long password", Cost::Fast).unwrap(),
                is_reviewer: name == "rita",
                is_admin: false,
                is_exempt: name == "rita",
            };
            insert_user(&flow.db, &user, "2026-12-01T00:00:00.000Z")
                .await
                .unwrap();
        }
        flow
    }

    /// Uma signs in and waits; her pending session id and browser session.
    async fn waiting(flow: &Flow) -> (String, crate::store::sessions::BrowserSession) {
        let request = SignInRequest {
            username: "uma".into(),
            password: "a long password".into(),
            client: Client {
                ip: "127.0.0.1".into(),
                user_agent: "test".into(),
            },
            device: None,
            previous: None,
            return_to: None,
        };
        let token = sign_in(flow, request).await.unwrap();
        let session = browser_session(flow, &token.token().hash())
            .await
            .unwrap()
            .unwrap();
        (session.pending_session_id.clone().unwrap(), session)
    }

    /// Polls once: the future is dropped at its first `.await`.
    async fn hang_up<F: std::future::Future>(work: F) {
        assert!(
            tokio::time::timeout(Duration::ZERO, work).await.is_err(),
            "the work finished at its first poll; the test proves nothing"
        );
    }

    /// Waits (bounded) until the pending session's row leaves `pending`.
    async fn mirrored(flow: &Flow, id: &str) -> String {
        for _ in 0..200 {
            let row = crate::store::pending::find(&flow.db, id)
                .await
                .unwrap()
                .unwrap();
            if row.status.as_str() != "pending" {
                return row.status.as_str().to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the outcome of {id} never reached app.sqlite");
    }

    #[tokio::test]
    async fn a_decision_whose_caller_hangs_up_still_lands_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let flow = flow(dir.path()).await;
        let (id, _) = waiting(&flow).await;
        let rita = Reviewer {
            id: "someone else".into(),
            display_name: "Rita".into(),
        };
        let decision = Decision::parse("deny", "call", false, "not her").unwrap();
        hang_up(decide(&flow, rita, &id, decision)).await;
        assert_eq!(mirrored(&flow, &id).await, "denied");
        let recorded = crate::ledger::read::outcome_of(&flow.ledger.reader, &id)
            .await
            .unwrap();
        assert_eq!(recorded, Some(Outcome::Denied));
        assert!(flow.registry.get(&id).is_none(), "gone from every inbox");
    }

    #[tokio::test]
    async fn a_cancel_or_sign_out_whose_caller_hangs_up_still_lands_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let flow = flow(dir.path()).await;
        let (id, session) = waiting(&flow).await;
        hang_up(sign_out(&flow, &session)).await;
        assert_eq!(mirrored(&flow, &id).await, "withdrawn");
        assert!(flow.registry.get(&id).is_none());
        // Her next sign-in is a fresh review, not a 409.
        let (next, _) = waiting(&flow).await;
        assert_ne!(next, id);
        hang_up(lifecycle::close(&flow, &next, Outcome::Withdrawn)).await;
        assert_eq!(mirrored(&flow, &next).await, "withdrawn");
    }
}
