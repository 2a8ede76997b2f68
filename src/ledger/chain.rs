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

/// The number of hashed fields, in order: seq, entry_id, session_id, outcome,
/// requester_id, requester_name, requester_ip, requester_user_agent,
/// reviewer_id, reviewer_name, channel, code_confirmed, note,
/// session_created_at, decided_at.
pub const FIELD_COUNT: usize = 15;

/// The length framing of DESIGN.md §5, written once: each field as its u32
/// big-endian byte length, then its bytes, handed to `sink` in order. Both
/// the hash and the (tested) encoding go through here.
fn frame(parts: &[&[u8]; FIELD_COUNT], mut sink: impl FnMut(&[u8])) {
    for part in parts {
        // SQLite's default limits cap a column at 1 GB, so the length always
        // fits in a u32.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        sink(&len.to_be_bytes());
        sink(part);
    }
}

/// The entry hash of fields given as bytes (as stored), chained to `prev_hash`.
pub fn hash_parts(prev_hash: &[u8; 32], parts: &[&[u8]; FIELD_COUNT]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(FORMAT.as_bytes());
    hasher.update(b"\n");
    hasher.update(prev_hash);
    frame(parts, |bytes| {
        hasher.update(bytes);
    });
    *hasher.finalize().as_bytes()
}

impl EntryFields {
    fn with_parts<T>(&self, f: impl FnOnce(&[&[u8]; FIELD_COUNT]) -> T) -> T {
        let seq = self.seq.to_string();
        let confirmed = self.code_confirmed.to_string();
        f(&[
            seq.as_bytes(),
            self.entry_id.as_bytes(),
            self.session_id.as_bytes(),
            self.outcome.as_bytes(),
            self.requester_id.as_bytes(),
            self.requester_name.as_bytes(),
            self.requester_ip.as_bytes(),
            self.requester_user_agent.as_bytes(),
            self.reviewer_id.as_bytes(),
            self.reviewer_name.as_bytes(),
            self.channel.as_bytes(),
            confirmed.as_bytes(),
            self.note.as_bytes(),
            self.session_created_at.as_bytes(),
            self.decided_at.as_bytes(),
        ])
    }

    /// The fields in hashing order, each length-prefixed: exactly the bytes
    /// the hash covers after its prefix. The property tests check that it is
    /// injective.
    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        self.with_parts(|parts| {
            let mut out = Vec::new();
            frame(parts, |bytes| out.extend_from_slice(bytes));
            out
        })
    }

    /// This entry's hash, chained to `prev_hash`.
    pub fn hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        self.with_parts(|parts| hash_parts(prev_hash, parts))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads an encoding back into fields: if this always inverts `encode`,
    /// then `encode` is injective.
    fn decode(mut bytes: &[u8]) -> Option<EntryFields> {
        let mut next = || -> Option<String> {
            let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            let text = std::str::from_utf8(bytes.get(4..4 + len)?)
                .ok()?
                .to_string();
            bytes = &bytes[4 + len..];
            Some(text)
        };
        let fields = EntryFields {
            seq: next()?.parse().ok()?,
            entry_id: next()?,
            session_id: next()?,
            outcome: next()?,
            requester_id: next()?,
            requester_name: next()?,
            requester_ip: next()?,
            requester_user_agent: next()?,
            reviewer_id: next()?,
            reviewer_name: next()?,
            channel: next()?,
            code_confirmed: next()?.parse().ok()?,
            note: next()?,
            session_created_at: next()?,
            decided_at: next()?,
        };
        bytes.is_empty().then_some(fields)
    }

    fn entry() -> impl Strategy<Value = EntryFields> {
        let text = || ".{0,12}";
        (
            (
                0i64..1_000_000,
                text(),
                text(),
                text(),
                text(),
                text(),
                text(),
                text(),
            ),
            (text(), text(), text(), 0i64..=1, text(), text(), text()),
        )
            .prop_map(
                |((seq, a, b, c, d, e, f, g), (h, i, j, k, l, m, n))| EntryFields {
                    seq,
                    entry_id: a,
                    session_id: b,
                    outcome: c,
                    requester_id: d,
                    requester_name: e,
                    requester_ip: f,
                    requester_user_agent: g,
                    reviewer_id: h,
                    reviewer_name: i,
                    channel: j,
                    code_confirmed: k,
                    note: l,
                    session_created_at: m,
                    decided_at: n,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn encoding_round_trips(e in entry()) {
            prop_assert_eq!(decode(&e.encode()), Some(e));
        }

        #[test]
        fn different_entries_encode_differently(a in entry(), b in entry()) {
            prop_assert_eq!(a == b, a.encode() == b.encode());
        }

        /// The classic ambiguity of plain concatenation: moving characters
        /// across a field boundary must change the encoding (and the hash).
        #[test]
        fn shifting_a_field_boundary_changes_the_encoding(e in entry(), cut in 0usize..12) {
            let mut shifted = e.clone();
            let moved: String = shifted.requester_name.chars().take(cut).collect();
            if moved.is_empty() { return Ok(()); }
            shifted.requester_name = shifted.requester_name.chars().skip(cut).collect();
            shifted.requester_id.push_str(&moved);
            prop_assert_ne!(e.encode(), shifted.encode());
            prop_assert_ne!(e.hash(&ZERO_HASH), shifted.hash(&ZERO_HASH));
        }
    }

    #[test]
    fn heads_parse_and_print() {
        let head = Head {
            seq: 3,
            hash: [0xab; 32],
        };
        assert_eq!(Head::parse_arg(&head.to_arg()).unwrap(), head);
        assert!(Head::parse_arg("3").is_err());
        assert!(Head::parse_arg("-1:00").is_err());
        assert!(Head::parse_arg(&format!("3:{}", "AB".repeat(32))).is_err());
    }
}
