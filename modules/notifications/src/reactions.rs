//! Notifications made from other modules' events (choreography): an account registered, an
//! order confirmed, rejected or cancelled. Each handler records the event in the inbox, stores
//! the notification and publishes [`NotificationCreatedV1`] through the outbox, all in one
//! transaction: a redelivered event makes nothing twice, and a stored notification is always
//! delivered (the dispatcher consumes that event).

use crate::entities::{notifications, recipients};
use notifications_contract::events::NotificationCreatedV1;
use notifications_contract::{NotificationId, NotificationKind};
use orders_contract::OrderStatus;
use orders_contract::events::{OrderCancelledV1, OrderConfirmedV1, OrderStatusChangedV1};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use shared_kernel::events::{Consumer, DeadLetterSink, EventEnvelope, EventHandler, HandlerError, IntegrationEvent};
use shared_kernel::outbox::{Inbox, Outbox, UnitOfWork};
use shared_kernel::{ApiError, Clock, Money, OrderId, UserId};
use std::sync::Arc;
use users_contract::events::UserRegisteredV1;

/// What other modules' events mean for a user.
#[derive(Clone)]
pub struct Reactions {
    db: DatabaseConnection,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
}

/// A notification about to be made.
struct Draft {
    user_id: UserId,
    kind: NotificationKind,
    subject: String,
    body: String,
    order_id: Option<OrderId>,
}

impl Reactions {
    pub const CONSUMER: &'static str = "notifications.reactions";

    pub fn new(db: DatabaseConnection, outbox: Outbox, clock: Arc<dyn Clock>) -> Self {
        Self { db, outbox, clock }
    }

    /// This handler as a durable consumer of users' and orders' events.
    pub fn consumer(self, dead_letters: Arc<dyn DeadLetterSink>) -> Consumer {
        Consumer {
            name: Self::CONSUMER.to_owned(),
            event_types: [UserRegisteredV1::TYPE, OrderConfirmedV1::TYPE, OrderStatusChangedV1::TYPE, OrderCancelledV1::TYPE]
                .map(str::to_owned)
                .to_vec(),
            handler: Arc::new(self),
            dead_letters,
            each_process: false,
        }
    }

    /// The notification `event` calls for, and the recipient it makes known; `None` for an
    /// event that concerns no one (an order status other than rejected).
    fn draft(event: &EventEnvelope) -> Result<Option<(Draft, Option<recipients::ActiveModel>)>, HandlerError> {
        let draft = match event.event_type.as_str() {
            UserRegisteredV1::TYPE => {
                let registered: UserRegisteredV1 = event.decode().map_err(HandlerError::new)?;
                let recipient = recipients::ActiveModel {
                    user_id: Set(registered.user_id.as_uuid()),
                    email: Set(registered.email.clone()),
                    name: Set(registered.name.clone()),
                    registered_at: Set(registered.registered_at),
                };
                let draft = Draft {
                    user_id: registered.user_id,
                    kind: NotificationKind::Welcome,
                    subject: "Welcome to cleave".to_owned(),
                    body: format!("Hello {},\n\nyour account is ready. You can now place orders.", registered.name),
                    order_id: None,
                };
                return Ok(Some((draft, Some(recipient))));
            }
            OrderConfirmedV1::TYPE => {
                let confirmed: OrderConfirmedV1 = event.decode().map_err(HandlerError::new)?;
                let items: u32 = confirmed.lines.iter().map(|line| line.quantity).sum();
                Draft {
                    user_id: confirmed.customer_id,
                    kind: NotificationKind::OrderConfirmed,
                    subject: format!("Order {} confirmed", short(confirmed.order_id)),
                    body: format!(
                        "Your order {} is confirmed: {items} item(s), {} charged. We will let you know when it ships.",
                        confirmed.order_id,
                        amount(confirmed.total)
                    ),
                    order_id: Some(confirmed.order_id),
                }
            }
            OrderStatusChangedV1::TYPE => {
                let changed: OrderStatusChangedV1 = event.decode().map_err(HandlerError::new)?;
                if changed.status != OrderStatus::Rejected {
                    return Ok(None);
                }
                let reason = changed.failure_reason.as_deref().unwrap_or("it could not be completed");
                Draft {
                    user_id: changed.customer_id,
                    kind: NotificationKind::OrderRejected,
                    subject: format!("Order {} not placed", short(changed.order_id)),
                    body: format!("Your order {} was not placed: {reason}. Nothing was charged.", changed.order_id),
                    order_id: Some(changed.order_id),
                }
            }
            OrderCancelledV1::TYPE => {
                let cancelled: OrderCancelledV1 = event.decode().map_err(HandlerError::new)?;
                Draft {
                    user_id: cancelled.customer_id,
                    kind: NotificationKind::OrderCancelled,
                    subject: format!("Order {} cancelled", short(cancelled.order_id)),
                    body: format!("Your order {} is cancelled and its payment refunded.", cancelled.order_id),
                    order_id: Some(cancelled.order_id),
                }
            }
            other => return Err(HandlerError::new(format!("notifications does not handle {other}"))),
        };
        Ok(Some((draft, None)))
    }
}

#[async_trait::async_trait]
impl EventHandler for Reactions {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let Some((draft, recipient)) = Self::draft(event)? else {
            return Ok(());
        };
        let Some(transaction) = Inbox::begin(&self.db, &*self.clock, Self::CONSUMER, event.id).await.map_err(HandlerError::new)? else {
            return Ok(());
        };
        let mut unit = UnitOfWork::from_transaction(transaction, &self.outbox);
        if let Some(recipient) = recipient {
            // The first registration stands: a replayed event changes no address.
            recipients::Entity::insert(recipient)
                .on_conflict(OnConflict::column(recipients::Column::UserId).do_nothing().to_owned())
                .exec_without_returning(&*unit)
                .await
                .map_err(HandlerError::new)?;
        }
        let now = self.clock.now();
        let created = NotificationCreatedV1 {
            notification_id: NotificationId::new(),
            user_id: draft.user_id,
            kind: draft.kind,
            subject: draft.subject,
            body: draft.body,
            order_id: draft.order_id,
            created_at: now,
        };
        notifications::ActiveModel {
            id: Set(created.notification_id.as_uuid()),
            user_id: Set(created.user_id.as_uuid()),
            kind: Set(created.kind.as_str().to_owned()),
            subject: Set(created.subject.clone()),
            body: Set(created.body.clone()),
            order_id: Set(created.order_id.map(|id| id.as_uuid())),
            created_at: Set(now),
            read_at: Set(None),
            delivered_at: Set(None),
        }
        .insert(&*unit)
        .await
        .map_err(|error| HandlerError::new(ApiError::from(error)))?;
        unit.publish(&created, now, shared_kernel::current_request_context().as_ref()).await.map_err(HandlerError::new)?;
        unit.commit().await.map_err(HandlerError::new)
    }
}

/// The first block of an order id: enough to tell orders apart in a subject line.
fn short(id: OrderId) -> String {
    id.to_string().chars().take(8).collect()
}

/// `19.99 EUR` (minor units shown with two decimals).
fn amount(money: Money) -> String {
    let minor = money.amount();
    format!("{}.{:02} {}", minor / 100, minor % 100, money.currency())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_reads_in_major_units() {
        let eur = shared_kernel::Currency::EUR;
        assert_eq!(amount(Money::new(1999, eur)), "19.99 EUR");
        assert_eq!(amount(Money::new(5, eur)), "0.05 EUR");
        assert_eq!(amount(Money::new(120_000, eur)), "1200.00 EUR");
    }

    #[test]
    fn only_a_rejection_among_status_changes_makes_a_notification() {
        let changed = |status| OrderStatusChangedV1 {
            order_id: OrderId::new(),
            customer_id: UserId::new(),
            status,
            failure_reason: Some("the card was declined".to_owned()),
            changed_at: chrono::Utc::now(),
        };
        let envelope = |event: &OrderStatusChangedV1| EventEnvelope::wrap(event, chrono::Utc::now(), None).unwrap();
        for status in [OrderStatus::Pending, OrderStatus::Confirmed, OrderStatus::Cancelled] {
            assert!(Reactions::draft(&envelope(&changed(status))).unwrap().is_none(), "{status:?}");
        }
        let (draft, recipient) = Reactions::draft(&envelope(&changed(OrderStatus::Rejected))).unwrap().unwrap();
        assert_eq!(draft.kind, NotificationKind::OrderRejected);
        assert!(draft.body.contains("the card was declined"), "{}", draft.body);
        assert!(recipient.is_none());
    }
}
