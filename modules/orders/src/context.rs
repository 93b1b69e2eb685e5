//! What every use case of orders is given: its database and outbox, the catalog and payments as
//! this process reaches them, the clock, the settings and the identity orders calls as. The use
//! cases are methods on [`Context`], one file each (`placement`, `saga_driver`, `recovery`,
//! `queries`, `cancellation`); the facade ([`crate::OrdersService`]) holds one and calls them.

use crate::settings::OrdersSettings;
use catalog_contract::CatalogApi;
use payments_contract::PaymentsApi;
use sea_orm::DatabaseConnection;
use shared_kernel::outbox::Outbox;
use shared_kernel::resilience::CallGate;
use shared_kernel::{Caller, Clock};
use std::sync::Arc;

/// Orders' dependencies. Cheap to clone (a saga's task holds one).
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: Outbox,
    pub(crate) catalog: Arc<dyn CatalogApi>,
    pub(crate) payments: Arc<dyn PaymentsApi>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: OrdersSettings,
    /// Orders calls the catalog and payments as itself (`orders_contract::SERVICE`).
    pub(crate) identity: Caller,
    /// Whether calls to payments are being refused (its circuit is open): placement then
    /// answers 503 before it reserves anything.
    pub(crate) payments_gate: Arc<dyn CallGate>,
}
