//! Consistent copies of the ledger for download, cached by head.
//!
//! A snapshot is taken with SQLite's online backup API from a read-only
//! connection: a consistent image of one read transaction, never a copy of the
//! live file, and the writer keeps committing while it runs (WAL readers do
//! not block writers). While the head
//! does not move, every request gets the same file, so repeated downloads are
//! byte-identical.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sha2::Digest;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use super::chain::Head;
use super::writer::read_head;

/// A snapshot file on disk and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last entry in the file.
    pub head: Head,
    pub path: PathBuf,
    /// `ledger-<seq>.sqlite`.
    pub filename: String,
    pub bytes: u64,
    /// Lowercase hex BLAKE3 of the file.
    pub blake3: String,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

impl Snapshot {
    /// The SHA-256 as RFC 9530 `Repr-Digest` wants it: `sha-256=:<base64>:`.
    pub fn repr_digest(&self) -> String {
        use base64::Engine;
        let raw = hex::decode(&self.sha256).unwrap_or_default();
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Makes and caches snapshots in `<data_dir>/snapshots`.
pub struct Snapshots {
    dir: PathBuf,
    /// The live ledger file, the backup's source.
    live: PathBuf,
    reader: SqlitePool,
    /// The current snapshot. A Tokio mutex, because taking a snapshot awaits
    /// SQLite while holding it: two downloads at once share one snapshot.
    current: Mutex<Option<Arc<Snapshot>>>,
}

impl Snapshots {
    pub fn new(dir: PathBuf, live: PathBuf, reader: SqlitePool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the snapshot dir {}", dir.display()))?;
        Ok(Self {
            dir,
            live,
            reader,
            current: Mutex::new(None),
        })
    }

    /// The snapshot of the current head, made now if the head has moved.
    pub async fn current(&self) -> anyhow::Result<Arc<Snapshot>> {
        let mut current = self.current.lock().await;
        let live_head = {
            let mut conn = self.reader.acquire().await?;
            read_head(&mut conn).await?
        };
        if let Some(snapshot) = current.as_ref()
            && snapshot.head == live_head
            && snapshot.path.is_file()
        {
            return Ok(snapshot.clone());
        }
        let fresh = Arc::new(self.take().await?);
        if let Some(old) = current.replace(fresh.clone())
            && old.path != fresh.path
        {
            // A download of the old file keeps its open handle; unlinking is safe.
            let _ = std::fs::remove_file(&old.path);
        }
        Ok(fresh)
    }

    async fn take(&self) -> anyhow::Result<Snapshot> {
        let tmp = self.dir.join(format!(
            "tmp-{}.sqlite",
            crate::domain::ids::new_entry_id(chrono::Utc::now())
        ));
        let (live, copy) = (self.live.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || copy_consistent(&live, &copy))
            .await
            .context("the snapshot task stopped")??;
        let head = {
            let options = SqliteConnectOptions::new()
                .filename(&tmp)
                .read_only(true)
                .immutable(true);
            let mut conn = SqliteConnection::connect_with(&options)
                .await
                .context("opening the new snapshot")?;
            let head = read_head(&mut conn).await?;
            conn.close().await?;
            head
        };
        let filename = format!("ledger-{}.sqlite", head.seq);
        let path = self.dir.join(&filename);
        std::fs::rename(&tmp, &path).context("naming the snapshot")?;
        let (bytes, blake3, sha256) = hash_file(path.clone()).await?;
        Ok(Snapshot {
            head,
            path,
            filename,
            bytes,
            blake3,
            sha256,
        })
    }
}

/// Copies the live ledger into `to` with SQLite's online backup API in one
/// step: one read transaction, so a consistent image of one moment (WAL
/// readers do not block the writer), copied page by page rather than rebuilt
/// as `VACUUM INTO` would. The copy is then switched to a rollback journal,
/// so that opening it read-only never needs side files.
pub(crate) fn copy_consistent(live: &Path, to: &Path) -> anyhow::Result<()> {
    use rusqlite::OpenFlags;
    let source = rusqlite::Connection::open_with_flags(
        live,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} for a snapshot", live.display()))?;
    let mut target = rusqlite::Connection::open(to)
        .with_context(|| format!("creating the snapshot {}", to.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
        // -1: every page in one step, inside one read transaction.
        backup.step(-1).context("copying the ledger")?;
    }
    target
        .pragma_update(None, "journal_mode", "DELETE")
        .context("making the snapshot standalone")?;
    target.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// Size, BLAKE3 and SHA-256 of a file, off the runtime: the two digests run
/// on two threads, each streaming the file (from the page cache, as the
/// snapshot was just written).
pub async fn hash_file(path: PathBuf) -> anyhow::Result<(u64, String, String)> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, String, String)> {
        let sha_path = path.clone();
        let sha = std::thread::spawn(move || -> anyhow::Result<String> {
            let mut sha = sha2::Sha256::new();
            stream(&sha_path, |chunk| sha.update(chunk))?;
            Ok(hex::encode(sha.finalize()))
        });
        let mut b3 = blake3::Hasher::new();
        let total = stream(&path, |chunk| {
            b3.update(chunk);
        })?;
        let sha = sha
            .join()
            .map_err(|_| anyhow::anyhow!("the SHA-256 thread panicked"))??;
        Ok((total, b3.finalize().to_hex().to_string(), sha))
    })
    .await?
}

/// Feeds a file to `each` in 1 MiB chunks; returns its size.
fn stream(path: &Path, mut each: impl FnMut(&[u8])) -> anyhow::Result<u64> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        each(&buf[..n]);
        total += n as u64;
    }
}
