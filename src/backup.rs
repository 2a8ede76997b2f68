//! `peergate backup` and `peergate restore`: online, consistent copies of
//! both SQLite files with a manifest, and a restore that checks everything
//! before it puts the files in place.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::ledger::snapshot::{copy_consistent, hash_file};
use crate::ledger::{Head, Verdict, verify_file};

/// The files a data dir's state lives in.
const FILES: [&str; 2] = ["app.sqlite", crate::ledger::FILE_NAME];

/// The transparency log's key, when it lives in the data dir: without it a
/// restored log would have to take a new name (and auditors a new key).
const KEY_FILE: &str = "transparency.key";

/// The manifest's name inside a backup dir.
const MANIFEST: &str = "manifest.json";

/// What a backup holds, written last: a backup without it is incomplete.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub peergate_version: String,
    pub created_at: String,
    /// The ledger head at the moment of the copy, as `SEQ:HASH`.
    pub ledger_head: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Copies both databases of `data_dir` into `out` (created; must be empty),
/// each with SQLite's online backup API (a consistent image while the server
/// runs), then writes the manifest.
pub async fn backup(data_dir: &Path, out: &Path) -> anyhow::Result<Manifest> {
    ensure_empty_dir(out)?;
    let mut files = Vec::new();
    for name in FILES {
        let (from, to) = (data_dir.join(name), out.join(name));
        if !from.is_file() {
            bail!(
                "{} does not exist: is {} a data dir?",
                from.display(),
                data_dir.display()
            );
        }
        let copied = to.clone();
        tokio::task::spawn_blocking(move || copy_consistent(&from, &copied)).await??;
        let (bytes, _, sha256) = hash_file(to).await?;
        files.push(ManifestFile {
            name: name.into(),
            bytes,
            sha256,
        });
    }
    let key = data_dir.join(KEY_FILE);
    if key.is_file() {
        copy_private(&key, &out.join(KEY_FILE))?;
        let (bytes, _, sha256) = hash_file(out.join(KEY_FILE)).await?;
        files.push(ManifestFile {
            name: KEY_FILE.into(),
            bytes,
            sha256,
        });
    }
    let ledger_head = match verify_file(&out.join(crate::ledger::FILE_NAME), None).await {
        Verdict::Valid { head, .. } => head.to_arg(),
        other => bail!("the ledger copy does not verify, so the backup is not kept: {other:?}"),
    };
    let manifest = Manifest {
        format: "peergate-backup-v1".into(),
        peergate_version: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::clock::rfc3339(chrono::Utc::now()),
        ledger_head,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    write_synced(&out.join(MANIFEST), &json)?;
    Ok(manifest)
}

/// Restores a backup into `data_dir`, which must be empty or absent. Every
/// file's checksum and the ledger (to the manifest's head) are checked first;
/// the files are then moved into place, so a failed restore leaves nothing.
pub async fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read(from.join(MANIFEST)).with_context(|| {
        format!(
            "{} has no {MANIFEST}: not a complete backup",
            from.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text).context("reading the manifest")?;
    ensure_empty_dir(data_dir)?;
    let staging = data_dir.join(".restoring");
    std::fs::create_dir_all(&staging)?;
    let checked = stage(from, &staging, &manifest).await;
    if let Err(e) = checked {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    for file in &manifest.files {
        std::fs::rename(staging.join(&file.name), data_dir.join(&file.name))?;
    }
    std::fs::remove_dir(&staging)?;
    Ok(manifest)
}

/// Copies the backup's files into `staging` and checks them.
async fn stage(from: &Path, staging: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for file in &manifest.files {
        let to = staging.join(&file.name);
        match file.name.as_str() {
            KEY_FILE => copy_private(&from.join(KEY_FILE), &to)?,
            name if FILES.contains(&name) => {
                std::fs::copy(from.join(name), &to).with_context(|| format!("copying {name}"))?;
            }
            other => bail!("the manifest names an unknown file `{other}`"),
        }
        let (bytes, _, sha256) = hash_file(to).await?;
        if bytes != file.bytes || sha256 != file.sha256 {
            bail!("{} does not match its checksum in the manifest", file.name);
        }
    }
    let head = Head::parse_arg(&manifest.ledger_head).map_err(anyhow::Error::msg)?;
    match verify_file(&staging.join(crate::ledger::FILE_NAME), Some(head)).await {
        Verdict::Valid { .. } => Ok(()),
        other => bail!("the backed-up ledger does not verify: {other:?}"),
    }
}

/// Copies a secret, readable by its owner only (mode 0600).
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    std::io::Write::write_all(&mut file, &bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Creates `dir` if needed; refuses one that holds anything.
fn ensure_empty_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} is not empty; refusing to overwrite anything in it",
            dir.display()
        );
    }
    Ok(())
}

/// Writes a file and makes it durable before returning.
fn write_synced(path: &PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
