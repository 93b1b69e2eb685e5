//! The public REST API (shared/api.md), written once against the module contracts: the same
//! handlers serve whether a module is local or remote. Every route is versioned (`versions`):
//! `/api/v1/...` is canonical, `/api/...` the alias of the newest version.

pub mod admin;
pub mod catalog;
pub mod me;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod users;
pub mod versions;

pub use crate::edge::PeerAddr;
pub use crate::state::{AppState, Handles};
pub use versions::ApiRoutes;

/// Every versioned REST route.
pub fn routes() -> ApiRoutes<AppState> {
    users::routes()
        .merge(catalog::routes())
        .merge(orders::routes())
        .merge(payments::routes())
        .merge(admin::routes())
        .merge(me::routes())
        .merge(notifications::routes())
}
