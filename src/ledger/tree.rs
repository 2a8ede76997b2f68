//! The ledger as a Merkle tree (DESIGN.md §11): record `i` is the 32 raw
//! bytes of the `entry_hash` of seq `i + 1`, hashed as RFC 6962 leaves.
//!
//! The tree is kept in memory as the "stored hashes" of Go's `sumdb/tlog`
//! (through the `tlog_tiles` port): every leaf hash and every completed
//! subtree hash, in one `Vec`, about two hashes (64 bytes) per entry. From
//! them any earlier tree's root, any inclusion or consistency proof and any
//! tile is computed without touching the file. The writer appends a batch's
//! hashes after it commits and before it publishes the new head, so a
//! published head of seq `N` always has its tree of size `N` here. At
//! start-up the tree is rebuilt from `ledger.sqlite` (the file format does
//! not change; nothing extra is stored).

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, bail};
use tlog_tiles::{Hash, HashReader, Tile, TreeProof, tlog};

/// The tile height of DESIGN.md §11 (tlog-tiles fixes it at 8).
pub const TILE_HEIGHT: u8 = 8;

/// Hashes (or records) in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// The stored hashes of a tree of `size` records.
#[derive(Debug, Default)]
pub struct MerkleTree {
    /// `tlog::stored_hash_index` order: each record's leaf hash, followed by
    /// the subtree hashes it completes.
    hashes: Vec<Hash>,
    size: u64,
}

impl HashReader for MerkleTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MerkleTree {
    /// A tree over `records`, in order.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a [u8; 32]>) -> Self {
        let mut tree = Self::default();
        for record in records {
            tree.push(record);
        }
        tree
    }

    /// Appends one record.
    pub fn push(&mut self, record: &[u8; 32]) {
        // Reads only hashes already stored (of completed left subtrees), so it
        // cannot fail on a tree built by this function.
        match tlog::stored_hashes(self.size, record, self) {
            Ok(hashes) => {
                self.hashes.extend(hashes);
                self.size += 1;
            }
            Err(e) => unreachable!("the tree's own stored hashes are missing: {e}"),
        }
    }

    /// How many records the tree holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree of the first `n` records (`n` ≤ size).
    pub fn root(&self, n: u64) -> anyhow::Result<Hash> {
        if n > self.size {
            bail!("no tree of size {n}: only {} records", self.size);
        }
        tlog::tree_hash(n, self).context("computing a tree hash")
    }

    /// The inclusion proof of record `index` in the tree of size `n`.
    pub fn prove_record(&self, n: u64, index: u64) -> anyhow::Result<Vec<Hash>> {
        if n > self.size {
            bail!("no tree of size {n}: only {} records", self.size);
        }
        tlog::prove_record(n, index, self).context("proving a record")
    }

    /// The consistency proof from the tree of size `old` to that of size `n`.
    pub fn prove_tree(&self, n: u64, old: u64) -> anyhow::Result<TreeProof> {
        if n > self.size {
            bail!("no tree of size {n}: only {} records", self.size);
        }
        if old == 0 || old == n {
            return Ok(Vec::new());
        }
        tlog::prove_tree(n, old, self).context("proving consistency")
    }

    /// The hash tile at `level`, `index` with `width` hashes (tlog-tiles), or
    /// `None` when the tree does not reach that far yet. A partial tile of any
    /// earlier size stays available: stored hashes never change.
    pub fn hash_tile(&self, level: u8, index: u64, width: u32) -> Option<Vec<u8>> {
        if width == 0 || u64::from(width) > TILE_WIDTH || level >= 64 {
            return None;
        }
        // The last hash of the tile sits at tree level 8·L; it exists once the
        // tree has (position + 1) << 8·L records.
        let end = u128::from(index) * u128::from(TILE_WIDTH) + u128::from(width);
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let needed = end.checked_shl(shift)?;
        if shift >= 128 || needed >> shift != end || needed > u128::from(self.size) {
            return None;
        }
        Tile::new(TILE_HEIGHT, level, index, width, false)
            .read_data(self)
            .ok()
    }
}

/// The shared tree: the writer appends, everyone else reads. A
/// `std::sync::RwLock`, not a Tokio one: no `.await` happens while it is held,
/// and every hold is microseconds (a batch append, a root, a tile).
#[derive(Clone, Default)]
pub struct Tree {
    inner: Arc<RwLock<MerkleTree>>,
}

impl Tree {
    pub fn new(tree: MerkleTree) -> Self {
        Self {
            inner: Arc::new(RwLock::new(tree)),
        }
    }

    /// Appends committed records (the writer calls this after each commit).
    pub fn extend(&self, records: &[[u8; 32]]) {
        let mut tree = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for record in records {
            tree.push(record);
        }
    }

    /// Runs `f` on the tree under the read lock.
    pub fn read<T>(&self, f: impl FnOnce(&MerkleTree) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn size(&self) -> u64 {
        self.read(MerkleTree::size)
    }
}

/// Reads every entry hash of the ledger at `path`, in seq order, with
/// rusqlite on the calling thread (start-up runs it on a blocking thread).
/// A gap or a malformed hash is an error: the live ledger must be whole.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<[u8; 32]>> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} to rebuild its tree", path.display()))?;
    let mut statement =
        conn.prepare("SELECT seq, entry_hash FROM ledger_entries ORDER BY seq")?;
    let mut rows = statement.query([])?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let expected = i64::try_from(records.len()).unwrap_or(i64::MAX) + 1;
        if seq != expected {
            bail!("the ledger has no entry {expected} (the next is {seq})");
        }
        let mut record = [0u8; 32];
        match row.get_ref(1)? {
            rusqlite::types::ValueRef::Text(text) => hex::decode_to_slice(text, &mut record)
                .with_context(|| format!("entry {seq} has a malformed entry_hash"))?,
            _ => bail!("entry {seq} has a malformed entry_hash"),
        }
        records.push(record);
    }
    Ok(records)
}

/// The tree of the ledger at `path`, rebuilt on a blocking thread.
pub async fn load(path: &Path) -> anyhow::Result<MerkleTree> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let records = read_records(&path)?;
        Ok(MerkleTree::from_records(records.iter()))
    })
    .await
    .context("the tree rebuild stopped")?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent RFC 6962 §2.1 computation, straight from the definition.
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::new()
                .chain_update([0u8])
                .chain_update(leaves[0])
                .finalize()
                .into(),
            n => {
                // The largest power of two smaller than n.
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

    #[test]
    fn every_earlier_root_matches_the_definition() {
        let records: Vec<[u8; 32]> = (0..70u8).map(|i| [i; 32]).collect();
        let tree = MerkleTree::from_records(records.iter());
        for n in 0..=70 {
            assert_eq!(tree.root(n as u64).unwrap().0, mth(&records[..n]), "size {n}");
        }
    }

    #[test]
    fn tiles_appear_as_the_tree_grows_and_stay() {
        let records: Vec<[u8; 32]> = (0..300u32).map(|i| *blake3::hash(&i.to_be_bytes()).as_bytes()).collect();
        let tree = MerkleTree::from_records(records.iter());
        assert_eq!(tree.hash_tile(0, 0, 256).map(|t| t.len()), Some(256 * 32));
        assert_eq!(tree.hash_tile(0, 1, 44).map(|t| t.len()), Some(44 * 32));
        assert!(tree.hash_tile(0, 1, 45).is_none());
        assert!(tree.hash_tile(1, 0, 1).map(|t| t.len()) == Some(32));
        assert!(tree.hash_tile(1, 0, 2).is_none());
        // An earlier partial tile is still served.
        assert_eq!(tree.hash_tile(0, 0, 7).map(|t| t.len()), Some(7 * 32));
        assert!(tree.hash_tile(70, 0, 1).is_none());
        assert!(tree.hash_tile(0, u64::MAX, 1).is_none());
    }
}
