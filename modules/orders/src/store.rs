//! Orders' rows and the [`Order`] aggregate: an order read back from its row and items (a value
//! that does not read back is an error naming the order, never a default), and each change of
//! its saga written with the events it publishes, in one transaction.

use crate::domain::{Order, OrderParts, PricedLine, PricedLines, Quantity};
use crate::entities::{order_items, orders};
use crate::saga::{self, SagaParts, Step};
use crate::views::contract_status;
use orders_contract::OrderStatus;
use orders_contract::events::{OrderCancelledV1, OrderConfirmedV1, OrderStatusChangedV1, OrderedLine};
use payments_contract::PaymentMethodToken;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use shared_kernel::outbox::{Outbox, UnitOfWork};
use shared_kernel::{ApiError, Currency, Money, OrderId, ProductId, UserId};
use std::collections::HashMap;

/// The order `id` with its lines, if it exists.
pub(crate) async fn load(db: &DatabaseConnection, id: OrderId) -> Result<Option<Order>, ApiError> {
    let Some(row) = orders::Entity::find_by_id(id.as_uuid()).one(db).await? else { return Ok(None) };
    Ok(load_all(db, vec![row]).await?.pop())
}

/// The orders of `rows`, in the same order, with their lines (one query for all of them).
pub(crate) async fn load_all(db: &DatabaseConnection, rows: Vec<orders::Model>) -> Result<Vec<Order>, ApiError> {
    let items = order_items::Entity::find()
        .filter(order_items::Column::OrderId.is_in(rows.iter().map(|row| row.id)))
        .order_by_asc(order_items::Column::OrderId)
        .order_by_asc(order_items::Column::LineNo)
        .all(db)
        .await?;
    let mut by_order: HashMap<uuid::Uuid, Vec<order_items::Model>> = HashMap::new();
    for item in items {
        by_order.entry(item.order_id).or_default().push(item);
    }
    rows.into_iter()
        .map(|row| {
            let items = by_order.remove(&row.id).unwrap_or_default();
            order_of(row, &items)
        })
        .collect()
}

/// Reads an order back; anything that does not is logged with the order's id and answered 500.
fn order_of(row: orders::Model, items: &[order_items::Model]) -> Result<Order, ApiError> {
    let corrupt = |what: &str, value: &str| {
        tracing::error!(order_id = %row.id, what, value, "an order row does not read back");
        ApiError::Internal
    };
    let currency = |code: &str| Currency::parse(code).map_err(|_| corrupt("currency", code));
    let lines = items
        .iter()
        .map(|item| {
            let quantity =
                u32::try_from(item.quantity).ok().and_then(Quantity::new).ok_or_else(|| corrupt("quantity", &item.quantity.to_string()))?;
            let unit_price = Money::new(item.unit_price_amount, currency(&item.unit_price_currency)?);
            Ok(PricedLine { product_id: ProductId::from_uuid(item.product_id), quantity, unit_price })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let lines = PricedLines::new(lines).map_err(|violation| corrupt("lines", &violation.to_string()))?;
    let total = Money::new(row.total_amount, currency(&row.currency)?);
    if lines.total() != total {
        return Err(corrupt("total_amount", &row.total_amount.to_string()));
    }
    let saga = SagaParts {
        status: saga::OrderStatus::parse(&row.status).ok_or_else(|| corrupt("status", &row.status))?,
        step: Step::parse(&row.step).ok_or_else(|| corrupt("step", &row.step))?,
        stock_reserved: row.stock_reserved,
        stock_committed: row.stock_committed,
        payment_captured: row.payment_captured,
        failure_reason: row.failure_reason.clone(),
    };
    Ok(Order::restore(OrderParts {
        id: OrderId::from_uuid(row.id),
        customer_id: UserId::from_uuid(row.customer_id),
        lines,
        card_last4: row.card_last4,
        payment_method: match row.payment_method.as_deref().map(PaymentMethodToken::parse) {
            None => None,
            Some(Ok(token)) => Some(token),
            Some(Err(_)) => return Err(corrupt("payment_method", "[not a token]")),
        },
        saga,
        version: row.saga_version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

/// Writes a new order's row. Its lines follow with [`insert_lines`] once its key is claimed.
pub(crate) async fn insert_order(db: &impl ConnectionTrait, order: &Order) -> Result<(), DbErr> {
    let parts = order.saga().parts();
    orders::ActiveModel {
        id: Set(order.id().as_uuid()),
        customer_id: Set(order.customer_id().as_uuid()),
        status: Set(parts.status.to_string()),
        step: Set(parts.step.as_str().to_owned()),
        stock_reserved: Set(parts.stock_reserved),
        stock_committed: Set(parts.stock_committed),
        payment_captured: Set(parts.payment_captured),
        failure_reason: Set(parts.failure_reason),
        total_amount: Set(order.total().amount()),
        currency: Set(order.total().currency().to_string()),
        card_last4: Set(order.card_last4().to_owned()),
        payment_method: Set(order.payment_method().map(|token| token.expose().to_owned())),
        saga_version: Set(order.version()),
        created_at: Set(order.created_at()),
        updated_at: Set(order.updated_at()),
    }
    .insert(db)
    .await
    .map(drop)
}

pub(crate) async fn insert_lines(db: &impl ConnectionTrait, order: &Order) -> Result<(), DbErr> {
    for (no, line) in order.lines().iter().enumerate() {
        order_items::ActiveModel {
            order_id: Set(order.id().as_uuid()),
            line_no: Set(i32::try_from(no).unwrap_or(i32::MAX)),
            product_id: Set(line.product_id.as_uuid()),
            quantity: Set(i32::try_from(line.quantity.get()).unwrap_or(i32::MAX)),
            unit_price_amount: Set(line.unit_price.amount()),
            unit_price_currency: Set(line.unit_price.currency().to_string()),
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// The event saying where `order` stands now.
pub(crate) fn status_changed(order: &Order) -> OrderStatusChangedV1 {
    OrderStatusChangedV1 {
        order_id: order.id(),
        customer_id: order.customer_id(),
        status: contract_status(order.status()),
        failure_reason: order.failure_reason().map(str::to_owned),
        changed_at: order.updated_at(),
    }
}

/// Saves `after` (the order `before` with its saga moved on) if nobody saved another version
/// meanwhile, and publishes its status change (and, on confirmation or cancellation, the sale)
/// in the same transaction. Returns whether it was saved: `false` when another driver got there
/// first.
pub(crate) async fn save(db: &DatabaseConnection, outbox: &Outbox, before: &Order, after: &Order) -> Result<bool, ApiError> {
    let parts = after.saga().parts();
    let mut unit = UnitOfWork::begin(db, outbox).await?;
    let updated = orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(parts.status.to_string()))
        .col_expr(orders::Column::Step, Expr::value(parts.step.as_str()))
        .col_expr(orders::Column::StockReserved, Expr::value(parts.stock_reserved))
        .col_expr(orders::Column::StockCommitted, Expr::value(parts.stock_committed))
        .col_expr(orders::Column::PaymentCaptured, Expr::value(parts.payment_captured))
        .col_expr(orders::Column::FailureReason, Expr::value(parts.failure_reason))
        .col_expr(orders::Column::SagaVersion, Expr::value(after.version()))
        .col_expr(orders::Column::UpdatedAt, Expr::value(after.updated_at()))
        .filter(orders::Column::Id.eq(before.id().as_uuid()))
        .filter(orders::Column::SagaVersion.eq(before.version()))
        .exec(&*unit)
        .await?;
    if updated.rows_affected != 1 {
        return Ok(false);
    }
    if after.status() != before.status() {
        let context = shared_kernel::current_request_context();
        let now = after.updated_at();
        let changed = status_changed(after);
        let status = changed.status;
        unit.publish(&changed, now, context.as_ref()).await?;
        let lines =
            || after.lines().iter().map(|line| OrderedLine { product_id: line.product_id, quantity: line.quantity.get() }).collect();
        let (order_id, customer_id) = (after.id(), after.customer_id());
        match status {
            OrderStatus::Confirmed => {
                let confirmed = OrderConfirmedV1 { order_id, customer_id, lines: lines(), total: after.total(), confirmed_at: now };
                unit.publish(&confirmed, now, context.as_ref()).await?;
            }
            OrderStatus::Cancelled => {
                let cancelled = OrderCancelledV1 { order_id, customer_id, lines: lines(), cancelled_at: now };
                unit.publish(&cancelled, now, context.as_ref()).await?;
            }
            OrderStatus::Pending | OrderStatus::Rejected => {}
        }
        tracing::info!(order_id = %order_id, status = status.as_str(), "order status changed");
    }
    unit.commit().await?;
    Ok(true)
}

/// Moves a stalled saga to the back of the recovery sweep's queue (a saga that keeps failing must
/// not starve the ones behind it). Best effort: a failure is only logged.
pub(crate) async fn touch(db: &DatabaseConnection, order: &Order, now: chrono::DateTime<chrono::Utc>) {
    let touched = orders::Entity::update_many()
        .col_expr(orders::Column::UpdatedAt, Expr::value(now))
        .filter(orders::Column::Id.eq(order.id().as_uuid()))
        .filter(orders::Column::SagaVersion.eq(order.version()))
        .exec(db)
        .await;
    if let Err(error) = touched {
        tracing::warn!(order_id = %order.id(), %error, "cannot mark a stalled saga");
    }
}

/// `at` to microseconds, what both databases store: an answer built in memory then equals what
/// a later read gives back.
pub(crate) fn stored_precision(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(at, 6)
}
