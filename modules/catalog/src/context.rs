//! What every use case of the catalog is given: its database, outbox, clock, settings and read
//! cache. The use cases are methods on [`Context`], one file per group (`categories`, `products`,
//! `stock`); the facade ([`crate::CatalogService`]) holds one and calls them.

use crate::cache::{CacheStore, Cached, Key, Lookup};
use crate::settings::CatalogSettings;
use sea_orm::DatabaseConnection;
use shared_kernel::outbox::Outbox;
use shared_kernel::{ApiError, Clock};
use std::sync::Arc;

/// The catalog's dependencies. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) outbox: Outbox,
    pub(crate) settings: CatalogSettings,
    pub(crate) cache: Arc<dyn CacheStore>,
}

impl Context {
    /// Reads `key` through the cache: `load` runs on a miss, and what it gives is stored (unless
    /// a write since the miss made it stale: the stamp says).
    pub(crate) async fn cached<T>(
        &self,
        key: Option<Key>,
        unwrap: impl Fn(Cached) -> Option<T>,
        wrap: impl Fn(&T) -> Cached,
        load: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let Some(key) = key else { return load.await };
        let stamp = match self.cache.get(&key).await {
            Lookup::Hit(value) => {
                if let Some(found) = unwrap(value) {
                    return Ok(found);
                }
                // Another type under this key cannot happen (keys are typed); read afresh.
                None
            }
            Lookup::Miss(stamp) => Some(stamp),
        };
        let value = load.await?;
        if let Some(stamp) = stamp {
            self.cache.put(&key, wrap(&value), stamp).await;
        }
        Ok(value)
    }
}
