//! One migrator per module, each applied to that module's own database.
//!
//! **Architecture Invariant:** a migration touches only its own module's tables. No foreign key
//! ever points into another module's database.

pub mod catalog;
pub mod event_tables;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod users;

pub use sea_orm_migration::MigratorTrait;
pub use sea_orm_migration::sea_orm;

/// The modules that own a database, in the order `cleave migrate` applies them.
pub const MODULES: &[&str] = &["users", "catalog", "orders", "payments", "notifications"];
