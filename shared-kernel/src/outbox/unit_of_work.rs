//! The outbox a use case appends to, in the transaction of its change.

use super::entities::outbox_events;
use crate::events::{EventEnvelope, IntegrationEvent};
use crate::{Clock, RequestContext, SystemClock};
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Set, TransactionTrait};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// A module's outbox: where its unit of work appends and what wakes its relay.
#[derive(Debug, Clone)]
pub struct Outbox {
    module: &'static str,
    pub(super) wake: Arc<Notify>,
    /// Stamps the outbox rows and the relay's delivery marks.
    pub(super) clock: Arc<dyn Clock>,
}

impl Outbox {
    /// On the system clock; [`Outbox::with_clock`] to give it another.
    pub fn new(module: &'static str) -> Self {
        Self { module, wake: Arc::new(Notify::new()), clock: Arc::new(SystemClock) }
    }

    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    pub(super) fn channel(&self) -> String {
        format!("cleave_outbox_{}", self.module)
    }
}

/// A transaction that may publish events. Publish and change state through it, then
/// [`UnitOfWork::commit`]: the events become visible to the relay exactly when the change does.
/// Dropping it without committing rolls both back.
///
/// To keep events of one aggregate in commit order, change (and so lock) the aggregate's row
/// before publishing its event in the same unit of work.
pub struct UnitOfWork {
    transaction: DatabaseTransaction,
    outbox: Outbox,
    published: usize,
}

impl std::ops::Deref for UnitOfWork {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

impl UnitOfWork {
    /// # Errors
    /// When the transaction cannot begin.
    pub async fn begin(db: &DatabaseConnection, outbox: &Outbox) -> Result<Self, DbErr> {
        Ok(Self { transaction: db.begin().await?, outbox: outbox.clone(), published: 0 })
    }

    /// Publishes within a transaction already begun (a consumer's inbox transaction, say).
    pub fn from_transaction(transaction: DatabaseTransaction, outbox: &Outbox) -> Self {
        Self { transaction, outbox: outbox.clone(), published: 0 }
    }

    /// Rolls the change and its events back.
    ///
    /// # Errors
    /// When the database does not answer (the transaction ends anyway).
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.transaction.rollback().await
    }

    /// Appends `event` to the outbox in this transaction.
    ///
    /// # Errors
    /// A database error, or an event that does not serialize.
    pub async fn publish<E: IntegrationEvent>(
        &mut self,
        event: &E,
        occurred_at: DateTime<Utc>,
        context: Option<&RequestContext>,
    ) -> Result<Uuid, DbErr> {
        let envelope = EventEnvelope::wrap(event, occurred_at, context).map_err(|error| DbErr::Custom(error.to_string()))?;
        self.publish_envelope(&envelope).await?;
        Ok(envelope.id)
    }

    async fn publish_envelope(&mut self, envelope: &EventEnvelope) -> Result<(), DbErr> {
        let json = serde_json::to_string(envelope).map_err(|error| DbErr::Custom(error.to_string()))?;
        outbox_events::ActiveModel {
            event_id: Set(envelope.id),
            event_type: Set(envelope.event_type.clone()),
            aggregate_id: Set(envelope.aggregate_id.clone()),
            envelope: Set(json),
            created_at: Set(self.outbox.clock.now()),
            delivered_at: Set(None),
            ..Default::default()
        }
        .insert(&self.transaction)
        .await?;
        if self.published == 0 && self.transaction.get_database_backend() == DbBackend::Postgres {
            // Transactional: delivered to listeners (relays in any process) only at commit.
            self.transaction.execute_unprepared(&format!("NOTIFY {}", self.outbox.channel())).await?;
        }
        self.published += 1;
        Ok(())
    }

    /// Commits the change and its events, then wakes the relay.
    ///
    /// # Errors
    /// When the commit fails (nothing was changed or published).
    pub async fn commit(self) -> Result<(), DbErr> {
        self.transaction.commit().await?;
        if self.published > 0 {
            self.outbox.wake.notify_one();
        }
        Ok(())
    }
}
