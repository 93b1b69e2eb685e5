use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One row per notification made for a user.
#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    UserId,
    Kind,
    Subject,
    Body,
    OrderId,
    CreatedAt,
    ReadAt,
    DeliveredAt,
}

/// Where to send a user's notifications, kept from users' registration events (notifications
/// never calls users for it).
#[derive(DeriveIden)]
enum Recipients {
    Table,
    UserId,
    Email,
    Name,
    RegisteredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(ColumnDef::new(Notifications::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Notifications::UserId).uuid().not_null())
                    .col(ColumnDef::new(Notifications::Kind).string_len(40).not_null())
                    .col(ColumnDef::new(Notifications::Subject).string_len(300).not_null())
                    .col(ColumnDef::new(Notifications::Body).text().not_null())
                    .col(ColumnDef::new(Notifications::OrderId).uuid().null())
                    .col(ColumnDef::new(Notifications::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Notifications::ReadAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Notifications::DeliveredAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        // A user's notifications, newest first (ids are time-ordered).
        manager
            .create_index(
                Index::create()
                    .name("ix_notifications_user_id")
                    .table(Notifications::Table)
                    .col(Notifications::UserId)
                    .col(Notifications::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Recipients::Table)
                    .col(ColumnDef::new(Recipients::UserId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Recipients::Email).string_len(320).not_null())
                    .col(ColumnDef::new(Recipients::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Recipients::RegisteredAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Recipients::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Notifications::Table).to_owned()).await
    }
}
