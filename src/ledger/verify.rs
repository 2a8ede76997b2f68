//! Offline verification of a ledger file: what `peergate ledger verify` runs,
//! and what any auditor's script following DESIGN.md §5 would check.

use std::path::Path;

use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};

use super::chain::{EntryFields, FORMAT, Head, ZERO_HASH, parse_hash};
use crate::domain::Outcome;

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The chain recomputes exactly; `head` is its last entry.
    Valid { entries: i64, head: Head },
    /// A ledger, but not an intact one. `seq` is the first bad entry, when the
    /// fault is in one; `None` when it is in the structure (format, triggers).
    Invalid { seq: Option<i64>, reason: String },
    /// Not a peergate ledger at all (not SQLite, no ledger tables, unreadable).
    NotALedger(String),
}

impl Verdict {
    /// The exit code `ledger verify` uses: 0 valid, 1 invalid, 2 not a ledger.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Valid { .. } => 0,
            Verdict::Invalid { .. } => 1,
            Verdict::NotALedger(_) => 2,
        }
    }

    /// The one-line summary `ledger verify` prints.
    pub fn summary(&self) -> String {
        match self {
            Verdict::Valid { entries, head } => {
                format!("valid: {entries} entries, head {}", head.to_arg())
            }
            Verdict::Invalid {
                seq: Some(seq),
                reason,
            } => format!("invalid at seq {seq}: {reason}"),
            Verdict::Invalid { seq: None, reason } => format!("invalid: {reason}"),
            Verdict::NotALedger(reason) => format!("not a ledger: {reason}"),
        }
    }
}

fn invalid(seq: i64, reason: impl Into<String>) -> Verdict {
    Verdict::Invalid {
        seq: Some(seq),
        reason: reason.into(),
    }
}

/// Verifies the ledger at `path`; with `expect_head`, also checks that the
/// ledger holds that entry at that seq (catching a cut-off or rewritten history).
pub async fn verify_file(path: &Path, expect_head: Option<Head>) -> Verdict {
    if !path.is_file() {
        return Verdict::NotALedger(format!("{} is not a file", path.display()));
    }
    // A file with a -wal beside it is live (or was cut off mid-write): read it
    // through the WAL. A standalone file is read as immutable, so that checking
    // a downloaded copy never writes beside it.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(!Path::new(&wal).exists());
    let mut conn = match SqliteConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(e) => return Verdict::NotALedger(format!("cannot open it as SQLite: {e}")),
    };
    let verdict = verify_connection(&mut conn, expect_head).await;
    let _ = conn.close().await;
    verdict
}

async fn verify_connection(conn: &mut SqliteConnection, expect_head: Option<Head>) -> Verdict {
    let tables: Vec<String> =
        match sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
        {
            Ok(t) => t,
            Err(e) => return Verdict::NotALedger(format!("not a readable SQLite database: {e}")),
        };
    if !tables.iter().any(|t| t == "ledger_entries") || !tables.iter().any(|t| t == "ledger_meta") {
        return Verdict::NotALedger("it has no ledger_entries and ledger_meta tables".into());
    }
    let format: Result<Option<String>, _> =
        sqlx::query_scalar("SELECT CAST(value AS TEXT) FROM ledger_meta WHERE key = 'format'")
            .fetch_optional(&mut *conn)
            .await;
    match format {
        Ok(Some(f)) if f == FORMAT => {}
        Ok(Some(f)) => {
            return Verdict::Invalid {
                seq: None,
                reason: format!("unknown format `{f}`, expected `{FORMAT}`"),
            };
        }
        Ok(None) => {
            return Verdict::Invalid {
                seq: None,
                reason: "ledger_meta has no format row".into(),
            };
        }
        Err(e) => return Verdict::NotALedger(format!("cannot read ledger_meta: {e}")),
    }

    let head = match check_chain(conn).await {
        Ok(head) => head,
        Err(verdict) => return verdict,
    };
    if let Err(reason) = check_triggers(conn).await {
        return Verdict::Invalid { seq: None, reason };
    }
    if let Some(expected) = expect_head {
        if expected.seq > head.seq {
            return invalid(
                head.seq + 1,
                format!(
                    "the ledger ends at seq {} but the expected head is at seq {}: its tail was cut off",
                    head.seq, expected.seq
                ),
            );
        }
        if expected.seq > 0 {
            let hash: Result<Option<String>, _> =
                sqlx::query_scalar("SELECT entry_hash FROM ledger_entries WHERE seq = ?")
                    .bind(expected.seq)
                    .fetch_optional(&mut *conn)
                    .await;
            match hash {
                Ok(Some(h)) if h == expected.hash_hex() => {}
                Ok(_) | Err(_) => {
                    return invalid(
                        expected.seq,
                        format!(
                            "entry {} does not have the expected hash {}: history was rewritten",
                            expected.seq,
                            expected.hash_hex()
                        ),
                    );
                }
            }
        }
    }
    Verdict::Valid {
        entries: head.seq,
        head,
    }
}

/// Walks the chain in `seq` order, recomputing every hash.
async fn check_chain(conn: &mut SqliteConnection) -> Result<Head, Verdict> {
    let mut rows = sqlx::query(
        "SELECT seq, entry_id, session_id, outcome, requester_id, requester_name, requester_ip,
                requester_user_agent, reviewer_id, reviewer_name, channel, code_confirmed, note,
                session_created_at, decided_at, prev_hash, entry_hash
         FROM ledger_entries ORDER BY seq",
    )
    .fetch(&mut *conn);
    let mut head = Head::EMPTY;
    loop {
        let expected = head.seq + 1;
        let row = match rows.try_next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return Err(invalid(expected, format!("unreadable row: {e}"))),
        };
        let decoded = decode(&row);
        let (fields, prev_hash, entry_hash) = match decoded {
            Ok(d) => d,
            Err(e) => return Err(invalid(expected, format!("malformed row: {e}"))),
        };
        if fields.seq != expected {
            return Err(invalid(
                expected,
                format!(
                    "entry {expected} is missing (the next entry is {})",
                    fields.seq
                ),
            ));
        }
        if prev_hash != hex::encode(head.hash) {
            let what = if head.seq == 0 {
                "the first entry's prev_hash is not all zeros".to_string()
            } else {
                format!("prev_hash does not link to entry {}", head.seq)
            };
            return Err(invalid(expected, what));
        }
        if fields.outcome.parse::<Outcome>().is_err() {
            return Err(invalid(
                expected,
                format!("unknown outcome `{}`", fields.outcome),
            ));
        }
        if fields.code_confirmed != 0 && fields.code_confirmed != 1 {
            return Err(invalid(expected, "code_confirmed is neither 0 nor 1"));
        }
        let recomputed = fields.hash(&head.hash);
        match parse_hash(&entry_hash) {
            Some(stored) if stored == recomputed => {}
            _ => {
                return Err(invalid(
                    expected,
                    "entry_hash does not match the recomputed hash: the entry was altered",
                ));
            }
        }
        head = Head {
            seq: expected,
            hash: recomputed,
        };
    }
    if head.seq == 0 {
        debug_assert_eq!(head.hash, ZERO_HASH);
    }
    Ok(head)
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<(EntryFields, String, String), sqlx::Error> {
    Ok((
        EntryFields {
            seq: row.try_get("seq")?,
            entry_id: row.try_get("entry_id")?,
            session_id: row.try_get("session_id")?,
            outcome: row.try_get("outcome")?,
            requester_id: row.try_get("requester_id")?,
            requester_name: row.try_get("requester_name")?,
            requester_ip: row.try_get("requester_ip")?,
            requester_user_agent: row.try_get("requester_user_agent")?,
            reviewer_id: row.try_get("reviewer_id")?,
            reviewer_name: row.try_get("reviewer_name")?,
            channel: row.try_get("channel")?,
            code_confirmed: row.try_get("code_confirmed")?,
            note: row.try_get("note")?,
            session_created_at: row.try_get("session_created_at")?,
            decided_at: row.try_get("decided_at")?,
        },
        row.try_get("prev_hash")?,
        row.try_get("entry_hash")?,
    ))
}

/// The append-only triggers must be there, and must abort.
async fn check_triggers(conn: &mut SqliteConnection) -> Result<(), String> {
    let triggers: Vec<(String, String)> =
        sqlx::query("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| format!("cannot read the triggers: {e}"))?
            .iter()
            .map(|r| {
                (
                    r.try_get::<String, _>("tbl_name").unwrap_or_default(),
                    r.try_get::<String, _>("sql")
                        .unwrap_or_default()
                        .to_ascii_uppercase(),
                )
            })
            .collect();
    for table in ["ledger_entries", "ledger_meta"] {
        for op in ["UPDATE", "DELETE"] {
            let present = triggers.iter().any(|(t, sql)| {
                t == table && sql.contains(&format!("BEFORE {op}")) && sql.contains("RAISE(ABORT")
            });
            if !present {
                return Err(format!(
                    "the BEFORE {op} trigger on {table} is missing: the file is not append-only"
                ));
            }
        }
    }
    Ok(())
}
