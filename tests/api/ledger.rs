//! The ledger as a component: known answers, tamper detection, triggers,
//! concurrency, crashes, snapshots, and failing closed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use peergate::clock::SystemClock;
use peergate::ledger::build::{append_entries, sample_entry};
use peergate::ledger::chain::{EntryFields, ZERO_HASH};
use peergate::ledger::read::all_entries;
use peergate::ledger::{AppendError, Head, Ledger, Verdict, WriterOptions, verify_file};
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use crate::child::{peergate_command, run_cli};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../fixtures/ledger_vectors.json")).expect("fixture parses")
}

fn vector_entries() -> Vec<(EntryFields, String, String)> {
    vectors()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let fields: EntryFields = serde_json::from_value(e.clone()).expect("fields");
            (
                fields,
                e["prev_hash"].as_str().unwrap().to_string(),
                e["entry_hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn known_answer_vectors_reproduce_exactly() {
    let mut prev = ZERO_HASH;
    let entries = vector_entries();
    assert_eq!(entries.len(), 3);
    // The fixture covers non-ASCII text, a multi-line note, and an expired row
    // with empty reviewer, channel and note.
    assert!(entries.iter().any(|(f, _, _)| !f.requester_name.is_ascii()));
    assert!(entries.iter().any(|(f, _, _)| f.note.contains('\n')));
    assert!(
        entries
            .iter()
            .any(|(f, _, _)| f.outcome == "expired" && f.note.is_empty())
    );
    for (fields, prev_hash, entry_hash) in entries {
        assert_eq!(
            hex::encode(prev),
            prev_hash,
            "prev_hash of seq {}",
            fields.seq
        );
        let hash = fields.hash(&prev);
        assert_eq!(
            hex::encode(hash),
            entry_hash,
            "entry_hash of seq {}",
            fields.seq
        );
        prev = hash;
    }
    assert_eq!(
        hex::encode(prev),
        vectors()["head"]["entry_hash"].as_str().unwrap()
    );
}

/// Writes the fixture entries into a real ledger file.
async fn ledger_from_vectors(dir: &Path) -> (PathBuf, Head) {
    let path = dir.join("ledger.sqlite");
    let mut entries = vector_entries().into_iter().map(|(f, _, _)| f);
    let head = append_entries(&path, 3, |_| entries.next().expect("three entries"))
        .await
        .expect("build");
    (path, head)
}

#[tokio::test]
async fn verify_accepts_a_ledger_built_from_the_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, head) = ledger_from_vectors(dir.path()).await;
    let expected = vectors()["head"]["entry_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(head.hash_hex(), expected);
    assert_eq!(
        verify_file(&path, Some(head)).await,
        Verdict::Valid { entries: 3, head }
    );
    let (code, out, err) = run_cli(
        &[
            "ledger",
            "verify",
            path.to_str().unwrap(),
            "--expect-head",
            &format!("3:{expected}"),
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("3 entries") && out.contains(&expected),
        "{out}"
    );
}

/// Opens a ledger file with its triggers dropped, runs `sql`, and puts the
/// triggers back: what someone rewriting a downloaded copy would do.
async fn tamper(path: &Path, sql: &str) {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .unwrap();
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for name in [
        "ledger_entries_no_update",
        "ledger_entries_no_delete",
        "ledger_meta_no_update",
        "ledger_meta_no_delete",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP TRIGGER IF EXISTS {name}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    for trigger in triggers {
        sqlx::raw_sql(sqlx::AssertSqlSafe(trigger))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

async fn verify_cli(path: &Path, expect_head: Option<&str>) -> (i32, String) {
    let mut args = vec!["ledger", "verify", path.to_str().unwrap()];
    if let Some(h) = expect_head {
        args.extend(["--expect-head", h]);
    }
    let (code, out, err) = run_cli(&args, &[], None).await;
    (code, format!("{out}{err}"))
}

#[tokio::test]
async fn verify_catches_every_kind_of_tampering() {
    /// What was done, to which file, with which SQL; the expected head, exit
    /// code, and a word the verdict must contain.
    type Case<'a> = (&'a str, PathBuf, &'a str, Option<String>, i32, &'a str);
    let dir = tempfile::tempdir().unwrap();
    let fresh = |name: &str| dir.path().join(name);
    let mut cases: Vec<Case> = Vec::new();
    let mut heads = Vec::new();
    for name in [
        "changed",
        "deleted",
        "swapped",
        "forged",
        "cut",
        "meta",
        "triggerless",
    ] {
        let path = fresh(&format!("{name}.sqlite"));
        heads.push(append_entries(&path, 10, sample_entry).await.unwrap());
    }
    let head10 = heads[4].to_arg();
    cases.push((
        "a changed field",
        fresh("changed.sqlite"),
        "UPDATE ledger_entries SET note = 'nothing to see' WHERE seq = 4",
        None,
        1,
        "seq 4",
    ));
    cases.push((
        "a deleted middle row",
        fresh("deleted.sqlite"),
        "DELETE FROM ledger_entries WHERE seq = 5",
        None,
        1,
        "seq 5",
    ));
    cases.push(("two swapped rows", fresh("swapped.sqlite"),
        "UPDATE ledger_entries SET seq = -1 WHERE seq = 6; UPDATE ledger_entries SET seq = 6 WHERE seq = 7; UPDATE ledger_entries SET seq = 7 WHERE seq = -1;",
        None, 1, "seq 6"));
    // A forged prev_hash that is internally consistent with a recomputed
    // entry_hash is still caught: it no longer links to entry 2.
    cases.push(("a forged prev_hash", fresh("forged.sqlite"),
        "UPDATE ledger_entries SET prev_hash = '1111111111111111111111111111111111111111111111111111111111111111' WHERE seq = 3",
        None, 1, "seq 3"));
    cases.push((
        "a cut-off tail",
        fresh("cut.sqlite"),
        "DELETE FROM ledger_entries WHERE seq > 7",
        Some(head10),
        1,
        "seq 8",
    ));
    cases.push((
        "an unknown format",
        fresh("meta.sqlite"),
        "UPDATE ledger_meta SET value = 'something-else' WHERE key = 'format'",
        None,
        1,
        "format",
    ));
    cases.push((
        "missing triggers",
        fresh("triggerless.sqlite"),
        "SELECT 1",
        None,
        0,
        "valid",
    ));
    for (what, path, sql, expect, code, needle) in cases {
        tamper(&path, sql).await;
        let (got, out) = verify_cli(&path, expect.as_deref()).await;
        assert_eq!(got, code, "{what}: {out}");
        assert!(out.contains(needle), "{what}: `{needle}` not in {out}");
    }
    // Without --expect-head a cleanly cut tail still verifies: that is what
    // remembered heads are for.
    let (code, _) = verify_cli(&fresh("cut.sqlite"), None).await;
    assert_eq!(code, 0);

    // A file whose triggers are really gone is not append-only any more.
    let path = fresh("no-triggers.sqlite");
    append_entries(&path, 3, sample_entry).await.unwrap();
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    sqlx::raw_sql("DROP TRIGGER ledger_entries_no_delete")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (code, out) = verify_cli(&path, None).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("trigger"), "{out}");

    // Not ledgers at all: exit 2, no panic.
    let not_sqlite = fresh("notes.txt");
    std::fs::write(&not_sqlite, "just some text\n".repeat(100)).unwrap();
    let empty = fresh("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    let other_db = fresh("other.sqlite");
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&other_db)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql("CREATE TABLE t (x)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    for path in [not_sqlite, empty, other_db, fresh("missing.sqlite")] {
        let (code, out) = verify_cli(&path, None).await;
        assert_eq!(code, 2, "{}: {out}", path.display());
        assert!(out.contains("not a ledger"), "{out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    let (code, out) = verify_cli(&fresh("changed.sqlite"), Some("not-a-head")).await;
    assert_eq!(code, 2, "{out}");
}

#[tokio::test]
async fn triggers_refuse_update_and_delete_on_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    append_entries(&path, 3, sample_entry).await.unwrap();
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    for sql in [
        "UPDATE ledger_entries SET note = 'x' WHERE seq = 1",
        "DELETE FROM ledger_entries WHERE seq = 3",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_meta SET value = 'x' WHERE key = 'format'",
        "DELETE FROM ledger_meta",
    ] {
        let error = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 3);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_appends_get_one_reply_each_and_a_gapless_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _tasks) = Ledger::open(dir.path(), Arc::new(SystemClock))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..50 {
        let writer = ledger.writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..20 {
                receipts.push(
                    writer
                        .append(peergate::loadtest::synthetic_draft(t * 100 + i))
                        .await,
                );
            }
            receipts
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        for receipt in task.await.unwrap() {
            seqs.push(receipt.expect("every append is recorded").seq);
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=1000).collect::<Vec<i64>>(),
        "gapless, one reply per append"
    );
    let entries = all_entries(&ledger.reader).await.unwrap();
    assert_eq!(entries.len(), 1000);
    assert_eq!(ledger.writer.head().seq, 1000);
    match verify_file(&ledger.path, Some(ledger.writer.head())).await {
        Verdict::Valid { entries, .. } => assert_eq!(entries, 1000),
        other => panic!("{other:?}"),
    }
    // A second outcome for a session is refused, alone.
    let draft = peergate::loadtest::synthetic_draft(7);
    ledger.writer.append(draft.clone()).await.unwrap();
    let dup = ledger.writer.append(draft).await;
    assert!(matches!(dup, Err(AppendError::Duplicate(_))), "{dup:?}");
    assert_eq!(ledger.writer.head().seq, 1001);
}

#[tokio::test]
async fn a_killed_writer_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acks = dir.path().join("acks.log");
    for round in 0..4u64 {
        let mut child = peergate_command()
            .args([
                "ledger",
                "drill",
                data.to_str().unwrap(),
                "--acks",
                acks.to_str().unwrap(),
                "--max-seconds",
                "20",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Once the drill is writing (a busy machine may take a while to
        // start it), kill at a different moment each round, mid-batch most
        // likely.
        let started = std::time::Instant::now();
        let written = |path: &std::path::Path| std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        while !written(&acks) && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let wait = 300 + (round * 173 + rand_ms()) % 700;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();

        let path = data.join("ledger.sqlite");
        let verdict = verify_file(&path, None).await;
        let Verdict::Valid { entries, .. } = verdict else {
            panic!("round {round}: {verdict:?}")
        };
        let log = std::fs::read_to_string(&acks).unwrap_or_default();
        // Only whole lines count: the kill may cut the last one short.
        let complete = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
        let acked: Vec<(i64, String, String)> = complete
            .lines()
            .map(|l| {
                let mut parts = l.split(' ');
                (
                    parts.next().unwrap().parse().unwrap(),
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            !acked.is_empty(),
            "round {round}: the drill acknowledged nothing in {wait} ms"
        );
        // Reopening recovers the head, and every acknowledged entry is there.
        let (ledger, tasks) = Ledger::open(&data, Arc::new(SystemClock)).await.unwrap();
        assert_eq!(ledger.writer.head().seq, entries);
        let stored = all_entries(&ledger.reader).await.unwrap();
        for (seq, hash, session) in &acked {
            let entry = &stored[usize::try_from(*seq - 1).unwrap()];
            assert_eq!(&entry.entry_hash, hash, "round {round}, seq {seq}");
            assert_eq!(&entry.fields.session_id, session);
        }
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&ledger.reader)
            .await
            .unwrap();
        assert_eq!(check, "ok");
        ledger.reader.close().await;
        tasks.writer.abort();
        tasks.checkpointer.abort();
        drop(ledger);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rand_ms() -> u64 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).unwrap();
    u64::from(u16::from_le_bytes(b))
}

#[tokio::test]
async fn snapshots_are_cached_by_head_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _tasks) = Ledger::open(dir.path(), Arc::new(SystemClock))
        .await
        .unwrap();
    for n in 0..25 {
        ledger
            .writer
            .append(peergate::loadtest::synthetic_draft(n))
            .await
            .unwrap();
    }
    let a = ledger.snapshots.current().await.unwrap();
    let bytes_a = std::fs::read(&a.path).unwrap();
    let b = ledger.snapshots.current().await.unwrap();
    assert_eq!(
        std::fs::read(&b.path).unwrap(),
        bytes_a,
        "same head, same bytes"
    );
    assert_eq!((a.filename.as_str(), a.head.seq), ("ledger-25.sqlite", 25));
    assert_eq!(usize::try_from(a.bytes).unwrap(), bytes_a.len());
    assert_eq!(a.blake3, blake3::hash(&bytes_a).to_hex().to_string());
    assert_eq!(
        a.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes_a))
    );
    assert_eq!(
        verify_file(&a.path, Some(ledger.writer.head())).await,
        Verdict::Valid {
            entries: 25,
            head: a.head
        }
    );

    ledger
        .writer
        .append(peergate::loadtest::synthetic_draft(99))
        .await
        .unwrap();
    let c = ledger.snapshots.current().await.unwrap();
    assert_eq!(c.filename, "ledger-26.sqlite");
    assert_ne!(c.sha256, a.sha256);
    assert!(matches!(
        verify_file(&c.path, Some(c.head)).await,
        Verdict::Valid { entries: 26, .. }
    ));
    // The snapshot is a standalone file: no -wal beside it.
    assert!(!c.path.with_extension("sqlite-wal").exists());
}

#[tokio::test]
async fn a_blocked_ledger_fails_closed_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriterOptions {
        queue_capacity: 2,
        queue_wait: Duration::from_millis(200),
        ..WriterOptions::default()
    };
    let (ledger, _tasks) = Ledger::open_with(dir.path(), Arc::new(SystemClock), options)
        .await
        .unwrap();
    ledger
        .writer
        .append(peergate::loadtest::synthetic_draft(0))
        .await
        .unwrap();

    // Another process holds the write lock longer than the writer will wait.
    let mut blocker =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&ledger.path))
            .await
            .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();

    let mut pending = Vec::new();
    for n in 1..=8 {
        let writer = ledger.writer.clone();
        pending.push(tokio::spawn(async move {
            writer.append(peergate::loadtest::synthetic_draft(n)).await
        }));
    }
    let mut overloaded = 0;
    let mut failed = 0;
    for p in pending {
        match p.await.unwrap() {
            Err(AppendError::Unavailable(reason)) if reason.contains("overloaded") => {
                overloaded += 1;
            }
            Err(AppendError::Unavailable(_)) => failed += 1,
            other => panic!("nothing may be recorded while the ledger is blocked: {other:?}"),
        }
    }
    assert!(
        overloaded > 0,
        "a full queue says so instead of waiting forever"
    );
    assert!(failed > 0, "a failed commit fails its callers");
    assert_eq!(ledger.writer.head().seq, 1);

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    blocker.close().await.unwrap();
    let receipt = ledger
        .writer
        .append(peergate::loadtest::synthetic_draft(100))
        .await
        .unwrap();
    assert_eq!(
        receipt.seq, 2,
        "the writer carried on from the head in the file"
    );
    assert!(matches!(
        verify_file(&ledger.path, None).await,
        Verdict::Valid { entries: 2, .. }
    ));
}
