//! The payments use cases, behind [`PaymentsApi`].

use crate::entities::{payments, refunds};
use crate::provider::{PaymentProvider, ProviderOutcome};
use chrono::Utc;
use payments_contract::{ChargeRequest, PaymentStatus, PaymentView, PaymentsApi};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set, SqlErr};
use shared_kernel::{ApiError, Caller, Currency, Money, OrderId};
use std::sync::Arc;

const PENDING: &str = "pending";
const CAPTURED: &str = "captured";
const DECLINED: &str = "declined";
const FAILED: &str = "failed";

/// The payments module. Cheap to clone.
#[derive(Clone)]
pub struct PaymentsService {
    db: DatabaseConnection,
    provider: Arc<dyn PaymentProvider>,
    pending_timeout: chrono::Duration,
}

impl std::fmt::Debug for PaymentsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsService").finish_non_exhaustive()
    }
}

impl PaymentsService {
    /// `db` must be the payments module's own database, already migrated.
    pub fn new(db: DatabaseConnection, provider: Arc<dyn PaymentProvider>) -> Self {
        Self { db, provider, pending_timeout: chrono::Duration::seconds(60) }
    }

    /// A charge still `pending` after this long lost its caller (a crash, a restart): reading or
    /// refunding it asks the provider what happened and records that. Keep it above the longest
    /// provider call. Default 60 s.
    #[must_use]
    pub fn with_pending_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.pending_timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// Settles `payment` if it is a charge left pending by a caller that went away: the
    /// provider's record decides, and no record means the charge never reached it (failed).
    async fn settle_if_stale(&self, payment: payments::Model) -> Result<payments::Model, ApiError> {
        // A failed charge may still have captured (a timeout is ambiguous): the provider's record
        // decides, and without one it stays failed.
        let failed = payment.status == FAILED;
        if !failed && (payment.status != PENDING || Utc::now() - payment.updated_at < self.pending_timeout) {
            return Ok(payment);
        }
        let found = self.provider.find_charge(&OrderId::from_uuid(payment.order_id).to_string()).await.map_err(|error| {
            tracing::warn!(%error, "cannot ask the payment provider about a pending charge");
            ApiError::unavailable("the payment provider cannot be reached; try again", 2)
        })?;
        let (status, charge_id, reason) = match found {
            Some(ProviderOutcome::Captured { charge_id }) => (CAPTURED, Some(charge_id), None),
            Some(ProviderOutcome::Declined { reason }) => (DECLINED, None, Some(reason)),
            None if failed => return Ok(payment),
            None => (FAILED, None, Some("the charge did not reach the payment provider".to_owned())),
        };
        tracing::info!(order_id = %payment.order_id, status, "settled a charge its caller left pending");
        payments::Entity::update_many()
            .col_expr(payments::Column::Status, Expr::value(status))
            .col_expr(payments::Column::ProviderChargeId, Expr::value(charge_id))
            .col_expr(payments::Column::FailureReason, Expr::value(reason))
            .col_expr(payments::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(payments::Column::Id.eq(payment.id))
            .filter(payments::Column::Status.is_in([PENDING, FAILED]))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        self.load(OrderId::from_uuid(payment.order_id)).await?.ok_or(ApiError::Internal)
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    async fn load(&self, order_id: OrderId) -> Result<Option<payments::Model>, ApiError> {
        payments::Entity::find().filter(payments::Column::OrderId.eq(order_id.as_uuid())).one(&self.db).await.map_err(db_error)
    }
}

/// Charging and refunding: the orders module (a service) or an admin.
fn require_service_or_admin(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Service(_) => Ok(()),
        _ => caller.require_admin().map(|_| ()),
    }
}

#[async_trait::async_trait]
impl PaymentsApi for PaymentsService {
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id))]
    async fn charge(&self, caller: &Caller, request: ChargeRequest) -> Result<PaymentView, ApiError> {
        require_service_or_admin(caller)?;
        if request.amount.amount() <= 0 {
            return Err(ApiError::invalid_field("amount", "must be positive"));
        }
        let now = Utc::now();
        let claim = payments::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            order_id: Set(request.order_id.as_uuid()),
            customer_id: Set(request.customer_id.as_uuid()),
            amount: Set(request.amount.amount()),
            currency: Set(request.amount.currency().to_string()),
            refunded_amount: Set(0),
            status: Set(PENDING.to_owned()),
            provider_charge_id: Set(None),
            failure_reason: Set(None),
            card_last4: Set(request.card_number.last4().to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        // The row is unique per order: a repeat finds the first one.
        let payment = match claim.insert(&self.db).await {
            Ok(payment) => payment,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let existing = self.load(request.order_id).await?.ok_or(ApiError::Internal)?;
                if existing.amount != request.amount.amount() || existing.currency != request.amount.currency().as_str() {
                    return Err(ApiError::conflict("this order was charged with another amount"));
                }
                if existing.status != PENDING && existing.status != FAILED {
                    return view(&existing);
                }
                existing
            }
            Err(error) => return Err(db_error(error)),
        };
        // The order id is the provider's idempotency key: however often this runs, at most one
        // capture exists for the order.
        let outcome = self.provider.charge(&request.order_id.to_string(), &request.card_number, request.amount).await;
        let (status, charge_id, reason) = match &outcome {
            Ok(ProviderOutcome::Captured { charge_id }) => (CAPTURED, Some(charge_id.clone()), None),
            Ok(ProviderOutcome::Declined { reason }) => (DECLINED, None, Some(reason.clone())),
            // A fixed reason: the provider's own text may hold internal detail (it is logged below).
            Err(_) => (FAILED, None, Some("payment provider error".to_owned())),
        };
        let updated = payments::Entity::update_many()
            .col_expr(payments::Column::Status, Expr::value(status))
            .col_expr(payments::Column::ProviderChargeId, Expr::value(charge_id))
            .col_expr(payments::Column::FailureReason, Expr::value(reason))
            .col_expr(payments::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(payments::Column::Id.eq(payment.id))
            .filter(payments::Column::Status.is_in([PENDING, FAILED]))
            .exec_with_returning(&self.db)
            .await
            .map_err(db_error)?;
        if let Err(error) = outcome {
            tracing::warn!(%error, "the payment provider failed; the charge may be retried");
            return Err(ApiError::unavailable("the payment provider failed; try again", 2));
        }
        // A concurrent charge may have recorded the (same) outcome first.
        let payment = match updated.into_iter().next() {
            Some(payment) => payment,
            None => self.load(request.order_id).await?.ok_or(ApiError::Internal)?,
        };
        tracing::info!(status = %payment.status, "charged");
        view(&payment)
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn refund(&self, caller: &Caller, order_id: OrderId, amount: Option<Money>) -> Result<PaymentView, ApiError> {
        require_service_or_admin(caller)?;
        let payment = self.load(order_id).await?.ok_or_else(|| ApiError::not_found("payment not found"))?;
        let payment = self.settle_if_stale(payment).await?;
        if payment.status == PENDING {
            // The charge is still with the provider: its outcome decides whether there is
            // anything to refund, so ask again shortly rather than answer "nothing captured".
            return Err(ApiError::unavailable("the charge is still in progress; try again", 1));
        }
        if payment.status != CAPTURED {
            return Err(ApiError::conflict("only a captured payment can be refunded"));
        }
        // Read back (and checked) before anything is claimed.
        let currency = view(&payment)?.amount.currency();
        let remaining = payment.amount - payment.refunded_amount;
        let requested_full = amount.is_none();
        let amount = match amount {
            None if remaining == 0 => return view(&payment),
            None => remaining,
            Some(money) if money.currency().as_str() != payment.currency => {
                return Err(ApiError::invalid_field("amount", "must be in the payment's currency"));
            }
            Some(money) if money.amount() <= 0 => return Err(ApiError::invalid_field("amount", "must be positive")),
            Some(money) => money.amount(),
        };
        // Claim the amount first, in one conditional update: concurrent refunds can never add up
        // to more than was captured.
        let claimed = payments::Entity::update_many()
            .col_expr(payments::Column::RefundedAmount, Expr::col(payments::Column::RefundedAmount).add(amount))
            .col_expr(payments::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(payments::Column::Id.eq(payment.id))
            .filter(payments::Column::Status.eq(CAPTURED))
            .filter(Expr::col(payments::Column::RefundedAmount).add(amount).lte(Expr::col(payments::Column::Amount)))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if claimed.rows_affected != 1 {
            // A full refund that lost a race to another full refund: it is done, not a conflict.
            if requested_full
                && let Some(now) = self.load(order_id).await?
                && now.refunded_amount == now.amount
            {
                return view(&now);
            }
            return Err(ApiError::conflict("the refund would exceed what was captured"));
        }
        let money = Money::new(amount, currency);
        let charge_id = payment.provider_charge_id.clone().unwrap_or_default();
        let refund_id = match self.provider.refund(&charge_id, money).await {
            Ok(refund_id) => refund_id,
            Err(error) => {
                // Give the claimed amount back: nothing was refunded.
                payments::Entity::update_many()
                    .col_expr(payments::Column::RefundedAmount, Expr::col(payments::Column::RefundedAmount).sub(amount))
                    .filter(payments::Column::Id.eq(payment.id))
                    .exec(&self.db)
                    .await
                    .map_err(db_error)?;
                tracing::warn!(%error, "the payment provider failed a refund");
                return Err(ApiError::unavailable("the payment provider failed; try again", 2));
            }
        };
        refunds::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            payment_id: Set(payment.id),
            amount: Set(amount),
            provider_refund_id: Set(refund_id),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_error)?;
        tracing::info!(amount, "refunded");
        self.load(order_id).await?.ok_or(ApiError::Internal).and_then(|p| view(&p))
    }

    async fn get_payments(&self, caller: &Caller, order_ids: Vec<OrderId>) -> Result<Vec<PaymentView>, ApiError> {
        self.payments_of(caller, order_ids).await
    }

    async fn get_payment(&self, caller: &Caller, order_id: OrderId) -> Result<PaymentView, ApiError> {
        let not_found = || ApiError::not_found("payment not found");
        let payment = self.load(order_id).await?;
        if !matches!(caller, Caller::Service(_)) {
            let owner = payment
                .as_ref()
                .map_or(shared_kernel::UserId::from_uuid(uuid::Uuid::nil()), |p| shared_kernel::UserId::from_uuid(p.customer_id));
            caller.require_self_or_admin(owner, "payment")?;
        }
        match payment {
            Some(payment) => view(&self.settle_if_stale(payment).await?),
            None => Err(not_found()),
        }
    }
}

impl PaymentsService {
    async fn payments_of(&self, caller: &Caller, order_ids: Vec<OrderId>) -> Result<Vec<PaymentView>, ApiError> {
        if order_ids.len() > 1000 {
            return Err(ApiError::invalid_field("order_ids", "at most 1000 at once"));
        }
        let sees_all = matches!(caller, Caller::Service(_)) || caller.is_admin();
        let user = if sees_all { None } else { Some(caller.require_user()?.id) };
        if order_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = payments::Entity::find().filter(payments::Column::OrderId.is_in(order_ids.iter().map(OrderId::as_uuid)));
        if let Some(user) = user {
            select = select.filter(payments::Column::CustomerId.eq(user.as_uuid()));
        }
        let rows = select.all(&self.db).await.map_err(db_error)?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(view(&self.settle_if_stale(row).await?)?);
        }
        Ok(views)
    }
}

/// The payment as the contract shows it. A row whose status or currency does not read back is
/// an error naming it, never a default.
fn view(payment: &payments::Model) -> Result<PaymentView, ApiError> {
    let corrupt = |what: &str, value: &str| {
        tracing::error!(payment_id = %payment.id, order_id = %payment.order_id, what, value, "a payment row does not read back");
        ApiError::Internal
    };
    let status = match payment.status.as_str() {
        CAPTURED if payment.refunded_amount == payment.amount => PaymentStatus::Refunded,
        CAPTURED if payment.refunded_amount > 0 => PaymentStatus::PartiallyRefunded,
        CAPTURED => PaymentStatus::Captured,
        DECLINED => PaymentStatus::Declined,
        FAILED => PaymentStatus::Failed,
        PENDING => PaymentStatus::Pending,
        other => return Err(corrupt("status", other)),
    };
    let currency = Currency::parse(&payment.currency).map_err(|_| corrupt("currency", &payment.currency))?;
    Ok(PaymentView {
        id: payment.id,
        order_id: OrderId::from_uuid(payment.order_id),
        status,
        amount: Money::new(payment.amount, currency),
        refunded_amount: Money::new(payment.refunded_amount, currency),
        failure_reason: payment.failure_reason.clone(),
        card_last4: payment.card_last4.clone(),
        created_at: payment.created_at,
    })
}

fn db_error(error: DbErr) -> ApiError {
    shared_kernel::db::api_error("payments", error)
}
