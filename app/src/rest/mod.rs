//! The public REST API (shared/api.md), written once against the module contracts: the same
//! handlers serve whether a module is local or remote. Every route is versioned (`versions`):
//! `/api/v1/...` is canonical, `/api/...` the alias of the newest version. Each module's routes
//! live beside the rest of its part of the app (`crate::modules::<name>::rest`); here are the
//! routes that span modules. `crate::modules::routes` gathers them all.

pub mod admin;
pub mod me;
pub mod versions;

pub use crate::edge::PeerAddr;
pub use crate::state::{AppState, Handles};
pub use versions::ApiRoutes;
