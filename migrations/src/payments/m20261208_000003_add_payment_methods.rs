use sea_orm_migration::prelude::*;

/// Payment methods: the card a customer gave, held as the provider's reference and its last
/// four digits, behind a single-use token (stored as its SHA-256). A payment names the method it
/// used, at most once.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentMethods {
    Table,
    TokenHash,
    CustomerId,
    CardLast4,
    ProviderReference,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    PaymentMethod,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PaymentMethods::Table)
                    .col(ColumnDef::new(PaymentMethods::TokenHash).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(PaymentMethods::CustomerId).uuid().not_null())
                    .col(ColumnDef::new(PaymentMethods::CardLast4).string_len(4).not_null())
                    .col(ColumnDef::new(PaymentMethods::ProviderReference).string_len(128).not_null())
                    .col(ColumnDef::new(PaymentMethods::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(PaymentMethods::ExpiresAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Payments::Table).add_column(ColumnDef::new(Payments::PaymentMethod).string_len(64).null()).to_owned(),
            )
            .await?;
        // Single use: a second order naming the same method loses on this index.
        manager
            .create_index(
                Index::create().name("ux_payments_payment_method").table(Payments::Table).col(Payments::PaymentMethod).unique().to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ux_payments_payment_method").table(Payments::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Payments::Table).drop_column(Payments::PaymentMethod).to_owned()).await?;
        manager.drop_table(Table::drop().table(PaymentMethods::Table).to_owned()).await
    }
}
