//! Payments' rows: the stored status of a charge, and the queries the use cases share.

use crate::entities::payments;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use shared_kernel::{ApiError, OrderId};

/// A payment's status as stored. Refunds are not a status: they are `refunded_amount`, and the
/// contract's `refunded` / `partially_refunded` are read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Sent to the provider, no answer recorded yet.
    Pending,
    Captured,
    Declined,
    /// The provider failed; trying again may succeed.
    Failed,
    /// The order's saga gave up on the charge before any came (`void_charge`): no charge of the
    /// order is sent from now on. Not a payment to anyone reading: it reads as none.
    Voided,
    /// A failed charge the saga then gave up on: it reads as `failed`, and is never tried again.
    FailedVoided,
}

impl Stored {
    const ALL: [Stored; 6] = [Stored::Pending, Stored::Captured, Stored::Declined, Stored::Failed, Stored::Voided, Stored::FailedVoided];

    /// The name in the `status` column.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Captured => "captured",
            Self::Declined => "declined",
            Self::Failed => "failed",
            Self::Voided => "voided",
            Self::FailedVoided => "failed_voided",
        }
    }

    /// The status of `payment`; a value the code does not know is an error naming the row.
    pub(crate) fn of(payment: &payments::Model) -> Result<Self, ApiError> {
        Self::ALL.into_iter().find(|status| status.as_str() == payment.status).ok_or_else(|| corrupt(payment, "status", &payment.status))
    }
}

/// The statuses a charge may still leave (`failed` may yet turn out captured).
const UNSETTLED: [&str; 2] = ["pending", "failed"];

/// A payment row that does not read back: logged with its ids, answered as 500.
pub(crate) fn corrupt(payment: &payments::Model, what: &str, value: &str) -> ApiError {
    tracing::error!(payment_id = %payment.id, order_id = %payment.order_id, what, value, "a payment row does not read back");
    ApiError::Internal
}

/// The order's payment row, voided or not.
pub(crate) async fn payment_of(connection: &impl ConnectionTrait, order_id: OrderId) -> Result<Option<payments::Model>, ApiError> {
    Ok(payments::Entity::find().filter(payments::Column::OrderId.eq(order_id.as_uuid())).one(connection).await?)
}

/// Sets a payment row's status from `from` to `to` if it still is `from` (another call may have
/// moved it first: a void, a concurrent retry): whether this call moved it.
pub(crate) async fn move_status(
    db: &impl ConnectionTrait,
    payment_id: uuid::Uuid,
    from: Stored,
    to: Stored,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let moved = payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::value(to.as_str()))
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .filter(payments::Column::Id.eq(payment_id))
        .filter(payments::Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    Ok(moved.rows_affected == 1)
}

/// The update recording a charge's outcome, unless one was recorded first (only a charge still
/// unsettled changes).
pub(crate) fn record_outcome(
    payment_id: uuid::Uuid,
    status: Stored,
    charge_id: Option<String>,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<payments::Entity> {
    payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::value(status.as_str()))
        .col_expr(payments::Column::ProviderChargeId, Expr::value(charge_id))
        .col_expr(payments::Column::FailureReason, Expr::value(reason))
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .filter(payments::Column::Id.eq(payment_id))
        .filter(payments::Column::Status.is_in(UNSETTLED))
}
