//! The command-line side of the log (DESIGN.md §8, §11): reading a signed
//! checkpoint against a verifier key for `ledger verify --checkpoint`,
//! `ledger prove`, and `ledger key`. Nothing here needs a running server.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use signed_note::{Note, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::Checkpoint;

use super::{LogKey, base64_hash, load_or_create_key};
use crate::config::Settings;
use crate::ledger::tree::{MerkleTree, read_records};
use crate::ledger::{TreeHead, Verdict, verify_file};

/// Why a checkpoint was not accepted, with the exit code it earns.
#[derive(Debug)]
pub struct Refused {
    /// 1: the checkpoint does not hold (another key, another log); 2: the
    /// arguments cannot be read.
    pub exit: u8,
    pub message: String,
}

fn refused(exit: u8, message: impl Into<String>) -> Refused {
    Refused {
        exit,
        message: message.into(),
    }
}

/// Reads the signed checkpoint at `path`, checks its signature with `vkey`
/// (the verifier key string) and returns the tree head it signs.
pub fn read_checkpoint(path: &Path, vkey: &str) -> Result<TreeHead, Refused> {
    let verifier = StandardVerifier::new(vkey.trim())
        .map_err(|e| refused(2, format!("--key: not a verifier key ({e})")))?;
    let bytes = std::fs::read(path).map_err(|e| {
        refused(
            2,
            format!("--checkpoint: cannot read {}: {e}", path.display()),
        )
    })?;
    let note = Note::from_bytes(&bytes)
        .map_err(|e| refused(2, format!("--checkpoint: not a signed note ({e})")))?;
    let checkpoint = Checkpoint::from_bytes(note.text())
        .map_err(|e| refused(2, format!("--checkpoint: not a checkpoint ({e})")))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier.clone())]))
        .map_err(|e| refused(1, format!("the checkpoint is not signed by this key ({e})")))?;
    if checkpoint.origin() != verifier.name() {
        return Err(refused(
            1,
            format!(
                "the checkpoint is of the log `{}`, the key of `{}`",
                checkpoint.origin(),
                verifier.name()
            ),
        ));
    }
    Ok(TreeHead {
        size: checkpoint.size(),
        root: checkpoint.hash().0,
    })
}

/// `ledger prove FILE --seq S --size N`: the inclusion proof of entry `seq`
/// in the tree of the first `size` entries, one base64 hash a line. The file
/// is verified first: a proof from a broken ledger proves nothing.
pub async fn prove(file: &Path, seq: u64, size: u64) -> anyhow::Result<ExitCode> {
    if seq == 0 || seq > size {
        eprintln!("--seq must be between 1 and --size ({size})");
        return Ok(ExitCode::from(2));
    }
    let verdict = verify_file(file, None).await;
    let Verdict::Valid { entries, .. } = &verdict else {
        eprintln!("{}: {}", file.display(), verdict.summary());
        return Ok(ExitCode::from(verdict.exit_code()));
    };
    let entries = u64::try_from(*entries).unwrap_or(0);
    if entries < size {
        eprintln!(
            "{}: holds {entries} entries, fewer than --size {size}",
            file.display()
        );
        return Ok(ExitCode::from(1));
    }
    let path = file.to_path_buf();
    let (proof, root, record) = tokio::task::spawn_blocking(move || {
        let records = read_records(&path)?;
        let prefix = usize::try_from(size).context("--size is too large")?;
        let tree = MerkleTree::from_records(records[..prefix].iter());
        let index = usize::try_from(seq - 1).context("--seq is too large")?;
        anyhow::Ok((
            tree.prove_record(size, seq - 1)?,
            tree.root(size)?,
            records[index],
        ))
    })
    .await??;
    for hash in &proof {
        println!("{}", base64_hash(hash));
    }
    eprintln!(
        "inclusion proof of seq {seq} (entry_hash {}) in the tree of size {size}, root {}",
        hex::encode(record),
        base64_hash(&root)
    );
    Ok(ExitCode::SUCCESS)
}

/// `ledger key`: the verifier key of the configured log. Reads the key file
/// and the ledger's id; makes nothing (the server makes both on first start).
pub fn print_key(settings: &Settings) -> anyhow::Result<()> {
    let config = &settings.transparency;
    let data_dir = &settings.storage.data_dir;
    let key_file = config.key_file(data_dir);
    anyhow::ensure!(
        key_file.is_file(),
        "there is no key at {} yet: peergate makes it on first start",
        key_file.display()
    );
    let ledger_id = if config.origin.is_empty() {
        ledger_id_of(&data_dir.join(crate::ledger::FILE_NAME))?
    } else {
        String::new()
    };
    let origin = config.origin_for(&settings.server.public_url, &ledger_id);
    let (secret, _) = load_or_create_key(&key_file, &origin)?;
    println!("{}", LogKey::new(&origin, &secret)?.vkey());
    Ok(())
}

/// The `ledger_id` of the ledger file at `path`, read-only.
fn ledger_id_of(path: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(
        path.is_file(),
        "there is no ledger at {} yet: the log's name (its origin) includes the ledger's id; start peergate once, or set transparency.origin",
        path.display()
    );
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", path.display()))?;
    conn.query_row(
        "SELECT value FROM ledger_meta WHERE key = 'ledger_id'",
        [],
        |r| r.get(0),
    )
    .with_context(|| format!("reading the ledger id of {}", path.display()))
}
