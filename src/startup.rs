//! Building the service (bind, open stores, rebuild the registry, spawn tasks)
//! and running it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::ledger::{Ledger, LedgerTasks};
use crate::limiter::WindowLimiter;
use crate::registry::Registry;
use crate::state::{AppState, Shared};

/// Session-end notices a socket may fall behind on; a socket that lags still
/// finds out at its next periodic session check.
const SESSION_END_BUFFER: usize = 256;

/// The window of `auth.review_starts_per_user` and `auth.review_starts_per_ip`.
const REVIEW_START_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How often the server looks for account changes made from the command line.
const ACCOUNT_POLL: Duration = Duration::from_secs(1);

/// The window in which failed sign-ins are counted.
const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// A built, bound service, ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    ledger_tasks: LedgerTasks,
    /// The ageing ticker (promotions and expiries).
    ticker: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Opens both databases, rebuilds the registry and binds the listener
    /// (port 0 picks a free port; see [`Application::local_addr`]).
    pub async fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("binding {}", settings.server.bind))?;
        Self::build_with_listener(settings, clock, listener).await
    }

    /// Like [`Application::build`], on a listener the caller already bound (so
    /// that it can put the real port into `public_url` first).
    pub async fn build_with_listener(
        settings: Settings,
        clock: SharedClock,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let data_dir = settings.storage.data_dir.clone();
        crate::metrics::prometheus();
        let db = crate::store::open(&data_dir).await?;
        let version = crate::store::check_sqlite_version(&db).await?;
        tracing::info!(sqlite_version = %version, data_dir = %data_dir.display(), "storage open");
        let (ledger, ledger_tasks) = Ledger::open(&data_dir, clock.clone()).await?;
        let head = ledger.writer.head();
        tracing::info!(seq = head.seq, entry_hash = %head.hash_hex(), "ledger open");

        let state = AppState::new(Shared {
            origin: settings.origin(),
            login_failures: WindowLimiter::new(
                settings.auth.failed_logins_per_minute,
                LOGIN_FAILURE_WINDOW,
                clock.clone(),
            ),
            review_starts_per_user: WindowLimiter::new(
                settings.auth.review_starts_per_user,
                REVIEW_START_WINDOW,
                clock.clone(),
            ),
            review_starts_per_ip: WindowLimiter::new(
                settings.auth.review_starts_per_ip,
                REVIEW_START_WINDOW,
                clock.clone(),
            ),
            sockets: dashmap::DashMap::new(),
            accounts_version: tokio::sync::watch::channel(0).0,
            settings: settings.clone(),
            db,
            ledger,
            registry: Registry::new(),
            clock,
            session_ended: tokio::sync::broadcast::channel(SESSION_END_BUFFER).0,
        });
        crate::review::restore(&state).await?;
        let ticker = tokio::spawn(crate::review::run_ticker(state.clone()));
        tokio::spawn(watch_accounts(state.clone()));
        Ok(Self {
            listener,
            state,
            ledger_tasks,
            ticker,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The shared state, for tests that look inside.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves or a background task dies.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = crate::web::create_app(self.state.clone());
        let server = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown);
        // The checkpointer logs its own failures; a missing checkpoint only
        // lets the WAL grow, so it does not stop the service.
        let writer = self.ledger_tasks.writer;
        let ticker = self.ticker;
        let ticker_abort = ticker.abort_handle();
        let outcome = tokio::select! {
            result = server => {
                tracing::info!("HTTP server stopped");
                result.context("the HTTP server failed")
            }
            result = writer => {
                Err(anyhow::anyhow!("the ledger writer ended unexpectedly: {result:?}"))
            }
            result = ticker => {
                Err(anyhow::anyhow!("the ageing ticker ended unexpectedly: {result:?}"))
            }
        };
        ticker_abort.abort();
        outcome
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Polls `account_changes` (one tiny query a second) and tells the sockets
/// when an account changed, so that a role removed or a user disabled from the
/// command line closes their sockets within about a second.
async fn watch_accounts(app: AppState) {
    let mut interval = tokio::time::interval(ACCOUNT_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let version: Result<i64, _> =
            sqlx::query_scalar("SELECT version FROM account_changes WHERE id = 1")
                .fetch_one(&app.db)
                .await;
        if let Ok(version) = version {
            app.accounts_version.send_if_modified(|v| {
                let changed = *v != version;
                *v = version;
                changed
            });
        }
    }
}
