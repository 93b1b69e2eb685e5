//! Payments as the contract shows them. A row whose status or currency does not read back is an
//! error naming it, never a default.

use crate::entities::payments;
use crate::store::{Stored, corrupt};
use payments_contract::{ChargeOutcome, PaymentStatus, PaymentView};
use shared_kernel::{ApiError, Currency, Money, OrderId};

pub(crate) fn view(payment: &payments::Model) -> Result<PaymentView, ApiError> {
    let status = match Stored::of(payment)? {
        Stored::Captured if payment.refunded_amount == payment.amount => PaymentStatus::Refunded,
        Stored::Captured if payment.refunded_amount > 0 => PaymentStatus::PartiallyRefunded,
        Stored::Captured => PaymentStatus::Captured,
        // Never shown: readers skip voided rows (`store::payment_of` callers check).
        Stored::Declined | Stored::Voided => PaymentStatus::Declined,
        Stored::Failed | Stored::FailedVoided => PaymentStatus::Failed,
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
pub(crate) fn charge_outcome(payment: &payments::Model) -> Result<ChargeOutcome, ApiError> {
    match Stored::of(payment)? {
        Stored::Captured => Ok(ChargeOutcome::Captured(view(payment)?)),
        Stored::Declined => Ok(ChargeOutcome::Declined(view(payment)?)),
        Stored::Voided | Stored::FailedVoided => Ok(ChargeOutcome::Voided),
        Stored::Pending | Stored::Failed => Err(ApiError::unavailable("the charge is still in progress; try again", 1)),
    }
}
