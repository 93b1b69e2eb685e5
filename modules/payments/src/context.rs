//! What every use case of payments is given: its database, the payment provider, the clock and
//! how long a charge may stay pending. The use cases are methods on [`Context`], one file per
//! group (`charges`, `refunds`, `queries`); the facade ([`crate::PaymentsService`]) calls them.

use crate::provider::PaymentProvider;
use sea_orm::DatabaseConnection;
use shared_kernel::Clock;
use std::sync::Arc;

/// Payments' dependencies. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) db: DatabaseConnection,
    pub(crate) provider: Arc<dyn PaymentProvider>,
    pub(crate) clock: Arc<dyn Clock>,
    /// A charge still `pending` after this long lost its caller.
    pub(crate) pending_timeout: chrono::Duration,
}
