//! Building the service (bind, open stores, rebuild the registry, spawn tasks)
//! and running it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use tokio::task::{JoinHandle, JoinSet};

use crate::alerts::{Alerts, run_sender};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::datadir_lock::DataDirLock;
use crate::ledger::Ledger;
use crate::limiter::WindowLimiter;
use crate::password_checks::PasswordChecks;
use crate::registry::Registry;
use crate::review::{Flow, FlowParts};
use crate::state::{AppState, Shared};
use crate::transparency::Transparency;
use crate::web::events::{Frames, run_fanout};
use crate::web::serve::Limits;
use crate::web::session_cache::{SessionCache, run_invalidation};

/// Session-end notices a socket may fall behind on; a socket that lags still
/// finds out at its next periodic session check.
const SESSION_END_BUFFER: usize = 256;

/// The window of `auth.review_starts_per_user` and `auth.review_starts_per_ip`.
const REVIEW_START_WINDOW: Duration = Duration::from_mins(15);

/// How often the server looks for account changes made from the command line.
const ACCOUNT_POLL: Duration = Duration::from_secs(1);

/// The window in which failed sign-ins are counted.
const LOGIN_FAILURE_WINDOW: Duration = Duration::from_mins(1);

/// How often the shutdown looks whether every socket has closed.
const SOCKET_DRAIN_POLL: Duration = Duration::from_millis(20);

/// A built, bound service, ready to run.
pub struct Application {
    /// The data dir's lock: one server per data dir, held until this ends.
    lock: DataDirLock,
    listener: TcpListener,
    state: AppState,
    /// Every background task, owned here: if one ends, the service stops and
    /// says which.
    tasks: Vec<(&'static str, JoinHandle<()>)>,
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
        let lock = DataDirLock::acquire(&data_dir)?;
        tracing::debug!(lock = %lock.path().display(), "data dir locked");
        crate::metrics::prometheus();
        let db = crate::store::open(&data_dir).await?;
        let version = crate::store::check_sqlite_version(&db).await?;
        tracing::info!(sqlite_version = %version, data_dir = %data_dir.display(), "storage open");
        let (ledger, ledger_tasks) = Ledger::open(&data_dir, clock.clone()).await?;
        let head = ledger.writer.head();
        tracing::info!(seq = head.seq, entry_hash = %head.hash_hex(), "ledger open");
        let (transparency, log_tasks) = Transparency::start(&settings, &ledger).await?;

        let alerts = open_alerts(&settings, &data_dir).await?;
        let flow = build_flow(&settings, db, ledger, alerts, clock)?;
        crate::review::restore(&flow).await?;
        let state = AppState::new(Shared {
            origin: settings.origin(),
            sockets: dashmap::DashMap::new(),
            accounts_version: tokio::sync::watch::channel(0).0,
            frames: Frames::new(),
            going_away: tokio::sync::watch::channel(false).0,
            session_cache: SessionCache::new(),
            flow,
            transparency,
        });
        let mut tasks = vec![
            ("the ledger writer", ledger_tasks.writer),
            ("the ledger checkpointer", ledger_tasks.checkpointer),
            (
                "the ageing ticker",
                tokio::spawn(crate::review::run_ticker(state.flow.clone())),
            ),
            (
                "the inbox fan-out",
                tokio::spawn(run_fanout(state.registry.clone(), state.frames.clone())),
            ),
            (
                "the account watcher",
                tokio::spawn(watch_accounts(state.clone())),
            ),
            (
                "the session cache's invalidation",
                tokio::spawn(run_invalidation(state.clone())),
            ),
        ];
        tasks.extend(spawn_senders(&state.alerts)?);
        tasks.extend(log_tasks);
        Ok(Self {
            lock,
            listener,
            state,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The shared state, for tests that look inside.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves or a background task ends.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = crate::web::create_app(self.state.clone());
        let limits = Limits {
            max_connections: self.state.settings.server.max_connections,
            header_read_timeout: self.state.settings.server.header_read_timeout,
        };
        let grace = self.state.settings.server.shutdown_grace;
        let going_away = self.state.going_away.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; open requests and sockets finish");
            // Nobody listening (no socket open) is fine.
            let _ = going_away.send(true);
        };
        let server = crate::web::serve::serve(self.listener, app, limits, shutdown, grace);
        let _lock = self.lock;
        let mut tasks = JoinSet::new();
        let mut aborts = Vec::new();
        for (name, handle) in self.tasks {
            aborts.push(handle.abort_handle());
            tasks.spawn(async move { (name, handle.await) });
        }
        let outcome = tokio::select! {
            () = server => {
                tracing::info!("HTTP server stopped");
                Ok(())
            }
            Some(Ok((name, result))) = tasks.join_next() => {
                tracing::error!(task = name, ?result, "a background task ended; stopping");
                Err(anyhow::anyhow!("{name} ended unexpectedly: {result:?}"))
            }
        };
        if outcome.is_ok() {
            sockets_closed(&self.state, grace).await;
        }
        for abort in aborts {
            abort.abort();
        }
        checkpoint_on_exit(&self.state).await;
        outcome
    }
}

/// Waits (at most `grace`) until every socket has sent its close frame.
async fn sockets_closed(state: &AppState, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while !state.sockets.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(SOCKET_DRAIN_POLL).await;
    }
}

/// Folds both WAL files into their databases, so that a stopped service
/// leaves two plain files behind. A failure is logged: the WAL is replayed
/// at the next start either way.
async fn checkpoint_on_exit(state: &AppState) {
    if let Err(e) = crate::store::checkpoint(&state.db).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "app.sqlite not checkpointed at exit"
        );
    }
    if let Err(e) = crate::ledger::checkpoint(&state.ledger.path).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "ledger.sqlite not checkpointed at exit"
        );
    }
    state.db.close().await;
    state.ledger.reader.close().await;
    tracing::info!("stopped");
}

/// The webhook outbox and its endpoints. Deliveries left pending by the last
/// run are due at once.
async fn open_alerts(settings: &Settings, data_dir: &std::path::Path) -> anyhow::Result<Alerts> {
    let outbox = crate::store::open_outbox(data_dir).await?;
    crate::store::outbox::due_now(&outbox, crate::alerts::now_ms()).await?;
    let alerts = Alerts::new(settings, outbox);
    for endpoint in alerts.endpoints() {
        tracing::info!(endpoint = %endpoint.label, format = ?endpoint.settings.format, "webhook endpoint configured");
    }
    Ok(alerts)
}

/// One sender task per webhook endpoint.
fn spawn_senders(alerts: &Alerts) -> anyhow::Result<Vec<(&'static str, JoinHandle<()>)>> {
    let client = crate::alerts::client()?;
    Ok(alerts
        .endpoints()
        .iter()
        .map(|endpoint| {
            let task = run_sender(endpoint.clone(), alerts.db().clone(), client.clone());
            ("a webhook sender", tokio::spawn(task))
        })
        .collect())
}

fn build_flow(
    settings: &Settings,
    db: crate::store::Db,
    ledger: Ledger,
    alerts: Alerts,
    clock: SharedClock,
) -> anyhow::Result<Flow> {
    let limiter = |limit, window| WindowLimiter::new(limit, window, clock.clone());
    let auth = &settings.auth;
    let password_checks =
        PasswordChecks::start(auth.password_checks_in_parallel, auth.password_check_queue)?;
    Ok(Flow::new(FlowParts {
        login_failures: limiter(auth.failed_logins_per_minute, LOGIN_FAILURE_WINDOW),
        login_failures_per_user: limiter(
            auth.failed_logins_per_minute
                .saturating_mul(crate::review::FAILURES_PER_USER_FACTOR),
            LOGIN_FAILURE_WINDOW,
        ),
        password_checks,
        review_starts_per_user: limiter(auth.review_starts_per_user, REVIEW_START_WINDOW),
        review_starts_per_ip: limiter(auth.review_starts_per_ip, REVIEW_START_WINDOW),
        settings: settings.clone(),
        db,
        ledger,
        registry: Registry::new(),
        alerts,
        clock,
        session_ended: tokio::sync::broadcast::channel(SESSION_END_BUFFER).0,
        sign_in_locks: dashmap::DashMap::new(),
    }))
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
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Polls the account change counter (one tiny query a second) and tells the
/// sockets when an account changed, so that a role removed or a user disabled
/// from the command line closes their sockets within about a second.
async fn watch_accounts(app: AppState) {
    let mut interval = tokio::time::interval(ACCOUNT_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Ok(version) = crate::store::flows::accounts_version(&app.db).await {
            app.accounts_version.send_if_modified(|v| {
                let changed = *v != version;
                *v = version;
                changed
            });
        }
    }
}
