//! The place-order saga as a state machine.
//!
//! ```text
//! reserve stock ──ok──▶ charge payment ──captured──▶ commit stock ──ok──▶ confirmed
//!      │                     │
//!   refused               declined / gave up
//!      ▼                     ▼
//!   rejected ◀── release stock (compensation)
//!
//! confirmed ──cancel──▶ refund payment ──▶ restock ──▶ cancelled
//! ```
//!
//! Every step is keyed by the order id in the module it calls, so repeating a step (after a
//! crash, a timeout, a redelivery) is harmless: the state machine only has to say *which* step
//! comes next, and the persisted state says where a restarted process resumes.

use std::fmt;

/// What the customer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    /// Stock or payment refused; nothing is kept reserved or charged.
    Rejected,
    Cancelled,
}

/// The next thing the saga must do (or `Done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    ReserveStock,
    ChargePayment,
    CommitStock,
    /// Compensation: give the reservation back.
    ReleaseStock,
    /// Compensation (or cancellation): give the money back.
    RefundPayment,
    /// Cancellation: put committed stock back on hand.
    Restock,
    Done,
}

/// A saga's persisted form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaParts {
    pub status: OrderStatus,
    pub step: Step,
    pub stock_reserved: bool,
    pub stock_committed: bool,
    pub payment_captured: bool,
    pub failure_reason: Option<String>,
}

impl Step {
    pub const ALL: [Step; 7] =
        [Step::ReserveStock, Step::ChargePayment, Step::CommitStock, Step::ReleaseStock, Step::RefundPayment, Step::Restock, Step::Done];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReserveStock => "reserve_stock",
            Self::ChargePayment => "charge_payment",
            Self::CommitStock => "commit_stock",
            Self::ReleaseStock => "release_stock",
            Self::RefundPayment => "refund_payment",
            Self::Restock => "restock",
            Self::Done => "done",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == name)
    }
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] = [OrderStatus::Pending, OrderStatus::Confirmed, OrderStatus::Rejected, OrderStatus::Cancelled];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.to_string() == name)
    }
}

/// What a step's call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    StockReserved,
    StockRefused(String),
    PaymentCaptured,
    PaymentDeclined(String),
    /// Payments kept failing past the saga's retry budget, or the charge's outcome is unknown
    /// (an order placed before payment tokens, resumed with nothing recorded). A capture may exist, so the
    /// compensation refunds (a refund of nothing is a no-op) before it releases.
    PaymentUnavailable,
    /// The catalog could not be reached past the saga's retry budget while reserving. The
    /// reservation may exist, so the compensation releases (a release of nothing is a no-op).
    StockUnavailable,
    /// The charge never reached payments (refused before it was sent, on every attempt):
    /// nothing was captured, so the compensation only releases the stock.
    PaymentNotSent,
    StockCommitted,
    StockReleased,
    PaymentRefunded,
    Restocked,
}

/// A request the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SagaError {
    #[error("{outcome:?} does not follow step {step:?}")]
    UnexpectedOutcome { step: Step, outcome: Outcome },
    #[error("only a confirmed order can be cancelled (this one is {0})")]
    NotCancellable(OrderStatus),
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        })
    }
}

/// An order's saga state: what the customer sees, what to do next, and what is held in other
/// modules on the order's behalf. Private fields: only the transitions below change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    status: OrderStatus,
    step: Step,
    stock_reserved: bool,
    stock_committed: bool,
    payment_captured: bool,
    failure_reason: Option<String>,
}

impl Default for Saga {
    fn default() -> Self {
        Self::new()
    }
}

impl Saga {
    /// A placed order: pending, about to reserve its stock.
    pub fn new() -> Self {
        Self {
            status: OrderStatus::Pending,
            step: Step::ReserveStock,
            stock_reserved: false,
            stock_committed: false,
            payment_captured: false,
            failure_reason: None,
        }
    }

    /// A saga as persisted. The caller vouches that these fields came from [`Saga::parts`].
    pub fn restore(parts: SagaParts) -> Self {
        Self {
            status: parts.status,
            step: parts.step,
            stock_reserved: parts.stock_reserved,
            stock_committed: parts.stock_committed,
            payment_captured: parts.payment_captured,
            failure_reason: parts.failure_reason,
        }
    }

    /// Everything to persist.
    pub fn parts(&self) -> SagaParts {
        SagaParts {
            status: self.status,
            step: self.step,
            stock_reserved: self.stock_reserved,
            stock_committed: self.stock_committed,
            payment_captured: self.payment_captured,
            failure_reason: self.failure_reason.clone(),
        }
    }

    pub fn status(&self) -> OrderStatus {
        self.status
    }
    pub fn next_step(&self) -> Step {
        self.step
    }
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }
    /// Stock is held (reserved or committed) for this order in the catalog.
    pub fn holds_stock(&self) -> bool {
        self.stock_reserved || self.stock_committed
    }
    /// Money is held (captured, not refunded) for this order in payments.
    pub fn holds_payment(&self) -> bool {
        self.payment_captured
    }

    /// Records what the current step answered and moves on.
    ///
    /// # Errors
    /// An outcome that does not answer the current step; the state is unchanged.
    pub fn record(&mut self, outcome: Outcome) -> Result<(), SagaError> {
        let unexpected = |step, outcome| SagaError::UnexpectedOutcome { step, outcome };
        match (self.step, outcome) {
            (Step::ReserveStock, Outcome::StockReserved) => {
                self.stock_reserved = true;
                self.step = Step::ChargePayment;
            }
            (Step::ReserveStock, Outcome::StockRefused(reason)) => self.reject(reason),
            (Step::ReserveStock, Outcome::StockUnavailable) => {
                self.failure_reason = Some("the catalog is unavailable".to_owned());
                self.step = Step::ReleaseStock;
            }
            (Step::ChargePayment, Outcome::PaymentCaptured) => {
                self.payment_captured = true;
                self.step = Step::CommitStock;
            }
            (Step::ChargePayment, Outcome::PaymentDeclined(reason)) => self.compensate(reason),
            (Step::ChargePayment, Outcome::PaymentNotSent) => self.compensate("payments is unavailable; nothing was charged".to_owned()),
            (Step::ChargePayment, Outcome::PaymentUnavailable) => {
                self.failure_reason = Some("the payment could not be completed".to_owned());
                self.step = Step::RefundPayment;
            }
            (Step::CommitStock, Outcome::StockCommitted) => {
                self.stock_reserved = false;
                self.stock_committed = true;
                self.status = OrderStatus::Confirmed;
                self.step = Step::Done;
            }
            // The reservation expired before the commit: money back, then rejected.
            (Step::CommitStock, Outcome::StockRefused(reason)) => {
                self.stock_reserved = false;
                self.failure_reason = Some(reason);
                self.step = Step::RefundPayment;
            }
            (Step::RefundPayment, Outcome::PaymentRefunded) => {
                self.payment_captured = false;
                self.step = if self.stock_committed {
                    Step::Restock
                } else if self.stock_reserved {
                    Step::ReleaseStock
                } else {
                    self.finish_compensation();
                    Step::Done
                };
            }
            (Step::ReleaseStock, Outcome::StockReleased) => {
                self.stock_reserved = false;
                self.finish_compensation();
                self.step = Step::Done;
            }
            (Step::Restock, Outcome::Restocked) => {
                self.stock_committed = false;
                self.status = OrderStatus::Cancelled;
                self.step = Step::Done;
            }
            (step, outcome) => return Err(unexpected(step, outcome)),
        }
        Ok(())
    }

    /// Cancels a confirmed order: refund, then restock.
    ///
    /// # Errors
    /// Any status but confirmed.
    pub fn cancel(&mut self) -> Result<(), SagaError> {
        if self.status != OrderStatus::Confirmed || self.step != Step::Done {
            return Err(SagaError::NotCancellable(self.status));
        }
        self.step = Step::RefundPayment;
        Ok(())
    }

    fn reject(&mut self, reason: String) {
        self.status = OrderStatus::Rejected;
        self.failure_reason = Some(reason);
        self.step = Step::Done;
    }

    /// Undo in reverse: refund if captured, then release the reservation.
    fn compensate(&mut self, reason: String) {
        self.failure_reason = Some(reason);
        self.step = if self.payment_captured { Step::RefundPayment } else { Step::ReleaseStock };
    }

    fn finish_compensation(&mut self) {
        if self.status == OrderStatus::Pending {
            self.status = OrderStatus::Rejected;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn happy() -> Saga {
        let mut saga = Saga::new();
        for outcome in [Outcome::StockReserved, Outcome::PaymentCaptured, Outcome::StockCommitted] {
            saga.record(outcome).unwrap();
        }
        saga
    }

    #[test]
    fn the_happy_path_confirms_with_stock_committed_and_money_captured() {
        let saga = happy();
        assert_eq!((saga.status(), saga.next_step()), (OrderStatus::Confirmed, Step::Done));
        assert!(saga.holds_stock() && saga.holds_payment());
    }

    #[test]
    fn refused_stock_rejects_at_once_holding_nothing() {
        let mut saga = Saga::new();
        saga.record(Outcome::StockRefused("not enough stock".into())).unwrap();
        assert_eq!((saga.status(), saga.next_step(), saga.failure_reason()), (OrderStatus::Rejected, Step::Done, Some("not enough stock")));
        assert!(!saga.holds_stock() && !saga.holds_payment());
    }

    #[test]
    fn a_declined_card_releases_the_reservation_then_rejects() {
        let mut saga = Saga::new();
        saga.record(Outcome::StockReserved).unwrap();
        saga.record(Outcome::PaymentDeclined("insufficient funds".into())).unwrap();
        assert_eq!((saga.status(), saga.next_step()), (OrderStatus::Pending, Step::ReleaseStock));
        saga.record(Outcome::StockReleased).unwrap();
        assert_eq!((saga.status(), saga.failure_reason()), (OrderStatus::Rejected, Some("insufficient funds")));
        assert!(!saga.holds_stock());
    }

    #[test]
    fn an_expired_reservation_at_commit_refunds_then_rejects() {
        let mut saga = Saga::new();
        saga.record(Outcome::StockReserved).unwrap();
        saga.record(Outcome::PaymentCaptured).unwrap();
        saga.record(Outcome::StockRefused("the reservation expired".into())).unwrap();
        assert_eq!(saga.next_step(), Step::RefundPayment);
        saga.record(Outcome::PaymentRefunded).unwrap();
        assert_eq!((saga.status(), saga.next_step()), (OrderStatus::Rejected, Step::Done));
        assert!(!saga.holds_payment() && !saga.holds_stock());
    }

    #[test]
    fn cancelling_a_confirmed_order_refunds_and_restocks() {
        let mut saga = happy();
        saga.cancel().unwrap();
        saga.record(Outcome::PaymentRefunded).unwrap();
        assert_eq!(saga.next_step(), Step::Restock);
        saga.record(Outcome::Restocked).unwrap();
        assert_eq!((saga.status(), saga.holds_stock(), saga.holds_payment()), (OrderStatus::Cancelled, false, false));
        assert_eq!(saga.cancel(), Err(SagaError::NotCancellable(OrderStatus::Cancelled)));
        assert_eq!(Saga::new().cancel(), Err(SagaError::NotCancellable(OrderStatus::Pending)));
    }

    #[test]
    fn an_unknown_charge_outcome_refunds_defensively_then_releases() {
        let mut saga = Saga::new();
        saga.record(Outcome::StockReserved).unwrap();
        saga.record(Outcome::PaymentUnavailable).unwrap();
        assert_eq!(saga.next_step(), Step::RefundPayment);
        saga.record(Outcome::PaymentRefunded).unwrap();
        assert_eq!(saga.next_step(), Step::ReleaseStock);
        saga.record(Outcome::StockReleased).unwrap();
        assert_eq!((saga.status(), saga.failure_reason()), (OrderStatus::Rejected, Some("the payment could not be completed")));
    }

    #[test]
    fn a_charge_known_not_sent_only_releases_then_rejects() {
        let mut saga = Saga::new();
        saga.record(Outcome::StockReserved).unwrap();
        saga.record(Outcome::PaymentNotSent).unwrap();
        assert_eq!(saga.next_step(), Step::ReleaseStock, "nothing was charged: no refund to wait for");
        saga.record(Outcome::StockReleased).unwrap();
        assert_eq!((saga.status(), saga.failure_reason()), (OrderStatus::Rejected, Some("payments is unavailable; nothing was charged")));
        assert!(!saga.holds_stock() && !saga.holds_payment());
    }

    #[test]
    fn an_unreachable_catalog_at_reserve_releases_whatever_may_be_held() {
        let mut saga = Saga::new();
        saga.record(Outcome::StockUnavailable).unwrap();
        assert_eq!((saga.status(), saga.next_step()), (OrderStatus::Pending, Step::ReleaseStock));
        saga.record(Outcome::StockReleased).unwrap();
        assert_eq!((saga.status(), saga.failure_reason()), (OrderStatus::Rejected, Some("the catalog is unavailable")));
    }

    #[test]
    fn persisted_parts_restore_the_same_saga_and_names_round_trip() {
        let mut saga = Saga::new();
        saga.record(Outcome::StockReserved).unwrap();
        assert_eq!(Saga::restore(saga.parts()), saga);
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(&status.to_string()), Some(status));
        }
        assert_eq!(Step::parse("nonsense"), None);
    }

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::StockReserved),
            Just(Outcome::StockRefused("refused".into())),
            Just(Outcome::PaymentCaptured),
            Just(Outcome::PaymentDeclined("declined".into())),
            Just(Outcome::PaymentUnavailable),
            Just(Outcome::StockUnavailable),
            Just(Outcome::PaymentNotSent),
            Just(Outcome::StockCommitted),
            Just(Outcome::StockReleased),
            Just(Outcome::PaymentRefunded),
            Just(Outcome::Restocked),
        ]
    }

    proptest! {
        /// Whatever the sequence of answers (in order, out of order, repeated), the saga never
        /// ends holding what it should not: a rejected or cancelled order holds no stock and no
        /// money, a confirmed one holds both, a finished one has no step left, and a refused
        /// answer leaves the state exactly as it was.
        #[test]
        fn no_sequence_of_answers_breaks_the_invariants(outcomes in proptest::collection::vec(any_outcome(), 0..40), cancel_at in 0usize..40) {
            let mut saga = Saga::new();
            for (i, outcome) in outcomes.into_iter().enumerate() {
                if i == cancel_at {
                    let before = saga.clone();
                    if saga.cancel().is_err() {
                        prop_assert_eq!(&saga, &before);
                    }
                }
                let before = saga.clone();
                if saga.record(outcome).is_err() {
                    prop_assert_eq!(&saga, &before, "a refused answer changed the state");
                }
                match saga.status() {
                    OrderStatus::Rejected | OrderStatus::Cancelled if saga.next_step() == Step::Done => {
                        prop_assert!(!saga.holds_stock() && !saga.holds_payment(), "{:?} holds something", saga);
                    }
                    OrderStatus::Confirmed if saga.next_step() == Step::Done => {
                        prop_assert!(saga.holds_stock() && saga.holds_payment());
                    }
                    OrderStatus::Pending => prop_assert!(saga.next_step() != Step::Done || saga.failure_reason().is_none()),
                    _ => {}
                }
                if matches!(saga.status(), OrderStatus::Rejected) {
                    prop_assert!(saga.failure_reason().is_some(), "a rejection always says why");
                }
                prop_assert!(!(saga.holds_payment() && !saga.holds_stock() && saga.next_step() == Step::Done), "money kept without goods");
            }
        }
    }
}
