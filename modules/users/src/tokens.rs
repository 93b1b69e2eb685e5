//! Access tokens (EdDSA JWTs) and refresh tokens (random, stored only as a hash).

use crate::keys::KeyRing;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, Header, encode};
use rand::RngCore;
use sha2::{Digest, Sha256};
use shared_kernel::auth::AccessClaims;
use shared_kernel::{ApiError, Role, UserId};

/// Signs an access token for `user` with the ring's newest key.
pub fn sign_access_token(
    keys: &KeyRing,
    user: UserId,
    roles: &[Role],
    issuer: &str,
    audience: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<String, ApiError> {
    let (kid, key) = keys.signing_key();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let claims = AccessClaims {
        sub: user.to_string(),
        roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
        exp: (now + ttl).timestamp(),
        iat: now.timestamp(),
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        jti: uuid::Uuid::now_v7().to_string(),
    };
    encode(&header, &claims, key).map_err(|error| {
        tracing::error!(%error, "signing an access token failed");
        ApiError::Internal
    })
}

/// A new refresh token: 256 random bits, base64url.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored instead of the token: its SHA-256, hex. (A refresh token has 256 bits of
/// entropy, so a fast hash is enough; a slow one would only slow every refresh.)
pub fn refresh_token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_unique_and_hash_deterministically() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(refresh_token_hash(&a), refresh_token_hash(&a));
        assert_eq!(refresh_token_hash(&a).len(), 64);
    }
}
