use sea_orm_migration::prelude::*;

/// Refunds exactly once: a refund's claim on the payment and its pending row are written in one
/// transaction; the pending row's id is the provider's idempotency key, and it is removed when
/// the refund is recorded. The simulator keeps its own record of refunds by that key.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PendingRefunds {
    Table,
    Id,
    PaymentId,
    Amount,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SimulatedRefunds {
    Table,
    IdempotencyKey,
    RefundId,
    ChargeId,
    Amount,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PendingRefunds::Table)
                    .col(ColumnDef::new(PendingRefunds::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(PendingRefunds::PaymentId).uuid().not_null())
                    .col(ColumnDef::new(PendingRefunds::Amount).big_integer().not_null())
                    .col(ColumnDef::new(PendingRefunds::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SimulatedRefunds::Table)
                    .col(ColumnDef::new(SimulatedRefunds::IdempotencyKey).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(SimulatedRefunds::RefundId).string_len(64).not_null())
                    .col(ColumnDef::new(SimulatedRefunds::ChargeId).string_len(64).not_null())
                    .col(ColumnDef::new(SimulatedRefunds::Amount).big_integer().not_null())
                    .col(ColumnDef::new(SimulatedRefunds::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SimulatedRefunds::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(PendingRefunds::Table).to_owned()).await
    }
}
