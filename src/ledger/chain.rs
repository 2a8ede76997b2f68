//! The hash chain of DESIGN.md §5, byte for byte:
//!
//! ```text
//! entry_hash = BLAKE3("peergate-ledger-v1\n" || prev_hash (32 raw bytes)
//!                     || F(seq) || F(entry_id) || ... || F(decided_at))
//! F(x) = u32 big-endian byte length of UTF-8(x) || UTF-8(x)
//! ```

use serde::{Deserialize, Serialize};

/// The format name, written in `ledger_meta` and at the start of every hashed message.
pub const FORMAT: &str = "peergate-ledger-v1";

/// The `prev_hash` of entry 1, and the head hash of an empty ledger.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// One ledger row, every column but the two hashes, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFields {
    pub seq: i64,
    pub entry_id: String,
    pub session_id: String,
    pub outcome: String,
    pub requester_id: String,
    pub requester_name: String,
    pub requester_ip: String,
    pub requester_user_agent: String,
    pub reviewer_id: String,
    pub reviewer_name: String,
    pub channel: String,
    pub code_confirmed: i64,
    pub note: String,
    pub session_created_at: String,
    pub decided_at: String,
}

fn field(out: &mut Vec<u8>, text: &str) {
    // A column longer than 4 GiB cannot be stored by SQLite's default limits
    // (1 GB), so the length always fits in a u32.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

impl EntryFields {
    /// The fields in hashing order, each length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        field(&mut out, &self.seq.to_string());
        field(&mut out, &self.entry_id);
        field(&mut out, &self.session_id);
        field(&mut out, &self.outcome);
        field(&mut out, &self.requester_id);
        field(&mut out, &self.requester_name);
        field(&mut out, &self.requester_ip);
        field(&mut out, &self.requester_user_agent);
        field(&mut out, &self.reviewer_id);
        field(&mut out, &self.reviewer_name);
        field(&mut out, &self.channel);
        field(&mut out, &self.code_confirmed.to_string());
        field(&mut out, &self.note);
        field(&mut out, &self.session_created_at);
        field(&mut out, &self.decided_at);
        out
    }

    /// This entry's hash, chained to `prev_hash`.
    pub fn hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(FORMAT.as_bytes());
        hasher.update(b"\n");
        hasher.update(prev_hash);
        hasher.update(&self.encode());
        *hasher.finalize().as_bytes()
    }
}

/// Parses a 64-character lowercase hex hash.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The head of a ledger: its last entry's `seq` and `entry_hash`; `(0, zeros)` when empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: ZERO_HASH,
    };

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// `SEQ:HASH`, as `X-Ledger-Head` and `verify --expect-head` write it.
    pub fn to_arg(&self) -> String {
        format!("{}:{}", self.seq, self.hash_hex())
    }

    /// Parses `SEQ:HASH`.
    pub fn parse_arg(text: &str) -> Result<Head, String> {
        let (seq, hash) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}` is not SEQ:HASH"))?;
        let seq: i64 = seq
            .parse()
            .map_err(|_| format!("`{seq}` is not a sequence number"))?;
        if seq < 0 {
            return Err(format!("`{seq}` is not a sequence number"));
        }
        let hash =
            parse_hash(hash).ok_or_else(|| format!("`{hash}` is not 64 lowercase hex digits"))?;
        Ok(Head { seq, hash })
    }
}
