//! Orders' facade: [`OrdersService`] implements [`OrdersApi`], each operation one call into its
//! use case. Nothing in the crate imports this file.

use crate::context::{Context, Inner};
use crate::settings::OrdersSettings;
use catalog_contract::CatalogApi;
use orders_contract::{OrderRequest, OrderView, OrdersApi, Placement};
use payments_contract::PaymentsApi;
use sea_orm::DatabaseConnection;
use shared_kernel::outbox::Outbox;
use shared_kernel::resilience::{AlwaysOpen, CallGate};
use shared_kernel::{ApiError, Caller, Clock, OrderId, Page, PageRequest};
use std::sync::Arc;
use std::time::Duration;

/// The orders module. Cheap to clone.
#[derive(Clone)]
pub struct OrdersService {
    context: Context,
}

impl std::fmt::Debug for OrdersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersService").field("settings", &self.context.inner.settings).finish_non_exhaustive()
    }
}

impl OrdersService {
    /// `db` must be orders' own database, already migrated. `catalog` and `payments` are the
    /// contracts as this process reaches them (in process or over a wire).
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        catalog: Arc<dyn CatalogApi>,
        payments: Arc<dyn PaymentsApi>,
        clock: Arc<dyn Clock>,
        settings: OrdersSettings,
    ) -> Self {
        let identity = Caller::Service(orders_contract::SERVICE);
        let payments_gate: Arc<dyn CallGate> = Arc::new(AlwaysOpen);
        let inner = Inner { db, outbox, catalog, payments, clock, settings, identity, payments_gate };
        Self { context: Context { inner: Arc::new(inner) } }
    }

    /// Asks `gate` before each placement whether payments is refusing calls (a remote payments'
    /// circuit). Call it on the new service, before it is cloned.
    #[must_use]
    pub fn with_payments_gate(mut self, gate: Arc<dyn CallGate>) -> Self {
        match Arc::get_mut(&mut self.context.inner) {
            Some(inner) => inner.payments_gate = gate,
            None => tracing::error!("the payments gate was set on a service already shared: it is ignored"),
        }
        self
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.context.inner.db.ping().await.is_ok()
    }

    /// Drives every saga that still has a step left and has made no progress for `stale_after`
    /// (`Duration::ZERO`: every one, as at start-up). Returns how many it drove to the end.
    ///
    /// # Errors
    /// The database is unavailable.
    pub async fn recover_in_flight(&self, stale_after: Duration) -> Result<usize, ApiError> {
        self.context.recover_in_flight(stale_after).await
    }
}

#[async_trait::async_trait]
impl OrdersApi for OrdersService {
    #[tracing::instrument(skip_all)]
    async fn place_order(&self, caller: &Caller, idempotency_key: String, order: OrderRequest) -> Result<Placement, ApiError> {
        self.context.place(caller, idempotency_key, order).await
    }

    async fn get_order(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        self.context.get(caller, id).await
    }

    async fn list_orders(&self, caller: &Caller, page: PageRequest) -> Result<Page<OrderView>, ApiError> {
        self.context.list(caller, page).await
    }

    async fn cancel_order(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        self.context.cancel(caller, id).await
    }
}
