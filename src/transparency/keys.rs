//! Keys in the signed-note formats: the log's Ed25519 key and its verifier
//! key (`<origin>+<id>+<base64(0x01 || key)>`), a witness's cosigning key
//! (c2sp.org/tlog-cosignature, type 0x04), and the files that hold them.
//!
//! Both key files hold a signed-note private key,
//! `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`, as
//! `signed_note::generate_key` writes it. The name in the file is only a
//! label: the log signs under its configured origin, whatever name the file
//! was made with, so that changing `transparency.origin` keeps the key.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Signer, StandardSigner, StandardVerifier, Verifier};

/// Signature type of a plain Ed25519 signed-note key.
const ALG_ED25519: u8 = 0x01;
/// Signature type of a c2sp.org/tlog-cosignature Ed25519 key (cosignature/v1).
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// An Ed25519 private key. Its `Debug` shows nothing: keys are never logged.
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// A fresh key that lives only in memory (benchmarks).
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand_core::OsRng))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }
}

/// Reads the key at `path`, or makes one there (mode 0600) when the file does
/// not exist; `name` labels a new file. Returns the key and whether it is new.
pub fn load_or_create_key(path: &Path, name: &str) -> anyhow::Result<(SecretKey, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            let key = parse_private_key(text.trim())
                .with_context(|| format!("{} is not a signed-note private key", path.display()))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (skey, _) = signed_note::generate_key(&mut rand_core::OsRng, name);
            write_new_secret(path, &skey)?;
            let key = parse_private_key(&skey).context("reading back the new key")?;
            Ok((key, true))
        }
        Err(e) => Err(e).with_context(|| format!("reading the key file {}", path.display())),
    }
}

/// Creates `path` with mode 0600 (never replacing a file) and syncs it.
fn write_new_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the key's folder {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_all()
        .with_context(|| format!("syncing the key file {}", path.display()))?;
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                "the key file can be read by other users; chmod 600 it"
            );
        }
    }
}

/// Parses `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`. `StandardSigner`
/// checks the format and that the id matches the key.
fn parse_private_key(skey: &str) -> anyhow::Result<SecretKey> {
    StandardSigner::new(skey).map_err(|e| anyhow::anyhow!("{e}"))?;
    // PRIVATE, KEY, name, id, then the base64 (which may itself hold `+`).
    let encoded = skey.splitn(5, '+').nth(4).unwrap_or_default();
    let raw = BASE64.decode(encoded).context("the key is not base64")?;
    let seed: [u8; 32] = match raw.split_first() {
        Some((&ALG_ED25519, seed)) => seed.try_into().context("the key is not 32 bytes")?,
        _ => bail!("the key is not an Ed25519 key"),
    };
    Ok(SecretKey(SigningKey::from_bytes(&seed)))
}

/// Whether `origin` can name a log and its key: one line, no spaces, no `+`.
pub fn is_valid_origin(origin: &str) -> bool {
    signed_note::is_key_name_valid(origin) && !origin.chars().any(char::is_control)
}

/// The log's signing key under its origin.
pub struct LogKey {
    origin: String,
    signer: StandardSigner,
    vkey: String,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signer holds the private key: only the public parts are shown.
        f.debug_struct("LogKey")
            .field("origin", &self.origin)
            .field("vkey", &self.vkey)
            .finish_non_exhaustive()
    }
}

impl LogKey {
    pub fn new(origin: &str, key: &SecretKey) -> anyhow::Result<Self> {
        if !is_valid_origin(origin) {
            bail!("`{origin}` cannot name a log: one line, no spaces, no `+`");
        }
        let public = [&[ALG_ED25519], key.verifying_key().as_bytes().as_slice()].concat();
        let secret = [&[ALG_ED25519], key.0.as_bytes().as_slice()].concat();
        let skey = format!(
            "PRIVATE+KEY+{origin}+{:08x}+{}",
            signed_note::key_id(origin, &public),
            BASE64.encode(secret)
        );
        let signer = StandardSigner::new(&skey).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            origin: origin.to_string(),
            signer,
            vkey: signed_note::new_ed25519_verifier_key(origin, &key.verifying_key()),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key, `<origin>+<key id>+<base64(0x01 || public key)>`.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    pub fn signer(&self) -> &dyn Signer {
        &self.signer
    }
}

/// A witness's cosigning key (c2sp.org/tlog-cosignature, Ed25519,
/// `cosignature/v1`), as a `signed_note` signer: `signed_note` leaves the
/// signature scheme to its `Signer` trait, so the cosignature format is
/// written here and the note handling stays the crate's.
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
    /// Seconds since the epoch; the witness passes the wall clock.
    now: fn() -> u64,
}

impl Cosigner {
    pub fn new(name: &str, key: &SecretKey, now: fn() -> u64) -> anyhow::Result<Self> {
        if !signed_note::is_key_name_valid(name) {
            bail!("`{name}` cannot name a key: no spaces, no `+`");
        }
        Ok(Self {
            name: name.to_string(),
            id: signed_note::key_id(name, &cosigner_key_material(&key.verifying_key())),
            key: key.0.clone(),
            now,
        })
    }

    /// `<name>+<id>+<base64(0x04 || public key)>`.
    pub fn vkey(&self) -> String {
        let material = cosigner_key_material(&self.key.verifying_key());
        format!("{}+{:08x}+{}", self.name, self.id, BASE64.encode(material))
    }
}

fn cosigner_key_material(key: &VerifyingKey) -> Vec<u8> {
    [&[ALG_COSIGNATURE_V1], key.as_bytes().as_slice()].concat()
}

/// The message a cosignature/v1 signs: a header line, a time line, then the
/// checkpoint's note text.
fn cosigned_message(timestamp: u64, text: &[u8]) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend_from_slice(text);
    message
}

impl Signer for Cosigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    /// `timestamp (u64, big-endian) || Ed25519 signature`.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let timestamp = (self.now)();
        let signature = self.key.try_sign(&cosigned_message(timestamp, msg))?;
        Ok([timestamp.to_be_bytes().as_slice(), &signature.to_bytes()].concat())
    }
}

/// A witness's verifier key as the log (or an auditor) configures it: a
/// cosignature/v1 key (type 0x04), or a plain Ed25519 note key (type 0x01).
#[derive(Clone)]
pub enum WitnessKey {
    Cosignature {
        name: String,
        id: u32,
        key: VerifyingKey,
    },
    Plain(StandardVerifier),
}

impl WitnessKey {
    pub fn parse(vkey: &str) -> anyhow::Result<Self> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("`{vkey}` is not a verifier key like name+1234abcd+BASE64");
        };
        let material = BASE64.decode(encoded).context("the key is not base64")?;
        match material.first() {
            Some(&ALG_COSIGNATURE_V1) => {
                let bytes: [u8; 32] = material[1..]
                    .try_into()
                    .context("a cosignature key has 32 bytes")?;
                let key = VerifyingKey::from_bytes(&bytes).context("not an Ed25519 key")?;
                let want = signed_note::key_id(name, &material);
                if id.len() != 8 || u32::from_str_radix(id, 16).ok() != Some(want) {
                    bail!("the key id {id} does not match the key");
                }
                if !signed_note::is_key_name_valid(name) {
                    bail!("`{name}` cannot name a key");
                }
                Ok(Self::Cosignature {
                    name: name.to_string(),
                    id: want,
                    key,
                })
            }
            Some(&ALG_ED25519) => StandardVerifier::new(vkey.trim())
                .map(Self::Plain)
                .map_err(|e| anyhow::anyhow!("{e}")),
            _ => bail!("unknown key type: expected a cosignature/v1 (0x04) or Ed25519 (0x01) key"),
        }
    }

    /// Which format this key's signatures are in, for the logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cosignature { .. } => "cosignature/v1",
            Self::Plain(_) => "ed25519",
        }
    }
}

impl Verifier for WitnessKey {
    fn name(&self) -> &str {
        match self {
            Self::Cosignature { name, .. } => name,
            Self::Plain(v) => v.name(),
        }
    }
    fn key_id(&self) -> u32 {
        match self {
            Self::Cosignature { id, .. } => *id,
            Self::Plain(v) => v.key_id(),
        }
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::Cosignature { key, .. } => {
                let Some((timestamp, signature)) = sig.split_first_chunk::<8>() else {
                    return false;
                };
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                let timestamp = u64::from_be_bytes(*timestamp);
                timestamp < (1 << 63)
                    && key
                        .verify(&cosigned_message(timestamp, msg), &signature)
                        .is_ok()
            }
            Self::Plain(v) => v.verify(msg, sig),
        }
    }
}

/// Seconds since the epoch by the wall clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::{Note, VerifierList};

    /// The example key pair and note of Go's golang.org/x/mod/sumdb/note
    /// (package documentation and `ExampleSign`), copied as data.
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn the_go_note_vector_reproduces_through_our_key_handling() {
        let secret = parse_private_key(GO_SKEY).unwrap();
        let key = LogKey::new("PeterNeumann", &secret).unwrap();
        assert_eq!(key.vkey(), GO_VKEY);
        let mut note = Note::new(GO_TEXT.as_bytes(), &[]).unwrap();
        note.add_sigs(&[key.signer()]).unwrap();
        assert_eq!(
            String::from_utf8(note.to_bytes()).unwrap(),
            format!("{GO_TEXT}\n{GO_SIG}")
        );
    }

    #[test]
    fn a_key_file_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("t.key");
        let (first, created) = load_or_create_key(&path, "example.org/log").unwrap();
        assert!(created);
        let (again, created) = load_or_create_key(&path, "ignored").unwrap();
        assert!(!created);
        assert_eq!(first.verifying_key(), again.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{first:?}"), "SecretKey(…)");
        std::fs::write(&path, "PRIVATE+KEY+x+00000000+AAAA\n").unwrap();
        assert!(load_or_create_key(&path, "x").is_err());
    }

    #[test]
    fn a_cosignature_verifies_by_the_spec_and_by_hand() {
        use sha2::Digest;
        let secret = parse_private_key(GO_SKEY).unwrap();
        let cosigner = Cosigner::new("witness.example/w1", &secret, || 1_679_315_147).unwrap();
        let text = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let mut note = Note::new(text, &[]).unwrap();
        note.add_sigs(&[&cosigner]).unwrap();
        let bytes = note.to_bytes();

        // Through the crate, with the vkey the witness prints.
        let key = WitnessKey::parse(&cosigner.vkey()).unwrap();
        assert_eq!(key.kind(), "cosignature/v1");
        let parsed = Note::from_bytes(&bytes).unwrap();
        let (verified, _) = parsed
            .verify(&VerifierList::new(vec![Box::new(key)]))
            .unwrap();
        assert_eq!(verified.len(), 1);

        // By hand, from c2sp.org/tlog-cosignature: key id over 0x04 || key,
        // then timestamp || signature over the cosignature/v1 message.
        let line = std::str::from_utf8(&bytes[text.len() + 1..]).unwrap();
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        let raw = BASE64.decode(b64).unwrap();
        assert_eq!(raw.len(), 4 + 8 + 64);
        let public = secret.verifying_key();
        let mut id_input = b"witness.example/w1\n\x04".to_vec();
        id_input.extend_from_slice(public.as_bytes());
        assert_eq!(&raw[..4], &sha2::Sha256::digest(&id_input)[..4]);
        assert_eq!(
            u64::from_be_bytes(raw[4..12].try_into().unwrap()),
            1_679_315_147
        );
        let mut message = b"cosignature/v1\ntime 1679315147\n".to_vec();
        message.extend_from_slice(text);
        let signature = ed25519_dalek::Signature::from_slice(&raw[12..]).unwrap();
        public.verify(&message, &signature).unwrap();
    }

    #[test]
    fn witness_keys_are_checked() {
        assert!(WitnessKey::parse(GO_VKEY).is_ok_and(|k| k.kind() == "ed25519"));
        assert!(
            WitnessKey::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
                .is_err()
        );
        assert!(WitnessKey::parse("nonsense").is_err());
        assert!(!is_valid_origin("a b"));
        assert!(!is_valid_origin("a+b"));
        assert!(is_valid_origin("example.org:8443/peergate/0123"));
    }
}
