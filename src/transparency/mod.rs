//! The ledger as a transparency log (DESIGN.md §11): the log's key, signed
//! checkpoints, the witnesses they are sent to, and the offline tools
//! (`ledger verify --checkpoint`, `ledger key`, `ledger prove`, `witness`).
//!
//! - `keys`: the log's key and file, witness keys, cosignatures (tlog-cosignature).
//! - `push`: one task per configured witness, sending each new checkpoint.
//! - `witness`: `peergate witness`, a c2sp.org/tlog-witness server.
//! - `offline`: the command-line tools that read ledger files and checkpoints.
//! - `tiles`: tile paths (c2sp.org/tlog-tiles).
//!
//! The tree itself lives with the ledger (`ledger::tree`): the writer extends
//! it. Here, a signer task follows the writer's head and signs a checkpoint
//! after commits, at most once per `checkpoint_interval`; the newest one is on
//! a `watch` that the web layer and the witness pushers read. Nothing here is
//! on the path of a decision: a slow witness slows only its own pusher.

mod keys;
pub mod offline;
mod push;
pub mod tiles;
pub mod witness;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tlog_tiles::{Checkpoint, Hash};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use keys::{
    Cosigner, LogKey, SecretKey, WitnessKey, is_valid_origin, load_or_create_key, unix_now,
};

use crate::config::Settings;
use crate::ledger::{Head, Ledger, Tree};

/// The log key's file name inside the data dir.
pub const KEY_FILE_NAME: &str = "transparency.key";

/// A signed checkpoint: `<origin>\n<size>\n<base64 root>\n` and the log's
/// signature line.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The note text (the checkpoint), which every signature signs.
    pub text: String,
    /// The whole signed note: text, blank line, the log's signature line.
    pub note: Vec<u8>,
}

/// The running log: cheap to clone.
#[derive(Clone)]
pub struct Transparency {
    inner: Arc<Inner>,
}

struct Inner {
    key: LogKey,
    tree: Tree,
    /// The newest checkpoint; pushers and `/ledger/checkpoint` read it.
    latest: watch::Sender<Arc<SignedCheckpoint>>,
    /// One slot per configured witness: the checkpoint text it last cosigned
    /// and its signature line. A `std::sync::Mutex`: held for a copy, never
    /// across an `.await`.
    cosignatures: Mutex<Vec<Option<Cosigned>>>,
}

#[derive(Clone)]
struct Cosigned {
    text: String,
    line: String,
}

/// The background tasks of the log, named for the service's supervisor.
pub type Tasks = Vec<(&'static str, JoinHandle<()>)>;

impl Transparency {
    /// Loads (or makes) the key, signs a checkpoint of the current head, and
    /// starts the signer and one pusher per witness.
    pub async fn start(settings: &Settings, ledger: &Ledger) -> anyhow::Result<(Self, Tasks)> {
        let config = &settings.transparency;
        let ledger_id = crate::ledger::read::ledger_id(&ledger.reader).await?;
        let origin = config.origin_for(&settings.server.public_url, &ledger_id);
        let key_file = config.key_file(&settings.storage.data_dir);
        let (secret, created) = load_or_create_key(&key_file, &origin)?;
        let key = LogKey::new(&origin, &secret)?;
        if created {
            tracing::info!(file = %key_file.display(), vkey = key.vkey(), "transparency key created");
        }
        let log = Self::new(
            key,
            ledger.tree.clone(),
            ledger.writer.head(),
            config.witness.len(),
        )?;
        tracing::info!(
            origin,
            vkey = log.vkey(),
            size = log.latest().size,
            "transparency log ready"
        );
        let mut tasks: Tasks = vec![(
            "the checkpoint signer",
            log.spawn_signer(ledger.writer.watch_head(), config.checkpoint_interval),
        )];
        for (slot, witness) in config.witness.iter().enumerate() {
            let key = WitnessKey::parse(&witness.vkey)
                .with_context(|| format!("transparency.witness[{slot}].vkey"))?;
            tasks.push((
                "a witness pusher",
                tokio::spawn(push::run(log.clone(), slot, witness.url.clone(), key)),
            ));
        }
        Ok((log, tasks))
    }

    /// A log signing with `key` over `tree`, with a first checkpoint at `head`.
    pub fn new(key: LogKey, tree: Tree, head: Head, witnesses: usize) -> anyhow::Result<Self> {
        let first = sign(&key, &tree, committed_size(head))?;
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                tree,
                latest: watch::channel(Arc::new(first)).0,
                cosignatures: Mutex::new(vec![None; witnesses]),
            }),
        })
    }

    pub fn vkey(&self) -> &str {
        self.inner.key.vkey()
    }

    pub fn origin(&self) -> &str {
        self.inner.key.origin()
    }

    pub fn tree(&self) -> &Tree {
        &self.inner.tree
    }

    /// The newest checkpoint, without cosignatures.
    pub fn latest(&self) -> Arc<SignedCheckpoint> {
        self.inner.latest.borrow().clone()
    }

    /// Starts the task that signs a checkpoint after the head moves, at most
    /// once per `interval`. It ends when the ledger writer does.
    pub fn spawn_signer(&self, head: watch::Receiver<Head>, interval: Duration) -> JoinHandle<()> {
        tokio::spawn(run_signer(self.clone(), head, interval))
    }

    /// Follows the newest checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<Arc<SignedCheckpoint>> {
        self.inner.latest.subscribe()
    }

    /// Signs and publishes a checkpoint of the tree of `size` entries.
    fn publish(&self, size: u64) {
        match sign(&self.inner.key, &self.inner.tree, size) {
            Ok(checkpoint) => {
                tracing::debug!(size, root = %checkpoint.root, "checkpoint signed");
                self.inner.latest.send_replace(Arc::new(checkpoint));
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                size,
                "signing a checkpoint failed"
            ),
        }
    }

    /// The newest checkpoint with every cosignature held for it: what
    /// `/ledger/checkpoint` serves.
    pub fn checkpoint(&self) -> Vec<u8> {
        let latest = self.latest();
        let mut note = latest.note.clone();
        for cosigned in self.cosignatures().into_iter().flatten() {
            if cosigned.text == latest.text {
                note.extend_from_slice(cosigned.line.as_bytes());
            }
        }
        note
    }

    /// A checkpoint of exactly `size` entries (a download's snapshot): the
    /// newest one with its cosignatures when it has that size, else one
    /// signed now. `size` must be a committed head seq.
    pub fn checkpoint_at(&self, size: u64) -> anyhow::Result<Vec<u8>> {
        if self.latest().size == size {
            return Ok(self.checkpoint());
        }
        Ok(sign(&self.inner.key, &self.inner.tree, size)?.note)
    }

    fn cosignatures(&self) -> Vec<Option<Cosigned>> {
        self.inner
            .cosignatures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps a witness's cosignature line (already verified) of `text`.
    fn record_cosignature(&self, slot: usize, text: &str, line: String) {
        let mut slots = self
            .inner
            .cosignatures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = slots.get_mut(slot) {
            *entry = Some(Cosigned {
                text: text.to_string(),
                line,
            });
        }
    }
}

fn committed_size(head: Head) -> u64 {
    u64::try_from(head.seq).unwrap_or(0)
}

/// The checkpoint of the first `size` entries, signed by `key`.
fn sign(key: &LogKey, tree: &Tree, size: u64) -> anyhow::Result<SignedCheckpoint> {
    let root = tree.read(|t| t.root(size))?;
    let text = Checkpoint::new(key.origin(), size, root, "")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    let mut note = signed_note::Note::new(&text, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    note.add_sigs(&[key.signer()])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(SignedCheckpoint {
        size,
        root,
        text: String::from_utf8(text).context("a checkpoint is text")?,
        note: note.to_bytes(),
    })
}

/// Signs a checkpoint after the head moves, at most once per `interval`; the
/// newest head wins (a burst of commits is one checkpoint). Ends when the
/// ledger writer does.
async fn run_signer(log: Transparency, mut head: watch::Receiver<Head>, interval: Duration) {
    loop {
        if head.changed().await.is_err() {
            return;
        }
        let head = *head.borrow_and_update();
        log.publish(committed_size(head));
        tokio::time::sleep(interval).await;
    }
}

/// A hash as base64, the way notes and proofs write it.
pub fn base64_hash(hash: &Hash) -> String {
    BASE64.encode(hash.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tree::MerkleTree;
    use signed_note::{StandardVerifier, VerifierList};

    fn log_of(records: u8) -> Transparency {
        let dir = tempfile::tempdir().unwrap();
        let (secret, _) = load_or_create_key(&dir.path().join("k"), "x").unwrap();
        let key = LogKey::new("example.org/peergate/0123abcd", &secret).unwrap();
        let tree = Tree::new(MerkleTree::from_records(
            (0..records).map(|i| [i; 32]).collect::<Vec<_>>().iter(),
        ));
        let head = Head {
            seq: i64::from(records),
            hash: [records.saturating_sub(1); 32],
        };
        Transparency::new(key, tree, head, 0).unwrap()
    }

    #[test]
    fn a_checkpoint_round_trips_through_signed_note() {
        let log = log_of(5);
        let note = log.checkpoint();
        let log_key = StandardVerifier::new(log.vkey()).unwrap();
        let parsed = signed_note::Note::from_bytes(&note).unwrap();
        let (good, unknown) = parsed
            .verify(&VerifierList::new(vec![Box::new(log_key)]))
            .unwrap();
        assert_eq!((good.len(), unknown.len()), (1, 0));
        let checkpoint = Checkpoint::from_bytes(parsed.text()).unwrap();
        assert_eq!(checkpoint.origin(), "example.org/peergate/0123abcd");
        assert_eq!(checkpoint.size(), 5);
        // The root of five 32-byte records [i; 32], as an independent RFC
        // 6962 computation gave it (STACK_NOTES.md, round 2: 85e20cac…994f08bf).
        let root = hex::encode(checkpoint.hash().0);
        assert!(
            root.starts_with("85e20cac") && root.ends_with("994f08bf"),
            "{root}"
        );
    }

    #[test]
    fn a_checkpoint_verifies_by_hand_with_ed25519_dalek() {
        use ed25519_dalek::Verifier as _;
        use sha2::Digest;
        let log = log_of(3);
        let note = String::from_utf8(log.checkpoint()).unwrap();
        // The note: text, a blank line, signature lines "— <name> <base64>".
        let (text, signatures) = note.split_once("\n\n").unwrap();
        let text = format!("{text}\n");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let (origin, size, root) = (lines[0], lines[1], lines[2]);
        assert_eq!(size, "3");
        let tree_root = log.tree().read(|t| t.root(3)).unwrap();
        assert_eq!(BASE64.decode(root).unwrap(), tree_root.0);
        // The vkey: <name>+<id>+base64(0x01 || public key).
        let vkey: Vec<&str> = log.vkey().splitn(3, '+').collect();
        assert_eq!(vkey[0], origin);
        let material = BASE64.decode(vkey[2]).unwrap();
        assert_eq!(material[0], 0x01);
        let public =
            ed25519_dalek::VerifyingKey::from_bytes(&material[1..].try_into().unwrap()).unwrap();
        let mut id_input = format!("{origin}\n").into_bytes();
        id_input.extend_from_slice(&material);
        let id = &sha2::Sha256::digest(&id_input)[..4];
        assert_eq!(hex::encode(id), vkey[1]);
        // The signature line: base64(key id || Ed25519 signature of the text).
        let line = signatures.lines().next().unwrap();
        let b64 = line.strip_prefix(&format!("— {origin} ")).unwrap();
        let raw = BASE64.decode(b64).unwrap();
        assert_eq!(&raw[..4], id);
        let signature = ed25519_dalek::Signature::from_slice(&raw[4..]).unwrap();
        public.verify(text.as_bytes(), &signature).unwrap();
        // Another text does not verify.
        assert!(public.verify(b"x\n0\nAAAA\n", &signature).is_err());
    }

    #[test]
    fn a_download_gets_a_checkpoint_of_its_own_size() {
        let log = log_of(8);
        let at5 = log.checkpoint_at(5).unwrap();
        let parsed = signed_note::Note::from_bytes(&at5).unwrap();
        let checkpoint = Checkpoint::from_bytes(parsed.text()).unwrap();
        assert_eq!(checkpoint.size(), 5);
        assert_eq!(*checkpoint.hash(), log.tree().read(|t| t.root(5)).unwrap());
        assert!(log.checkpoint_at(9).is_err());
        assert_eq!(log.checkpoint_at(8).unwrap(), log.checkpoint());
    }
}
