//! The payments use cases, behind [`PaymentsApi`].

use crate::entities::{payments, refunds};
use crate::provider::{PaymentProvider, ProviderOutcome};
use payments_contract::{ChargeOutcome, ChargeRequest, PaymentStatus, PaymentView, PaymentsApi, RefundOutcome};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set, SqlErr};
use shared_kernel::{ApiError, Caller, Clock, Currency, Money, OrderId, SystemClock};
use std::sync::Arc;

/// A payment's status as stored. Refunds are not a status: they are `refunded_amount`, and the
/// contract's `refunded` / `partially_refunded` are read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Sent to the provider, no answer recorded yet.
    Pending,
    Captured,
    Declined,
    /// The provider failed; trying again may succeed.
    Failed,
}

impl Stored {
    const ALL: [Stored; 4] = [Stored::Pending, Stored::Captured, Stored::Declined, Stored::Failed];

    /// The name in the `status` column.
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Captured => "captured",
            Self::Declined => "declined",
            Self::Failed => "failed",
        }
    }

    /// The status of `payment`; a value the code does not know is an error naming the row.
    fn of(payment: &payments::Model) -> Result<Self, ApiError> {
        Self::ALL.into_iter().find(|status| status.as_str() == payment.status).ok_or_else(|| corrupt(payment, "status", &payment.status))
    }
}

/// A payment row that does not read back: logged with its ids, answered as 500.
fn corrupt(payment: &payments::Model, what: &str, value: &str) -> ApiError {
    tracing::error!(payment_id = %payment.id, order_id = %payment.order_id, what, value, "a payment row does not read back");
    ApiError::Internal
}

/// The payments module. Cheap to clone.
#[derive(Clone)]
pub struct PaymentsService {
    db: DatabaseConnection,
    provider: Arc<dyn PaymentProvider>,
    clock: Arc<dyn Clock>,
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
        Self { db, provider, clock: Arc::new(SystemClock), pending_timeout: chrono::Duration::seconds(60) }
    }

    /// Where payments reads the time (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
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
        let status = Stored::of(&payment)?;
        let failed = status == Stored::Failed;
        if !failed && (status != Stored::Pending || self.clock.now() - payment.updated_at < self.pending_timeout) {
            return Ok(payment);
        }
        let found = self.provider.find_charge(&OrderId::from_uuid(payment.order_id).to_string()).await.map_err(|error| {
            tracing::warn!(%error, "cannot ask the payment provider about a pending charge");
            ApiError::unavailable("the payment provider cannot be reached; try again", 2)
        })?;
        let (status, charge_id, reason) = match found {
            Some(ProviderOutcome::Captured { charge_id }) => (Stored::Captured, Some(charge_id), None),
            Some(ProviderOutcome::Declined { reason }) => (Stored::Declined, None, Some(reason)),
            None if failed => return Ok(payment),
            None => (Stored::Failed, None, Some("the charge did not reach the payment provider".to_owned())),
        };
        tracing::info!(order_id = %payment.order_id, status = status.as_str(), "settled a charge its caller left pending");
        self.record_outcome(payment.id, status, charge_id, reason).exec(&self.db).await.map_err(db_error)?;
        self.load(OrderId::from_uuid(payment.order_id)).await?.ok_or(ApiError::Internal)
    }

    /// The update recording a charge's outcome, unless one was recorded first (only a charge
    /// still unsettled changes).
    fn record_outcome(
        &self,
        payment_id: uuid::Uuid,
        status: Stored,
        charge_id: Option<String>,
        reason: Option<String>,
    ) -> sea_orm::UpdateMany<payments::Entity> {
        payments::Entity::update_many()
            .col_expr(payments::Column::Status, Expr::value(status.as_str()))
            .col_expr(payments::Column::ProviderChargeId, Expr::value(charge_id))
            .col_expr(payments::Column::FailureReason, Expr::value(reason))
            .col_expr(payments::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(payments::Column::Id.eq(payment_id))
            .filter(payments::Column::Status.is_in(UNSETTLED))
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    async fn load(&self, order_id: OrderId) -> Result<Option<payments::Model>, ApiError> {
        payments::Entity::find().filter(payments::Column::OrderId.eq(order_id.as_uuid())).one(&self.db).await.map_err(db_error)
    }
}

/// The statuses a charge may still leave (`failed` may yet turn out captured).
const UNSETTLED: [&str; 2] = ["pending", "failed"];

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
    async fn charge(&self, caller: &Caller, request: ChargeRequest) -> Result<ChargeOutcome, ApiError> {
        require_service_or_admin(caller)?;
        if request.amount.amount() <= 0 {
            return Err(ApiError::invalid_field("amount", "must be positive"));
        }
        let now = self.clock.now();
        let claim = payments::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            order_id: Set(request.order_id.as_uuid()),
            customer_id: Set(request.customer_id.as_uuid()),
            amount: Set(request.amount.amount()),
            currency: Set(request.amount.currency().to_string()),
            refunded_amount: Set(0),
            status: Set(Stored::Pending.as_str().to_owned()),
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
                    return Ok(ChargeOutcome::AmountMismatch(view(&existing)?));
                }
                if !matches!(Stored::of(&existing)?, Stored::Pending | Stored::Failed) {
                    return charge_outcome(&existing);
                }
                existing
            }
            Err(error) => return Err(db_error(error)),
        };
        // The order id is the provider's idempotency key: however often this runs, at most one
        // capture exists for the order.
        let outcome = self.provider.charge(&request.order_id.to_string(), &request.card_number, request.amount).await;
        let (status, charge_id, reason) = match &outcome {
            Ok(ProviderOutcome::Captured { charge_id }) => (Stored::Captured, Some(charge_id.clone()), None),
            Ok(ProviderOutcome::Declined { reason }) => (Stored::Declined, None, Some(reason.clone())),
            // A fixed reason: the provider's own text may hold internal detail (it is logged below).
            Err(_) => (Stored::Failed, None, Some("payment provider error".to_owned())),
        };
        let updated = self.record_outcome(payment.id, status, charge_id, reason).exec_with_returning(&self.db).await.map_err(db_error)?;
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
        charge_outcome(&payment)
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn refund(&self, caller: &Caller, order_id: OrderId, amount: Option<Money>) -> Result<RefundOutcome, ApiError> {
        require_service_or_admin(caller)?;
        let Some(payment) = self.load(order_id).await? else { return Ok(RefundOutcome::NoPayment) };
        let payment = self.settle_if_stale(payment).await?;
        match Stored::of(&payment)? {
            // The charge is still with the provider: its outcome decides whether there is
            // anything to refund, so ask again shortly rather than answer "nothing captured".
            Stored::Pending => return Err(ApiError::unavailable("the charge is still in progress; try again", 1)),
            Stored::Declined | Stored::Failed => return Ok(RefundOutcome::NothingCaptured { payment: view(&payment)? }),
            Stored::Captured => {}
        }
        // Read back (and checked) before anything is claimed.
        let currency = view(&payment)?.amount.currency();
        let remaining = payment.amount - payment.refunded_amount;
        let requested_full = amount.is_none();
        let amount = match amount {
            None if remaining == 0 => return Ok(RefundOutcome::Refunded { payment: view(&payment)? }),
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
            .col_expr(payments::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(payments::Column::Id.eq(payment.id))
            .filter(payments::Column::Status.eq(Stored::Captured.as_str()))
            .filter(Expr::col(payments::Column::RefundedAmount).add(amount).lte(Expr::col(payments::Column::Amount)))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if claimed.rows_affected != 1 {
            let now = self.load(order_id).await?.ok_or(ApiError::Internal)?;
            // A full refund that lost a race to another full refund: it is done, not a conflict.
            if requested_full && now.refunded_amount == now.amount {
                return Ok(RefundOutcome::Refunded { payment: view(&now)? });
            }
            return Ok(RefundOutcome::ExceedsCapture { payment: view(&now)? });
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
            created_at: Set(self.clock.now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_error)?;
        tracing::info!(amount, "refunded");
        let payment = self.load(order_id).await?.ok_or(ApiError::Internal)?;
        Ok(RefundOutcome::Refunded { payment: view(&payment)? })
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
    let status = match Stored::of(payment)? {
        Stored::Captured if payment.refunded_amount == payment.amount => PaymentStatus::Refunded,
        Stored::Captured if payment.refunded_amount > 0 => PaymentStatus::PartiallyRefunded,
        Stored::Captured => PaymentStatus::Captured,
        Stored::Declined => PaymentStatus::Declined,
        Stored::Failed => PaymentStatus::Failed,
        Stored::Pending => PaymentStatus::Pending,
    };
    let currency = Currency::parse(&payment.currency).map_err(|_| corrupt(payment, "currency", &payment.currency))?;
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

/// What a charge that reached its end says. A charge another call still has in flight (or whose
/// provider failed) is not an outcome yet: 503, ask again.
fn charge_outcome(payment: &payments::Model) -> Result<ChargeOutcome, ApiError> {
    match Stored::of(payment)? {
        Stored::Captured => Ok(ChargeOutcome::Captured(view(payment)?)),
        Stored::Declined => Ok(ChargeOutcome::Declined(view(payment)?)),
        Stored::Pending | Stored::Failed => Err(ApiError::unavailable("the charge is still in progress; try again", 1)),
    }
}

fn db_error(error: DbErr) -> ApiError {
    shared_kernel::db::api_error("payments", error)
}
