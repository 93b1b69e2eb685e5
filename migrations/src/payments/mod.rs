//! The payments module's schema.

use sea_orm_migration::prelude::*;

mod m20261124_000001_create_payments;
mod m20261124_000002_create_event_tables;
mod m20261208_000003_add_payment_methods;
mod m20261208_000004_add_pending_refunds;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_payments::Migration),
            Box::new(m20261124_000002_create_event_tables::Migration),
            Box::new(m20261208_000003_add_payment_methods::Migration),
            Box::new(m20261208_000004_add_pending_refunds::Migration),
        ]
    }
}
