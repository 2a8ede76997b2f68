//! Consistent copies of the ledger for download, cached by head.
//!
//! A snapshot is taken with `VACUUM INTO` from a read connection: a consistent
//! image of one read transaction, never the live file, and the writer keeps
//! committing while it runs (WAL readers do not block writers). While the head
//! does not move, every request gets the same file, so repeated downloads are
//! byte-identical.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sha2::Digest;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
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
    reader: SqlitePool,
    /// The current snapshot. A Tokio mutex, because taking a snapshot awaits
    /// SQLite while holding it: two downloads at once share one snapshot.
    current: Mutex<Option<Arc<Snapshot>>>,
}

impl Snapshots {
    pub fn new(dir: PathBuf, reader: SqlitePool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the snapshot dir {}", dir.display()))?;
        Ok(Self {
            dir,
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
        let tmp_text = tmp
            .to_str()
            .context("the snapshot path is not valid UTF-8")?
            .to_string();
        {
            let mut conn = self.reader.acquire().await?;
            sqlx::query("VACUUM INTO ?")
                .bind(&tmp_text)
                .execute(&mut *conn)
                .await
                .context("taking a ledger snapshot (VACUUM INTO)")?;
        }
        let head = finish_file(&tmp).await?;
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

/// Turns a fresh snapshot into a standalone file (rollback journal, not WAL, so
/// opening it read-only never needs side files) and reads its head.
async fn finish_file(path: &Path) -> anyhow::Result<Head> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Delete);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .context("opening the new snapshot")?;
    let head = read_head(&mut conn).await?;
    conn.close().await?;
    Ok(head)
}

/// Size, BLAKE3 and SHA-256 of a file, in one streaming pass off the runtime.
pub async fn hash_file(path: PathBuf) -> anyhow::Result<(u64, String, String)> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, String, String)> {
        let mut file =
            std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut b3 = blake3::Hasher::new();
        let mut sha = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            b3.update(&buf[..n]);
            sha.update(&buf[..n]);
            total += n as u64;
        }
        Ok((
            total,
            b3.finalize().to_hex().to_string(),
            hex::encode(sha.finalize()),
        ))
    })
    .await?
}
