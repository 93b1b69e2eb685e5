use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Categories {
    Table,
    Id,
    Name,
    NameKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Sku,
    SkuKey,
    Name,
    Description,
    SearchText,
    PriceAmount,
    PriceCurrency,
    CategoryId,
    OnHand,
    Reserved,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    OrderId,
    ProductId,
    Quantity,
    UnitPriceAmount,
    UnitPriceCurrency,
    Status,
    ExpiresAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Categories::Table)
                    .col(ColumnDef::new(Categories::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Categories::Name).string_len(100).not_null())
                    // Lower-cased name: unique case-insensitively.
                    .col(ColumnDef::new(Categories::NameKey).string_len(100).not_null().unique_key())
                    .col(ColumnDef::new(Categories::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(ColumnDef::new(Products::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Products::Sku).string_len(64).not_null())
                    .col(ColumnDef::new(Products::SkuKey).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(Products::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Products::Description).text().not_null())
                    .col(ColumnDef::new(Products::SearchText).text().not_null())
                    .col(ColumnDef::new(Products::PriceAmount).big_integer().not_null())
                    .col(ColumnDef::new(Products::PriceCurrency).string_len(3).not_null())
                    .col(ColumnDef::new(Products::CategoryId).uuid().null())
                    .col(ColumnDef::new(Products::OnHand).big_integer().not_null().check(Expr::col(Products::OnHand).gte(0)))
                    .col(
                        ColumnDef::new(Products::Reserved).big_integer().not_null().check(
                            Expr::col(Products::Reserved).gte(0).and(Expr::col(Products::Reserved).lte(Expr::col(Products::OnHand))),
                        ),
                    )
                    .col(ColumnDef::new(Products::Version).integer().not_null())
                    .col(ColumnDef::new(Products::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Products::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_products_category")
                            .from(Products::Table, Products::CategoryId)
                            .to(Categories::Table, Categories::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("ix_products_category").table(Products::Table).col(Products::CategoryId).col(Products::Id).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .col(ColumnDef::new(Reservations::OrderId).uuid().not_null())
                    .col(ColumnDef::new(Reservations::ProductId).uuid().not_null())
                    .col(ColumnDef::new(Reservations::Quantity).big_integer().not_null())
                    .col(ColumnDef::new(Reservations::UnitPriceAmount).big_integer().not_null())
                    .col(ColumnDef::new(Reservations::UnitPriceCurrency).string_len(3).not_null())
                    .col(ColumnDef::new(Reservations::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Reservations::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Reservations::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Reservations::OrderId).col(Reservations::ProductId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_reservations_product")
                            .from(Reservations::Table, Reservations::ProductId)
                            .to(Products::Table, Products::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_reservations_expiry")
                    .table(Reservations::Table)
                    .col(Reservations::Status)
                    .col(Reservations::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Reservations::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Products::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Categories::Table).to_owned()).await
    }
}
