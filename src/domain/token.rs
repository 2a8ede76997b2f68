//! Browser-session and trusted-device tokens: 256 random bits in the cookie,
//! only their BLAKE3 hash on disk.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A bearer secret as the browser holds it. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

/// The BLAKE3 hash of a token, lowercase hex: what the database stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

impl SessionToken {
    /// 256 bits from the OS CSPRNG, base64url without padding (43 characters).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        super::os_random(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts a cookie value only if it has the shape of a token we issued.
    pub fn parse(value: &str) -> Option<Self> {
        let decoded = URL_SAFE_NO_PAD.decode(value).ok()?;
        (decoded.len() == 32).then(|| Self(value.to_string()))
    }

    /// The value to put in the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(blake3::hash(self.0.as_bytes()).to_hex().to_string())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_hash_stably() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(SessionToken::parse(a.expose()), Some(a.clone()));
        assert_eq!(a.hash(), a.hash());
        assert_eq!(a.hash().0.len(), 64);
        assert!(SessionToken::parse("short").is_none());
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
