//! The modules as this process reaches them: one handle per contract, whatever the adapter
//! behind it (the implementation here, a client of its HTTP or NATS wire, or "not deployed").
//! The REST handlers, the GraphQL schema and the tests all take this one struct.

use std::sync::Arc;

/// A handle per module contract. Cheap to clone.
#[derive(Clone)]
pub struct ModuleHandles {
    pub users: Arc<dyn users_contract::UsersApi>,
    pub catalog: Arc<dyn catalog_contract::CatalogApi>,
    pub orders: Arc<dyn orders_contract::OrdersApi>,
    pub payments: Arc<dyn payments_contract::PaymentsApi>,
    pub notifications: Arc<dyn notifications_contract::NotificationsApi>,
}
