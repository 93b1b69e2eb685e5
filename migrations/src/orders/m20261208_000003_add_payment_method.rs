use sea_orm_migration::prelude::*;

/// The token payments issued for an order's card: the saga charges it, so a saga resumed after a
/// crash can still charge. Orders placed before it have none.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    PaymentMethod,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Orders::Table).add_column(ColumnDef::new(Orders::PaymentMethod).string_len(128).null()).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Orders::Table).drop_column(Orders::PaymentMethod).to_owned()).await
    }
}
