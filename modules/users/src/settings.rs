//! How users issues and limits tokens. No defaults here: the app's `[auth]` section holds them,
//! once, and gives the values.

/// How the users module issues and limits tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRateLimits {
    pub per_account_per_minute: u32,
    pub per_address_per_minute: u32,
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
