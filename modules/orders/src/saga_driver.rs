//! The driver of the place-order saga: it calls the module that answers the saga's next step,
//! records the outcome in the order, saves it, and goes on until the saga is done, another
//! driver takes over, or a step stays unavailable (the recovery sweep tries it again later).
//!
//! The saga decides from the other modules' typed outcomes, never from an error's status: every
//! error is a failed call, retried within the step's budget.

use crate::context::Context;
use crate::domain::Order;
use crate::saga::{Outcome, Step};
use crate::store;
use crate::store::stored_precision;
use catalog_contract::{CommitOutcome, ReserveLine, ReserveOutcome, RestockOutcome};
use payments_contract::{ChargeOutcome, ChargeRequest, PaymentStatus, RefundOutcome, VoidOutcome};
use shared_kernel::ApiError;

/// A declined payment's reason when payments gave none.
const DECLINED: &str = "the card was declined";

/// Why a saga step did not produce an outcome.
enum StepError {
    /// Still failing after the step's retry budget: the recovery sweep tries again later.
    Unavailable(ApiError),
}

impl Context {
    /// Runs the saga of `order` until it is done, another driver takes over, or a step stays
    /// unavailable. `placing` is true only in the task that placed the order (no driver before
    /// it can have sent a charge). Returns the order as finished, or `None` when it was left for
    /// the recovery sweep or another driver.
    pub(crate) async fn drive(&self, mut order: Order, placing: bool) -> Result<Option<Order>, ApiError> {
        let inner = &self.inner;
        loop {
            if order.is_done() {
                return Ok(Some(order));
            }
            let step = order.next_step();
            let outcome = match self.run_step(&order, step, placing).await {
                Ok(outcome) => outcome,
                Err(StepError::Unavailable(error)) => {
                    store::touch(&inner.db, &order, stored_precision(inner.clock.now())).await;
                    tracing::warn!(order_id = %order.id(), step = step.as_str(), %error, "a saga step is unavailable; the recovery sweep will retry it");
                    return Ok(None);
                }
            };
            let next = order.record(outcome, stored_precision(inner.clock.now())).map_err(|error| {
                tracing::error!(order_id = %order.id(), %error, "the saga refused an outcome");
                ApiError::Internal
            })?;
            if !store::save(&inner.db, &inner.outbox, &order, &next).await? {
                tracing::debug!(order_id = %order.id(), "another driver moved this saga on");
                return Ok(None);
            }
            order = next;
        }
    }

    /// Runs `order`'s saga in its own task (a client that goes away does not stop it) and waits
    /// for it up to the placement wait. Returns the order if the saga finished meanwhile.
    pub(crate) async fn drive_detached(&self, order: Order, placing: bool) -> Option<Order> {
        let service = self.clone();
        let context = shared_kernel::current_request_context();
        let id = order.id();
        // The saga runs in the placement's span, so its steps are part of the request's trace.
        let span = tracing::Span::current();
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let run = service.drive(order, placing);
                let result = match context {
                    Some(context) => shared_kernel::with_request_context(context, run).await,
                    None => run.await,
                };
                result.unwrap_or_else(|error| {
                    tracing::warn!(order_id = %id, %error, "an order saga stopped; the recovery sweep will resume it");
                    None
                })
            },
            span,
        ));
        tokio::time::timeout(self.inner.settings.placement_wait, task).await.ok().and_then(Result::ok).flatten()
    }

    /// Calls the module that answers `step`, retrying while the call fails.
    async fn run_step(&self, order: &Order, step: Step, placing: bool) -> Result<Outcome, StepError> {
        let settings = &self.inner.settings;
        let mut delay = settings.step_retry_delay;
        let mut attempt = 1;
        // Whether an attempt may have reached the upstream (a timeout, a broken answer).
        let mut maybe_ran = false;
        loop {
            match self.call_step(order, step).await {
                Ok(outcome) => return Ok(outcome),
                // Known not to have run, and no attempt before it may have: compensate at once.
                // (A resumed charge may follow one sent before a crash: a capture may exist, so
                // it keeps to the budget below.)
                Err(error) if error.is_not_sent() && !maybe_ran && step == Step::ReserveStock => {
                    tracing::warn!(order_id = %order.id(), %error, "the catalog cannot be reached; nothing was reserved");
                    return Ok(Outcome::StockRefused("the catalog is unavailable; nothing was reserved".to_owned()));
                }
                Err(error) if error.is_not_sent() && !maybe_ran && step == Step::ChargePayment && placing => {
                    tracing::warn!(order_id = %order.id(), %error, "payments cannot be reached; nothing was charged");
                    return Ok(Outcome::PaymentNotSent);
                }
                Err(error) if attempt >= settings.step_attempts.max(1) => {
                    return match step {
                        // Placement must end: past the budget these two compensate.
                        Step::ReserveStock => {
                            tracing::warn!(order_id = %order.id(), %error, "the catalog stayed unavailable; compensating");
                            Ok(Outcome::StockUnavailable)
                        }
                        Step::ChargePayment => {
                            tracing::warn!(order_id = %order.id(), %error, "payments stayed unavailable; compensating");
                            Ok(Outcome::PaymentUnavailable)
                        }
                        _ => Err(StepError::Unavailable(error)),
                    };
                }
                Err(error) => {
                    maybe_ran |= !error.is_not_sent();
                    tracing::debug!(order_id = %order.id(), step = step.as_str(), attempt, %error, "retrying a saga step");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    /// One call for `step`. `Err` is a failed call, worth retrying.
    async fn call_step(&self, order: &Order, step: Step) -> Result<Outcome, ApiError> {
        let inner = &self.inner;
        let caller = &inner.identity;
        let order_id = order.id();
        match step {
            Step::ReserveStock => {
                let lines =
                    order.lines().iter().map(|line| ReserveLine { product_id: line.product_id, quantity: line.quantity.get() }).collect();
                Ok(match inner.catalog.reserve(caller, order_id, lines).await? {
                    ReserveOutcome::Reserved { .. } => Outcome::StockReserved,
                    ReserveOutcome::Refused { refusal } => Outcome::StockRefused(refusal.to_string()),
                })
            }
            Step::ChargePayment => {
                let payment = match order.payment_method() {
                    // First run or resumed after a crash alike: payments charges an order once.
                    Some(method) => {
                        let request = ChargeRequest {
                            order_id,
                            customer_id: order.customer_id(),
                            amount: order.total(),
                            payment_method: method.clone(),
                        };
                        return Ok(match inner.payments.charge(caller, request).await? {
                            ChargeOutcome::Captured(_) => Outcome::PaymentCaptured,
                            ChargeOutcome::Declined(payment) => {
                                Outcome::PaymentDeclined(payment.failure_reason.unwrap_or_else(|| DECLINED.to_owned()))
                            }
                            ChargeOutcome::MethodRefused { reason } => Outcome::PaymentDeclined(reason),
                            // A driver that lost the saga to its compensation (which voided the
                            // charge): nothing was or will be captured.
                            ChargeOutcome::Voided => Outcome::PaymentDeclined("the payment was voided".to_owned()),
                            // Not this order's charge: nothing can be captured for it.
                            ChargeOutcome::AmountMismatch(_) => Outcome::PaymentUnavailable,
                        });
                    }
                    // An order placed before payment tokens existed, resumed: it has no method,
                    // so settle from what payments recorded. Nothing recorded → compensate.
                    None => match inner.payments.get_payments(caller, vec![order_id]).await?.pop() {
                        Some(payment) => payment,
                        None => return Ok(Outcome::PaymentUnavailable),
                    },
                };
                match payment.status {
                    PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => Ok(Outcome::PaymentCaptured),
                    PaymentStatus::Declined => Ok(Outcome::PaymentDeclined(payment.failure_reason.unwrap_or_else(|| DECLINED.to_owned()))),
                    PaymentStatus::Failed => Ok(Outcome::PaymentUnavailable),
                    PaymentStatus::Pending => Err(ApiError::unavailable("the payment is not settled yet", 1)),
                }
            }
            Step::CommitStock => match inner.catalog.commit(caller, order_id).await? {
                CommitOutcome::Committed => Ok(Outcome::StockCommitted),
                CommitOutcome::Lapsed | CommitOutcome::NoReservation => {
                    Ok(Outcome::StockRefused("the stock reservation expired before the payment completed".to_owned()))
                }
            },
            Step::ReleaseStock => inner.catalog.release(caller, order_id).await.map(|()| Outcome::StockReleased),
            // Compensating a placement: the charge's outcome may be unknown (a charge still queued
            // or in flight could capture after this), so void it. Payments answers only once
            // nothing is, or will be, captured; the order is rejected after that.
            Step::RefundPayment if order.status() == crate::saga::OrderStatus::Pending => {
                match inner.payments.void_charge(caller, order_id, order.customer_id(), order.total()).await? {
                    VoidOutcome::Voided | VoidOutcome::Refunded { .. } => Ok(Outcome::PaymentRefunded),
                }
            }
            // Cancelling a confirmed order: give the capture back.
            Step::RefundPayment => match inner.payments.refund(caller, order_id, None).await? {
                // No payment, or one that captured nothing: there is nothing to give back.
                RefundOutcome::Refunded { .. } | RefundOutcome::NothingCaptured { .. } | RefundOutcome::NoPayment => {
                    Ok(Outcome::PaymentRefunded)
                }
                // A concurrent partial refund moved the remainder: ask again for what is left now.
                RefundOutcome::ExceedsCapture { .. } => Err(ApiError::unavailable("another refund of this payment is under way", 1)),
            },
            Step::Restock => match inner.catalog.restock(caller, order_id).await? {
                RestockOutcome::Restocked => Ok(Outcome::Restocked),
                outcome @ (RestockOutcome::NotCommitted | RestockOutcome::NoReservation) => {
                    tracing::error!(order_id = %order_id, ?outcome, "the catalog holds no committed stock for a cancelled order");
                    Ok(Outcome::Restocked)
                }
            },
            Step::Done => Err(ApiError::Internal),
        }
    }
}
