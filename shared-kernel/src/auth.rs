//! Access-token verification, shared by the edge and every service: EdDSA JWTs checked against
//! the users module's published keys (JWKS), cached, refreshed when an unknown `kid` appears.

use crate::{ApiError, AuthenticatedUser, Caller, Role, Secret, UserId};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// The claims of an access token (api.md: `sub`, `roles`, `exp`, `iat`, `iss`, `aud`, `jti`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub roles: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
}

/// Where the public keys come from: the users module in process, or its JWKS over a wire.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// # Errors
    /// [`ApiError::Unavailable`] when the keys cannot be fetched.
    async fn fetch_keys(&self) -> Result<JwkSet, ApiError>;
}

/// What a token must say about who issued it and for whom.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    /// Clock skew allowed on `exp`, in seconds.
    pub leeway_secs: u64,
}

/// When the keys were last fetched, and whether that worked.
struct FetchState {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    last_error: Option<ApiError>,
}

/// Verifies access tokens. Cheap to clone; the key cache is shared.
#[derive(Clone)]
pub struct TokenVerifier {
    source: Arc<dyn KeySource>,
    policy: Arc<TokenPolicy>,
    keys: Arc<RwLock<HashMap<String, DecodingKey>>>,
    /// Single flight for fetches: one caller fetches, the others wait and then read the cache.
    fetch: Arc<tokio::sync::Mutex<FetchState>>,
    /// An unknown `kid` triggers at most one refresh per this interval (a flood of forged
    /// `kid`s must not turn into a flood of JWKS fetches).
    min_refresh_interval: Duration,
    /// Keys are fetched again when older than this, so a key removed from the ring stops being
    /// trusted everywhere within this time.
    max_key_age: Duration,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("policy", &self.policy).finish()
    }
}

impl TokenVerifier {
    pub fn new(source: Arc<dyn KeySource>, policy: TokenPolicy) -> Self {
        Self {
            source,
            policy: Arc::new(policy),
            keys: Arc::new(RwLock::new(HashMap::new())),
            fetch: Arc::new(tokio::sync::Mutex::new(FetchState { last_attempt: None, last_success: None, last_error: None })),
            min_refresh_interval: Duration::from_secs(10),
            max_key_age: Duration::from_secs(300),
        }
    }

    /// Verifies `token` and returns its claims.
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`] for anything but a valid, unexpired EdDSA token from our
    /// issuer for our audience signed by a published key; [`ApiError::Unavailable`] when the
    /// keys cannot be fetched at all.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, ApiError> {
        let invalid = || ApiError::unauthenticated("the access token is invalid or expired");
        let header = decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid());
        }
        let kid = header.kid.ok_or_else(invalid)?;
        if self.keys_are_stale().await {
            // Best effort: on failure the cached keys keep serving until the next attempt.
            let _ = self.refresh_keys().await;
        }
        let key = match self.cached_key(&kid).await {
            Some(key) => key,
            None => {
                self.refresh_keys().await?;
                self.cached_key(&kid).await.ok_or_else(invalid)?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[self.policy.issuer.as_str()]);
        validation.set_audience(&[self.policy.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub", "jti"]);
        validation.leeway = self.policy.leeway_secs;
        let data = decode::<AccessClaims>(token, &key, &validation).map_err(|_| invalid())?;
        Ok(data.claims)
    }

    /// Verifies `token` and makes the [`Caller`] it stands for.
    ///
    /// # Errors
    /// As [`TokenVerifier::verify`], and 401 for a `sub` that is not a user id.
    pub async fn caller_for(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = self.verify(token).await?;
        let id = UserId::parse(&claims.sub).map_err(|_| ApiError::unauthenticated("the access token is invalid or expired"))?;
        let roles = claims.roles.iter().filter_map(|name| Role::parse(name)).collect();
        Ok(Caller::User(AuthenticatedUser { id, roles, token: Secret::new(token.to_owned()) }))
    }

    async fn keys_are_stale(&self) -> bool {
        let fetch = self.fetch.lock().await;
        fetch.last_success.is_some_and(|at| at.elapsed() > self.max_key_age)
    }

    async fn cached_key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().await.get(kid).cloned()
    }

    /// Fetches the keys unless an attempt (failed or not) was made less than
    /// `min_refresh_interval` ago. Verifications of known keys never wait for a fetch.
    async fn refresh_keys(&self) -> Result<(), ApiError> {
        let mut fetch = self.fetch.lock().await;
        if fetch.last_attempt.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
            // Throttled: report the last failure (a 503, not "your token is bad") if there was one.
            return fetch.last_error.clone().map_or(Ok(()), Err);
        }
        fetch.last_attempt = Some(Instant::now());
        let set = match self.source.fetch_keys().await {
            Ok(set) => {
                fetch.last_error = None;
                fetch.last_success = Some(Instant::now());
                set
            }
            Err(error) => {
                fetch.last_error = Some(error.clone());
                return Err(error);
            }
        };
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) else {
                tracing::warn!("skipping a published key without a kid or in an unknown format");
                continue;
            };
            keys.insert(kid, key);
        }
        tracing::debug!(keys = keys.len(), "refreshed the token verification keys");
        *self.keys.write().await = keys;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountingSource {
        fetches: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl KeySource for CountingSource {
        async fn fetch_keys(&self) -> Result<JwkSet, ApiError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::unavailable("down", 1))
        }
    }

    #[tokio::test]
    async fn unknown_kids_cannot_turn_into_a_flood_of_key_fetches_even_while_the_source_fails() {
        let source = Arc::new(CountingSource { fetches: AtomicUsize::new(0) });
        let verifier = TokenVerifier::new(source.clone(), TokenPolicy { issuer: "i".into(), audience: "a".into(), leeway_secs: 0 });
        // A syntactically valid EdDSA header with an unknown kid.
        let header =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, r#"{"alg":"EdDSA","typ":"JWT","kid":"nope"}"#);
        let token = format!("{header}.e30.c2ln");
        for _ in 0..20 {
            // While the key source is down the answer is 503, not "your token is invalid".
            assert_eq!(verifier.verify(&token).await.unwrap_err().status(), 503);
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    }
}
