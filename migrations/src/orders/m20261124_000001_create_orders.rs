use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    CustomerId,
    Status,
    Step,
    StockReserved,
    StockCommitted,
    PaymentCaptured,
    FailureReason,
    TotalAmount,
    Currency,
    CardLast4,
    SagaVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    OrderId,
    LineNo,
    ProductId,
    Quantity,
    UnitPriceAmount,
    UnitPriceCurrency,
}

/// `(customer, key)` → the order it placed, with a hash of the request that placed it.
#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    CustomerId,
    Key,
    RequestHash,
    OrderId,
    CreatedAt,
}

/// Orders' projection of users' account status, from users' events.
#[derive(DeriveIden)]
enum CustomerStatus {
    Table,
    UserId,
    Active,
    UpdatedAt,
}

/// Orders' read model of product names, from catalog's events.
#[derive(DeriveIden)]
enum ProductNames {
    Table,
    ProductId,
    Sku,
    Name,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(ColumnDef::new(Orders::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Orders::CustomerId).uuid().not_null())
                    .col(ColumnDef::new(Orders::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Orders::Step).string_len(24).not_null())
                    .col(ColumnDef::new(Orders::StockReserved).boolean().not_null())
                    .col(ColumnDef::new(Orders::StockCommitted).boolean().not_null())
                    .col(ColumnDef::new(Orders::PaymentCaptured).boolean().not_null())
                    .col(ColumnDef::new(Orders::FailureReason).string_len(300).null())
                    .col(ColumnDef::new(Orders::TotalAmount).big_integer().not_null().check(Expr::col(Orders::TotalAmount).gt(0)))
                    .col(ColumnDef::new(Orders::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Orders::CardLast4).string_len(4).not_null())
                    .col(ColumnDef::new(Orders::SagaVersion).integer().not_null())
                    .col(ColumnDef::new(Orders::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Orders::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        // The caller's orders, newest first (ids are UUIDv7: time-ordered).
        manager
            .create_index(
                Index::create().name("ix_orders_customer").table(Orders::Table).col(Orders::CustomerId).col(Orders::Id).to_owned(),
            )
            .await?;
        // The recovery task looks for sagas with a step left.
        manager
            .create_index(Index::create().name("ix_orders_step").table(Orders::Table).col(Orders::Step).col(Orders::UpdatedAt).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(ColumnDef::new(OrderItems::OrderId).uuid().not_null())
                    .col(ColumnDef::new(OrderItems::LineNo).integer().not_null())
                    .col(ColumnDef::new(OrderItems::ProductId).uuid().not_null())
                    .col(ColumnDef::new(OrderItems::Quantity).integer().not_null().check(Expr::col(OrderItems::Quantity).gt(0)))
                    .col(ColumnDef::new(OrderItems::UnitPriceAmount).big_integer().not_null())
                    .col(ColumnDef::new(OrderItems::UnitPriceCurrency).string_len(3).not_null())
                    .primary_key(Index::create().col(OrderItems::OrderId).col(OrderItems::LineNo))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_order_items_order")
                            .from(OrderItems::Table, OrderItems::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(ColumnDef::new(IdempotencyKeys::CustomerId).uuid().not_null())
                    .col(ColumnDef::new(IdempotencyKeys::Key).string_len(255).not_null())
                    .col(ColumnDef::new(IdempotencyKeys::RequestHash).string_len(64).not_null())
                    .col(ColumnDef::new(IdempotencyKeys::OrderId).uuid().not_null())
                    .col(ColumnDef::new(IdempotencyKeys::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(IdempotencyKeys::CustomerId).col(IdempotencyKeys::Key))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_idempotency_keys_order")
                            .from(IdempotencyKeys::Table, IdempotencyKeys::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CustomerStatus::Table)
                    .col(ColumnDef::new(CustomerStatus::UserId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(CustomerStatus::Active).boolean().not_null())
                    .col(ColumnDef::new(CustomerStatus::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProductNames::Table)
                    .col(ColumnDef::new(ProductNames::ProductId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ProductNames::Sku).string_len(64).not_null())
                    .col(ColumnDef::new(ProductNames::Name).string_len(200).not_null())
                    .col(ColumnDef::new(ProductNames::Version).integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ProductNames::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(CustomerStatus::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(OrderItems::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Orders::Table).to_owned()).await
    }
}
