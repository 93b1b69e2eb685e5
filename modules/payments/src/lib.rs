//! The payments module: a payment per order, charged through a [`provider::PaymentProvider`]
//! port, refunded in full or in part.
//!
//! Not an API boundary: other modules reach payments only through `payments-contract`.
//!
//! **Architecture Invariant:** one order is captured at most once, under any retry or
//! concurrency: the order id is the provider's idempotency key, and the payment row is unique
//! per order. The refunded total never exceeds the captured amount: the refund is one
//! conditional `UPDATE`, and the table checks it too. A card number is never stored or
//! logged: payments keeps the provider's reference to the card behind a single-use token.

//!
//! Layout (every module's): one file per group of use cases (`methods`, `charges`, `refunds`,
//! `voids`, `queries`), `store` (the rows' statuses and shared queries), `views` (rows as the contract
//! shows them), `entities`, `context` (what each use case is given) and `service`, the facade
//! implementing the contract; `provider` is the payment provider's port and its simulator.
//! Payments has no value types of its own beyond the contract's (`CardNumber`,
//! `PaymentMethodToken`, `Money`), so it has no `domain.rs`.

mod charges;
mod context;
mod entities;
mod methods;
pub mod provider;
mod queries;
mod refunds;
mod service;
mod store;
mod views;
mod voids;

pub use provider::{PaymentProvider, ProviderError, ProviderOutcome, SimulatedCardProcessor, SimulatorSettings};
pub use service::PaymentsService;
