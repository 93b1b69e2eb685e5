//! The orders module. So far: the domain of an order and its place-order saga, as a pure state
//! machine (no I/O), so every rule is testable without a database or a wire. The use cases,
//! persistence, contract and composition come next, on this core.
//!
//! Not an API boundary.

pub mod saga;
