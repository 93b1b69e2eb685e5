//! sea-orm models of the catalog module's own tables. Never leave this crate.

pub mod categories;
pub mod products;
pub mod reservation_orders;
pub mod reservations;
