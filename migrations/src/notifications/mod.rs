//! The notifications module's schema.

use sea_orm_migration::prelude::*;

mod m20261202_000001_create_notifications;
mod m20261202_000002_create_event_tables;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261202_000001_create_notifications::Migration), Box::new(m20261202_000002_create_event_tables::Migration)]
    }
}
