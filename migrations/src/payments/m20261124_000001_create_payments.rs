use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    OrderId,
    CustomerId,
    Amount,
    Currency,
    RefundedAmount,
    Status,
    ProviderChargeId,
    FailureReason,
    CardLast4,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    PaymentId,
    Amount,
    ProviderRefundId,
    CreatedAt,
}

/// The built-in simulated card processor keeps its own record of charges by idempotency key,
/// as a real provider does on its side.
#[derive(DeriveIden)]
enum SimulatedCharges {
    Table,
    IdempotencyKey,
    ChargeId,
    Outcome,
    Reason,
    Amount,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(ColumnDef::new(Payments::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Payments::OrderId).uuid().not_null().unique_key())
                    .col(ColumnDef::new(Payments::CustomerId).uuid().not_null())
                    .col(ColumnDef::new(Payments::Amount).big_integer().not_null().check(Expr::col(Payments::Amount).gt(0)))
                    .col(ColumnDef::new(Payments::Currency).string_len(3).not_null())
                    .col(
                        ColumnDef::new(Payments::RefundedAmount).big_integer().not_null().check(
                            Expr::col(Payments::RefundedAmount)
                                .gte(0)
                                .and(Expr::col(Payments::RefundedAmount).lte(Expr::col(Payments::Amount))),
                        ),
                    )
                    .col(ColumnDef::new(Payments::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Payments::ProviderChargeId).string_len(64).null())
                    .col(ColumnDef::new(Payments::FailureReason).string_len(200).null())
                    .col(ColumnDef::new(Payments::CardLast4).string_len(4).not_null())
                    .col(ColumnDef::new(Payments::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Payments::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(ColumnDef::new(Refunds::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Refunds::PaymentId).uuid().not_null())
                    .col(ColumnDef::new(Refunds::Amount).big_integer().not_null())
                    .col(ColumnDef::new(Refunds::ProviderRefundId).string_len(64).not_null())
                    .col(ColumnDef::new(Refunds::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refunds_payment")
                            .from(Refunds::Table, Refunds::PaymentId)
                            .to(Payments::Table, Payments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SimulatedCharges::Table)
                    .col(ColumnDef::new(SimulatedCharges::IdempotencyKey).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(SimulatedCharges::ChargeId).string_len(64).not_null())
                    .col(ColumnDef::new(SimulatedCharges::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(SimulatedCharges::Reason).string_len(200).null())
                    .col(ColumnDef::new(SimulatedCharges::Amount).big_integer().not_null())
                    .col(ColumnDef::new(SimulatedCharges::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SimulatedCharges::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Refunds::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Payments::Table).to_owned()).await
    }
}
