//! The payments module: a payment per order, charged through a [`provider::PaymentProvider`]
//! port, refunded in full or in part.
//!
//! Not an API boundary: other modules reach payments only through `payments-contract`.
//!
//! **Architecture Invariant:** one order is captured at most once, under any retry or
//! concurrency: the order id is the provider's idempotency key, and the payment row is unique
//! per order. The refunded total never exceeds the captured amount: the refund is one
//! conditional `UPDATE`, and the table checks it too.

mod entities;
pub mod provider;
pub mod service;

pub use provider::{PaymentProvider, ProviderError, ProviderOutcome, SimulatedCardProcessor, SimulatorSettings};
pub use service::PaymentsService;
