//! Offline verification of a ledger file: what `peergate ledger verify` runs,
//! and what any auditor's script following DESIGN.md §5 would check.

use std::collections::HashMap;
use std::path::Path;

use super::chain::{FIELD_COUNT, FORMAT, Head, ZERO_HASH, hash_parts, parse_hash};
use super::tree::MerkleTree;
use crate::domain::Outcome;

/// What a checkpoint claims about the file (its signature is checked by the
/// caller): the Merkle root of the first `size` entry hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: [u8; 32],
}

/// What the file must hold besides an intact chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected {
    /// A head remembered elsewhere (`--expect-head`).
    pub head: Option<Head>,
    /// A checkpoint's tree head (`--checkpoint`).
    pub tree: Option<TreeHead>,
}

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
    verify_file_with(
        path,
        Expected {
            head: expect_head,
            tree: None,
        },
    )
    .await
}

/// [`verify_file`] with every expectation, a checkpoint's tree head included.
pub async fn verify_file_with(path: &Path, expected: Expected) -> Verdict {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || verify_blocking_with(&path, expected))
        .await
        .unwrap_or_else(|e| Verdict::NotALedger(format!("verification stopped: {e}")))
}

/// The synchronous body of [`verify_file`].
pub fn verify_blocking(path: &Path, expect_head: Option<Head>) -> Verdict {
    verify_blocking_with(
        path,
        Expected {
            head: expect_head,
            tree: None,
        },
    )
}

/// The synchronous body of [`verify_file_with`].
pub fn verify_blocking_with(path: &Path, expected: Expected) -> Verdict {
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
    verify_connection(&conn, expected)
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

fn verify_connection(conn: &rusqlite::Connection, expected: Expected) -> Verdict {
    let structure = check_tables(conn)
        .and_then(|()| check_format(conn))
        .and_then(|()| check_meta(conn).map_err(structural))
        .and_then(|()| check_schema(conn).map_err(structural));
    if let Err(verdict) = structure {
        return verdict;
    }
    let keep = expected.tree.map_or(0, |t| t.size);
    let (head, records) = match check_chain(conn, keep) {
        Ok(walked) => walked,
        Err(verdict) => return verdict,
    };
    if let Err(reason) = check_triggers(conn) {
        return structural(reason);
    }
    if let Some(expected) = expected.head
        && let Err(verdict) = check_expected_head(conn, head, expected)
    {
        return verdict;
    }
    if let Some(tree) = expected.tree
        && let Err(verdict) = check_tree_head(&records, head, tree)
    {
        return verdict;
    }
    Verdict::Valid {
        entries: head.seq,
        head,
    }
}

/// A fault in the file's structure rather than in one entry.
fn structural(reason: String) -> Verdict {
    Verdict::Invalid { seq: None, reason }
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
        // Every ledger contains the empty head, and only with the zero hash.
        if expected.hash == ZERO_HASH {
            return Ok(());
        }
        return Err(structural(
            "an expected head at seq 0 must have the all-zero hash: this one names no ledger state"
                .into(),
        ));
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

/// Walks the chain in `seq` order, recomputing every hash, and refusing a
/// second outcome for a session (whatever the file's constraints say).
/// Returns the head and the first `keep` entry hashes (the tree's records).
fn check_chain(conn: &rusqlite::Connection, keep: u64) -> Result<(Head, Vec<[u8; 32]>), Verdict> {
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
    // Session ids by a 64-bit FNV-1a hash (cheap on a million rows); a hash
    // seen before is confirmed against the earlier row's text.
    let mut sessions: HashMap<u64, i64> = HashMap::new();
    let mut records = Vec::new();
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
        let session = text(row, 2).map_err(|e| invalid(expected, e))?;
        if let Some(first) = sessions.insert(fnv1a(session), expected)
            && session_at(conn, first).as_deref() == Some(session)
        {
            return Err(invalid(
                expected,
                format!(
                    "session {} already has an outcome at seq {first}: one outcome per session",
                    String::from_utf8_lossy(session)
                ),
            ));
        }
        if u64::try_from(expected).is_ok_and(|n| n <= keep) {
            records.push(head.hash);
        }
    }
    Ok((head, records))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The session id stored at `seq`, as bytes.
fn session_at(conn: &rusqlite::Connection, seq: i64) -> Option<Vec<u8>> {
    conn.query_row(
        "SELECT CAST(session_id AS BLOB) FROM ledger_entries WHERE seq = ?",
        [seq],
        |r| r.get(0),
    )
    .ok()
}

/// The checkpoint's root must be the Merkle root of the first `size` entries.
fn check_tree_head(records: &[[u8; 32]], head: Head, tree: TreeHead) -> Result<(), Verdict> {
    if u64::try_from(head.seq).unwrap_or(0) < tree.size {
        return Err(invalid(
            head.seq + 1,
            format!(
                "the checkpoint covers {} entries but the file holds only {}: its tail was cut off",
                tree.size, head.seq
            ),
        ));
    }
    let root = MerkleTree::from_records(records.iter())
        .root(tree.size)
        .map_err(|e| structural(format!("{e:#}")))?;
    if root.0 == tree.root {
        return Ok(());
    }
    Err(structural(format!(
        "the Merkle root of the first {} entries is not the checkpoint's: history was rewritten",
        tree.size
    )))
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

/// The append-only triggers must be there, exactly as peergate writes them:
/// a trigger whose body was changed (a `WHEN 0`, a `SELECT 1`) may no longer
/// abort, so anything but the original text is refused.
fn check_triggers(conn: &rusqlite::Connection) -> Result<(), String> {
    let expected = expected_schema()?;
    let found = schema_of(conn)?;
    for (table, op, name) in [
        ("ledger_entries", "UPDATE", "ledger_entries_no_update"),
        ("ledger_entries", "DELETE", "ledger_entries_no_delete"),
        ("ledger_meta", "UPDATE", "ledger_meta_no_update"),
        ("ledger_meta", "DELETE", "ledger_meta_no_delete"),
    ] {
        let key = ("trigger".to_string(), name.to_string());
        match found.get(&key) {
            None => {
                return Err(format!(
                    "the BEFORE {op} trigger on {table} is missing: the file is not append-only"
                ));
            }
            Some(sql) if Some(sql) != expected.get(&key) => {
                return Err(format!(
                    "the BEFORE {op} trigger on {table} ({name}) was changed: it may no longer abort, so the file is not append-only"
                ));
            }
            Some(_) => {}
        }
    }
    let extra: Vec<&str> = found
        .keys()
        .filter(|(kind, _)| kind == "trigger")
        .filter(|key| !expected.contains_key(*key))
        .map(|(_, name)| name.as_str())
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "the file has triggers peergate never writes: {}",
            extra.join(", ")
        ));
    }
    Ok(())
}

/// A schema as `(type, name) → normalised SQL` (comments and runs of
/// whitespace removed; `''` for the automatic indexes of UNIQUE constraints).
/// `sqlite_stat*` tables (left by `ANALYZE`) are not part of the format.
type Schema = HashMap<(String, String), String>;

fn schema_of(conn: &rusqlite::Connection) -> Result<Schema, String> {
    conn.prepare(
        "SELECT type, name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'",
    )
    .and_then(|mut st| {
        st.query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                normalise_sql(&r.get::<_, String>(2)?),
            ))
        })?
        .collect()
    })
    .map_err(|e| format!("cannot read the schema: {e}"))
}

/// The schema peergate writes, from `ledger_schema.sql` applied to an empty
/// in-memory database.
fn expected_schema() -> Result<Schema, String> {
    let conn = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
    conn.execute_batch(super::writer::SCHEMA)
        .map_err(|e| format!("ledger_schema.sql does not apply: {e}"))?;
    schema_of(&conn)
}

fn normalise_sql(sql: &str) -> String {
    sql.lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tables and the indexes of their UNIQUE constraints are exactly those
/// peergate writes: a table rebuilt without its constraints could hold two
/// outcomes for one session.
fn check_schema(conn: &rusqlite::Connection) -> Result<(), String> {
    let expected = expected_schema()?;
    let found = schema_of(conn)?;
    for ((kind, name), sql) in expected.iter().filter(|((kind, _), _)| kind != "trigger") {
        match found.get(&(kind.clone(), name.clone())) {
            None if kind == "index" => {
                return Err(format!(
                    "the index {name} of a UNIQUE constraint is missing: the table was rebuilt without its constraints"
                ));
            }
            None => return Err(format!("the {kind} {name} is missing")),
            Some(have) if have != sql => {
                return Err(format!(
                    "the {kind} {name} is not defined as peergate defines it (its columns or UNIQUE constraints changed)"
                ));
            }
            Some(_) => {}
        }
    }
    if let Some((kind, name)) = found
        .keys()
        .find(|key| key.0 != "trigger" && !expected.contains_key(*key))
    {
        return Err(format!(
            "the file has a {kind} peergate never writes: {name}"
        ));
    }
    Ok(())
}

/// `ledger_meta` holds exactly the rows peergate writes: the format, a
/// 32-hex-digit ledger id and an RFC 3339 creation time, all text.
fn check_meta(conn: &rusqlite::Connection) -> Result<(), String> {
    let rows: Vec<(String, Option<String>)> = conn
        .prepare("SELECT CAST(key AS TEXT), CASE typeof(value) WHEN 'text' THEN value END FROM ledger_meta ORDER BY key")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(|e| format!("cannot read ledger_meta: {e}"))?;
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    if keys != ["created_at", "format", "ledger_id"] {
        return Err(format!(
            "ledger_meta was changed: it holds the keys [{}], not exactly created_at, format and ledger_id",
            keys.join(", ")
        ));
    }
    for (key, value) in &rows {
        let Some(value) = value else {
            return Err(format!("ledger_meta was changed: {key} is not text"));
        };
        let ok = match key.as_str() {
            "ledger_id" => {
                value.len() == 32
                    && value
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            "created_at" => chrono::DateTime::parse_from_rfc3339(value).is_ok(),
            _ => true,
        };
        if !ok {
            return Err(format!(
                "ledger_meta was changed: `{value}` is not a valid {key}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::build::sample_entry;
    use crate::ledger::writer::ChainedRow;

    /// A chain that is intact but gives one session two outcomes is refused
    /// row by row, whatever the file's constraints.
    #[test]
    fn a_second_outcome_for_a_session_is_refused_at_its_seq() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let (tables, _) = super::super::writer::SCHEMA
            .split_once("-- @after-meta-rows")
            .unwrap();
        conn.execute_batch(&tables.replace("NOT NULL UNIQUE", "NOT NULL"))
            .unwrap();
        let mut head = Head::EMPTY;
        for seq in 1..=4 {
            let mut fields = sample_entry(seq);
            if seq == 4 {
                fields.session_id = sample_entry(2).session_id;
            }
            let row = ChainedRow::link(&mut head, fields);
            let f = &row.fields;
            conn.execute(
                "INSERT INTO ledger_entries VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
                rusqlite::params![
                    f.seq, f.entry_id, f.session_id, f.outcome, f.requester_id, f.requester_name,
                    f.requester_ip, f.requester_user_agent, f.reviewer_id, f.reviewer_name,
                    f.channel, f.code_confirmed, f.note, f.session_created_at, f.decided_at,
                    row.prev_hash, row.entry_hash
                ],
            )
            .unwrap();
        }
        match check_chain(&conn, 0) {
            Err(Verdict::Invalid {
                seq: Some(4),
                reason,
            }) => {
                assert!(reason.contains("seq 2"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check_schema(&conn).is_err());
    }
}
