use sea_orm_migration::prelude::*;

/// One row per order that reserved stock, written first by `reserve`: two concurrent reserves
/// for one order cannot both hold stock, whatever lines each asks for.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ReservationOrders {
    Table,
    OrderId,
    LinesKey,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReservationOrders::Table)
                    .col(ColumnDef::new(ReservationOrders::OrderId).uuid().not_null().primary_key())
                    // The lines asked for, canonical: a later reserve for the order with other lines is a conflict.
                    .col(ColumnDef::new(ReservationOrders::LinesKey).text().not_null())
                    .col(ColumnDef::new(ReservationOrders::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ReservationOrders::Table).to_owned()).await
    }
}
