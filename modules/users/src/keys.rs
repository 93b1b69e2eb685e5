//! The signing key ring: Ed25519 keys, each with a `kid`. The newest key signs; every key in the
//! ring is published in the JWKS, so tokens signed before a rotation keep verifying until they
//! expire.
//!
//! File format (JSON, kept private: mode 0600):
//! `{"keys": [{"kid": "…", "created_at": "2026-11-24T00:00:00Z", "private_key_pem": "-----BEGIN PRIVATE KEY-----…"}]}`

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::EncodingKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use users_contract::{PublicJwk, PublicKeySet};

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("the key file {path} cannot be read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the key file {path} cannot be written: {source}")]
    Write { path: String, source: std::io::Error },
    /// The serde detail is left out on purpose: it can quote the (private) text back.
    #[error("the key set is not valid JSON of the expected shape")]
    Format(#[from] serde_json::Error),
    #[error("key `{kid}` is not an Ed25519 PKCS#8 private key in PEM")]
    BadKey { kid: String },
    #[error("the key set is empty")]
    Empty,
    #[error("no signing key is configured at {path} and generating one is disabled")]
    Missing { path: String },
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredKey {
    kid: String,
    created_at: DateTime<Utc>,
    private_key_pem: String,
}

struct LoadedKey {
    kid: String,
    created_at: DateTime<Utc>,
    encoding: EncodingKey,
    public_x: String,
}

/// The loaded keys. Cheap to share behind an `Arc`.
pub struct KeyRing {
    /// Oldest first; the last one signs.
    keys: Vec<LoadedKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("kids", &self.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>()).finish()
    }
}

impl KeyRing {
    /// Parses a key set in the file format above (for keys given through the environment).
    ///
    /// # Errors
    /// Malformed JSON, a key that is not Ed25519 PKCS#8 PEM, or no keys at all.
    pub fn from_json(json: &str) -> Result<Self, KeyRingError> {
        let file: KeyFile = serde_json::from_str(json)?;
        Self::from_stored(file.keys)
    }

    /// Loads the key file; when it does not exist and `generate_if_missing`, creates it with one
    /// new key (development convenience: a fresh clone runs with no set-up).
    ///
    /// # Errors
    /// An unreadable or malformed file, or a missing one when generating is disabled.
    pub fn load_or_generate(path: &Path, generate_if_missing: bool) -> Result<Self, KeyRingError> {
        match std::fs::read_to_string(path) {
            Ok(json) => Self::from_json(&json),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if !generate_if_missing {
                    return Err(KeyRingError::Missing { path: path.display().to_string() });
                }
                let stored = vec![generate_stored_key()];
                write_key_file(path, &stored)?;
                tracing::info!(path = %path.display(), "generated a development signing key");
                Self::from_stored(stored)
            }
            Err(source) => Err(KeyRingError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Adds a new key to the key file (creating it if needed) and returns its `kid`. The new key
    /// signs from the next start; the older ones stay published until removed by hand.
    ///
    /// # Errors
    /// An unreadable, malformed or unwritable file.
    pub fn add_key_to_file(path: &Path) -> Result<String, KeyRingError> {
        let mut stored = match std::fs::read_to_string(path) {
            Ok(json) => serde_json::from_str::<KeyFile>(&json)?.keys,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(KeyRingError::Read { path: path.display().to_string(), source }),
        };
        let key = generate_stored_key();
        let kid = key.kid.clone();
        stored.push(key);
        write_key_file(path, &stored)?;
        Ok(kid)
    }

    /// A ring with one freshly generated key, kept only in memory (tests).
    pub fn generate_in_memory() -> Self {
        Self::from_stored(vec![generate_stored_key()]).unwrap_or_else(|_| unreachable!("a generated key always loads"))
    }

    /// The key that signs new tokens: `(kid, key)`.
    pub(crate) fn signing_key(&self) -> (&str, &EncodingKey) {
        let newest = self.keys.last().unwrap_or_else(|| unreachable!("a key ring is never empty"));
        (&newest.kid, &newest.encoding)
    }

    /// Every public key, as a JWKS.
    pub fn public_keys(&self) -> PublicKeySet {
        PublicKeySet {
            keys: self
                .keys
                .iter()
                .rev()
                .map(|key| PublicJwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: key.public_x.clone(),
                    kid: key.kid.clone(),
                    alg: "EdDSA".into(),
                    use_: "sig".into(),
                })
                .collect(),
        }
    }

    fn from_stored(mut stored: Vec<StoredKey>) -> Result<Self, KeyRingError> {
        if stored.is_empty() {
            return Err(KeyRingError::Empty);
        }
        stored.sort_by_key(|key| key.created_at);
        let keys = stored
            .into_iter()
            .map(|key| {
                let bad = || KeyRingError::BadKey { kid: key.kid.clone() };
                let signing = SigningKey::from_pkcs8_pem(&key.private_key_pem).map_err(|_| bad())?;
                let encoding = EncodingKey::from_ed_pem(key.private_key_pem.as_bytes()).map_err(|_| bad())?;
                Ok(LoadedKey {
                    kid: key.kid.clone(),
                    created_at: key.created_at,
                    encoding,
                    public_x: URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()),
                })
            })
            .collect::<Result<Vec<_>, KeyRingError>>()?;
        tracing::debug!(newest = %keys.last().map(|k| k.created_at).unwrap_or_default(), "loaded signing keys");
        Ok(Self { keys })
    }
}

fn generate_stored_key() -> StoredKey {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let signing = SigningKey::from_bytes(&secret);
    let public_x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    let pem = signing.to_pkcs8_pem(LineEnding::LF).map(|pem| pem.to_string()).unwrap_or_default();
    StoredKey { kid: thumbprint(&public_x), created_at: Utc::now(), private_key_pem: pem }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: a stable `kid`.
fn thumbprint(public_x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn write_key_file(path: &Path, keys: &[StoredKey]) -> Result<(), KeyRingError> {
    let write_error = |source| KeyRingError::Write { path: path.display().to_string(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let json = serde_json::to_string_pretty(&KeyFile { keys: keys.to_vec() })?;
    let temporary = path.with_extension("json.tmp");
    // A stale or planted temporary file is removed, then ours is created new (never following
    // a link, never reusing a file with looser permissions).
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(write_error(error)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Private from the first byte: created owner-only, not narrowed after the fact.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary).map_err(write_error)?;
    std::io::Write::write_all(&mut file, json.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    std::fs::rename(&temporary, path).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_file_loads_again_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = KeyRing::load_or_generate(&path, true).unwrap();
        let again = KeyRing::load_or_generate(&path, false).unwrap();
        assert_eq!(first.public_keys(), again.public_keys());
        assert_eq!(first.public_keys().keys.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_missing_file_is_an_error_when_generating_is_off() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(KeyRing::load_or_generate(&dir.path().join("none.json"), false), Err(KeyRingError::Missing { .. })));
    }

    #[test]
    fn rotation_publishes_both_keys_and_the_newest_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let old = KeyRing::load_or_generate(&path, true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let new_kid = KeyRing::add_key_to_file(&path).unwrap();
        let ring = KeyRing::load_or_generate(&path, false).unwrap();
        assert_eq!(ring.signing_key().0, new_kid);
        let published: Vec<_> = ring.public_keys().keys.into_iter().map(|k| k.kid).collect();
        assert!(published.contains(&new_kid));
        assert!(published.contains(&old.signing_key().0.to_owned()));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(matches!(KeyRing::from_json(r#"{"keys": []}"#), Err(KeyRingError::Empty)));
        let bad = r#"{"keys": [{"kid": "k", "created_at": "2026-01-01T00:00:00Z", "private_key_pem": "nope"}]}"#;
        assert!(matches!(KeyRing::from_json(bad), Err(KeyRingError::BadKey { .. })));
    }
}
