//! A consumer's record of the events it has processed, in its own database.

use super::entities::inbox_events;
use crate::Clock;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, Set, TransactionTrait};
use uuid::Uuid;

/// A consumer's record of the events it has processed, in its own database.
#[derive(Debug, Clone, Copy)]
pub struct Inbox;

impl Inbox {
    /// Begins the handler's transaction with `event_id` recorded as processed by `consumer`.
    /// `None` means it was processed before: skip it. Commit the returned transaction together
    /// with the handler's effects; if the handler fails, dropping it forgets the record too.
    ///
    /// # Errors
    /// The database is unavailable.
    pub async fn begin(
        db: &DatabaseConnection,
        clock: &dyn Clock,
        consumer: &str,
        event_id: Uuid,
    ) -> Result<Option<DatabaseTransaction>, DbErr> {
        let transaction = db.begin().await?;
        let inserted = inbox_events::Entity::insert(inbox_events::ActiveModel {
            consumer: Set(consumer.to_owned()),
            event_id: Set(event_id),
            processed_at: Set(clock.now()),
        })
        .on_conflict(OnConflict::columns([inbox_events::Column::Consumer, inbox_events::Column::EventId]).do_nothing().to_owned())
        .exec_without_returning(&transaction)
        .await?;
        if inserted == 0 {
            transaction.rollback().await?;
            return Ok(None);
        }
        Ok(Some(transaction))
    }
}
