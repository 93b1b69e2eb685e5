//! `[catalog]` and `[cache]`: the catalog module's own settings, read where it runs locally:
//! how it holds stock, and its read cache (in process, or shared on Redis). Every default is
//! here, once; `catalog::CatalogSettings` and the cache adapters take the values they are given.

use serde::{Deserialize, Serialize};
use shared_kernel::Secret;

/// The catalog module's own settings (where it runs locally).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// A stock reservation not committed within this time is released.
    pub reservation_ttl_secs: u64,
    /// How often expired reservations are looked for.
    pub reservation_sweep_secs: u64,
    /// Deprecated: `cache.ttl_ms`. When set, it is taken as `cache.ttl_ms` (with a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_cache_ttl_ms: Option<u64>,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self { reservation_ttl_secs: 900, reservation_sweep_secs: 30, product_cache_ttl_ms: None }
    }
}

/// The read cache of the modules hosted here (the catalog's products, product pages and
/// categories): in this process only, or shared on Redis with this process's level in front.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). Unset: in process only.
    pub redis_url: Option<Secret<String>>,
    /// An entry is dropped this long after it was stored (0: no caching). Writes invalidate at
    /// once, on every instance through the catalog's events; this bounds what a lost event costs.
    pub ttl_ms: u64,
    /// Entries kept in this process at most.
    pub max_entries: u64,
    /// The first part of every Redis key (several deployments may share one server).
    pub key_prefix: String,
    /// Each Redis command's time limit; past it the database answers.
    pub redis_timeout_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { redis_url: None, ttl_ms: 5_000, max_entries: 10_000, key_prefix: "cleave".to_owned(), redis_timeout_ms: 100 }
    }
}

impl CatalogSettings {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.reservation_ttl_secs >= 1, "catalog.reservation_ttl_secs must be positive");
        anyhow::ensure!(self.reservation_sweep_secs >= 1, "catalog.reservation_sweep_secs must be positive");
        Ok(())
    }
}

impl CacheSettings {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.redis_url {
            anyhow::ensure!(
                ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|scheme| url.expose().starts_with(scheme)),
                "cache.redis_url must be a redis:// (or rediss://) URL"
            );
        }
        anyhow::ensure!(self.redis_timeout_ms >= 1, "cache.redis_timeout_ms must be positive");
        anyhow::ensure!(self.max_entries >= 1, "cache.max_entries must be positive");
        anyhow::ensure!(!self.key_prefix.is_empty() && !self.key_prefix.contains(char::is_whitespace), "cache.key_prefix must be a non-empty word");
        Ok(())
    }
}
