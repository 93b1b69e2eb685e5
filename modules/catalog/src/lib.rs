//! The catalog module: categories, products, stock, and reservations for orders.
//!
//! Not an API boundary: other modules reach the catalog only through `catalog-contract`.
//!
//! **Architecture Invariant:** stock never goes negative and never oversells, under any
//! concurrency, on SQLite and PostgreSQL: every stock change is one conditional `UPDATE`
//! (`… WHERE on_hand - reserved >= quantity`), never a read-modify-write in Rust, and the
//! database checks `0 <= reserved <= on_hand` as well.

pub mod cache;
pub mod domain;
mod entities;
pub mod invalidation;
pub mod sales;
pub mod service;

pub use invalidation::CacheInvalidator;
pub use sales::SalesCounter;
pub use service::{CatalogService, CatalogSettings};
