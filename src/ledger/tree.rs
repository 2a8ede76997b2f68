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

    /// Appends one record (the ledger's are 32 bytes; the tree takes any).
    pub fn push(&mut self, record: &[u8]) {
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
    let mut statement = conn.prepare("SELECT seq, entry_hash FROM ledger_entries ORDER BY seq")?;
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

    fn unhex(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    /// RFC 6962 known answers as published by transparency-dev/merkle (the Go
    /// library behind Trillian and Tessera): `testonly/constants.go` (leaf
    /// inputs and the root of every size 0..8) and `proof/verify_test.go`
    /// (inclusion and consistency proofs). Copied as data.
    const LEAF_INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf number, 1-based; tree size; proof, leaf to root).
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            3,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            2,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    /// (old size, new size, proof).
    const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn reference_tree() -> MerkleTree {
        let mut tree = MerkleTree::default();
        for input in LEAF_INPUTS {
            tree.push(&unhex(input));
        }
        tree
    }

    fn hashes(list: &[&str]) -> Vec<Hash> {
        list.iter()
            .map(|h| Hash(unhex(h).try_into().unwrap()))
            .collect()
    }

    #[test]
    fn roots_match_the_published_rfc6962_vectors() {
        let tree = reference_tree();
        for (n, root) in ROOTS.iter().enumerate() {
            assert_eq!(
                tree.root(n as u64).unwrap().0.to_vec(),
                unhex(root),
                "size {n}"
            );
        }
    }

    #[test]
    fn inclusion_proofs_match_the_published_vectors_and_verify() {
        let tree = reference_tree();
        for (leaf, size, proof) in INCLUSION {
            let want = hashes(proof);
            let got = tree.prove_record(size, leaf - 1).unwrap();
            assert_eq!(got, want, "leaf {leaf} in size {size}");
            let root = tree.root(size).unwrap();
            let input = LEAF_INPUTS[usize::try_from(leaf - 1).unwrap()];
            let leaf_hash = tlog::record_hash(&unhex(input));
            tlog::check_record(&want, size, root, leaf - 1, leaf_hash).unwrap();
            // The same proof for another leaf does not verify.
            let other = tlog::record_hash(b"not the leaf");
            assert!(tlog::check_record(&want, size, root, leaf - 1, other).is_err());
        }
    }

    #[test]
    fn consistency_proofs_match_the_published_vectors_and_verify() {
        let tree = reference_tree();
        for (old, new, proof) in CONSISTENCY {
            let want = hashes(proof);
            assert_eq!(tree.prove_tree(new, old).unwrap(), want, "{old} -> {new}");
            let (old_root, new_root) = (tree.root(old).unwrap(), tree.root(new).unwrap());
            tlog::check_tree(&want, new, new_root, old, old_root).unwrap();
            if !want.is_empty() {
                let mut bent = want.clone();
                bent[0].0[0] ^= 16;
                assert!(tlog::check_tree(&bent, new, new_root, old, old_root).is_err());
            }
        }
    }

    #[test]
    fn every_earlier_root_matches_the_definition() {
        let records: Vec<[u8; 32]> = (0..70u8).map(|i| [i; 32]).collect();
        let tree = MerkleTree::from_records(records.iter());
        for n in 0..=70 {
            assert_eq!(
                tree.root(n as u64).unwrap().0,
                mth(&records[..n]),
                "size {n}"
            );
        }
    }

    #[test]
    fn tiles_appear_as_the_tree_grows_and_stay() {
        let records: Vec<[u8; 32]> = (0..300u32)
            .map(|i| *blake3::hash(&i.to_be_bytes()).as_bytes())
            .collect();
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
