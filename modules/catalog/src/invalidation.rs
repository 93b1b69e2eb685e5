//! Every catalog process drops what its cache holds of a product or a category when the
//! catalog's own events say it changed, whichever instance made the change.

use crate::cache::{CacheStore, Tag};
use catalog_contract::events::{CategoryCreatedV1, ProductChangedV1, StockChangedV1};
use shared_kernel::events::{Consumer, EventEnvelope, EventHandler, HandlerError, IntegrationEvent, NoDeadLetters};
use std::sync::Arc;

/// Invalidates this process's cache (and, on Redis, the shared entries) on the catalog's events.
#[derive(Debug, Clone)]
pub struct CacheInvalidator {
    cache: Arc<dyn CacheStore>,
}

impl CacheInvalidator {
    pub const CONSUMER: &'static str = "catalog.cache";

    /// Made by [`crate::CatalogService::cache_invalidator`], sharing its cache.
    pub(crate) fn new(cache: Arc<dyn CacheStore>) -> Self {
        Self { cache }
    }

    /// This handler as a consumer of every process (each instance has a cache of its own). It
    /// never fails: an event it cannot read costs at most the cache's TTL, and is logged.
    pub fn consumer(self) -> Consumer {
        Consumer {
            name: Self::CONSUMER.to_owned(),
            event_types: vec![ProductChangedV1::TYPE.to_owned(), StockChangedV1::TYPE.to_owned(), CategoryCreatedV1::TYPE.to_owned()],
            handler: Arc::new(self),
            dead_letters: Arc::new(NoDeadLetters),
            each_process: true,
        }
    }

    fn tags(event: &EventEnvelope) -> Result<Vec<Tag>, String> {
        let decoded = match event.event_type.as_str() {
            ProductChangedV1::TYPE => event.decode::<ProductChangedV1>().map(|changed| Tag::products([changed.product_id.as_uuid()])),
            StockChangedV1::TYPE => {
                event.decode::<StockChangedV1>().map(|changed| Tag::products(changed.product_ids.iter().map(|id| id.as_uuid())))
            }
            CategoryCreatedV1::TYPE => event.decode::<CategoryCreatedV1>().map(|_| vec![Tag::Categories]),
            _ => return Ok(Vec::new()),
        };
        decoded.map_err(|error| error.to_string())
    }
}

#[async_trait::async_trait]
impl EventHandler for CacheInvalidator {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        match Self::tags(event) {
            Ok(tags) if !tags.is_empty() => self.cache.invalidate(&tags).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(event_id = %event.id, event_type = %event.event_type, %error, "a catalog event does not decode; the cache's TTL bounds what it misses");
            }
        }
        Ok(())
    }
}
