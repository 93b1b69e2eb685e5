//! The orders module behind [`OrdersApi`]: its handle, settings and the helpers its use cases
//! share. The use cases live beside it, one file each: `placement`, `saga_driver`, `recovery`,
//! `queries`, `cancellation`; `domain` holds the rules and `store` the rows.

use crate::domain::Violation;
use crate::saga;
use catalog_contract::CatalogApi;
use orders_contract::{OrderStatus, OrderView, OrdersApi, PlaceOrder, Placement};
use payments_contract::PaymentsApi;
use sea_orm::{DatabaseConnection, DbErr};
use shared_kernel::outbox::Outbox;
use shared_kernel::resilience::{AlwaysOpen, CallGate};
use shared_kernel::{ApiError, Caller, Clock, FieldError, OrderId, Page, PageRequest, ServiceName};
use std::sync::Arc;
use std::time::Duration;

/// How orders runs its sagas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersSettings {
    /// How long placement waits for the saga before answering with the order still `pending`
    /// (the saga then finishes in the background).
    pub placement_wait: Duration,
    /// Calls per saga step when the other module's call fails before the step counts as failed
    /// (reserve, charge) or is left to the recovery sweep (every other step).
    pub step_attempts: u32,
    /// The first retry's delay; it doubles per attempt.
    pub step_retry_delay: Duration,
    /// A saga with no progress for this long is taken over by the recovery sweep.
    pub stale_after: Duration,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        Self {
            placement_wait: Duration::from_secs(5),
            step_attempts: 4,
            step_retry_delay: Duration::from_millis(100),
            stale_after: Duration::from_secs(30),
        }
    }
}

/// The orders module. Cheap to clone.
#[derive(Clone)]
pub struct OrdersService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: Outbox,
    pub(crate) catalog: Arc<dyn CatalogApi>,
    pub(crate) payments: Arc<dyn PaymentsApi>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: OrdersSettings,
    /// Orders calls the catalog and payments as itself.
    pub(crate) identity: Caller,
    /// Whether calls to payments are being refused (its circuit is open): placement then
    /// answers 503 before it reserves anything.
    pub(crate) payments_gate: Arc<dyn CallGate>,
}

impl std::fmt::Debug for OrdersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersService").field("settings", &self.inner.settings).finish_non_exhaustive()
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
        let identity = Caller::Service(ServiceName::Orders);
        let payments_gate: Arc<dyn CallGate> = Arc::new(AlwaysOpen);
        Self { inner: Arc::new(Inner { db, outbox, catalog, payments, clock, settings, identity, payments_gate }) }
    }

    /// Asks `gate` before each placement whether payments is refusing calls (a remote payments'
    /// circuit). Call it on the new service, before it is cloned.
    #[must_use]
    pub fn with_payments_gate(mut self, gate: Arc<dyn CallGate>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.payments_gate = gate,
            None => tracing::error!("the payments gate was set on a service already shared: it is ignored"),
        }
        self
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.inner.db.ping().await.is_ok()
    }
}

#[async_trait::async_trait]
impl OrdersApi for OrdersService {
    #[tracing::instrument(skip_all)]
    async fn place_order(&self, caller: &Caller, idempotency_key: String, order: PlaceOrder) -> Result<Placement, ApiError> {
        self.place(caller, idempotency_key, order).await
    }

    async fn get_order(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        self.get(caller, id).await
    }

    async fn list_orders(&self, caller: &Caller, page: PageRequest) -> Result<Page<OrderView>, ApiError> {
        self.list(caller, page).await
    }

    async fn cancel_order(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        self.cancel(caller, id).await
    }
}

/// The contract's status for the saga's.
pub(crate) fn contract_status(status: saga::OrderStatus) -> OrderStatus {
    match status {
        saga::OrderStatus::Pending => OrderStatus::Pending,
        saga::OrderStatus::Confirmed => OrderStatus::Confirmed,
        saga::OrderStatus::Rejected => OrderStatus::Rejected,
        saga::OrderStatus::Cancelled => OrderStatus::Cancelled,
    }
}

/// The domain's violations as the contract's 422, field by field.
pub(crate) fn invalid(violations: Vec<Violation>) -> ApiError {
    ApiError::invalid(violations.into_iter().map(|v| FieldError { field: v.field, message: v.message }).collect())
}

pub(crate) fn db_error(error: DbErr) -> ApiError {
    shared_kernel::db::api_error("orders", error)
}

/// `at` to microseconds, what both databases store: an answer built in memory then equals what
/// a later read gives back.
pub(crate) fn stored_precision(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(at, 6)
}
