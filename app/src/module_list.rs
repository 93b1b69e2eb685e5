//! The module list: every module once, in placement order (a module after the ones it calls),
//! with its contract. Adding a module is one line here.
//!
//! Each aggregator expands its own part from the list with [`module_list!`]: the handles here
//! ([`ModuleHandles`], the service names the internal wire believes), the modules' directories,
//! their placement, routes, OpenAPI paths, event schemas and metrics in `crate::modules`, the
//! GraphQL root in `crate::graphql::root`, and `modules.<m>` in the configuration. This file
//! imports nothing of the app, so everything may depend on it and it on nothing.

use shared_kernel::ServiceName;
use std::sync::Arc;

/// Calls `$callback! { name: ContractTrait, … }` with every module, in placement order.
macro_rules! module_list {
    ($callback:ident) => {
        $callback! {
            users: users_contract::UsersApi,
            catalog: catalog_contract::CatalogApi,
            payments: payments_contract::PaymentsApi,
            orders: orders_contract::OrdersApi,
            notifications: notifications_contract::NotificationsApi,
        }
    };
}
pub(crate) use module_list;

macro_rules! handles {
    ($($name:ident: $api:path),+ $(,)?) => {
        /// A handle per module contract, whatever the adapter behind it (the implementation
        /// here, a client of its HTTP or NATS wire, or "not deployed"). The REST handlers, the
        /// GraphQL schema and the tests all take this one struct. Cheap to clone.
        #[derive(Clone)]
        pub struct ModuleHandles {
            $(pub $name: Arc<dyn $api>,)+
        }

        /// The handles placed so far: a module is placed after the ones it calls, and finds
        /// them here.
        #[derive(Default)]
        pub struct Placed {
            $(pub $name: Option<Arc<dyn $api>>,)+
        }

        /// Every module's name, in placement order.
        pub const NAMES: &[&str] = &[$(stringify!($name)),+];

        /// The services a process believes on its internal wire: every module of the list, and
        /// the edge.
        pub fn service_names() -> Vec<ServiceName> {
            vec![$(ServiceName::named(stringify!($name)),)+ ServiceName::EDGE]
        }
    };
}

module_list!(handles);
