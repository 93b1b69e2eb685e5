//! Payments' facade: [`PaymentsService`] implements [`PaymentsApi`], each operation one call into
//! its use case (`charges`, `refunds`, `queries`). Nothing in the crate imports this file.

use crate::context::Context;
use crate::provider::PaymentProvider;
use payments_contract::{CardNumber, ChargeOutcome, ChargeRequest, PaymentMethod, PaymentView, PaymentsApi, RefundOutcome, VoidOutcome};
use sea_orm::DatabaseConnection;
use shared_kernel::{ApiError, Caller, Clock, Money, OrderId, SystemClock, UserId};
use std::sync::Arc;

/// The payments module. Cheap to clone.
#[derive(Clone)]
pub struct PaymentsService {
    context: Context,
}

impl std::fmt::Debug for PaymentsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsService").finish_non_exhaustive()
    }
}

impl PaymentsService {
    /// `db` must be the payments module's own database, already migrated.
    pub fn new(db: DatabaseConnection, provider: Arc<dyn PaymentProvider>) -> Self {
        Self { context: Context { db, provider, clock: Arc::new(SystemClock), pending_timeout: chrono::Duration::seconds(60) } }
    }

    /// Where payments reads the time (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.context.clock = clock;
        self
    }

    /// A charge still `pending` after this long lost its caller (a crash, a restart): reading or
    /// refunding it asks the provider what happened and records that. Keep it above the longest
    /// provider call. Default 60 s.
    #[must_use]
    pub fn with_pending_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.context.pending_timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// Finishes refunds claimed at least `older_than` ago and not recorded (a process stopped
    /// between the claim and the record, or the provider failed), each with its own idempotency
    /// key: never refunded twice. Run it periodically where payments is hosted. Returns how many
    /// it finished.
    ///
    /// # Errors
    /// The database, or the provider failing one of them (the rest wait for the next run).
    pub async fn finish_pending_refunds(&self, older_than: std::time::Duration) -> Result<usize, ApiError> {
        self.context.finish_pending_refunds(chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX)).await
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.context.db.ping().await.is_ok()
    }
}

#[async_trait::async_trait]
impl PaymentsApi for PaymentsService {
    async fn tokenize(&self, caller: &Caller, card: CardNumber) -> Result<PaymentMethod, ApiError> {
        self.context.tokenize(caller, card).await
    }

    async fn charge(&self, caller: &Caller, request: ChargeRequest) -> Result<ChargeOutcome, ApiError> {
        self.context.charge(caller, request).await
    }

    async fn refund(&self, caller: &Caller, order_id: OrderId, amount: Option<Money>) -> Result<RefundOutcome, ApiError> {
        self.context.refund(caller, order_id, amount).await
    }

    async fn void_charge(&self, caller: &Caller, order_id: OrderId, customer_id: UserId, amount: Money) -> Result<VoidOutcome, ApiError> {
        self.context.void_charge(caller, order_id, customer_id, amount).await
    }

    async fn get_payment(&self, caller: &Caller, order_id: OrderId) -> Result<PaymentView, ApiError> {
        self.context.get_payment(caller, order_id).await
    }

    async fn get_payments(&self, caller: &Caller, order_ids: Vec<OrderId>) -> Result<Vec<PaymentView>, ApiError> {
        self.context.get_payments(caller, order_ids).await
    }
}
