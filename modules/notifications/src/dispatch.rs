//! Delivery: the module's own [`NotificationCreatedV1`] events, consumed once per deployment,
//! each sent through the [`Delivery`] port. A failed send fails the handler, so the bus retries
//! it with backoff and, after the last attempt, stores it with the module's dead letters,
//! replayable from the admin API. Sending is at least once; the inbox and the notification's
//! `delivered_at` make a redelivered event send nothing more once a send succeeded.

use crate::delivery::{Delivery, Message};
use crate::entities::{notifications, recipients};
use notifications_contract::events::NotificationCreatedV1;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use shared_kernel::Clock;
use shared_kernel::events::{Consumer, DeadLetterSink, EventEnvelope, EventHandler, HandlerError, IntegrationEvent};
use shared_kernel::outbox::Inbox;
use std::sync::Arc;

/// Sends each new notification to its recipient.
#[derive(Clone)]
pub struct Dispatcher {
    db: DatabaseConnection,
    delivery: Arc<dyn Delivery>,
    clock: Arc<dyn Clock>,
}

impl Dispatcher {
    pub const CONSUMER: &'static str = "notifications.delivery";

    pub fn new(db: DatabaseConnection, delivery: Arc<dyn Delivery>, clock: Arc<dyn Clock>) -> Self {
        Self { db, delivery, clock }
    }

    /// This handler as a durable consumer of the module's own events.
    pub fn consumer(self, dead_letters: Arc<dyn DeadLetterSink>) -> Consumer {
        Consumer {
            name: Self::CONSUMER.to_owned(),
            event_types: vec![NotificationCreatedV1::TYPE.to_owned()],
            handler: Arc::new(self),
            dead_letters,
            each_process: false,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for Dispatcher {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let created: NotificationCreatedV1 = event.decode().map_err(HandlerError::new)?;
        let id = created.notification_id.as_uuid();
        let stored = notifications::Entity::find_by_id(id).one(&self.db).await.map_err(HandlerError::new)?;
        if stored.as_ref().is_some_and(|row| row.delivered_at.is_some()) {
            return Ok(());
        }
        // The address comes from users' registration event; orders' events can arrive first
        // (they travel on other streams), so a missing one is worth a retry.
        let recipient = recipients::Entity::find_by_id(created.user_id.as_uuid())
            .one(&self.db)
            .await
            .map_err(HandlerError::new)?
            .ok_or_else(|| HandlerError::new(format!("no address is known yet for user {}", created.user_id)))?;
        let message = Message { to: recipient.email, to_name: recipient.name, subject: created.subject, body: created.body };
        self.delivery.send(&message).await.map_err(|error| {
            tracing::warn!(notification = %created.notification_id, delivery = self.delivery.name(), %error, "a notification was not sent; the bus retries it");
            HandlerError::new(error)
        })?;
        metrics::counter!("notifications_delivered_total", "delivery" => self.delivery.name()).increment(1);
        // Sent: remember it, so a redelivery sends nothing more.
        let Some(transaction) = Inbox::begin(&self.db, &*self.clock, Self::CONSUMER, event.id).await.map_err(HandlerError::new)? else {
            return Ok(());
        };
        notifications::Entity::update_many()
            .col_expr(notifications::Column::DeliveredAt, Expr::value(self.clock.now()))
            .filter(notifications::Column::Id.eq(id))
            .exec(&transaction)
            .await
            .map_err(HandlerError::new)?;
        transaction.commit().await.map_err(HandlerError::new)
    }
}
