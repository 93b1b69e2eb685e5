//! Charging an order: the payment method is checked (the customer's, unexpired, unused by
//! another order), the payment row is claimed (unique per order and per method), the provider
//! charged with the order id as its idempotency key, and the outcome recorded. A charge left
//! pending by a caller that went away is settled from the provider's record when it is next
//! read.

use crate::context::Context;
use crate::entities::payments;
use crate::methods::{REFUSED, token_hash};
use crate::provider::ProviderOutcome;
use crate::store::{self, Stored};
use crate::views::{charge_outcome, view};
use payments_contract::{ChargeOutcome, ChargeRequest, services_allowed};
use sea_orm::{ActiveModelTrait, Set, SqlErr};
use shared_kernel::{ApiError, Caller, OrderId};

impl Context {
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id))]
    pub(crate) async fn charge(&self, caller: &Caller, request: ChargeRequest) -> Result<ChargeOutcome, ApiError> {
        caller.require_service_or_admin(services_allowed::charge, "payments.charge")?;
        if request.amount.amount() <= 0 {
            return Err(ApiError::invalid_field("amount", "must be positive"));
        }
        let now = self.clock.now();
        let refused = || Ok(ChargeOutcome::MethodRefused { reason: REFUSED.to_owned() });
        let Some(method) = self.method_for(&request.payment_method, request.customer_id).await? else {
            tracing::info!("a charge named a payment method its customer does not have");
            return refused();
        };
        let hash = token_hash(&request.payment_method);
        // An expired method still serves the retries of the order it already paid for.
        if method.expires_at < now && store::payment_of(&self.db, request.order_id).await?.is_none() {
            tracing::info!("a charge named an expired payment method");
            return refused();
        }
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
            card_last4: Set(method.card_last4.clone()),
            payment_method: Set(Some(hash.clone())),
            created_at: Set(now),
            updated_at: Set(now),
        };
        // The row is unique per order and per method: a repeat finds the first one, and another
        // order naming a used method finds none.
        let payment = match claim.insert(&self.db).await {
            Ok(payment) => payment,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let Some(existing) = store::payment_of(&self.db, request.order_id).await? else {
                    tracing::info!("a charge named a payment method another order used");
                    return refused();
                };
                let status = Stored::of(&existing)?;
                if matches!(status, Stored::Voided | Stored::FailedVoided) {
                    tracing::info!("a charge of an order whose charge was voided; nothing is sent");
                    return Ok(ChargeOutcome::Voided);
                }
                if existing.amount != request.amount.amount() || existing.currency != request.amount.currency().as_str() {
                    return Ok(ChargeOutcome::AmountMismatch(view(&existing)?));
                }
                // Settled, or paid with another method (whose retries are its own): its outcome.
                if !matches!(status, Stored::Pending | Stored::Failed) || existing.payment_method.as_deref() != Some(&hash) {
                    return charge_outcome(&existing);
                }
                // A failed charge is tried again only by whoever moves it back to pending: a void
                // of the order (which turns it `voided`) and this retry cannot both win.
                if status == Stored::Failed && !store::move_status(&self.db, existing.id, Stored::Failed, Stored::Pending, now).await? {
                    let current = store::payment_of(&self.db, request.order_id).await?.ok_or(ApiError::Internal)?;
                    return charge_outcome(&current);
                }
                existing
            }
            Err(error) => return Err(error.into()),
        };
        // The order id is the provider's idempotency key: however often this runs, at most one
        // capture exists for the order.
        let outcome = self.provider.charge(&request.order_id.to_string(), &method.provider_reference, request.amount).await;
        let (status, charge_id, reason) = match &outcome {
            Ok(ProviderOutcome::Captured { charge_id }) => (Stored::Captured, Some(charge_id.clone()), None),
            Ok(ProviderOutcome::Declined { reason }) => (Stored::Declined, None, Some(reason.clone())),
            // A fixed reason: the provider's own text may hold internal detail (it is logged below).
            Err(_) => (Stored::Failed, None, Some("payment provider error".to_owned())),
        };
        let updated = store::record_outcome(payment.id, status, charge_id, reason, self.clock.now()).exec_with_returning(&self.db).await?;
        if let Err(error) = outcome {
            tracing::warn!(%error, "the payment provider failed; the charge may be retried");
            return Err(ApiError::unavailable("the payment provider failed; try again", 2));
        }
        // A concurrent charge may have recorded the (same) outcome first.
        let payment = match updated.into_iter().next() {
            Some(payment) => payment,
            None => store::payment_of(&self.db, request.order_id).await?.ok_or(ApiError::Internal)?,
        };
        tracing::info!(status = %payment.status, "charged");
        charge_outcome(&payment)
    }

    /// Settles `payment` if it is a charge left pending by a caller that went away: the
    /// provider's record decides, and no record means the charge never reached it (failed).
    pub(crate) async fn settle_if_stale(&self, payment: payments::Model) -> Result<payments::Model, ApiError> {
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
        store::record_outcome(payment.id, status, charge_id, reason, self.clock.now()).exec(&self.db).await?;
        store::payment_of(&self.db, OrderId::from_uuid(payment.order_id)).await?.ok_or(ApiError::Internal)
    }
}
