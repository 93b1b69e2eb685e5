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

struct CachedKeys {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies access tokens. Cheap to clone; the key cache is shared.
#[derive(Clone)]
pub struct TokenVerifier {
    source: Arc<dyn KeySource>,
    policy: Arc<TokenPolicy>,
    cache: Arc<RwLock<CachedKeys>>,
    /// An unknown `kid` triggers at most one refresh per this interval (a flood of forged
    /// `kid`s must not turn into a flood of JWKS fetches).
    min_refresh_interval: Duration,
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
            cache: Arc::new(RwLock::new(CachedKeys { keys: HashMap::new(), fetched_at: None })),
            min_refresh_interval: Duration::from_secs(10),
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

    async fn cached_key(&self, kid: &str) -> Option<DecodingKey> {
        self.cache.read().await.keys.get(kid).cloned()
    }

    async fn refresh_keys(&self) -> Result<(), ApiError> {
        let mut cache = self.cache.write().await;
        if cache.fetched_at.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
            return Ok(());
        }
        let set = self.source.fetch_keys().await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) else {
                tracing::warn!("skipping a published key without a kid or in an unknown format");
                continue;
            };
            keys.insert(kid, key);
        }
        tracing::debug!(keys = keys.len(), "refreshed the token verification keys");
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }
}

/// Fetches the JWKS from a URL (the users service's `/.well-known/jwks.json`).
#[derive(Debug, Clone)]
pub struct HttpKeySource {
    url: String,
    http: reqwest::Client,
}

impl HttpKeySource {
    pub fn new(url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { url: url.into(), http }
    }
}

#[async_trait::async_trait]
impl KeySource for HttpKeySource {
    async fn fetch_keys(&self) -> Result<JwkSet, ApiError> {
        let unavailable = || ApiError::unavailable("the signing keys cannot be fetched", 1);
        let response = self.http.get(&self.url).send().await.map_err(|_| unavailable())?;
        if !response.status().is_success() {
            return Err(unavailable());
        }
        response.json::<JwkSet>().await.map_err(|_| unavailable())
    }
}
