use serde::{Deserialize, Serialize};

/// How the users module issues and limits tokens. Every field has a production-safe default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct UsersSettings {
    /// `iss` of every access token.
    pub issuer: String,
    /// `aud` of every access token.
    pub audience: String,
    /// Access-token lifetime in seconds; at most 900 (15 minutes).
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime in seconds.
    pub refresh_token_ttl_secs: u64,
    pub login_rate_limits: LoginRateLimits,
}

/// Login attempts allowed per minute (a burst of that size, refilled evenly).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LoginRateLimits {
    pub per_account_per_minute: u32,
    pub per_address_per_minute: u32,
}

impl Default for UsersSettings {
    fn default() -> Self {
        Self {
            issuer: "cleave".to_owned(),
            audience: "cleave-api".to_owned(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            login_rate_limits: LoginRateLimits::default(),
        }
    }
}

impl Default for LoginRateLimits {
    fn default() -> Self {
        Self { per_account_per_minute: 5, per_address_per_minute: 20 }
    }
}

impl UsersSettings {
    /// The access-token lifetime, capped at 15 minutes whatever the configuration says.
    pub fn access_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.access_token_ttl_secs.clamp(1, 900) as i64)
    }
    pub fn refresh_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.refresh_token_ttl_secs.max(60) as i64)
    }
}
