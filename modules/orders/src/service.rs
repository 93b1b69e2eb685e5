//! The orders use cases, behind [`OrdersApi`], and the driver of the place-order saga.

use crate::entities::{customer_status, idempotency_keys, order_items, orders, product_names};
use crate::saga::{self, Outcome, Saga, SagaParts, Step};
use catalog_contract::{CatalogApi, CommitOutcome, ProductView, ReserveLine, ReserveOutcome, RestockOutcome};
use orders_contract::events::{OrderCancelledV1, OrderConfirmedV1, OrderStatusChangedV1, OrderedLine};
use orders_contract::{CardNumber, OrderItemView, OrderStatus, OrderView, OrdersApi, PlaceOrder, Placement};
use payments_contract::{ChargeOutcome, ChargeRequest, PaymentStatus, PaymentsApi, RefundOutcome};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr};
use sha2::{Digest, Sha256};
use shared_kernel::outbox::{Outbox, UnitOfWork};
use shared_kernel::{ApiError, Caller, Clock, Currency, FieldError, Money, OrderId, Page, PageRequest, ProductId, ServiceName, UserId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Lines per order, and units per line.
const MAX_LINES: usize = 50;
const MAX_QUANTITY: u32 = 1000;
const MAX_KEY_LEN: usize = 255;
/// A declined payment's reason when payments gave none.
const DECLINED: &str = "the card was declined";

/// How orders runs its sagas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersSettings {
    /// How long placement waits for the saga before answering with the order still `pending`
    /// (the saga then finishes in the background).
    pub placement_wait: Duration,
    /// Calls per saga step when the other module answers "unavailable" before the step counts
    /// as failed (reserve, charge) or is left to the recovery sweep (every other step).
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
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    outbox: Outbox,
    catalog: Arc<dyn CatalogApi>,
    payments: Arc<dyn PaymentsApi>,
    clock: Arc<dyn Clock>,
    settings: OrdersSettings,
    /// Orders calls the catalog and payments as itself.
    identity: Caller,
}

impl std::fmt::Debug for OrdersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersService").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

/// Why a saga step did not produce an outcome.
enum StepError {
    /// Still failing after the step's retry budget: the recovery sweep tries again later.
    Unavailable(ApiError),
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
        Self { inner: Arc::new(Inner { db, outbox, catalog, payments, clock, settings, identity }) }
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.inner.db.ping().await.is_ok()
    }

    /// Drives every saga that still has a step left and has made no progress for `stale_after`
    /// (`Duration::ZERO`: every one, as at start-up). Returns how many it drove to the end.
    ///
    /// # Errors
    /// The database is unavailable.
    #[tracing::instrument(skip_all)]
    pub async fn recover_in_flight(&self, stale_after: Duration) -> Result<usize, ApiError> {
        let cutoff = self.inner.clock.now() - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
        let stuck: Vec<uuid::Uuid> = orders::Entity::find()
            .select_only()
            .column(orders::Column::Id)
            .filter(orders::Column::Step.ne(Step::Done.as_str()))
            .filter(orders::Column::UpdatedAt.lte(cutoff))
            .order_by_asc(orders::Column::UpdatedAt)
            .limit(100)
            .into_tuple()
            .all(&self.inner.db)
            .await
            .map_err(db_error)?;
        let mut finished = 0;
        for id in stuck {
            tracing::info!(order_id = %id, "resuming an interrupted order saga");
            if self.drive(OrderId::from_uuid(id), None).await.is_ok_and(|done| done.is_some()) {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// Runs the saga of `id` until it is done, another driver takes over, or a step stays
    /// unavailable. `card` is present only in the task that placed the order. Returns whether
    /// the saga is done.
    async fn drive(&self, id: OrderId, card: Option<CardNumber>) -> Result<Option<orders::Model>, ApiError> {
        let order = self.load(id).await?.ok_or_else(|| ApiError::not_found("order not found"))?;
        // An order's items never change: read them once.
        let items = self.items_of(&[order.id]).await?.remove(&order.id).unwrap_or_default();
        self.drive_loaded(order, &items, card).await
    }

    /// [`OrdersService::drive`] from an order already in hand. Returns the order as finished, or
    /// `None` when it was left for the recovery sweep or another driver.
    async fn drive_loaded(
        &self,
        mut order: orders::Model,
        items: &[order_items::Model],
        card: Option<CardNumber>,
    ) -> Result<Option<orders::Model>, ApiError> {
        let id = OrderId::from_uuid(order.id);
        loop {
            let mut saga = Saga::restore(parts_of(&order)?);
            if saga.next_step() == Step::Done {
                return Ok(Some(order));
            }
            let outcome = match self.run_step(&order, items, saga.next_step(), card.as_ref()).await {
                Ok(outcome) => outcome,
                Err(StepError::Unavailable(error)) => {
                    // To the back of the sweep's queue: a saga that keeps failing must not starve
                    // the ones behind it.
                    let touched = orders::Entity::update_many()
                        .col_expr(orders::Column::UpdatedAt, Expr::value(stored_precision(self.inner.clock.now())))
                        .filter(orders::Column::Id.eq(order.id))
                        .filter(orders::Column::SagaVersion.eq(order.saga_version))
                        .exec(&self.inner.db)
                        .await;
                    if let Err(error) = touched {
                        tracing::warn!(order_id = %id, %error, "cannot mark a stalled saga");
                    }
                    tracing::warn!(order_id = %id, step = saga.next_step().as_str(), %error, "a saga step is unavailable; the recovery sweep will retry it");
                    return Ok(None);
                }
            };
            let before = saga.status();
            if let Err(error) = saga.record(outcome) {
                tracing::error!(order_id = %id, %error, "the saga refused an outcome");
                return Err(ApiError::Internal);
            }
            match self.save(&order, items, &saga, before).await? {
                Some(saved) => order = saved,
                None => {
                    tracing::debug!(order_id = %id, "another driver moved this saga on");
                    return Ok(None);
                }
            }
        }
    }

    /// Calls the module that answers `step`, retrying while it is unavailable.
    async fn run_step(
        &self,
        order: &orders::Model,
        items: &[order_items::Model],
        step: Step,
        card: Option<&CardNumber>,
    ) -> Result<Outcome, StepError> {
        let settings = &self.inner.settings;
        let mut delay = settings.step_retry_delay;
        let mut attempt = 1;
        loop {
            match self.call_step(order, items, step, card).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) if attempt >= settings.step_attempts.max(1) => {
                    return match step {
                        // Placement must end: past the budget these two compensate.
                        Step::ReserveStock => {
                            tracing::warn!(order_id = %order.id, %error, "the catalog stayed unavailable; compensating");
                            Ok(Outcome::StockUnavailable)
                        }
                        Step::ChargePayment => {
                            tracing::warn!(order_id = %order.id, %error, "payments stayed unavailable; compensating");
                            Ok(Outcome::PaymentUnavailable)
                        }
                        _ => Err(StepError::Unavailable(error)),
                    };
                }
                Err(error) => {
                    tracing::debug!(order_id = %order.id, step = step.as_str(), attempt, %error, "retrying a saga step");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    /// One call for `step`. `Err` is a transient failure worth retrying.
    async fn call_step(
        &self,
        order: &orders::Model,
        items: &[order_items::Model],
        step: Step,
        card: Option<&CardNumber>,
    ) -> Result<Outcome, ApiError> {
        let inner = &self.inner;
        let caller = &inner.identity;
        let order_id = OrderId::from_uuid(order.id);
        match step {
            Step::ReserveStock => {
                let lines = items
                    .iter()
                    .map(|item| ReserveLine { product_id: ProductId::from_uuid(item.product_id), quantity: quantity(item) })
                    .collect();
                Ok(match inner.catalog.reserve(caller, order_id, lines).await? {
                    ReserveOutcome::Reserved { .. } => Outcome::StockReserved,
                    ReserveOutcome::Refused { refusal } => Outcome::StockRefused(refusal.to_string()),
                })
            }
            Step::ChargePayment => {
                let payment = match card {
                    Some(card) => {
                        let request = ChargeRequest {
                            order_id,
                            customer_id: UserId::from_uuid(order.customer_id),
                            amount: total_of(order),
                            card_number: card.clone(),
                        };
                        match inner.payments.charge(caller, request).await? {
                            ChargeOutcome::Captured(_) => return Ok(Outcome::PaymentCaptured),
                            ChargeOutcome::Declined(payment) => {
                                return Ok(Outcome::PaymentDeclined(payment.failure_reason.unwrap_or_else(|| DECLINED.to_owned())));
                            }
                            // Not this order's charge: nothing can be captured for it.
                            ChargeOutcome::AmountMismatch(_) => return Ok(Outcome::PaymentUnavailable),
                        }
                    }
                    // Resumed after a restart: the card is gone, so settle from what payments
                    // recorded. Nothing recorded → compensate.
                    None => match inner.payments.get_payments(caller, vec![order_id]).await?.pop() {
                        Some(payment) => payment,
                        None => return Ok(Outcome::PaymentUnavailable),
                    },
                };
                match payment.status {
                    PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => Ok(Outcome::PaymentCaptured),
                    PaymentStatus::Declined => Ok(Outcome::PaymentDeclined(payment.failure_reason.unwrap_or_else(|| DECLINED.to_owned()))),
                    PaymentStatus::Failed => Ok(Outcome::PaymentUnavailable),
                    PaymentStatus::Pending => Err(ApiError::unavailable("the payment is not settled yet", 1)),
                }
            }
            Step::CommitStock => match inner.catalog.commit(caller, order_id).await? {
                CommitOutcome::Committed => Ok(Outcome::StockCommitted),
                CommitOutcome::Lapsed | CommitOutcome::NoReservation => {
                    Ok(Outcome::StockRefused("the stock reservation expired before the payment completed".to_owned()))
                }
            },
            Step::ReleaseStock => inner.catalog.release(caller, order_id).await.map(|()| Outcome::StockReleased),
            Step::RefundPayment => match inner.payments.refund(caller, order_id, None).await? {
                // No payment, or one that captured nothing: there is nothing to give back.
                RefundOutcome::Refunded { .. } | RefundOutcome::NothingCaptured { .. } | RefundOutcome::NoPayment => {
                    Ok(Outcome::PaymentRefunded)
                }
                // A concurrent partial refund moved the remainder: ask again for what is left now.
                RefundOutcome::ExceedsCapture { .. } => Err(ApiError::unavailable("another refund of this payment is under way", 1)),
            },
            Step::Restock => match inner.catalog.restock(caller, order_id).await? {
                RestockOutcome::Restocked => Ok(Outcome::Restocked),
                outcome @ (RestockOutcome::NotCommitted | RestockOutcome::NoReservation) => {
                    tracing::error!(order_id = %order.id, ?outcome, "the catalog holds no committed stock for a cancelled order");
                    Ok(Outcome::Restocked)
                }
            },
            Step::Done => Err(ApiError::Internal),
        }
    }

    /// Persists `saga` if the order is still at the version read; publishes the status change
    /// (and, on confirmation or cancellation, the sale) in the same transaction. Returns the
    /// order as saved, or `None` when another driver got there first.
    async fn save(
        &self,
        order: &orders::Model,
        items: &[order_items::Model],
        saga: &Saga,
        before: saga::OrderStatus,
    ) -> Result<Option<orders::Model>, ApiError> {
        let inner = &self.inner;
        let now = stored_precision(inner.clock.now());
        let parts = saga.parts();
        let mut unit = UnitOfWork::begin(&inner.db, &inner.outbox).await.map_err(db_error)?;
        let updated = orders::Entity::update_many()
            .col_expr(orders::Column::Status, Expr::value(parts.status.to_string()))
            .col_expr(orders::Column::Step, Expr::value(parts.step.as_str()))
            .col_expr(orders::Column::StockReserved, Expr::value(parts.stock_reserved))
            .col_expr(orders::Column::StockCommitted, Expr::value(parts.stock_committed))
            .col_expr(orders::Column::PaymentCaptured, Expr::value(parts.payment_captured))
            .col_expr(orders::Column::FailureReason, Expr::value(parts.failure_reason.clone()))
            .col_expr(orders::Column::SagaVersion, Expr::value(order.saga_version + 1))
            .col_expr(orders::Column::UpdatedAt, Expr::value(now))
            .filter(orders::Column::Id.eq(order.id))
            .filter(orders::Column::SagaVersion.eq(order.saga_version))
            .exec(&*unit)
            .await
            .map_err(db_error)?;
        if updated.rows_affected != 1 {
            return Ok(None);
        }
        if parts.status != before {
            let status = contract_status(parts.status);
            let order_id = OrderId::from_uuid(order.id);
            let customer_id = UserId::from_uuid(order.customer_id);
            let context = shared_kernel::current_request_context();
            let changed =
                OrderStatusChangedV1 { order_id, customer_id, status, failure_reason: parts.failure_reason.clone(), changed_at: now };
            unit.publish(&changed, now, context.as_ref()).await.map_err(db_error)?;
            let lines = || {
                items
                    .iter()
                    .map(|item| OrderedLine { product_id: ProductId::from_uuid(item.product_id), quantity: quantity(item) })
                    .collect()
            };
            match status {
                OrderStatus::Confirmed => {
                    let confirmed = OrderConfirmedV1 { order_id, customer_id, lines: lines(), total: total_of(order), confirmed_at: now };
                    unit.publish(&confirmed, now, context.as_ref()).await.map_err(db_error)?;
                }
                OrderStatus::Cancelled => {
                    let cancelled = OrderCancelledV1 { order_id, customer_id, lines: lines(), cancelled_at: now };
                    unit.publish(&cancelled, now, context.as_ref()).await.map_err(db_error)?;
                }
                OrderStatus::Pending | OrderStatus::Rejected => {}
            }
            tracing::info!(order_id = %order.id, status = status.as_str(), "order status changed");
        }
        unit.commit().await.map_err(db_error)?;
        Ok(Some(orders::Model {
            status: parts.status.to_string(),
            step: parts.step.as_str().to_owned(),
            stock_reserved: parts.stock_reserved,
            stock_committed: parts.stock_committed,
            payment_captured: parts.payment_captured,
            failure_reason: parts.failure_reason,
            saga_version: order.saga_version + 1,
            updated_at: now,
            ..order.clone()
        }))
    }

    /// Runs `order`'s saga in its own task (a client that goes away does not stop it) and waits
    /// for it up to the placement wait. Returns the order if the saga finished meanwhile.
    async fn drive_detached(
        &self,
        order: orders::Model,
        items: Vec<order_items::Model>,
        card: Option<CardNumber>,
    ) -> Option<orders::Model> {
        let service = self.clone();
        let context = shared_kernel::current_request_context();
        let id = order.id;
        let task = tokio::spawn(async move {
            let run = service.drive_loaded(order, &items, card);
            let result = match context {
                Some(context) => shared_kernel::with_request_context(context, run).await,
                None => run.await,
            };
            result.unwrap_or_else(|error| {
                tracing::warn!(order_id = %id, %error, "an order saga stopped; the recovery sweep will resume it");
                None
            })
        });
        tokio::time::timeout(self.inner.settings.placement_wait, task).await.ok().and_then(Result::ok).flatten()
    }

    /// Waits (up to the placement wait) for a saga another request is driving.
    async fn wait_until_settled(&self, id: OrderId) -> Result<orders::Model, ApiError> {
        let deadline = tokio::time::Instant::now() + self.inner.settings.placement_wait;
        loop {
            let order = self.load(id).await?.ok_or(ApiError::Internal)?;
            if order.step == Step::Done.as_str() || tokio::time::Instant::now() >= deadline {
                return Ok(order);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The order, for its owner or an admin; 404 for anyone else, as for an order that does not
    /// exist (the check runs either way, so nobody learns which).
    async fn load_for(&self, caller: &Caller, id: OrderId) -> Result<orders::Model, ApiError> {
        let row = self.load(id).await?;
        let owner = row.as_ref().map_or(UserId::from_uuid(uuid::Uuid::nil()), |row| UserId::from_uuid(row.customer_id));
        caller.require_self_or_admin(owner, "order")?;
        row.ok_or_else(|| ApiError::not_found("order not found"))
    }

    async fn load(&self, id: OrderId) -> Result<Option<orders::Model>, ApiError> {
        orders::Entity::find_by_id(id.as_uuid()).one(&self.inner.db).await.map_err(db_error)
    }

    async fn items_of(&self, orders: &[uuid::Uuid]) -> Result<HashMap<uuid::Uuid, Vec<order_items::Model>>, ApiError> {
        let rows = order_items::Entity::find()
            .filter(order_items::Column::OrderId.is_in(orders.iter().copied()))
            .order_by_asc(order_items::Column::OrderId)
            .order_by_asc(order_items::Column::LineNo)
            .all(&self.inner.db)
            .await
            .map_err(db_error)?;
        let mut by_order: HashMap<uuid::Uuid, Vec<order_items::Model>> = HashMap::new();
        for row in rows {
            by_order.entry(row.order_id).or_default().push(row);
        }
        Ok(by_order)
    }

    /// Views of `rows`, with their items and current product names, in the same order.
    async fn views(&self, rows: Vec<orders::Model>) -> Result<Vec<OrderView>, ApiError> {
        let ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.id).collect();
        let mut items = self.items_of(&ids).await?;
        let products: BTreeSet<uuid::Uuid> = items.values().flatten().map(|item| item.product_id).collect();
        let names: HashMap<uuid::Uuid, String> = product_names::Entity::find()
            .filter(product_names::Column::ProductId.is_in(products))
            .all(&self.inner.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| (row.product_id, row.name))
            .collect();
        rows.into_iter()
            .map(|row| {
                let lines = items.remove(&row.id).unwrap_or_default();
                view(row, &lines, &names)
            })
            .collect()
    }

    async fn view_of(&self, row: orders::Model) -> Result<OrderView, ApiError> {
        self.views(vec![row]).await?.pop().ok_or(ApiError::Internal)
    }

    async fn is_deactivated(&self, user: UserId) -> Result<bool, ApiError> {
        let row = customer_status::Entity::find_by_id(user.as_uuid()).one(&self.inner.db).await.map_err(db_error)?;
        Ok(row.is_some_and(|row| !row.active))
    }

    /// An existing placement under `key`: the same request gets its order (waiting for the saga
    /// like the first request did); another request is 409.
    async fn replay(&self, existing: idempotency_keys::Model, hash: &str) -> Result<Placement, ApiError> {
        if existing.request_hash != hash {
            return Err(ApiError::conflict("this Idempotency-Key was used with another request body"));
        }
        let order = self.wait_until_settled(OrderId::from_uuid(existing.order_id)).await?;
        Ok(Placement { order: self.view_of(order).await?, replayed: true })
    }

    async fn find_key(&self, customer: UserId, key: &str) -> Result<Option<idempotency_keys::Model>, ApiError> {
        idempotency_keys::Entity::find_by_id((customer.as_uuid(), key.to_owned())).one(&self.inner.db).await.map_err(db_error)
    }
}

#[async_trait::async_trait]
impl OrdersApi for OrdersService {
    #[tracing::instrument(skip_all)]
    async fn place_order(&self, caller: &Caller, idempotency_key: String, order: PlaceOrder) -> Result<Placement, ApiError> {
        let customer = caller.require_user()?.id;
        validate_key(&idempotency_key)?;
        validate_lines(&order)?;
        let hash = request_hash(&order);
        if self.is_deactivated(customer).await? {
            return Err(ApiError::forbidden("this account is deactivated and cannot place orders"));
        }
        // No look-up of the key first: a new key is the common case, and a repeat loses on the
        // key's primary key in the placement transaction below, then replays.

        // Prices as the catalog has them now; they are the prices charged.
        let ids: Vec<ProductId> = order.items.iter().map(|line| line.product_id).collect();
        let products: HashMap<ProductId, ProductView> =
            self.inner.catalog.get_products(&self.inner.identity, ids).await?.into_iter().map(|p| (p.id, p)).collect();
        let mut errors = Vec::new();
        let mut priced = Vec::with_capacity(order.items.len());
        for (i, line) in order.items.iter().enumerate() {
            match products.get(&line.product_id) {
                Some(product) => priced.push((line, product.price)),
                None => errors.push(FieldError { field: format!("items[{i}].product_id"), message: "no such product".to_owned() }),
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(errors));
        }
        let currency = priced[0].1.currency();
        if priced.iter().any(|(_, price)| price.currency() != currency) {
            return Err(ApiError::invalid_field("items", "all products of an order must be priced in one currency"));
        }
        let total = priced
            .iter()
            .try_fold(Money::zero(currency), |sum, (line, price)| {
                price.checked_mul(line.quantity).and_then(|line_total| sum.checked_add(line_total))
            })
            .map_err(|_| ApiError::invalid_field("items", "the order total is too large"))?;
        if total.amount() <= 0 {
            return Err(ApiError::invalid_field("items", "the order total must be positive"));
        }
        // The order, its items, its key and its first event, in one transaction: a concurrent
        // request with the same key loses on the key's primary key and replays this order.
        let inner = &self.inner;
        let now = stored_precision(inner.clock.now());
        let id = OrderId::new();
        let fresh = Saga::new().parts();
        let mut unit = UnitOfWork::begin(&inner.db, &inner.outbox).await.map_err(db_error)?;
        // The order row first (the key points at it), then the key.
        let placed_row = orders::ActiveModel {
            id: Set(id.as_uuid()),
            customer_id: Set(customer.as_uuid()),
            status: Set(fresh.status.to_string()),
            step: Set(fresh.step.as_str().to_owned()),
            stock_reserved: Set(false),
            stock_committed: Set(false),
            payment_captured: Set(false),
            failure_reason: Set(None),
            total_amount: Set(total.amount()),
            currency: Set(currency.to_string()),
            card_last4: Set(order.payment.card_number.last4().to_owned()),
            saga_version: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*unit)
        .await
        .map_err(db_error)?;
        let claimed = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
            customer_id: Set(customer.as_uuid()),
            key: Set(idempotency_key.clone()),
            request_hash: Set(hash.clone()),
            order_id: Set(id.as_uuid()),
            created_at: Set(now),
        })
        .on_conflict(OnConflict::columns([idempotency_keys::Column::CustomerId, idempotency_keys::Column::Key]).do_nothing().to_owned())
        .exec_without_returning(&*unit)
        .await;
        let inserted = match claimed {
            Ok(rows) => rows,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => 0,
            Err(error) => return Err(db_error(error)),
        };
        if inserted == 0 {
            // Another request with this key won: roll this one back and answer with its order.
            drop(unit);
            let existing = self.find_key(customer, &idempotency_key).await?.ok_or(ApiError::Internal)?;
            return self.replay(existing, &hash).await;
        }
        let mut item_rows = Vec::with_capacity(priced.len());
        for (no, (line, price)) in priced.iter().enumerate() {
            let item = order_items::ActiveModel {
                order_id: Set(id.as_uuid()),
                line_no: Set(i32::try_from(no).unwrap_or(i32::MAX)),
                product_id: Set(line.product_id.as_uuid()),
                quantity: Set(i32::try_from(line.quantity).unwrap_or(i32::MAX)),
                unit_price_amount: Set(price.amount()),
                unit_price_currency: Set(price.currency().to_string()),
            }
            .insert(&*unit)
            .await
            .map_err(db_error)?;
            item_rows.push(item);
        }
        // Orders' read model of product names is at least as new as the prices just read.
        // In id order: two placements sharing products lock their rows in the same order.
        let mut by_id: Vec<&ProductView> = products.values().collect();
        by_id.sort_by_key(|product| product.id);
        for product in by_id {
            crate::projections::upsert_product_name(&*unit, product.id, &product.sku, &product.name, product.version)
                .await
                .map_err(db_error)?;
        }
        let placed = OrderStatusChangedV1 {
            order_id: id,
            customer_id: customer,
            status: OrderStatus::Pending,
            failure_reason: None,
            changed_at: now,
        };
        unit.publish(&placed, now, shared_kernel::current_request_context().as_ref()).await.map_err(db_error)?;
        match unit.commit().await {
            Ok(()) => {}
            // PostgreSQL reports the lost race on the key at commit time under some plans.
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let existing = self.find_key(customer, &idempotency_key).await?.ok_or(ApiError::Internal)?;
                return self.replay(existing, &hash).await;
            }
            Err(error) => return Err(db_error(error)),
        }
        tracing::info!(order_id = %id, lines = priced.len(), "order placed");

        // The answer is built from what this request holds: no reads after the saga.
        let row = match self.drive_detached(placed_row, item_rows.clone(), Some(order.payment.card_number)).await {
            Some(finished) => finished,
            None => self.load(id).await?.ok_or(ApiError::Internal)?,
        };
        let names: HashMap<uuid::Uuid, String> = products.values().map(|p| (p.id.as_uuid(), p.name.clone())).collect();
        Ok(Placement { order: view(row, &item_rows, &names)?, replayed: false })
    }

    async fn get_order(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        let row = self.load_for(caller, id).await?;
        self.view_of(row).await
    }

    async fn list_orders(&self, caller: &Caller, page: PageRequest) -> Result<Page<OrderView>, ApiError> {
        let customer = caller.require_user()?.id;
        let mut select = orders::Entity::find()
            .filter(orders::Column::CustomerId.eq(customer.as_uuid()))
            .order_by_desc(orders::Column::Id)
            .limit(u64::from(page.limit()) + 1);
        if let Some(before) = page.after_key()? {
            let before =
                uuid::Uuid::parse_str(&before).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
            select = select.filter(orders::Column::Id.lt(before));
        }
        let rows = select.all(&self.inner.db).await.map_err(db_error)?;
        let page = Page::from_overfetched(rows, page.limit(), |row| row.id.to_string());
        let items = self.views(page.items).await?;
        Ok(Page { items, next_cursor: page.next_cursor })
    }

    #[tracing::instrument(skip_all, fields(order_id = %id))]
    async fn cancel_order(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        let row = self.load_for(caller, id).await?;
        let mut saga = Saga::restore(parts_of(&row)?);
        match (saga.status(), saga.next_step()) {
            (saga::OrderStatus::Cancelled, _) => return self.view_of(row).await,
            // A cancellation already under way: help it along.
            (saga::OrderStatus::Confirmed, step) if step != Step::Done => {}
            _ => {
                saga.cancel().map_err(|error| ApiError::conflict(error.to_string()))?;
                let items = self.items_of(&[row.id]).await?.remove(&row.id).unwrap_or_default();
                if self.save(&row, &items, &saga, saga.status()).await?.is_none() {
                    return Err(ApiError::conflict("the order changed meanwhile; try again"));
                }
                tracing::info!("cancelling a confirmed order");
            }
        }
        let items = self.items_of(&[id.as_uuid()]).await?.remove(&id.as_uuid()).unwrap_or_default();
        let row = self.load(id).await?.ok_or(ApiError::Internal)?;
        let row = match self.drive_detached(row, items, None).await {
            Some(finished) => finished,
            None => self.load(id).await?.ok_or(ApiError::Internal)?,
        };
        self.view_of(row).await
    }
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid_field("Idempotency-Key", "must be 1 to 255 visible ASCII characters"));
    }
    Ok(())
}

fn validate_lines(order: &PlaceOrder) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if order.items.is_empty() || order.items.len() > MAX_LINES {
        errors.push(FieldError { field: "items".into(), message: format!("must have 1 to {MAX_LINES} lines") });
    }
    let mut seen = BTreeSet::new();
    for (i, line) in order.items.iter().enumerate() {
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            errors.push(FieldError { field: format!("items[{i}].quantity"), message: format!("must be 1 to {MAX_QUANTITY}") });
        }
        if !seen.insert(line.product_id) {
            errors.push(FieldError { field: format!("items[{i}].product_id"), message: "appears more than once".into() });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid(errors)) }
}

/// What identifies a placement request: its lines as sent and the card's last four digits. The
/// full card number is deliberately left out: a hash of it could be brute-forced, and it must
/// never be stored. (Another card with the same last four digits counts as the same request.)
fn request_hash(order: &PlaceOrder) -> String {
    let mut hasher = Sha256::new();
    for line in &order.items {
        hasher.update(line.product_id.as_uuid().as_bytes());
        hasher.update(line.quantity.to_be_bytes());
    }
    hasher.update(order.payment.card_number.last4().as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn quantity(item: &order_items::Model) -> u32 {
    u32::try_from(item.quantity).unwrap_or(0)
}

fn currency_of(code: &str) -> Currency {
    Currency::parse(code).unwrap_or(Currency::EUR)
}

fn total_of(order: &orders::Model) -> Money {
    Money::new(order.total_amount, currency_of(&order.currency))
}

fn parts_of(order: &orders::Model) -> Result<SagaParts, ApiError> {
    let corrupt = || {
        tracing::error!(order_id = %order.id, status = %order.status, step = %order.step, "an order row holds an unknown saga state");
        ApiError::Internal
    };
    Ok(SagaParts {
        status: saga::OrderStatus::parse(&order.status).ok_or_else(corrupt)?,
        step: Step::parse(&order.step).ok_or_else(corrupt)?,
        stock_reserved: order.stock_reserved,
        stock_committed: order.stock_committed,
        payment_captured: order.payment_captured,
        failure_reason: order.failure_reason.clone(),
    })
}

fn contract_status(status: saga::OrderStatus) -> OrderStatus {
    match status {
        saga::OrderStatus::Pending => OrderStatus::Pending,
        saga::OrderStatus::Confirmed => OrderStatus::Confirmed,
        saga::OrderStatus::Rejected => OrderStatus::Rejected,
        saga::OrderStatus::Cancelled => OrderStatus::Cancelled,
    }
}

fn view(row: orders::Model, items: &[order_items::Model], names: &HashMap<uuid::Uuid, String>) -> Result<OrderView, ApiError> {
    let status = contract_status(parts_of(&row)?.status);
    let items = items
        .iter()
        .map(|item| {
            let unit_price = Money::new(item.unit_price_amount, currency_of(&item.unit_price_currency));
            OrderItemView {
                product_id: ProductId::from_uuid(item.product_id),
                product_name: names.get(&item.product_id).cloned().unwrap_or_default(),
                quantity: quantity(item),
                unit_price,
                line_total: unit_price.checked_mul(quantity(item)).unwrap_or(unit_price),
            }
        })
        .collect();
    Ok(OrderView {
        id: OrderId::from_uuid(row.id),
        customer_id: UserId::from_uuid(row.customer_id),
        status,
        items,
        total: total_of(&row),
        failure_reason: row.failure_reason.clone(),
        card_last4: row.card_last4,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(crate) fn db_error(error: DbErr) -> ApiError {
    shared_kernel::db::api_error("orders", error)
}

/// `at` to microseconds, what both databases store: an answer built in memory then equals what
/// a later read gives back.
fn stored_precision(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(at, 6)
}
