//! The catalog's facade: [`CatalogService`] implements [`CatalogApi`], each operation one call
//! into its use case (`categories`, `products`, `stock`). Nothing in the crate imports this file.

use crate::cache::{CacheStore, InProcessCache};
use crate::context::Context;
use crate::settings::CatalogSettings;
use catalog_contract::{
    CatalogApi, CategoryView, CommitOutcome, NewCategory, NewProduct, ProductPatch, ProductQuery, ProductView, ReserveLine, ReserveOutcome,
    RestockOutcome, SetStock,
};
use sea_orm::DatabaseConnection;
use shared_kernel::outbox::Outbox;
use shared_kernel::{ApiError, Caller, CategoryId, Clock, OrderId, Page, PageRequest, ProductId};
use std::sync::Arc;

/// The catalog module. Cheap to clone.
#[derive(Clone)]
pub struct CatalogService {
    context: Context,
}

impl std::fmt::Debug for CatalogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogService").field("settings", &self.context.settings).finish_non_exhaustive()
    }
}

impl CatalogService {
    /// `db` must be the catalog's own database, already migrated. Reads are cached in this
    /// process ([`InProcessCache`]); [`CatalogService::with_cache`] gives another adapter.
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, outbox: Outbox, settings: CatalogSettings) -> Self {
        let cache = Arc::new(InProcessCache::new(settings.cache));
        Self { context: Context { db, clock, outbox, settings, cache } }
    }

    /// The same catalog reading through `cache` (Redis, shared by every instance).
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<dyn CacheStore>) -> Self {
        self.context.cache = cache;
        self
    }

    /// The read cache, for readiness (whether its store answers).
    pub fn cache(&self) -> Arc<dyn CacheStore> {
        self.context.cache.clone()
    }

    /// The sales counter consumer for this catalog (it invalidates the cached products it counts).
    pub fn sales_counter(&self) -> crate::SalesCounter {
        let context = &self.context;
        crate::SalesCounter::new(context.db.clone(), context.outbox.clone(), context.cache.clone(), context.clock.clone())
    }

    /// The consumer that keeps this process's cache in step with every instance's writes.
    pub fn cache_invalidator(&self) -> crate::CacheInvalidator {
        crate::CacheInvalidator::new(self.context.cache.clone())
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.context.db.ping().await.is_ok()
    }

    /// Releases reservations past their time; returns how many orders' reservations it released.
    ///
    /// # Errors
    /// The database is unavailable.
    pub async fn expire_reservations(&self) -> Result<usize, ApiError> {
        self.context.expire_reservations().await
    }
}

#[async_trait::async_trait]
impl CatalogApi for CatalogService {
    async fn list_categories(&self, _caller: &Caller, page: PageRequest) -> Result<Page<CategoryView>, ApiError> {
        self.context.list_categories(page).await
    }

    async fn create_category(&self, caller: &Caller, input: NewCategory) -> Result<CategoryView, ApiError> {
        self.context.create_category(caller, input).await
    }

    async fn get_categories(&self, _caller: &Caller, ids: Vec<CategoryId>) -> Result<Vec<CategoryView>, ApiError> {
        self.context.get_categories(ids).await
    }

    async fn list_products(&self, _caller: &Caller, query: ProductQuery) -> Result<Page<ProductView>, ApiError> {
        self.context.list_products(query).await
    }

    async fn get_product(&self, _caller: &Caller, id: ProductId) -> Result<ProductView, ApiError> {
        self.context.get_product(id).await
    }

    async fn get_products(&self, _caller: &Caller, ids: Vec<ProductId>) -> Result<Vec<ProductView>, ApiError> {
        self.context.get_products(ids).await
    }

    async fn create_product(&self, caller: &Caller, input: NewProduct) -> Result<ProductView, ApiError> {
        self.context.create_product(caller, input).await
    }

    async fn update_product(&self, caller: &Caller, id: ProductId, patch: ProductPatch) -> Result<ProductView, ApiError> {
        self.context.update_product(caller, id, patch).await
    }

    async fn set_stock(&self, caller: &Caller, id: ProductId, stock: SetStock) -> Result<ProductView, ApiError> {
        self.context.set_stock(caller, id, stock).await
    }

    async fn reserve(&self, caller: &Caller, order_id: OrderId, lines: Vec<ReserveLine>) -> Result<ReserveOutcome, ApiError> {
        self.context.reserve(caller, order_id, lines).await
    }

    async fn release(&self, caller: &Caller, order_id: OrderId) -> Result<(), ApiError> {
        self.context.release(caller, order_id).await
    }

    async fn commit(&self, caller: &Caller, order_id: OrderId) -> Result<CommitOutcome, ApiError> {
        self.context.commit(caller, order_id).await
    }

    async fn restock(&self, caller: &Caller, order_id: OrderId) -> Result<RestockOutcome, ApiError> {
        self.context.restock(caller, order_id).await
    }
}
