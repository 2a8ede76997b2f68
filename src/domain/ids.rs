//! Public identifiers: users, pending sessions, ledger entries.

use chrono::{DateTime, Utc};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_string(alphabet: &[u8], len: usize) -> String {
    // 256 is not a multiple of 62, so reject bytes past the last full cycle.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 32];
        super::os_random(&mut bytes);
        for b in bytes {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A user's stable id, `usr_` and 16 Crockford characters (80 bits).
pub fn new_user_id() -> String {
    format!("usr_{}", random_string(CROCKFORD, 16))
}

/// A pending session's public id, `ps_` and 16 base62 characters (95 bits).
/// It is not a secret: reviewers see it in URLs.
pub fn new_pending_id() -> String {
    format!("ps_{}", random_string(BASE62, 16))
}

/// A ledger entry id: a ULID (48-bit millisecond time, 80 random bits, Crockford base32).
pub fn new_entry_id(at: DateTime<Utc>) -> String {
    let ms = u128::try_from(at.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
    let mut random = [0u8; 10];
    super::os_random(&mut random);
    let mut value = ms << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((value >> (5 * i)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shapes() {
        assert!(new_user_id().starts_with("usr_"));
        assert_eq!(new_user_id().len(), 20);
        assert_eq!(new_pending_id().len(), 19);
        let a = new_entry_id(Utc::now());
        assert_eq!(a.len(), 26);
        assert_ne!(a, new_entry_id(Utc::now()));
    }
}
