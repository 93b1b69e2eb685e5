//! sea-orm models of the payments module's own tables. Never leave this crate.

pub mod payment_methods;
pub mod payments;
pub mod pending_refunds;
pub mod refunds;
pub mod simulated_charges;
pub mod simulated_refunds;
