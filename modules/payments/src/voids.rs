//! Voiding an order's charge: the saga gives up on a charge whose outcome it does not know, and
//! must know that nothing is, or ever will be, captured for the order before it calls the order
//! rejected. A `voided` row takes the charge's place (the row is unique per order), so a charge
//! still queued or in flight finds it and sends nothing; a failed charge is voided
//! (`failed_voided`: it still reads as failed) unless a retry moved it back to pending first; a
//! capture is refunded in full.

use crate::context::Context;
use crate::entities::payments;
use crate::store::{self, Stored};
use payments_contract::{RefundOutcome, VoidOutcome, services_allowed};
use sea_orm::{ActiveModelTrait, Set, SqlErr};
use shared_kernel::{ApiError, Caller, Money, OrderId, UserId};

impl Context {
    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub(crate) async fn void_charge(
        &self,
        caller: &Caller,
        order_id: OrderId,
        customer_id: UserId,
        amount: Money,
    ) -> Result<VoidOutcome, ApiError> {
        caller.require_service_or_admin(services_allowed::void_charge, "payments.void_charge")?;
        if amount.amount() <= 0 {
            return Err(ApiError::invalid_field("amount", "must be positive"));
        }
        let now = self.clock.now();
        let void = payments::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            order_id: Set(order_id.as_uuid()),
            customer_id: Set(customer_id.as_uuid()),
            amount: Set(amount.amount()),
            currency: Set(amount.currency().to_string()),
            refunded_amount: Set(0),
            status: Set(Stored::Voided.as_str().to_owned()),
            provider_charge_id: Set(None),
            failure_reason: Set(Some("voided: the order was given up before it was charged".to_owned())),
            card_last4: Set(String::new()),
            payment_method: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match void.insert(&self.db).await {
            Ok(_) => {
                tracing::info!("voided an order's charge before it was made");
                return Ok(VoidOutcome::Voided);
            }
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
            Err(error) => return Err(error.into()),
        }
        // A charge came first. A pending one left by its caller, or a failed one, is settled
        // from the provider's record (a timed-out attempt may have captured).
        let existing = store::payment_of(&self.db, order_id).await?.ok_or(ApiError::Internal)?;
        let payment = self.settle_if_stale(existing).await?;
        match Stored::of(&payment)? {
            Stored::Voided | Stored::FailedVoided | Stored::Declined => Ok(VoidOutcome::Voided),
            Stored::Pending => Err(ApiError::unavailable("the charge is still in progress; try again", 1)),
            Stored::Failed => {
                if store::move_status(&self.db, payment.id, Stored::Failed, Stored::FailedVoided, self.clock.now()).await? {
                    tracing::info!("voided a failed charge");
                    Ok(VoidOutcome::Voided)
                } else {
                    // A retry of the charge moved it back to pending first: ask again.
                    Err(ApiError::unavailable("the charge is being tried again; try again", 1))
                }
            }
            Stored::Captured => match self.refund(caller, order_id, None).await? {
                RefundOutcome::Refunded { payment } => Ok(VoidOutcome::Refunded { payment }),
                outcome => {
                    tracing::warn!(?outcome, "a captured charge did not refund in full; will be asked again");
                    Err(ApiError::unavailable("the refund of the charge did not complete; try again", 1))
                }
            },
        }
    }
}
