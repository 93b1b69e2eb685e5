//! The event machinery's tables, which every module's database carries: `outbox_events` (what
//! the module publishes), `inbox_events` (what its consumers processed), `dead_letters` (what
//! they gave up on). Each module's migrator includes a migration that calls [`create`].

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Seq,
    EventId,
    EventType,
    AggregateId,
    Envelope,
    CreatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum InboxEvents {
    Table,
    Consumer,
    EventId,
    ProcessedAt,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    Consumer,
    EventId,
    EventType,
    Envelope,
    Attempts,
    Status,
    CreatedAt,
    ResolvedAt,
}

/// Creates the three tables and their indexes.
///
/// # Errors
/// Whatever the database reports.
pub async fn create(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(OutboxEvents::Table)
                .col(ColumnDef::new(OutboxEvents::Seq).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(OutboxEvents::EventId).uuid().not_null().unique_key())
                .col(ColumnDef::new(OutboxEvents::EventType).string_len(200).not_null())
                .col(ColumnDef::new(OutboxEvents::AggregateId).string_len(200).not_null())
                .col(ColumnDef::new(OutboxEvents::Envelope).text().not_null())
                .col(ColumnDef::new(OutboxEvents::CreatedAt).timestamp_with_time_zone().not_null())
                .col(ColumnDef::new(OutboxEvents::DeliveredAt).timestamp_with_time_zone().null())
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_outbox_events_undelivered")
                .table(OutboxEvents::Table)
                .col(OutboxEvents::DeliveredAt)
                .col(OutboxEvents::Seq)
                .to_owned(),
        )
        .await?;
    manager
        .create_table(
            Table::create()
                .table(InboxEvents::Table)
                .col(ColumnDef::new(InboxEvents::Consumer).string_len(200).not_null())
                .col(ColumnDef::new(InboxEvents::EventId).uuid().not_null())
                .col(ColumnDef::new(InboxEvents::ProcessedAt).timestamp_with_time_zone().not_null())
                .primary_key(Index::create().col(InboxEvents::Consumer).col(InboxEvents::EventId))
                .to_owned(),
        )
        .await?;
    manager
        .create_table(
            Table::create()
                .table(DeadLetters::Table)
                .col(ColumnDef::new(DeadLetters::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(DeadLetters::Consumer).string_len(200).not_null())
                .col(ColumnDef::new(DeadLetters::EventId).uuid().not_null())
                .col(ColumnDef::new(DeadLetters::EventType).string_len(200).not_null())
                .col(ColumnDef::new(DeadLetters::Envelope).text().not_null())
                .col(ColumnDef::new(DeadLetters::Attempts).text().not_null())
                .col(ColumnDef::new(DeadLetters::Status).string_len(16).not_null())
                .col(ColumnDef::new(DeadLetters::CreatedAt).timestamp_with_time_zone().not_null())
                .col(ColumnDef::new(DeadLetters::ResolvedAt).timestamp_with_time_zone().null())
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_dead_letters_status")
                .table(DeadLetters::Table)
                .col(DeadLetters::Status)
                .col(DeadLetters::Id)
                .to_owned(),
        )
        .await
}

/// Drops the three tables.
///
/// # Errors
/// Whatever the database reports.
pub async fn drop(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager.drop_table(Table::drop().table(DeadLetters::Table).to_owned()).await?;
    manager.drop_table(Table::drop().table(InboxEvents::Table).to_owned()).await?;
    manager.drop_table(Table::drop().table(OutboxEvents::Table).to_owned()).await
}

/// A migrator holding only the event tables: for tests of the machinery itself.
pub struct EventTablesOnly;

mod only {
    use super::*;

    #[derive(DeriveMigrationName)]
    pub struct Migration;

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            super::create(manager).await
        }
        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            super::drop(manager).await
        }
    }
}

#[async_trait::async_trait]
impl MigratorTrait for EventTablesOnly {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(only::Migration)]
    }
}

/// Declares, in a module's migrator, the migration that creates that module's event tables.
/// (Each module's migrator has its own, so its name is recorded in that module's database.)
#[macro_export]
macro_rules! event_tables_migration {
    () => {
        use sea_orm_migration::prelude::*;

        /// This module's outbox, inbox and dead letters.
        #[derive(DeriveMigrationName)]
        pub struct Migration;

        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                $crate::event_tables::create(manager).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                $crate::event_tables::drop(manager).await
            }
        }
    };
}
