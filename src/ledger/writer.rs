//! The one task that writes `ledger.sqlite`, and the handle that talks to it.
//!
//! Handlers call [`LedgerHandle::append`]; the draft travels over a bounded
//! `mpsc` channel with a `oneshot` for the reply. The writer takes everything
//! queued (up to [`MAX_BATCH`]), chains the hashes (it alone knows the head),
//! writes the batch in one `BEGIN IMMEDIATE` transaction, commits with
//! `synchronous=FULL`, and only then replies: group commit. An entry counts as
//! recorded once its reply has arrived.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};

use super::chain::{EntryFields, FORMAT, Head, parse_hash};
use super::entry::{LedgerDraft, Receipt};
use super::tree::Tree;
use crate::clock::{SharedClock, rfc3339};
use crate::domain::ids::new_entry_id;

/// The most entries written in one transaction. Large enough that a burst is a
/// handful of commits; small enough that one commit stays well under 10 ms.
pub const MAX_BATCH: usize = 512;

/// How many appends may wait for the writer before callers are told the ledger
/// is unavailable.
pub const QUEUE_CAPACITY: usize = 8192;

/// How long an append waits for room in a full queue before giving up.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// How long the writer waits for a lock held by another process before the
/// batch fails (and every caller in it is told the ledger is unavailable).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Tunables of the writer; [`WriterOptions::default`] is what the service runs.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Entries per transaction at most; 1 turns group commit off (for comparison).
    pub max_batch: usize,
    /// Appends that may wait in the queue.
    pub queue_capacity: usize,
    /// How long an append waits for room in a full queue.
    pub queue_wait: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_batch: MAX_BATCH,
            queue_capacity: QUEUE_CAPACITY,
            queue_wait: QUEUE_WAIT,
        }
    }
}

/// The schema, applied to a new ledger; see `ledger_schema.sql`.
pub(super) const SCHEMA: &str = include_str!("../../ledger_schema.sql");
const AFTER_META_MARKER: &str = "-- @after-meta-rows";

/// Why an append was not recorded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    /// The writer is gone, overloaded, or its commit failed: nothing was recorded.
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    /// The session already has an outcome in the ledger.
    #[error("session {0} already has an outcome in the ledger")]
    Duplicate(String),
}

struct AppendCommand {
    draft: LedgerDraft,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Receipt, AppendError>>,
}

/// A cheap, cloneable handle to the ledger writer.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<AppendCommand>,
    head: watch::Receiver<Head>,
    queue_wait: Duration,
}

impl LedgerHandle {
    /// Appends one outcome and waits until it is durable. On `Ok`, the entry is
    /// committed; on `Err`, it is not in the ledger.
    pub async fn append(&self, draft: LedgerDraft) -> Result<Receipt, AppendError> {
        let (reply, rx) = oneshot::channel();
        let command = AppendCommand {
            draft,
            enqueued: Instant::now(),
            reply,
        };
        self.tx
            .send_timeout(command, self.queue_wait)
            .await
            .map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => {
                    AppendError::Unavailable("the ledger writer is overloaded".into())
                }
                mpsc::error::SendTimeoutError::Closed(_) => {
                    AppendError::Unavailable("the ledger writer has stopped".into())
                }
            })?;
        rx.await.map_err(|_| {
            AppendError::Unavailable("the ledger writer stopped before replying".into())
        })?
    }

    /// The head as of the last commit.
    pub fn head(&self) -> Head {
        *self.head.borrow()
    }

    /// Follows the head as it moves.
    pub fn watch_head(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }
}

/// Opens the write connection: WAL, `synchronous=FULL`, no autocheckpoint
/// (checkpoints run on their own connection, off the commit path).
pub async fn open_write_connection(path: &Path) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("wal_autocheckpoint", "0");
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening the ledger {}", path.display()))?;
    ensure_schema(&mut conn, path).await?;
    Ok(conn)
}

/// Creates the schema and meta rows of a new ledger, or checks the format of an existing one.
async fn ensure_schema(conn: &mut SqliteConnection, path: &Path) -> anyhow::Result<()> {
    let has_meta: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'ledger_meta'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if has_meta.is_some() {
        let format: Option<String> =
            sqlx::query_scalar("SELECT value FROM ledger_meta WHERE key = 'format'")
                .fetch_optional(&mut *conn)
                .await?;
        return match format.as_deref() {
            Some(FORMAT) => Ok(()),
            Some(other) => bail!(
                "{} is a ledger of unknown format `{other}`; this peergate writes {FORMAT}",
                path.display()
            ),
            None => bail!(
                "{} has a ledger_meta table without a format row",
                path.display()
            ),
        };
    }
    let other_tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
            .fetch_one(&mut *conn)
            .await?;
    if other_tables > 0 {
        bail!("{} is not a peergate ledger", path.display());
    }
    let (tables, meta_triggers) = SCHEMA
        .split_once(AFTER_META_MARKER)
        .context("ledger_schema.sql lost its marker line")?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(tables).execute(&mut *tx).await?;
    let ledger_id =
        hex::encode(blake3::hash(new_entry_id(chrono::Utc::now()).as_bytes()).as_bytes())[..32]
            .to_string();
    for (key, value) in [
        ("format", FORMAT.to_string()),
        ("ledger_id", ledger_id),
        ("created_at", rfc3339(chrono::Utc::now())),
    ] {
        sqlx::query("INSERT INTO ledger_meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::raw_sql(meta_triggers).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Reads the head from the file.
pub async fn read_head(conn: &mut SqliteConnection) -> anyhow::Result<Head> {
    let row = sqlx::query("SELECT seq, entry_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .context("reading the ledger head")?;
    let Some(row) = row else {
        return Ok(Head::EMPTY);
    };
    let seq: i64 = row.try_get("seq")?;
    let hash: String = row.try_get("entry_hash")?;
    let hash = parse_hash(&hash).with_context(|| format!("entry {seq} has a malformed hash"))?;
    Ok(Head { seq, hash })
}

/// Starts the writer on `conn`; returns its handle and the task. `tree` must
/// hold the records of every entry already in the file: the writer extends it
/// after each commit, before it publishes the new head.
pub async fn spawn(
    mut conn: SqliteConnection,
    clock: SharedClock,
    options: WriterOptions,
    tree: Tree,
) -> anyhow::Result<(LedgerHandle, tokio::task::JoinHandle<()>)> {
    let head = read_head(&mut conn).await?;
    if u64::try_from(head.seq).ok() != Some(tree.size()) {
        bail!(
            "the ledger's tree has {} records but its head is at seq {}",
            tree.size(),
            head.seq
        );
    }
    let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
    let (head_tx, head_rx) = watch::channel(head);
    let writer = Writer {
        head_tx,
        clock,
        max_batch: options.max_batch.max(1),
        tree,
    };
    let task = tokio::spawn(run(conn, rx, writer));
    Ok((
        LedgerHandle {
            tx,
            head: head_rx,
            queue_wait: options.queue_wait,
        },
        task,
    ))
}

/// What the writer task owns besides its connection and queue.
struct Writer {
    /// Publishes the head after each commit.
    head_tx: watch::Sender<Head>,
    clock: SharedClock,
    max_batch: usize,
    /// The Merkle tree, extended with each committed batch.
    tree: Tree,
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<AppendCommand>, writer: Writer) {
    let Writer {
        head_tx,
        clock,
        max_batch,
        tree,
    } = writer;
    let mut head = *head_tx.borrow();
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let started = Instant::now();
        let decided_at = rfc3339(clock.now());
        match write_batch(&mut conn, head, &batch, &decided_at).await {
            Ok(Committed {
                head: new_head,
                results,
                records,
            }) => {
                head = new_head;
                // The tree first: whoever sees the new head finds its tree.
                tree.extend(&records);
                head_tx.send_replace(head);
                let written = results.iter().filter(|r| r.is_ok()).count();
                tracing::info!(
                    seq = head.seq,
                    entry_hash = %head.hash_hex(),
                    batch = written,
                    commit_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "ledger commit"
                );
                crate::metrics::ledger_batch(written, started.elapsed());
                for (command, result) in batch.drain(..).zip(results) {
                    crate::metrics::ledger_ack(command.enqueued.elapsed());
                    // The caller may have gone away (its request was cancelled);
                    // the entry is recorded all the same.
                    let _ = command.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "ledger commit failed; nothing in this batch was recorded"
                );
                let reason = format!("the ledger could not be written: {error}");
                for command in batch.drain(..) {
                    let _ = command
                        .reply
                        .send(Err(AppendError::Unavailable(reason.clone())));
                }
                // The transaction rolled back, but take the head from the file
                // rather than trusting memory before writing again.
                match read_head(&mut conn).await {
                    Ok(h) => head = h,
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "re-reading the ledger head failed"
                    ),
                }
            }
        }
    }
    tracing::info!(seq = head.seq, "ledger writer stopped");
}

/// Rows per multi-row `INSERT`: 17 parameters each, well under SQLite's limit
/// of 32,766 bound parameters per statement.
const ROWS_PER_INSERT: usize = 128;

/// A committed batch.
struct Committed {
    head: Head,
    /// One reply per command, in order.
    results: Vec<Result<Receipt, AppendError>>,
    /// The entry hashes written, in seq order: the tree's new records.
    records: Vec<[u8; 32]>,
}

/// Writes one batch in one transaction. Drafts for sessions that already have
/// an outcome are refused one by one; the rest are written. Two statements do
/// the work whatever the batch size: one lookup of the batch's session ids,
/// and multi-row inserts.
async fn write_batch(
    conn: &mut SqliteConnection,
    head: Head,
    batch: &[AppendCommand],
    decided_at: &str,
) -> anyhow::Result<Committed> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<&str> = batch
        .iter()
        .map(|c| c.draft.session.session_id.as_str())
        .collect();
    let mut taken = existing_sessions(&mut tx, &ids).await?;
    let mut results = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    let mut next = head;
    for command in batch {
        let draft = &command.draft;
        let session_id = &draft.session.session_id;
        // `insert` is false for a session already in the ledger or earlier in this batch.
        if !taken.insert(session_id.clone()) {
            results.push(Err(AppendError::Duplicate(session_id.clone())));
            continue;
        }
        let fields = EntryFields {
            seq: next.seq + 1,
            entry_id: new_entry_id(chrono::Utc::now()),
            session_id: session_id.clone(),
            outcome: draft.outcome.as_str().to_string(),
            requester_id: draft.session.requester_id.clone(),
            requester_name: draft.session.requester_name.clone(),
            requester_ip: draft.session.requester_ip.clone(),
            requester_user_agent: draft.session.requester_user_agent.clone(),
            reviewer_id: draft.reviewer_id.clone(),
            reviewer_name: draft.reviewer_name.clone(),
            channel: draft.channel.clone(),
            code_confirmed: i64::from(draft.code_confirmed),
            note: draft.note.as_str().to_string(),
            session_created_at: draft.session.session_created_at.clone(),
            decided_at: decided_at.to_string(),
        };
        let row = ChainedRow::link(&mut next, fields);
        results.push(Ok(Receipt {
            seq: row.fields.seq,
            entry_id: row.fields.entry_id.clone(),
            entry_hash: row.entry_hash.clone(),
            decided_at: row.fields.decided_at.clone(),
        }));
        rows.push(row);
    }
    insert_rows(&mut tx, &rows).await?;
    tx.commit().await.context("committing a ledger batch")?;
    Ok(Committed {
        head: next,
        results,
        records: rows.iter().map(|row| row.hash).collect(),
    })
}

/// Which of these session ids already have an outcome in the ledger.
async fn existing_sessions(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> anyhow::Result<std::collections::HashSet<String>> {
    let mut found = std::collections::HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_INSERT * 4) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql =
            format!("SELECT session_id FROM ledger_entries WHERE session_id IN ({placeholders})");
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// An entry with its chain hashes, ready to insert.
pub struct ChainedRow {
    pub fields: EntryFields,
    pub prev_hash: String,
    pub entry_hash: String,
    /// `entry_hash` as raw bytes: the entry's record in the Merkle tree.
    pub hash: [u8; 32],
}

impl ChainedRow {
    /// Chains `fields` (whose `seq` must be `head.seq + 1`) onto `head`, and
    /// moves `head` on to it. The one place an entry is linked.
    pub fn link(head: &mut Head, fields: EntryFields) -> Self {
        debug_assert_eq!(fields.seq, head.seq + 1);
        let hash = fields.hash(&head.hash);
        let row = Self {
            prev_hash: hex::encode(head.hash),
            entry_hash: hex::encode(hash),
            hash,
            fields,
        };
        *head = Head {
            seq: head.seq + 1,
            hash,
        };
        row
    }
}

/// Inserts rows with multi-row `INSERT`s. Shared by the writer and the tools
/// that build ledgers.
pub async fn insert_rows(conn: &mut SqliteConnection, rows: &[ChainedRow]) -> anyhow::Result<()> {
    const ROW: &str = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values = vec![ROW; chunk.len()].join(",");
        let sql = format!(
            "INSERT INTO ledger_entries (seq, entry_id, session_id, outcome, requester_id, requester_name,
                requester_ip, requester_user_agent, reviewer_id, reviewer_name, channel, code_confirmed,
                note, session_created_at, decided_at, prev_hash, entry_hash) VALUES {values}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            let f = &row.fields;
            query = query
                .bind(f.seq)
                .bind(&f.entry_id)
                .bind(&f.session_id)
                .bind(&f.outcome)
                .bind(&f.requester_id)
                .bind(&f.requester_name)
                .bind(&f.requester_ip)
                .bind(&f.requester_user_agent)
                .bind(&f.reviewer_id)
                .bind(&f.reviewer_name)
                .bind(&f.channel)
                .bind(f.code_confirmed)
                .bind(&f.note)
                .bind(&f.session_created_at)
                .bind(&f.decided_at)
                .bind(&row.prev_hash)
                .bind(&row.entry_hash);
        }
        query
            .execute(&mut *conn)
            .await
            .with_context(|| format!("inserting ledger entries from {}", chunk[0].fields.seq))?;
    }
    Ok(())
}
