//! The orders module: placement with idempotency keys, the place-order saga with persisted
//! state, and orders' own read models (customers' account status, product names) kept from
//! other modules' events.
//!
//! Not an API boundary: the edge and other processes reach orders only through
//! `orders-contract`. Orders reaches the catalog and payments only through their contracts,
//! as the service `orders`.
//!
//! **Architecture Invariant:** a card number never reaches orders. The edge exchanges it with
//! payments for a single-use token, which the order stores and its saga charges, first run or
//! resumed after a crash alike.

//!
//! Layout (every module's): `domain` (values parsed once, the order aggregate) and `saga` (the
//! saga's states and steps, pure), one file per use case (`placement`, `saga_driver`, `recovery`,
//! `queries`, `cancellation`), `store` (rows), `views` (orders as the contract shows them),
//! `entities`, `settings`, `context` (what each use case is given) and `service`, the facade
//! implementing the contract; `projections` are orders' reactions to other modules' events.

mod cancellation;
mod context;
pub mod domain;
mod entities;
mod placement;
pub mod projections;
mod queries;
mod recovery;
pub mod saga;
mod saga_driver;
mod service;
mod settings;
mod store;
mod views;

pub use projections::{CustomerStatusProjection, ProductNamesProjection};
pub use service::OrdersService;
pub use settings::OrdersSettings;
