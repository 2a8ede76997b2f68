//! `app.sqlite`: users, browser sessions, pending sessions, trusted devices and
//! the download log. Outcomes are not kept here: the ledger is their source of
//! truth, and this file only mirrors them (see `review::settle_from_ledger`).

pub mod devices;
pub mod downloads;
pub mod flows;
pub mod mismatches;
pub mod outbox;
pub mod pending;
pub mod sessions;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The oldest SQLite peergate runs on: older versions have a WAL corruption bug.
pub const MIN_SQLITE_VERSION: (u32, u32, u32) = (3, 51, 3);

/// How long a connection waits on a lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the app pool. SQLite takes one writer at a time; the rest read.
const MAX_CONNECTIONS: u32 = 8;

/// The file several processes lock, one after the other, to create and
/// migrate `app.sqlite` (sqlx's SQLite migrator takes no lock of its own).
const MIGRATION_LOCK: &str = "migrate.lock";

/// Opens (creating if needed) `app.sqlite` in `data_dir` and applies
/// migrations. Safe when several processes (`peergate user add` run in
/// parallel on a fresh dir) start at once: they take turns.
pub async fn open(data_dir: &Path) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    let lock_path = data_dir.join(MIGRATION_LOCK);
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    // Held until this function returns (the lock goes with the file).
    let _lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await?
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let path = data_dir.join("app.sqlite");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .with_context(|| format!("migrating {}", path.display()))?;
    users::normalise_usernames(&pool).await?;
    Ok(pool)
}

/// A small second pool on `app.sqlite` for the webhook outbox, whose
/// commits skip their own fsync (`synchronous=NORMAL`; WAL). An outbox row is
/// written on a decision's path before anyone is told, and a second fsync
/// there would cost every decision about a millisecond. Nothing is lost on a
/// process crash (the WAL is in the OS's cache), and the FULL commit that
/// mirrors the outcome a moment later syncs the same WAL, outbox row
/// included. Open it after [`open`] has migrated the file.
pub async fn open_outbox(data_dir: &Path) -> anyhow::Result<SqlitePool> {
    let path = data_dir.join("app.sqlite");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(OUTBOX_CONNECTIONS)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {} for the webhook outbox", path.display()))
}

/// Connections in the outbox pool: writers take turns anyway.
const OUTBOX_CONNECTIONS: u32 = 2;

/// Checks the linked SQLite against [`MIN_SQLITE_VERSION`] and returns its version.
pub async fn check_sqlite_version(pool: &SqlitePool) -> anyhow::Result<String> {
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(pool)
        .await
        .context("asking SQLite for its version")?;
    let found = parse_version(&version)?;
    if found < MIN_SQLITE_VERSION {
        let (a, b, c) = MIN_SQLITE_VERSION;
        bail!(
            "SQLite {version} is too old: peergate needs {a}.{b}.{c} or newer (WAL corruption fix)"
        );
    }
    Ok(version)
}

fn parse_version(text: &str) -> anyhow::Result<(u32, u32, u32)> {
    let mut parts = text.split('.').map(u32::from_str);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok((a, b, c)),
        (Some(Ok(a)), Some(Ok(b)), None) => Ok((a, b, 0)),
        _ => bail!("cannot read the SQLite version `{text}`"),
    }
}

/// Reads a `0`/`1` column as a bool.
pub(crate) fn flag(value: i64) -> bool {
    value != 0
}

/// The `app.sqlite` pool, named here so that the layers above never name the
/// database library.
pub type Db = SqlitePool;

/// Folds the WAL into `app.sqlite` (at shutdown).
pub async fn checkpoint(db: &SqlitePool) -> anyhow::Result<()> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(db)
        .await
        .context("checkpointing app.sqlite")?;
    Ok(())
}

/// Whether `app.sqlite` answers (for `/healthz`).
pub async fn ping(db: &SqlitePool) -> anyhow::Result<()> {
    sqlx::query("SELECT 1")
        .execute(db)
        .await
        .context("app.sqlite does not answer")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("3.51.3").unwrap() >= MIN_SQLITE_VERSION);
        assert!(parse_version("3.9.10").unwrap() < MIN_SQLITE_VERSION);
        assert!(parse_version("3.100.0").unwrap() >= MIN_SQLITE_VERSION);
        assert!(parse_version("x").is_err());
    }
}
