//! The ledger: `ledger.sqlite`, append-only and hash-chained, written by one
//! task with group commit, read by a small pool, snapshotted for download and
//! verified offline.
//!
//! - `chain`: the exact hash encoding of DESIGN.md §5.
//! - `entry`: what callers append ([`LedgerDraft`]) and what they get back ([`Receipt`]).
//! - `writer`: the writer task and its [`LedgerHandle`].
//! - `snapshot`: consistent, cached copies for download.
//! - `verify`: offline verification, as `peergate ledger verify` runs it.
//! - `read`: queries for the admin pages and start-up reconciliation.
//! - `tree`: the Merkle tree over the entry hashes (DESIGN.md §11), in memory.

pub mod build;
pub mod chain;
pub mod entry;
pub mod export;
pub mod read;
pub mod snapshot;
pub mod tree;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, SqliteConnection, SqlitePool};

pub use chain::{EntryFields, Head};
pub use entry::{LedgerDraft, Receipt, SessionFacts};
pub use snapshot::{Snapshot, Snapshots};
pub use tree::Tree;
pub use verify::{Expected, TreeHead, Verdict, verify_file, verify_file_with};
pub use writer::{AppendError, LedgerHandle, WriterOptions};

use crate::clock::SharedClock;

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// The file name inside the data dir.
pub const FILE_NAME: &str = "ledger.sqlite";

/// Everything the service needs of the ledger: the writer's handle, a read
/// pool, and the snapshot cache. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pub writer: LedgerHandle,
    pub reader: SqlitePool,
    pub snapshots: Arc<Snapshots>,
    pub path: PathBuf,
    /// The Merkle tree of the committed entries; the writer extends it.
    pub tree: Tree,
}

/// The background tasks the ledger runs; the caller decides how to supervise them.
pub struct LedgerTasks {
    pub writer: tokio::task::JoinHandle<()>,
    pub checkpointer: tokio::task::JoinHandle<()>,
}

impl Ledger {
    /// Opens (creating if needed) `ledger.sqlite` in `data_dir` and starts its writer.
    pub async fn open(data_dir: &Path, clock: SharedClock) -> anyhow::Result<(Self, LedgerTasks)> {
        Self::open_with(data_dir, clock, WriterOptions::default()).await
    }

    /// [`Ledger::open`] with non-default writer tunables (benchmarks, tests).
    pub async fn open_with(
        data_dir: &Path,
        clock: SharedClock,
        options: WriterOptions,
    ) -> anyhow::Result<(Self, LedgerTasks)> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let path = data_dir.join(FILE_NAME);
        let conn = writer::open_write_connection(&path).await?;
        // Nobody else writes this file (the data-dir lock), so the tree read
        // now matches the head the writer reads next.
        let started = std::time::Instant::now();
        let tree = Tree::new(tree::load(&path).await?);
        tracing::debug!(
            records = tree.size(),
            ms = started.elapsed().as_millis(),
            "ledger tree rebuilt"
        );
        let (handle, writer_task) = writer::spawn(conn, clock, options, tree.clone()).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(5)),
            )
            .await
            .with_context(|| format!("opening {} for reading", path.display()))?;
        let snapshots = Arc::new(Snapshots::new(
            data_dir.join("snapshots"),
            path.clone(),
            reader.clone(),
        )?);
        let checkpointer = tokio::spawn(run_checkpointer(path.clone(), handle.watch_head()));
        Ok((
            Self {
                writer: handle,
                reader,
                snapshots,
                path,
                tree,
            },
            LedgerTasks {
                writer: writer_task,
                checkpointer,
            },
        ))
    }
}

/// Folds the WAL into `ledger.sqlite` on a connection of its own (at
/// shutdown, once the writer has stopped).
pub async fn checkpoint(path: &Path) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(2));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .context("checkpointing the ledger")?;
    conn.close().await?;
    Ok(())
}

/// Checkpoints the WAL on its own connection, off the commit path, whenever the
/// head has moved since the last checkpoint. PASSIVE never waits on the writer.
async fn run_checkpointer(path: PathBuf, mut head: tokio::sync::watch::Receiver<Head>) {
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .busy_timeout(Duration::from_millis(100));
    let mut conn = loop {
        match SqliteConnection::connect_with(&options).await {
            Ok(conn) => break conn,
            Err(e) => {
                tracing::error!(error = %e, "the ledger checkpointer could not open the ledger; the WAL grows until it can");
                tokio::time::sleep(CHECKPOINT_INTERVAL * 20).await;
            }
        }
    };
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match head.has_changed() {
            Ok(false) => continue,
            Ok(true) => {
                head.mark_unchanged();
            }
            // The writer is gone: the service is shutting down.
            Err(_) => break,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "ledger checkpoint failed; will retry");
        }
    }
}
