//! The catalog's rows: the queries its use cases share, and the names its reservation statuses
//! are stored under.

use crate::entities::{categories, products, reservations};
use crate::views::{product_view, stored_price};
use catalog_contract::{ProductQuery, ProductView, Reservation, ReservationStatus, ReservedLine};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, LikeExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use shared_kernel::{ApiError, CategoryId, OrderId, Page, ProductId};

/// A reservation status as its rows store it (every match is exhaustive, so a new status must
/// be given a name here).
pub(crate) const fn stored_status(status: ReservationStatus) -> &'static str {
    match status {
        ReservationStatus::Reserved => "reserved",
        ReservationStatus::Committed => "committed",
        ReservationStatus::Released => "released",
        ReservationStatus::Restocked => "restocked",
    }
}

fn parse_stored_status(name: &str) -> Option<ReservationStatus> {
    [ReservationStatus::Reserved, ReservationStatus::Committed, ReservationStatus::Released, ReservationStatus::Restocked]
        .into_iter()
        .find(|status| stored_status(*status) == name)
}

/// A product's row, or 404. A write reads back what it changed with this too, inside its
/// transaction (not `UPDATE … RETURNING`: SQLite has been seen to return NULL there for
/// `units_sold`, a column added by a later migration).
pub(crate) async fn product(connection: &impl ConnectionTrait, id: uuid::Uuid) -> Result<products::Model, ApiError> {
    products::Entity::find_by_id(id).one(connection).await?.ok_or_else(|| ApiError::not_found("product not found"))
}

pub(crate) async fn category_exists(connection: &impl ConnectionTrait, id: CategoryId) -> Result<bool, ApiError> {
    Ok(categories::Entity::find_by_id(id.as_uuid()).one(connection).await?.is_some())
}

/// A page of products in id order, filtered by category and by text (case-insensitive, `%` and
/// `_` taken literally).
pub(crate) async fn products_page(connection: &impl ConnectionTrait, query: ProductQuery) -> Result<Page<ProductView>, ApiError> {
    let page = &query.page;
    let mut select = products::Entity::find().order_by_asc(products::Column::Id).limit(u64::from(page.limit()) + 1);
    if let Some(category) = query.category {
        select = select.filter(products::Column::CategoryId.eq(category.as_uuid()));
    }
    if let Some(text) = query.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        select = select.filter(Expr::col(products::Column::SearchText).like(LikeExpr::new(format!("%{escaped}%")).escape('\\')));
    }
    if let Some(after) = page.after_key()? {
        let after = uuid::Uuid::parse_str(&after).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
        select = select.filter(products::Column::Id.gt(after));
    }
    let rows = select.all(connection).await?;
    let page = Page::from_overfetched(rows, page.limit(), |row| row.id.to_string());
    Ok(Page { items: page.items.iter().map(product_view).collect::<Result<_, _>>()?, next_cursor: page.next_cursor })
}

/// An order's reservation as the contract shows it, if it has one.
pub(crate) async fn reservation_of(connection: &impl ConnectionTrait, order_id: OrderId) -> Result<Option<Reservation>, ApiError> {
    let rows = reservations::Entity::find()
        .filter(reservations::Column::OrderId.eq(order_id.as_uuid()))
        .order_by_asc(reservations::Column::ProductId)
        .all(connection)
        .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let status = parse_stored_status(&first.status).ok_or_else(|| {
        tracing::error!(order_id = %order_id, status = %first.status, "a reservation row holds an unknown status");
        ApiError::Internal
    })?;
    Ok(Some(Reservation {
        order_id,
        status,
        expires_at: first.expires_at,
        lines: rows
            .iter()
            .map(|row| {
                Ok(ReservedLine {
                    product_id: ProductId::from_uuid(row.product_id),
                    quantity: u32::try_from(row.quantity).unwrap_or(u32::MAX),
                    unit_price: stored_price(row.unit_price_amount, &row.unit_price_currency, "reservation", row.order_id)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
    }))
}

/// Orders (at most `limit`) holding stock whose reservation expired before `now`.
pub(crate) async fn expired_reservations(
    connection: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<OrderId>, ApiError> {
    let expired: Vec<uuid::Uuid> = reservations::Entity::find()
        .select_only()
        .column(reservations::Column::OrderId)
        .distinct()
        .filter(reservations::Column::Status.eq(stored_status(ReservationStatus::Reserved)))
        .filter(reservations::Column::ExpiresAt.lt(now))
        .limit(limit)
        .into_tuple()
        .all(connection)
        .await?;
    Ok(expired.into_iter().map(OrderId::from_uuid).collect())
}

/// Moves an order's rows from `from` to `to` and returns them: the status change comes first,
/// so the transaction takes its write lock at once and a second caller finds nothing to move.
pub(crate) async fn move_reservation(
    connection: &impl ConnectionTrait,
    order_id: OrderId,
    from: ReservationStatus,
    to: ReservationStatus,
    now: DateTime<Utc>,
    unexpired_only: bool,
) -> Result<Vec<reservations::Model>, DbErr> {
    let mut update = reservations::Entity::update_many()
        .col_expr(reservations::Column::Status, Expr::value(stored_status(to)))
        .filter(reservations::Column::OrderId.eq(order_id.as_uuid()))
        .filter(reservations::Column::Status.eq(stored_status(from)));
    if unexpired_only {
        update = update.filter(reservations::Column::ExpiresAt.gt(now));
    }
    update.exec_with_returning(connection).await
}
