//! How the catalog holds stock and caches reads: the module's settings. No defaults here: the
//! app's `[catalog]` and `[cache]` sections hold them, once, and give the values.

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
