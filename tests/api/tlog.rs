//! The ledger as a transparency log (DESIGN.md §11) on a real server: signed
//! checkpoints checked against the downloaded snapshot, tiles that rebuild
//! the root, consistency and inclusion proofs, `verify --checkpoint`, the
//! new `verify` refusals, the access rule, and a real `peergate witness`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use peergate::ledger::build::{append_entries, sample_entry};
use peergate::ledger::chain::{EntryFields, Head};
use peergate::transparency::WitnessKey;
use sha2::{Digest, Sha256};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, Tile, TileHashReader, TileReader, tlog};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::child::{peergate_command, run_cli};
use crate::helpers::*;

/// Long enough for `transparency.read_token`'s rule.
const TOKEN: &str = "read-token-for-auditors-0123";

/// A fast signer, so tests do not wait a second for each checkpoint.
fn fast(extra: &str) -> String {
    format!("[transparency]\ncheckpoint_interval = \"10ms\"\nread_token = \"{TOKEN}\"\n{extra}")
}

/// An independent RFC 6962 root over leaf hashes, from the definition.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            Sha256::new()
                .chain_update([1u8])
                .chain_update(mth(&leaves[..k]))
                .chain_update(mth(&leaves[k..]))
                .finalize()
                .into()
        }
    }
}

fn leaf(record: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(record)
        .finalize()
        .into()
}

/// GET with the read token; returns status, headers and body.
async fn read_log(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

async fn log_text(app: &TestApp, path: &str) -> String {
    let (status, _, body) = read_log(app, path).await;
    assert_eq!(status, 200, "{path}");
    String::from_utf8(body).unwrap()
}

/// Checks a checkpoint note with the log's key; returns (size, root).
fn open_checkpoint(note: &str, vkey: &str) -> (u64, Hash) {
    let parsed = Note::from_bytes(note.as_bytes()).expect("a signed note");
    let verifier = StandardVerifier::new(vkey).expect("a vkey");
    parsed
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .expect("signed by the log");
    let checkpoint = Checkpoint::from_bytes(parsed.text()).expect("a checkpoint");
    (checkpoint.size(), *checkpoint.hash())
}

/// Polls `/ledger/checkpoint` until `ready` holds (the signer runs every 10 ms).
async fn checkpoint_when(app: &TestApp, ready: impl Fn(&str) -> bool) -> String {
    for _ in 0..500 {
        let note = log_text(app, "/ledger/checkpoint").await;
        if ready(&note) {
            return note;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the checkpoint never got there: {}",
        log_text(app, "/ledger/checkpoint").await
    );
}

fn size_of(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

/// Appends through the writer, as decisions do.
async fn decide(app: &TestApp, from: usize, n: usize) {
    for i in from..from + n {
        app.state
            .ledger
            .writer
            .append(peergate::loadtest::synthetic_draft(i))
            .await
            .unwrap();
    }
}

/// Tiles fetched over HTTP, for `tlog_tiles`' authenticated hash reader.
struct FetchedTiles(HashMap<Tile, Vec<u8>>);

impl TileReader for FetchedTiles {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| self.0.get(t).cloned().ok_or(tlog_tiles::Error::InvalidTile))
            .collect()
    }
    fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
}

/// Every hash tile of the tree of `size`, fetched from the server.
async fn fetch_tiles(app: &TestApp, size: u64) -> FetchedTiles {
    let mut tiles = HashMap::new();
    for tile in Tile::new_tiles(8, 0, size) {
        let path = tile.path().replacen("tile/8/", "/ledger/tile/", 1);
        let (status, _, body) = read_log(app, &path).await;
        assert_eq!(status, 200, "{path}");
        tiles.insert(tile, body);
    }
    FetchedTiles(tiles)
}

/// The entry hashes of a ledger file, in seq order.
fn entry_hashes(path: &Path) -> Vec<[u8; 32]> {
    peergate::ledger::tree::read_records(path).unwrap()
}

async fn admin_of(app: &TestApp) -> Browser {
    app.add_user("ada", "Ada Admin", ADMIN).await;
    let ada = app.client();
    app.sign_in(&ada, "ada", "authenticated").await;
    ada
}

/// Downloads the snapshot and its checkpoint into `dir`.
async fn download(app: &TestApp, ada: &Browser, dir: &Path) -> (PathBuf, PathBuf, i64) {
    let r = ada
        .get(app.url("/admin/exports/ledger.sqlite"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let head = Head::parse_arg(r.headers()["x-ledger-head"].to_str().unwrap()).unwrap();
    let file = dir.join(format!("ledger-{}.sqlite", head.seq));
    std::fs::write(&file, r.bytes().await.unwrap()).unwrap();
    let r = ada
        .get(app.url("/admin/exports/ledger.sqlite.checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let checkpoint = dir.join(format!("ledger-{}.sqlite.checkpoint", head.seq));
    std::fs::write(&checkpoint, r.bytes().await.unwrap()).unwrap();
    (file, checkpoint, head.seq)
}

#[tokio::test]
async fn checkpoints_match_the_download_and_the_tiles_rebuild_and_prove_it() {
    let dir = tempfile::tempdir().unwrap();
    // 600 entries: two full level-0 tiles, a partial one, a partial level-1 tile.
    append_entries(&dir.path().join("ledger.sqlite"), 600, sample_entry)
        .await
        .unwrap();
    let app = spawn_app_in(dir.path(), &fast(""), None).await;
    let ada = admin_of(&app).await;
    let vkey = log_text(&app, "/ledger/key").await.trim().to_string();

    // The checkpoint's signature verifies, and it covers the whole ledger.
    let note = log_text(&app, "/ledger/checkpoint").await;
    let (size, root) = open_checkpoint(&note, &vkey);
    assert_eq!(size, 600);

    // Its root is the root of the downloaded snapshot's entry hashes, and the
    // export's checkpoint has the snapshot's seq.
    let files = tempfile::tempdir().unwrap();
    let (snapshot, snapshot_checkpoint, seq) = download(&app, &ada, files.path()).await;
    let records = entry_hashes(&snapshot);
    assert_eq!(records.len(), 600);
    let leaves: Vec<[u8; 32]> = records.iter().map(leaf).collect();
    assert_eq!(mth(&leaves), root.0);
    let exported = std::fs::read_to_string(&snapshot_checkpoint).unwrap();
    assert_eq!(
        open_checkpoint(&exported, &vkey),
        (u64::try_from(seq).unwrap(), root)
    );

    // The tiles alone rebuild the root; full tiles are immutable, partial ones not.
    let mut from_tiles = Vec::new();
    for path in ["0/000", "0/001", "0/002.p/88"] {
        let (status, headers, body) = read_log(&app, &format!("/ledger/tile/{path}")).await;
        assert_eq!(status, 200, "{path}");
        let immutable = headers[reqwest::header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable");
        assert_eq!(immutable, !path.contains(".p/"), "{path}");
        assert_eq!(
            headers[reqwest::header::CONTENT_TYPE],
            "application/octet-stream"
        );
        from_tiles.extend(body.chunks(32).map(|c| <[u8; 32]>::try_from(c).unwrap()));
    }
    assert_eq!(mth(&from_tiles), root.0);
    let level1 = read_log(&app, "/ledger/tile/1/000.p/2").await.2;
    assert_eq!(&level1[..32], &mth(&from_tiles[..256]));
    assert_eq!(&level1[32..], &mth(&from_tiles[256..512]));
    // Entry bundles hold the records: uint16 length 32, then the entry hash.
    let bundle = read_log(&app, "/ledger/tile/entries/002.p/88").await.2;
    assert_eq!(bundle.len(), 88 * 34);
    for (i, record) in bundle.chunks(34).enumerate() {
        assert_eq!(&record[..2], &[0, 32]);
        assert_eq!(record[2..], records[512 + i]);
    }
    assert_eq!(read_log(&app, "/ledger/tile/0/002.p/89").await.0, 404);
    assert_eq!(read_log(&app, "/ledger/tile/0/002.p/0").await.0, 404);
    assert_eq!(read_log(&app, "/ledger/tile/99/000").await.0, 404);

    // 50 decisions later: a consistency proof built from the tiles alone
    // verifies between the two checkpoints, and the old partial tile stays.
    decide(&app, 0, 50).await;
    let later = checkpoint_when(&app, |n| size_of(n) == 650).await;
    let (new_size, new_root) = open_checkpoint(&later, &vkey);
    let tiles = fetch_tiles(&app, new_size).await;
    let reader = TileHashReader::new(new_size, new_root, &tiles);
    let proof = tlog::prove_tree(new_size, size, &reader).unwrap();
    tlog::check_tree(&proof, new_size, new_root, size, root).unwrap();
    assert!(tlog::check_tree(&proof, new_size, new_root, size, new_root).is_err());
    let old_partial = read_log(&app, "/ledger/tile/0/002.p/88").await;
    assert_eq!(old_partial.0, 200);
    assert_eq!(
        old_partial.2,
        read_log(&app, "/ledger/tile/0/002.p/138").await.2[..88 * 32]
    );

    // `ledger prove` prints an inclusion proof that verifies.
    let snapshot_arg = snapshot.to_str().unwrap();
    let (code, out, err) = run_cli(
        &[
            "ledger",
            "prove",
            snapshot_arg,
            "--seq",
            "7",
            "--size",
            "600",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let proof: Vec<Hash> = out.lines().map(|l| Hash::parse_hash(l).unwrap()).collect();
    tlog::check_record(&proof, 600, root, 6, tlog::record_hash(&records[6])).unwrap();
    assert!(tlog::check_record(&proof, 600, root, 7, tlog::record_hash(&records[6])).is_err());

    // The admin page shows the checkpoint, the key and how to check both.
    let page = ada
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&vkey), "the vkey is on /admin");
    assert!(page.contains("--checkpoint"), "the command is on /admin");
    assert!(
        page.contains(later.lines().nth(2).unwrap()),
        "the root is on /admin"
    );
    app.stop().await;
}

/// Runs `ledger verify FILE --checkpoint CKPT --key VKEY`.
async fn verify_with(file: &Path, checkpoint: &Path, vkey: &str) -> (i32, String) {
    let (code, out, err) = run_cli(
        &[
            "ledger",
            "verify",
            file.to_str().unwrap(),
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--key",
            vkey,
        ],
        &[],
        None,
    )
    .await;
    (code, format!("{out}{err}"))
}

/// Runs `sql` on a ledger file with its triggers out of the way.
fn rewrite(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let triggers: Vec<String> = conn
        .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for name in [
        "ledger_entries_no_update",
        "ledger_entries_no_delete",
        "ledger_meta_no_update",
        "ledger_meta_no_delete",
    ] {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {name}"))
            .unwrap();
    }
    conn.execute_batch(sql).unwrap();
    for trigger in triggers {
        conn.execute_batch(&trigger).unwrap();
    }
}

#[tokio::test]
async fn verify_against_a_checkpoint_catches_another_key_and_a_cut_copy() {
    let app = spawn_app_with(&fast("")).await;
    let ada = admin_of(&app).await;
    decide(&app, 0, 20).await;
    checkpoint_when(&app, |n| size_of(n) == 20).await;
    let vkey = log_text(&app, "/ledger/key").await.trim().to_string();
    let files = tempfile::tempdir().unwrap();
    let (snapshot, checkpoint, _) = download(&app, &ada, files.path()).await;

    let (code, out) = verify_with(&snapshot, &checkpoint, &vkey).await;
    assert_eq!(code, 0, "{out}");

    // The same checkpoint text signed by another key, and the other key's vkey.
    let text = Note::from_bytes(&std::fs::read(&checkpoint).unwrap())
        .unwrap()
        .text()
        .to_vec();
    let origin = std::str::from_utf8(&text)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let (skey, other_vkey) = signed_note::generate_key(&mut rand_core::OsRng, &origin);
    let mut forged = Note::new(&text, &[]).unwrap();
    forged
        .add_sigs(&[&signed_note::StandardSigner::new(&skey).unwrap()])
        .unwrap();
    let forged_path = files.path().join("other-key.checkpoint");
    std::fs::write(&forged_path, forged.to_bytes()).unwrap();
    let (code, out) = verify_with(&snapshot, &forged_path, &vkey).await;
    assert_eq!(code, 1, "another key's checkpoint: {out}");
    let (code, out) = verify_with(&snapshot, &checkpoint, &other_vkey).await;
    assert_eq!(code, 1, "the real checkpoint under another key: {out}");

    // A copy with its last entries cut off: still a valid chain, but not the
    // ledger the checkpoint signed.
    let cut = files.path().join("cut.sqlite");
    std::fs::copy(&snapshot, &cut).unwrap();
    rewrite(&cut, "DELETE FROM ledger_entries WHERE seq > 17");
    let (code, out, _) = run_cli(&["ledger", "verify", cut.to_str().unwrap()], &[], None).await;
    assert_eq!(code, 0, "without a checkpoint a clean cut verifies: {out}");
    let (code, out) = verify_with(&cut, &checkpoint, &vkey).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut off"), "{out}");

    // A copy with one entry rewritten and the whole chain recomputed verifies
    // on its own; against the checkpoint, its root gives it away.
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&snapshot)
            .read_only(true),
    )
    .await
    .unwrap();
    let mut entries: Vec<EntryFields> = peergate::ledger::read::all_entries(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.fields)
        .collect();
    pool.close().await;
    entries[2].note = "Nothing to see.".into();
    let rewritten = files.path().join("rewritten.sqlite");
    append_entries(&rewritten, 20, |seq| {
        entries[usize::try_from(seq - 1).unwrap()].clone()
    })
    .await
    .unwrap();
    let (code, out, _) = run_cli(
        &["ledger", "verify", rewritten.to_str().unwrap()],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 0, "a recomputed chain verifies alone: {out}");
    let (code, out) = verify_with(&rewritten, &checkpoint, &vkey).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rewritten"), "{out}");
    app.stop().await;
}

/// The schema text with the UNIQUE constraints taken out.
const SCHEMA: &str = include_str!("../../ledger_schema.sql");

/// A ledger file built by hand without the UNIQUE constraints, whose chain
/// is intact but which holds two outcomes for one session.
fn two_outcomes_for_one_session(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let (tables, triggers) = SCHEMA.split_once("-- @after-meta-rows").unwrap();
    conn.execute_batch(&tables.replace("NOT NULL UNIQUE", "NOT NULL"))
        .unwrap();
    for (k, v) in [
        ("format", "peergate-ledger-v1"),
        ("ledger_id", "0123456789abcdef0123456789abcdef"),
        ("created_at", "2026-11-28T03:20:38.123Z"),
    ] {
        conn.execute("INSERT INTO ledger_meta VALUES (?1, ?2)", [k, v])
            .unwrap();
    }
    let mut head = Head::EMPTY;
    let first = sample_entry(1);
    for seq in 1..=3 {
        let mut fields: EntryFields = sample_entry(seq);
        if seq == 3 {
            fields.session_id.clone_from(&first.session_id);
        }
        let row = peergate::ledger::writer::ChainedRow::link(&mut head, fields);
        let f = &row.fields;
        conn.execute(
            "INSERT INTO ledger_entries VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
            rusqlite::params![
                f.seq, f.entry_id, f.session_id, f.outcome, f.requester_id, f.requester_name,
                f.requester_ip, f.requester_user_agent, f.reviewer_id, f.reviewer_name, f.channel,
                f.code_confirmed, f.note, f.session_created_at, f.decided_at, row.prev_hash,
                row.entry_hash
            ],
        )
        .unwrap();
    }
    conn.execute_batch(triggers).unwrap();
}

#[tokio::test]
async fn verify_refuses_the_four_gaps_found_in_review() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = |name: &str| dir.path().join(name);
    for name in ["when0.sqlite", "meta.sqlite", "meta-id.sqlite", "ok.sqlite"] {
        append_entries(&fresh(name), 5, sample_entry).await.unwrap();
    }
    // A trigger whose body no longer aborts.
    let conn = rusqlite::Connection::open(fresh("when0.sqlite")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER ledger_entries_no_delete;
         CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries WHEN 0
         BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: DELETE refused'); END;",
    )
    .unwrap();
    drop(conn);
    // A changed ledger_meta: a row added (the triggers allow INSERT), and
    // another file with the ledger id rewritten.
    let conn = rusqlite::Connection::open(fresh("meta.sqlite")).unwrap();
    conn.execute_batch("INSERT INTO ledger_meta VALUES ('owner', 'someone else')")
        .unwrap();
    drop(conn);
    rewrite(
        &fresh("meta-id.sqlite"),
        "UPDATE ledger_meta SET value = 'not-an-id' WHERE key = 'ledger_id'",
    );
    // Rebuilt without the UNIQUE constraints, two outcomes for one session.
    two_outcomes_for_one_session(&fresh("dup.sqlite"));

    for (name, needle) in [
        ("when0.sqlite", "trigger"),
        ("meta.sqlite", "ledger_meta"),
        ("meta-id.sqlite", "ledger_meta"),
        ("dup.sqlite", "UNIQUE"),
    ] {
        let (code, out, err) = run_cli(
            &["ledger", "verify", fresh(name).to_str().unwrap()],
            &[],
            None,
        )
        .await;
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(err.contains(needle), "{name}: `{needle}` not in {err}");
    }
    // An expected head at seq 0 names the empty ledger, whose hash is zeros.
    let ok = fresh("ok.sqlite");
    let ok = ok.to_str().unwrap();
    let nonzero = format!("0:{}", "1".repeat(64));
    let (code, _, err) = run_cli(
        &["ledger", "verify", ok, "--expect-head", &nonzero],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    let zero = format!("0:{}", "0".repeat(64));
    let (code, out, err) =
        run_cli(&["ledger", "verify", ok, "--expect-head", &zero], &[], None).await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn the_log_is_readable_by_admins_the_token_or_everyone_when_public() {
    let app = spawn_app_with(&fast("")).await;
    app.add_user("uma", "Uma User", EXEMPT_REVIEWER).await;
    let uma = app.client();
    app.sign_in(&uma, "uma", "authenticated").await;
    let ada = admin_of(&app).await;
    let anonymous = reqwest::Client::new();
    for path in [
        "/ledger/checkpoint",
        "/ledger/key",
        "/ledger/tile/entries/000.p/1",
    ] {
        let status = |r: reqwest::Response| r.status().as_u16();
        assert_eq!(
            status(anonymous.get(app.url(path)).send().await.unwrap()),
            401,
            "{path}"
        );
        let wrong = anonymous
            .get(app.url(path))
            .bearer_auth("not-the-token-at-all")
            .send();
        assert_eq!(status(wrong.await.unwrap()), 401, "{path}");
        assert_eq!(
            status(uma.get(app.url(path)).send().await.unwrap()),
            403,
            "{path}"
        );
    }
    for path in ["/ledger/checkpoint", "/ledger/key"] {
        assert_eq!(read_log(&app, path).await.0, 200, "{path}");
        assert_eq!(
            ada.get(app.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    app.stop().await;

    let open = spawn_app_with("[transparency]\npublic = true").await;
    for path in ["/ledger/checkpoint", "/ledger/key"] {
        let r = reqwest::get(open.url(path)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }
    open.stop().await;
}

/// A `peergate witness` child: its base URL, vkey, and collected stderr.
struct WitnessProcess {
    child: tokio::process::Child,
    base: String,
    vkey: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

async fn spawn_witness(
    state: &Path,
    key_file: &Path,
    log_vkey: &str,
    bind: &str,
) -> WitnessProcess {
    let mut command = peergate_command();
    command
        .args(["witness", "--state", state.to_str().unwrap(), "--key-file"])
        .arg(key_file)
        .args([
            "--log",
            log_vkey,
            "--bind",
            bind,
            "--name",
            "witness.test/w1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn the witness");
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = stderr.clone();
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err_lines.next_line().await {
            let mut collected = sink.lock().unwrap();
            collected.push_str(&line);
            collected.push('\n');
        }
    });
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut vkey, mut base) = (String::new(), String::new());
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = out.next_line().await {
            if let Some(v) = line.strip_prefix("peergate witness vkey ") {
                vkey = v.trim().to_string();
            }
            if let Some(u) = line.strip_prefix("peergate witness listening on ") {
                base = u.trim().to_string();
                break;
            }
        }
    })
    .await
    .expect("the witness starts");
    assert!(
        !base.is_empty(),
        "witness stderr: {}",
        stderr.lock().unwrap()
    );
    WitnessProcess {
        child,
        base,
        vkey,
        stderr,
    }
}

/// Cosignature lines on a note that verify with the witness's key.
fn witness_signed(note: &str, witness_vkey: &str) -> bool {
    let Ok(parsed) = Note::from_bytes(note.as_bytes()) else {
        return false;
    };
    let key = WitnessKey::parse(witness_vkey).unwrap();
    parsed
        .verify(&VerifierList::new(vec![Box::new(key)]))
        .is_ok_and(|(good, _)| good.len() == 1)
}

async fn post_to_witness(witness: &WitnessProcess, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/add-checkpoint", witness.base))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_real_witness_cosigns_refuses_a_forged_history_and_forgets_nothing() {
    const ORIGIN: &str = "peergate.test/witnessed-log";
    let dir = tempfile::tempdir().unwrap();
    let (real_dir, forged_dir) = (dir.path().join("real"), dir.path().join("forged"));
    let (state, witness_key) = (dir.path().join("witness"), dir.path().join("witness.key"));
    // The log's key is made first, so the witness can be told of it.
    let (skey, log_vkey) = signed_note::generate_key(&mut rand_core::OsRng, ORIGIN);
    for d in [&real_dir, &forged_dir] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("transparency.key"), format!("{skey}\n")).unwrap();
    }
    append_entries(&real_dir.join("ledger.sqlite"), 5, sample_entry)
        .await
        .unwrap();
    let witness = spawn_witness(&state, &witness_key, &log_vkey, "127.0.0.1:0").await;
    let config = fast(&format!(
        "origin = \"{ORIGIN}\"\n[[transparency.witness]]\nurl = \"{}\"\nvkey = \"{}\"\n",
        witness.base, witness.vkey
    ));

    // The server pushes; the witness's cosignature shows up on /ledger/checkpoint.
    let app = spawn_app_in(&real_dir, &config, None).await;
    assert_eq!(log_text(&app, "/ledger/key").await.trim(), log_vkey);
    let cosigned = checkpoint_when(&app, |n| witness_signed(n, &witness.vkey)).await;
    assert_eq!(size_of(&cosigned), 5);
    decide(&app, 0, 3).await;
    let cosigned = checkpoint_when(&app, |n| {
        size_of(n) == 8 && witness_signed(n, &witness.vkey)
    })
    .await;
    assert_eq!(open_checkpoint(&cosigned, &log_vkey).0, 8);

    // A forged history under the same key: the same entries with one note
    // changed (rechained, so the file verifies on its own), and more after.
    let entries = peergate::ledger::read::all_entries(&app.state.ledger.reader)
        .await
        .unwrap();
    let mut forged: Vec<EntryFields> = entries.into_iter().map(|e| e.fields).collect();
    forged[1].note = "Nothing happened here.".into();
    append_entries(&forged_dir.join("ledger.sqlite"), 12, |seq| {
        forged
            .get(usize::try_from(seq - 1).unwrap())
            .cloned()
            .unwrap_or_else(|| sample_entry(seq))
    })
    .await
    .unwrap();
    let fork = spawn_app_in(&forged_dir, &config, None).await;
    let fork_note = log_text(&fork, "/ledger/checkpoint").await;
    assert_eq!(
        open_checkpoint(&fork_note, &log_vkey).0,
        12,
        "validly signed by the log's key"
    );
    // What the forged server sends: old 8 with a proof from its own tree.
    let proof = fork
        .state
        .transparency
        .tree()
        .read(|t| t.prove_tree(12, 8))
        .unwrap();
    let mut body = String::from("old 8\n");
    for hash in &proof {
        body.push_str(&BASE64.encode(hash.0));
        body.push('\n');
    }
    body.push('\n');
    let (status, answer) =
        post_to_witness(&witness, [body.as_bytes(), fork_note.as_bytes()].concat()).await;
    assert_eq!(status, 422, "{answer}");
    // Its own pusher is refused too, and the evidence is kept on disk.
    let evidence = state.join("evidence");
    for _ in 0..200 {
        if evidence.is_dir() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept: Vec<PathBuf> = std::fs::read_dir(&evidence)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!kept.is_empty());
    for case in &kept {
        let held = std::fs::read_to_string(case.join("cosigned.checkpoint")).unwrap();
        let submitted = std::fs::read_to_string(case.join("submitted.checkpoint")).unwrap();
        assert_eq!(open_checkpoint(&held, &log_vkey).0, 8);
        assert_eq!(open_checkpoint(&submitted, &log_vkey).0, 12);
    }
    assert!(
        witness.stderr.lock().unwrap().contains("FORK"),
        "logged loudly"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!witness_signed(
        &log_text(&fork, "/ledger/checkpoint").await,
        &witness.vkey
    ));
    fork.stop().await;

    // The witness restarts on the same port: it kept its state (a stale old
    // size gets 409 with the size it holds) and keeps cosigning the real log.
    let port = witness.base.rsplit(':').next().unwrap().to_string();
    let mut old = witness;
    old.child.kill().await.unwrap();
    let witness = spawn_witness(
        &state,
        &witness_key,
        &log_vkey,
        &format!("127.0.0.1:{port}"),
    )
    .await;
    assert_eq!(witness.vkey, old.vkey, "the same key");
    let from_zero = format!("old 0\n\n{cosigned}");
    let (status, answer) = post_to_witness(&witness, from_zero.into_bytes()).await;
    assert_eq!((status, answer.trim()), (409, "8"));
    decide(&app, 10, 2).await;
    let after = checkpoint_when(&app, |n| {
        size_of(n) == 10 && witness_signed(n, &witness.vkey)
    })
    .await;
    assert_eq!(open_checkpoint(&after, &log_vkey).0, 10);

    // The server restarts: same key, same checkpoint, cosigned again.
    app.stop().await;
    let app = spawn_app_in(&real_dir, &config, None).await;
    assert_eq!(log_text(&app, "/ledger/key").await.trim(), log_vkey);
    let again = checkpoint_when(&app, |n| witness_signed(n, &witness.vkey)).await;
    assert_eq!(
        open_checkpoint(&again, &log_vkey),
        open_checkpoint(&after, &log_vkey)
    );
    app.stop().await;
}
