//! Stock: set by an admin, and held for orders: reserved, then committed (sold) or released, and
//! restocked when a sold order is cancelled; reservations expire as the last line of defence.
//! Only the orders service (or an admin) may hold stock: `catalog_contract::services_allowed`.
//!
//! Every change of stock is one conditional `UPDATE` (`… WHERE on_hand - reserved >= quantity`),
//! never a read-modify-write in Rust, and rows are locked in product-id order, so two
//! reservations never oversell or deadlock.

use crate::cache::Tag;
use crate::context::Context;
use crate::domain::{ReservationLines, StockQuantity};
use crate::entities::{products, reservation_orders, reservations};
use crate::store::{self, stored_status};
use crate::views::{product_view, stored_price};
use catalog_contract::events::{StockChange, StockChangedV1};
use catalog_contract::{
    CommitOutcome, ProductView, Reservation, ReservationStatus, ReserveLine, ReserveOutcome, ReservedLine, RestockOutcome, SetStock,
    StockRefusal, services_allowed,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, SqlErr};
use shared_kernel::outbox::UnitOfWork;
use shared_kernel::{ApiError, Caller, OrderId, ProductId};

/// A reservation status change and what it does to each product's stock (per unit reserved).
#[derive(Debug, Clone, Copy)]
struct Transition {
    from: ReservationStatus,
    to: ReservationStatus,
    /// Only reservations not yet expired move (a commit must not revive an expired one).
    unexpired_only: bool,
    on_hand: i64,
    reserved: i64,
    /// What the event says.
    change: StockChange,
}

/// Stock held for an order goes back to available.
const RELEASE: Transition = Transition {
    from: ReservationStatus::Reserved,
    to: ReservationStatus::Released,
    unexpired_only: false,
    on_hand: 0,
    reserved: -1,
    change: StockChange::Released,
};
/// Held stock is sold: it leaves on hand and reserved alike.
const COMMIT: Transition = Transition {
    from: ReservationStatus::Reserved,
    to: ReservationStatus::Committed,
    unexpired_only: true,
    on_hand: -1,
    reserved: -1,
    change: StockChange::Committed,
};
/// Sold stock of a cancelled order comes back on hand.
const RESTOCK: Transition = Transition {
    from: ReservationStatus::Committed,
    to: ReservationStatus::Restocked,
    unexpired_only: false,
    on_hand: 1,
    reserved: 0,
    change: StockChange::Restocked,
};

impl Context {
    #[tracing::instrument(skip_all, fields(product_id = %id))]
    pub(crate) async fn set_stock(&self, caller: &Caller, id: ProductId, stock: SetStock) -> Result<ProductView, ApiError> {
        caller.require_admin()?;
        let on_hand = StockQuantity::parse("on_hand", stock.on_hand)?;
        let now = self.clock.now();
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await?;
        let updated = products::Entity::update_many()
            .col_expr(products::Column::OnHand, Expr::value(on_hand.get()))
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(id.as_uuid()))
            .filter(products::Column::Reserved.lte(on_hand.get()))
            .exec(&*unit)
            .await?;
        if updated.rows_affected == 0 {
            unit.rollback().await?;
            let current = store::product(&self.db, id.as_uuid()).await?;
            return Err(ApiError::conflict(format!(
                "{} units are reserved for orders: stock on hand cannot go below that",
                current.reserved
            )));
        }
        let product = store::product(&*unit, id.as_uuid()).await?;
        publish_stock_changed(&mut unit, &[product.id], StockChange::Set, None, now).await?;
        unit.commit().await?;
        self.cache.invalidate(&Tag::products([product.id])).await;
        product_view(&product)
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub(crate) async fn reserve(&self, caller: &Caller, order_id: OrderId, lines: Vec<ReserveLine>) -> Result<ReserveOutcome, ApiError> {
        caller.require_service_or_admin(services_allowed::reserve, "catalog.reserve")?;
        let lines = ReservationLines::parse(lines)?;
        let refused = |refusal| Ok(ReserveOutcome::Refused { refusal });
        // A repeat for the order is found by the header's primary key below.
        let products = products::Entity::find().filter(products::Column::Id.is_in(lines.product_ids())).all(&self.db).await?;
        if products.len() != lines.len() {
            return refused(StockRefusal::UnknownProduct);
        }
        let now = self.clock.now();
        // Microseconds: what both databases store, so the answer equals what a read gives back.
        let expires_at = chrono::SubsecRound::trunc_subsecs(now + self.settings.reservation_ttl, 6);
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await?;
        // The order's header goes in first: on SQLite that takes the write lock at once, and a
        // concurrent reserve for the same order (whatever its lines) fails on the primary key
        // instead of holding stock twice.
        let header =
            reservation_orders::ActiveModel { order_id: Set(order_id.as_uuid()), lines_key: Set(lines.key()), created_at: Set(now) };
        if let Err(error) = header.insert(&*unit).await {
            unit.rollback().await?;
            if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                return self.repeated_reservation(order_id, &lines).await;
            }
            return Err(error.into());
        }
        let mut reserved = Vec::with_capacity(lines.len());
        for line in lines.lines() {
            let product = products.iter().find(|p| p.id == line.product_id.as_uuid()).ok_or(ApiError::Internal)?;
            let row = reservations::ActiveModel {
                order_id: Set(order_id.as_uuid()),
                product_id: Set(product.id),
                quantity: Set(i64::from(line.quantity)),
                unit_price_amount: Set(product.price_amount),
                unit_price_currency: Set(product.price_currency.clone()),
                status: Set(stored_status(ReservationStatus::Reserved).to_owned()),
                expires_at: Set(expires_at),
                created_at: Set(now),
            };
            row.insert(&*unit).await?;
            let unit_price = stored_price(product.price_amount, &product.price_currency, "product", product.id)?;
            reserved.push(ReservedLine { product_id: line.product_id, quantity: line.quantity, unit_price });
        }
        for line in lines.lines() {
            let quantity = i64::from(line.quantity);
            let held = products::Entity::update_many()
                .col_expr(products::Column::Reserved, Expr::col(products::Column::Reserved).add(quantity))
                .filter(products::Column::Id.eq(line.product_id.as_uuid()))
                .filter(Expr::col(products::Column::OnHand).sub(Expr::col(products::Column::Reserved)).gte(quantity))
                .exec(&*unit)
                .await?;
            if held.rows_affected != 1 {
                unit.rollback().await?;
                return refused(StockRefusal::OutOfStock { product_id: line.product_id });
            }
        }
        let touched = lines.product_ids();
        publish_stock_changed(&mut unit, &touched, StockChange::Reserved, Some(order_id), now).await?;
        unit.commit().await?;
        self.cache.invalidate(&Tag::products(touched)).await;
        tracing::info!(lines = lines.len(), "reserved stock");
        // What was just written, as `store::reservation_of` would read it back.
        Ok(ReserveOutcome::Reserved {
            reservation: Reservation { order_id, status: ReservationStatus::Reserved, lines: reserved, expires_at },
        })
    }

    /// A reserve for an order that already has a header: the same reservation again, or a
    /// refusal when the order's lines differ.
    async fn repeated_reservation(&self, order_id: OrderId, lines: &ReservationLines) -> Result<ReserveOutcome, ApiError> {
        let header = reservation_orders::Entity::find_by_id(order_id.as_uuid()).one(&self.db).await?;
        if header.is_some_and(|header| header.lines_key != lines.key()) {
            return Ok(ReserveOutcome::Refused { refusal: StockRefusal::OtherLinesReserved });
        }
        match store::reservation_of(&self.db, order_id).await? {
            Some(reservation) => Ok(ReserveOutcome::Reserved { reservation }),
            None => Err(ApiError::unavailable("the reservation is being made; try again", 1)),
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub(crate) async fn release(&self, caller: &Caller, order_id: OrderId) -> Result<(), ApiError> {
        caller.require_service_or_admin(services_allowed::release, "catalog.release")?;
        self.transition(order_id, RELEASE).await.map(|_| ())
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub(crate) async fn commit(&self, caller: &Caller, order_id: OrderId) -> Result<CommitOutcome, ApiError> {
        caller.require_service_or_admin(services_allowed::commit, "catalog.commit")?;
        if self.transition(order_id, COMMIT).await? {
            return Ok(CommitOutcome::Committed);
        }
        Ok(match store::reservation_of(&self.db, order_id).await? {
            Some(reservation) if reservation.status == ReservationStatus::Committed => CommitOutcome::Committed,
            // Released, expired, or committed and then restocked: not a sale now.
            Some(_) => CommitOutcome::Lapsed,
            None => CommitOutcome::NoReservation,
        })
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub(crate) async fn restock(&self, caller: &Caller, order_id: OrderId) -> Result<RestockOutcome, ApiError> {
        caller.require_service_or_admin(services_allowed::restock, "catalog.restock")?;
        if self.transition(order_id, RESTOCK).await? {
            return Ok(RestockOutcome::Restocked);
        }
        Ok(match store::reservation_of(&self.db, order_id).await? {
            Some(reservation) if reservation.status == ReservationStatus::Restocked => RestockOutcome::Restocked,
            Some(_) => RestockOutcome::NotCommitted,
            None => RestockOutcome::NoReservation,
        })
    }

    /// Releases reservations past their time; returns how many orders' reservations it released.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn expire_reservations(&self) -> Result<usize, ApiError> {
        let expired = store::expired_reservations(&self.db, self.clock.now(), 100).await?;
        for order_id in &expired {
            self.transition(*order_id, RELEASE).await?;
            tracing::info!(order_id = %order_id, "released an expired reservation");
        }
        Ok(expired.len())
    }

    /// Moves an order's rows along `change` and adjusts each product's stock to match, in one
    /// transaction. Returns whether anything moved (nothing: the order was not in `change.from`).
    async fn transition(&self, order_id: OrderId, change: Transition) -> Result<bool, ApiError> {
        let now = self.clock.now();
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await?;
        let mut moved = store::move_reservation(&*unit, order_id, change.from, change.to, now, change.unexpired_only).await?;
        if moved.is_empty() {
            unit.rollback().await?;
            return Ok(false);
        }
        // Product-id order: every transaction locks products in the same order.
        moved.sort_by_key(|row| row.product_id);
        let touched: Vec<uuid::Uuid> = moved.iter().map(|row| row.product_id).collect();
        for row in &moved {
            products::Entity::update_many()
                .col_expr(products::Column::OnHand, Expr::col(products::Column::OnHand).add(change.on_hand * row.quantity))
                .col_expr(products::Column::Reserved, Expr::col(products::Column::Reserved).add(change.reserved * row.quantity))
                .filter(products::Column::Id.eq(row.product_id))
                .exec(&*unit)
                .await?;
        }
        publish_stock_changed(&mut unit, &touched, change.change, Some(order_id), now).await?;
        unit.commit().await?;
        self.cache.invalidate(&Tag::products(touched)).await;
        Ok(true)
    }
}

/// Tells every instance (and any consumer) that these products' stock changed.
async fn publish_stock_changed(
    unit: &mut UnitOfWork,
    products: &[uuid::Uuid],
    change: StockChange,
    order_id: Option<OrderId>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let event =
        StockChangedV1 { product_ids: products.iter().copied().map(ProductId::from_uuid).collect(), change, order_id, changed_at: now };
    unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await?;
    Ok(())
}
