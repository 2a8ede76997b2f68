//! Password hashing with argon2id, always off the async runtime.

use std::sync::OnceLock;

use anyhow::Context;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
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

/// Checks a password against a stored hash on a blocking thread. With no stored
/// hash (unknown user), checks against a dummy so the answer takes as long.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let stored = match stored {
            Some(s) => s,
            None => dummy_hash()?.to_string(),
        };
        let parsed = argon2::PasswordHash::new(&stored)
            .map_err(|e| anyhow::anyhow!("a stored password hash is malformed: {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .context("the password check was interrupted")?
}

fn dummy_hash() -> anyhow::Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_blocking("peergate-dummy-password", Cost::Strong)?;
    Ok(DUMMY.get_or_init(|| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash("correct horse".into(), Cost::Fast).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong".into(), Some(h)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
    }
}
