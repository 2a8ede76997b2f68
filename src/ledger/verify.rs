//! Offline verification of a ledger file: what `peergate ledger verify` runs,
//! and what any auditor's script following DESIGN.md §5 would check.

use std::path::Path;

use super::chain::{FIELD_COUNT, FORMAT, Head, hash_parts, parse_hash};
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
///
/// Runs on a blocking thread with rusqlite (sharing sqlx's SQLite library):
/// a tight row loop over borrowed column bytes, no per-field allocation.
pub async fn verify_file(path: &Path, expect_head: Option<Head>) -> Verdict {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || verify_blocking(&path, expect_head))
        .await
        .unwrap_or_else(|e| Verdict::NotALedger(format!("verification stopped: {e}")))
}

/// The synchronous body of [`verify_file`].
pub fn verify_blocking(path: &Path, expect_head: Option<Head>) -> Verdict {
    use rusqlite::OpenFlags;
    if !path.is_file() {
        return Verdict::NotALedger(format!("{} is not a file", path.display()));
    }
    // A file with a -wal beside it is live (or was cut off mid-write): read it
    // through the WAL. A standalone file is read as immutable, so that checking
    // a downloaded copy never writes beside it.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let immutable = !Path::new(&wal).exists();
    let uri = format!(
        "file:{}?mode=ro{}",
        percent_path(path),
        if immutable { "&immutable=1" } else { "" }
    );
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match rusqlite::Connection::open_with_flags(&uri, flags) {
        Ok(conn) => conn,
        Err(e) => return Verdict::NotALedger(format!("cannot open it as SQLite: {e}")),
    };
    verify_connection(&conn, expect_head)
}

/// Escapes a path for a `file:` URI.
fn percent_path(path: &Path) -> String {
    path.to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'?' | b'#' | b'%' => format!("%{b:02X}"),
            _ => (b as char).to_string(),
        })
        .collect()
}

fn verify_connection(conn: &rusqlite::Connection, expect_head: Option<Head>) -> Verdict {
    if let Err(verdict) = check_tables(conn).and_then(|()| check_format(conn)) {
        return verdict;
    }
    let head = match check_chain(conn) {
        Ok(head) => head,
        Err(verdict) => return verdict,
    };
    if let Err(reason) = check_triggers(conn) {
        return Verdict::Invalid { seq: None, reason };
    }
    if let Some(expected) = expect_head
        && let Err(verdict) = check_expected_head(conn, head, expected)
    {
        return verdict;
    }
    Verdict::Valid {
        entries: head.seq,
        head,
    }
}

/// Both ledger tables are there.
fn check_tables(conn: &rusqlite::Connection) -> Result<(), Verdict> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| Verdict::NotALedger(format!("not a readable SQLite database: {e}")))?;
    if tables.iter().any(|t| t == "ledger_entries") && tables.iter().any(|t| t == "ledger_meta") {
        Ok(())
    } else {
        Err(Verdict::NotALedger(
            "it has no ledger_entries and ledger_meta tables".into(),
        ))
    }
}

/// `ledger_meta` names the format this verifier knows.
fn check_format(conn: &rusqlite::Connection) -> Result<(), Verdict> {
    let format: Option<String> = conn
        .query_row(
            "SELECT CAST(value AS TEXT) FROM ledger_meta WHERE key = 'format'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .map_err(|e| Verdict::NotALedger(format!("cannot read ledger_meta: {e}")))?;
    let reason = match format {
        Some(f) if f == FORMAT => return Ok(()),
        Some(f) => format!("unknown format `{f}`, expected `{FORMAT}`"),
        None => "ledger_meta has no format row".into(),
    };
    Err(Verdict::Invalid { seq: None, reason })
}

/// A head remembered elsewhere must still be in the file, unchanged.
fn check_expected_head(
    conn: &rusqlite::Connection,
    head: Head,
    expected: Head,
) -> Result<(), Verdict> {
    if expected.seq > head.seq {
        return Err(invalid(
            head.seq + 1,
            format!(
                "the ledger ends at seq {} but the expected head is at seq {}: its tail was cut off",
                head.seq, expected.seq
            ),
        ));
    }
    if expected.seq == 0 {
        return Ok(());
    }
    let hash: Result<String, _> = conn.query_row(
        "SELECT entry_hash FROM ledger_entries WHERE seq = ?",
        [expected.seq],
        |r| r.get(0),
    );
    if hash.ok().as_deref() == Some(expected.hash_hex().as_str()) {
        return Ok(());
    }
    Err(invalid(
        expected.seq,
        format!(
            "entry {} does not have the expected hash {}: history was rewritten",
            expected.seq,
            expected.hash_hex()
        ),
    ))
}

/// A column read as the bytes of a TEXT value; anything else is malformed.
fn text<'a>(row: &'a rusqlite::Row<'_>, i: usize) -> Result<&'a [u8], String> {
    match row.get_ref(i) {
        Ok(rusqlite::types::ValueRef::Text(t)) => Ok(t),
        Ok(other) => Err(format!(
            "column {i} holds {:?}, not text",
            other.data_type()
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn integer(row: &rusqlite::Row<'_>, i: usize) -> Result<i64, String> {
    match row.get_ref(i) {
        Ok(rusqlite::types::ValueRef::Integer(n)) => Ok(n),
        Ok(other) => Err(format!(
            "column {i} holds {:?}, not an integer",
            other.data_type()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// An entry's outcome must be one of §5's, `code_confirmed` 0 or 1, and a
/// mismatch (written like a denial) never says the code was read back.
fn check_outcome(outcome: &[u8], confirmed: i64) -> Result<(), String> {
    let Some(known) = Outcome::ALL
        .into_iter()
        .find(|o| o.as_str().as_bytes() == outcome)
    else {
        return Err(format!(
            "unknown outcome `{}`",
            String::from_utf8_lossy(outcome)
        ));
    };
    if confirmed != 0 && confirmed != 1 {
        return Err("code_confirmed is neither 0 nor 1".into());
    }
    if known == Outcome::Mismatch && confirmed != 0 {
        return Err("a mismatch entry says the code was read back (code_confirmed 1)".into());
    }
    Ok(())
}

/// Walks the chain in `seq` order, recomputing every hash.
fn check_chain(conn: &rusqlite::Connection) -> Result<Head, Verdict> {
    let unreadable =
        |e: rusqlite::Error| Verdict::NotALedger(format!("cannot read ledger_entries: {e}"));
    let mut statement = conn
        .prepare(
            "SELECT seq, entry_id, session_id, outcome, requester_id, requester_name, requester_ip,
                    requester_user_agent, reviewer_id, reviewer_name, channel, code_confirmed, note,
                    session_created_at, decided_at, prev_hash, entry_hash
             FROM ledger_entries ORDER BY seq",
        )
        .map_err(unreadable)?;
    let mut rows = statement.query([]).map_err(unreadable)?;
    let mut head = Head::EMPTY;
    loop {
        let expected = head.seq + 1;
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return Err(invalid(expected, format!("unreadable row: {e}"))),
        };
        head = Head {
            seq: expected,
            hash: check_row(row, head)?,
        };
    }
    Ok(head)
}

/// Checks the row that should follow `head`, and returns its hash.
fn check_row(row: &rusqlite::Row<'_>, head: Head) -> Result<[u8; 32], Verdict> {
    let expected = head.seq + 1;
    let bad = |reason: String| invalid(expected, format!("malformed row: {reason}"));
    let seq = integer(row, 0).map_err(bad)?;
    if seq != expected {
        return Err(invalid(
            expected,
            format!("entry {expected} is missing (the next entry is {seq})"),
        ));
    }
    if text(row, 15).map_err(bad)? != hex::encode(head.hash).as_bytes() {
        let what = if head.seq == 0 {
            "the first entry's prev_hash is not all zeros".to_string()
        } else {
            format!("prev_hash does not link to entry {}", head.seq)
        };
        return Err(invalid(expected, what));
    }
    let outcome = text(row, 3).map_err(bad)?;
    let confirmed = integer(row, 11).map_err(bad)?;
    check_outcome(outcome, confirmed).map_err(|why| invalid(expected, why))?;
    let (seq_text, confirmed_text) = (seq.to_string(), confirmed.to_string());
    let mut parts: [&[u8]; FIELD_COUNT] = [b""; FIELD_COUNT];
    for (i, part) in parts.iter_mut().enumerate() {
        *part = match i {
            0 => seq_text.as_bytes(),
            11 => confirmed_text.as_bytes(),
            _ => text(row, i).map_err(bad)?,
        };
    }
    let recomputed = hash_parts(&head.hash, &parts);
    match std::str::from_utf8(text(row, 16).map_err(bad)?)
        .ok()
        .and_then(parse_hash)
    {
        Some(stored) if stored == recomputed => Ok(recomputed),
        _ => Err(invalid(
            expected,
            "entry_hash does not match the recomputed hash: the entry was altered",
        )),
    }
}

/// The append-only triggers must be there, and must abort.
fn check_triggers(conn: &rusqlite::Connection) -> Result<(), String> {
    let triggers: Vec<(String, String)> = conn
        .prepare("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0).unwrap_or_default(),
                    r.get::<_, String>(1)
                        .unwrap_or_default()
                        .to_ascii_uppercase(),
                ))
            })?
            .collect()
        })
        .map_err(|e| format!("cannot read the triggers: {e}"))?;
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
