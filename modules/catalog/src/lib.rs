//! The catalog module: categories, products, stock, and reservations for orders.
//!
//! Not an API boundary: other modules reach the catalog only through `catalog-contract`.
//!
//! Layout (every module's): `domain` (values parsed once), one file per group of use cases
//! (`categories`, `products`, `stock`), `store` (the queries they share), `views` (rows as the
//! contract shows them), `entities`, `settings`, `context` (what each use case is given) and
//! `service`, the facade implementing the contract. The reactions to other modules' events are
//! `sales` and `invalidation`; `cache` holds the read cache's adapters.
//!
//! **Architecture Invariant:** stock never goes negative and never oversells, under any
//! concurrency, on SQLite and PostgreSQL: every stock change is one conditional `UPDATE`
//! (`… WHERE on_hand - reserved >= quantity`), never a read-modify-write in Rust, and the
//! database checks `0 <= reserved <= on_hand` as well.

pub mod cache;
mod categories;
mod context;
pub mod domain;
mod entities;
pub mod invalidation;
mod products;
pub mod sales;
mod service;
mod settings;
mod stock;
mod store;
mod views;

pub use invalidation::CacheInvalidator;
pub use sales::SalesCounter;
pub use service::CatalogService;
pub use settings::CatalogSettings;
