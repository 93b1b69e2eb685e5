//! The public REST API (shared/api.md), written once against the module contracts: the same
//! handlers serve whether a module is local or remote.

pub mod admin;
pub mod catalog;
pub mod me;
pub mod orders;
pub mod payments;
pub mod users;

pub use crate::edge::PeerAddr;
pub use crate::state::{AppState, Handles};
