//! The composition root: configuration, the choice of local or remote adapter per module, the
//! edge (middleware every request passes), the public REST routes, and the CLI.
//!
//! **Architecture Invariant:** no business rule lives here. Handlers extract, call a module's
//! contract and map the result.

pub mod cli;
pub mod composition;
pub mod config;
pub mod contracts;
pub mod data_move;
pub mod edge;
pub mod graphql;
pub mod health;
pub mod module_list;
pub mod modules;
pub mod openapi;
pub mod rate_limit;
pub mod rest;
pub mod seed;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod trust;

pub use config::Settings;
pub use startup::Application;
