//! The catalog module's schema.

use sea_orm_migration::prelude::*;

mod m20261124_000001_create_catalog;
mod m20261124_000002_create_event_tables;
mod m20261124_000003_create_reservation_orders;
mod m20261124_000004_add_units_sold;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_catalog::Migration),
            Box::new(m20261124_000002_create_event_tables::Migration),
            Box::new(m20261124_000003_create_reservation_orders::Migration),
            Box::new(m20261124_000004_add_units_sold::Migration),
        ]
    }
}
