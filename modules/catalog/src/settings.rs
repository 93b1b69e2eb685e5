//! How the catalog holds stock and caches reads: the module's settings, with their defaults in one
//! place (the app's `[catalog]` section reads them from here).

use crate::cache::CacheSettings;

/// How the catalog holds stock for orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSettings {
    /// A reservation not committed within this time is released (the last line of defence when
    /// an order never finishes).
    pub reservation_ttl: chrono::Duration,
    /// The read cache's TTL and size (its adapter is given by
    /// [`crate::CatalogService::with_cache`]).
    pub cache: CacheSettings,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self { reservation_ttl: chrono::Duration::minutes(15), cache: CacheSettings::default() }
    }
}
