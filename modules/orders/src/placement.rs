//! Placing an order: the lines checked and priced, the order, its lines, its idempotency key and
//! its first event written in one transaction, then the saga driven while the request waits.

use crate::context::Context;
use crate::domain::{IdempotencyKey, Order, OrderLines, request_fingerprint};
use crate::entities::{customer_status, idempotency_keys};
use crate::store;
use crate::store::stored_precision;
use crate::views::view;
use catalog_contract::ProductView;
use orders_contract::{OrderRequest, Placement};
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set, SqlErr};
use shared_kernel::outbox::UnitOfWork;
use shared_kernel::{ApiError, Caller, OrderId, ProductId, UserId};
use std::collections::HashMap;
use std::time::Duration;

impl Context {
    pub(crate) async fn place(&self, caller: &Caller, idempotency_key: String, request: OrderRequest) -> Result<Placement, ApiError> {
        let customer = caller.require_user()?.id;
        let key = IdempotencyKey::parse(idempotency_key)?;
        let lines = OrderLines::parse(request.items.iter().map(|line| (line.product_id, line.quantity)))?;
        let payment = request.payment_method;
        if payment.card_last4.len() != 4 || !payment.card_last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid_field("payment_method.card_last4", "must be four digits"));
        }
        let fingerprint = request_fingerprint(&lines, &payment.card_last4);
        if self.is_deactivated(customer).await? {
            return Err(ApiError::forbidden("this account is deactivated and cannot place orders"));
        }
        // Payments refusing calls (its circuit open) would reject the order after its stock was
        // reserved: say so now, before anything is written or reserved.
        if let Some(retry_after) = self.inner.payments_gate.refusing() {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            return Err(ApiError::not_sent("payments is unavailable; no order was placed, try again later", seconds));
        }
        // No look-up of the key first: a new key is the common case, and a repeat loses on the
        // key's primary key in the placement transaction below, then replays.

        // Prices as the catalog has them now; they are the prices charged.
        let inner = &self.inner;
        let products: HashMap<ProductId, ProductView> =
            inner.catalog.get_products(&inner.identity, lines.product_ids()).await?.into_iter().map(|p| (p.id, p)).collect();
        let priced = lines.price(|id| products.get(&id).map(|product| product.price))?;
        let now = stored_precision(inner.clock.now());
        let order = Order::place(OrderId::new(), customer, priced, payment, now);

        // The order, its lines, its key and its first event, in one transaction: a concurrent
        // request with the same key loses on the key's primary key and replays that order.
        let mut unit = UnitOfWork::begin(&inner.db, &inner.outbox).await?;
        // The order row first (the key points at it), then the key.
        store::insert_order(&*unit, &order).await?;
        let claimed = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
            customer_id: Set(customer.as_uuid()),
            key: Set(key.as_str().to_owned()),
            request_hash: Set(fingerprint.clone()),
            order_id: Set(order.id().as_uuid()),
            created_at: Set(now),
        })
        .on_conflict(OnConflict::columns([idempotency_keys::Column::CustomerId, idempotency_keys::Column::Key]).do_nothing().to_owned())
        .exec_without_returning(&*unit)
        .await;
        let inserted = match claimed {
            Ok(rows) => rows,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => 0,
            Err(error) => return Err(error.into()),
        };
        if inserted == 0 {
            // Another request with this key won: roll this one back and answer with its order.
            drop(unit);
            return self.replay(customer, &key, &fingerprint).await;
        }
        store::insert_lines(&*unit, &order).await?;
        // Orders' read model of product names is at least as new as the prices just read.
        // In id order: two placements sharing products lock their rows in the same order.
        let mut by_id: Vec<&ProductView> = products.values().collect();
        by_id.sort_by_key(|product| product.id);
        for product in by_id {
            crate::projections::upsert_product_name(&*unit, product.id, &product.sku, &product.name, product.version).await?;
        }
        unit.publish(&store::status_changed(&order), now, shared_kernel::current_request_context().as_ref()).await?;
        match unit.commit().await {
            Ok(()) => {}
            // PostgreSQL reports the lost race on the key at commit time under some plans.
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return self.replay(customer, &key, &fingerprint).await;
            }
            Err(error) => return Err(error.into()),
        }
        tracing::info!(order_id = %order.id(), lines = order.lines().len(), "order placed");

        // The answer is built from what this request holds: no reads after the saga.
        let id = order.id();
        let finished = match self.drive_detached(order, true).await {
            Some(finished) => finished,
            None => store::load(&inner.db, id).await?.ok_or(ApiError::Internal)?,
        };
        let names: HashMap<ProductId, String> = products.into_values().map(|p| (p.id, p.name)).collect();
        Ok(Placement { order: view(&finished, &names), replayed: false })
    }

    /// The placement already made under `key`: the same request gets its order (waiting for the
    /// saga as the first request did); another request is 409.
    async fn replay(&self, customer: UserId, key: &IdempotencyKey, fingerprint: &str) -> Result<Placement, ApiError> {
        let existing = idempotency_keys::Entity::find_by_id((customer.as_uuid(), key.as_str().to_owned()))
            .one(&self.inner.db)
            .await?
            .ok_or(ApiError::Internal)?;
        if existing.request_hash != fingerprint {
            return Err(ApiError::conflict("this Idempotency-Key was used with another request body"));
        }
        let order = self.wait_until_settled(OrderId::from_uuid(existing.order_id)).await?;
        Ok(Placement { order: self.view_of(order).await?, replayed: true })
    }

    /// Waits (up to the placement wait) for a saga another request is driving.
    async fn wait_until_settled(&self, id: OrderId) -> Result<Order, ApiError> {
        let deadline = tokio::time::Instant::now() + self.inner.settings.placement_wait;
        loop {
            let order = store::load(&self.inner.db, id).await?.ok_or(ApiError::Internal)?;
            if order.is_done() || tokio::time::Instant::now() >= deadline {
                return Ok(order);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether orders' projection of users' events says the account is deactivated.
    async fn is_deactivated(&self, user: UserId) -> Result<bool, ApiError> {
        let row = customer_status::Entity::find_by_id(user.as_uuid()).one(&self.inner.db).await?;
        Ok(row.is_some_and(|row| !row.active))
    }
}
