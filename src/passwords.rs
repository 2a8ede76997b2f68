//! Password hashing with argon2id, always off the async runtime.

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};

/// How expensive a new hash is. Verification reads the cost from the stored
/// hash, so the server itself has no knob: only whoever creates the account does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// argon2id with the crate's defaults (19 MiB, 2 passes): every real account.
    Strong,
    /// 64 KiB, 1 pass: only for accounts the test suite and load generator make.
    Fast,
}

fn hasher(cost: Cost) -> Argon2<'static> {
    match cost {
        Cost::Strong => Argon2::default(),
        Cost::Fast => Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap_or_default(),
        ),
    }
}

/// Hashes a password on a blocking thread.
pub async fn hash(password: String, cost: Cost) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password, cost)).await?
}

/// Hashes a password on the current thread (for the command line).
pub fn hash_blocking(password: &str, cost: Cost) -> anyhow::Result<String> {
    let hash = hasher(cost)
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordVerifier;

    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash("correct horse".into(), Cost::Fast).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        let parsed = argon2::PasswordHash::new(&h).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
    }
}
