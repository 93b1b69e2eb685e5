//! Refunding an order's payment, in full or in part, exactly once: the amount is claimed in one
//! conditional update (concurrent refunds never add up to more than was captured) in the same
//! transaction as a pending refund, whose id is the provider's idempotency key; the provider
//! refunds, and the refund is recorded as the pending row goes. A refund interrupted anywhere in
//! between (a crash, a provider failure) is finished with the same key, by the next refund of
//! the payment or by the sweep ([`Context::finish_pending_refunds`]): never twice.

use crate::context::Context;
use crate::entities::{payments, pending_refunds, refunds};
use crate::store::{self, Stored};
use crate::views::view;
use payments_contract::{RefundOutcome, services_allowed};
use sea_orm::sea_query::OnConflict;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use shared_kernel::{ApiError, Caller, Currency, Money, OrderId};

impl Context {
    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub(crate) async fn refund(&self, caller: &Caller, order_id: OrderId, amount: Option<Money>) -> Result<RefundOutcome, ApiError> {
        caller.require_service_or_admin(services_allowed::refund, "payments.refund")?;
        let Some(payment) = store::payment_of(&self.db, order_id).await? else { return Ok(RefundOutcome::NoPayment) };
        let payment = self.settle_if_stale(payment).await?;
        match Stored::of(&payment)? {
            // The charge is still with the provider: its outcome decides whether there is
            // anything to refund, so ask again shortly rather than answer "nothing captured".
            Stored::Pending => return Err(ApiError::unavailable("the charge is still in progress; try again", 1)),
            Stored::Declined | Stored::Failed | Stored::FailedVoided => {
                return Ok(RefundOutcome::NothingCaptured { payment: view(&payment)? });
            }
            Stored::Voided => return Ok(RefundOutcome::NoPayment),
            Stored::Captured => {}
        }
        // Read back (and checked) before anything is claimed.
        let currency = view(&payment)?.amount.currency();
        // Refunds claimed before and not recorded yet (a crash, a provider failure) go first:
        // what is left to refund is known only then.
        self.finish_refunds_of(&payment, currency).await?;
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
        // Claim the amount and write the pending refund in one transaction: concurrent refunds
        // can never add up to more than was captured, and a claim is never without the record
        // that finishes it.
        let now = self.clock.now();
        let pending = pending_refunds::Model { id: uuid::Uuid::now_v7(), payment_id: payment.id, amount, created_at: now };
        let unit = self.db.begin().await?;
        let claimed = payments::Entity::update_many()
            .col_expr(payments::Column::RefundedAmount, Expr::col(payments::Column::RefundedAmount).add(amount))
            .col_expr(payments::Column::UpdatedAt, Expr::value(now))
            .filter(payments::Column::Id.eq(payment.id))
            .filter(payments::Column::Status.eq(Stored::Captured.as_str()))
            .filter(Expr::col(payments::Column::RefundedAmount).add(amount).lte(Expr::col(payments::Column::Amount)))
            .exec(&unit)
            .await?;
        if claimed.rows_affected != 1 {
            unit.rollback().await?;
            let now = store::payment_of(&self.db, order_id).await?.ok_or(ApiError::Internal)?;
            // A full refund that lost a race to another full refund: it is done, not a conflict.
            if requested_full && now.refunded_amount == now.amount {
                return Ok(RefundOutcome::Refunded { payment: view(&now)? });
            }
            return Ok(RefundOutcome::ExceedsCapture { payment: view(&now)? });
        }
        pending_refunds::ActiveModel::from(pending.clone()).insert(&unit).await?;
        unit.commit().await?;
        self.finish_refund(&payment, currency, &pending).await?;
        tracing::info!(amount, "refunded");
        let payment = store::payment_of(&self.db, order_id).await?.ok_or(ApiError::Internal)?;
        Ok(RefundOutcome::Refunded { payment: view(&payment)? })
    }

    /// Sends `pending` to the provider under its own id as the idempotency key, then records the
    /// refund and removes the pending row in one transaction. Safe to run again at any point.
    async fn finish_refund(&self, payment: &payments::Model, currency: Currency, pending: &pending_refunds::Model) -> Result<(), ApiError> {
        let charge_id = payment.provider_charge_id.clone().unwrap_or_default();
        let refund_id =
            self.provider.refund(&pending.id.to_string(), &charge_id, Money::new(pending.amount, currency)).await.map_err(|error| {
                tracing::warn!(%error, refund_id = %pending.id, "the payment provider failed a refund; it stays pending and will be finished");
                ApiError::unavailable("the payment provider failed the refund; try again", 2)
            })?;
        let unit = self.db.begin().await?;
        refunds::Entity::insert(refunds::ActiveModel::from(refunds::Model {
            id: pending.id,
            payment_id: pending.payment_id,
            amount: pending.amount,
            provider_refund_id: refund_id,
            created_at: self.clock.now(),
        }))
        .on_conflict(OnConflict::column(refunds::Column::Id).do_nothing().to_owned())
        .exec_without_returning(&unit)
        .await?;
        pending_refunds::Entity::delete_by_id(pending.id).exec(&unit).await?;
        unit.commit().await?;
        tracing::info!(amount = pending.amount, refund_id = %pending.id, "refunded");
        Ok(())
    }

    /// Finishes the refunds of `payment` that were claimed and not recorded.
    async fn finish_refunds_of(&self, payment: &payments::Model, currency: Currency) -> Result<(), ApiError> {
        let pending = pending_refunds::Entity::find().filter(pending_refunds::Column::PaymentId.eq(payment.id)).all(&self.db).await?;
        for refund in pending {
            self.finish_refund(payment, currency, &refund).await?;
        }
        Ok(())
    }

    /// The sweep: finishes up to 100 refunds claimed at least `older_than` ago and not recorded
    /// (their process stopped between the claim and the record, or the provider failed). Returns
    /// how many it finished.
    ///
    /// # Errors
    /// The database, or the provider failing one of them (the rest wait for the next sweep).
    pub(crate) async fn finish_pending_refunds(&self, older_than: chrono::Duration) -> Result<usize, ApiError> {
        let cutoff = self.clock.now() - older_than;
        let pending = pending_refunds::Entity::find()
            .filter(pending_refunds::Column::CreatedAt.lte(cutoff))
            .order_by_asc(pending_refunds::Column::CreatedAt)
            .limit(100)
            .all(&self.db)
            .await?;
        let mut finished = 0;
        for refund in pending {
            let payment = payments::Entity::find_by_id(refund.payment_id).one(&self.db).await?.ok_or(ApiError::Internal)?;
            let currency = view(&payment)?.amount.currency();
            self.finish_refund(&payment, currency, &refund).await?;
            finished += 1;
        }
        Ok(finished)
    }
}
