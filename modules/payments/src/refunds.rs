//! Refunding an order's payment, in full or in part: the amount is claimed in one conditional
//! update (concurrent refunds never add up to more than was captured), the provider refunds, and
//! the refund is recorded.

use crate::context::Context;
use crate::entities::{payments, refunds};
use crate::store::{self, Stored};
use crate::views::view;
use payments_contract::{RefundOutcome, services_allowed};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use shared_kernel::{ApiError, Caller, Money, OrderId};

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
            .await?;
        if claimed.rows_affected != 1 {
            let now = store::payment_of(&self.db, order_id).await?.ok_or(ApiError::Internal)?;
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
                    .await?;
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
        .await?;
        tracing::info!(amount, "refunded");
        let payment = store::payment_of(&self.db, order_id).await?.ok_or(ApiError::Internal)?;
        Ok(RefundOutcome::Refunded { payment: view(&payment)? })
    }
}
