//! The orders module's tables (sea-orm entities). Private to the module.

pub mod customer_status;
pub mod idempotency_keys;
pub mod order_items;
pub mod orders;
pub mod product_names;
