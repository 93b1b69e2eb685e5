//! `Subscription.orderStatusChanged(orderId)` over `graphql-transport-ws` at `/graphql/ws`.
//!
//! Fed from the event bus: a consumer forwards orders' `OrderStatusChangedV1` events into a
//! broadcast channel, and each subscription turns its receiver into a stream
//! (tokio-stream) filtered to one order. A process that does not host orders sees none of its
//! events until the NATS bus carries them across processes, so each subscription also checks
//! the order through the contract every `poll_every` as a safety net; a status is sent once,
//! whichever way it arrives first.
//!
//! `Subscription.notificationReceived` works the same way from notifications'
//! `NotificationCreatedV1` events, with the caller's newest notifications checked as the net.

use super::{caller, gql_error, modules};
use crate::modules::notifications::graphql::Notification;
use crate::modules::orders::graphql::OrderStatusObject;
use async_graphql::{Context, ID, Result, SimpleObject, Subscription};
use futures::Stream;
use notifications_contract::NotificationView;
use notifications_contract::events::NotificationCreatedV1;
use orders_contract::OrderStatus;
use orders_contract::events::OrderStatusChangedV1;
use shared_kernel::events::{Consumer, EventEnvelope, EventHandler, HandlerError, IntegrationEvent, NoDeadLetters};
use shared_kernel::{ApiError, OrderId, PageRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};

/// A live feed of one event type, as this process's bus sees it: the consumer that feeds a
/// subscription. It never fails: a live view has nothing to retry (a subscriber that was not
/// listening has nothing to miss), and a subscription polls as its net besides.
pub struct EventFeed<E> {
    consumer: &'static str,
    sender: broadcast::Sender<E>,
    poll_every: Duration,
}

impl<E> Clone for EventFeed<E> {
    fn clone(&self) -> Self {
        Self { consumer: self.consumer, sender: self.sender.clone(), poll_every: self.poll_every }
    }
}

/// The live feed of order status changes.
pub type OrderStatusFeed = EventFeed<OrderStatusChangedV1>;
/// The live feed of notifications made in this deployment.
pub type NotificationFeed = EventFeed<NotificationCreatedV1>;

impl OrderStatusFeed {
    pub const CONSUMER: &'static str = "graphql.order_status";

    pub fn new(poll_every: Duration) -> Self {
        EventFeed::named(Self::CONSUMER, poll_every)
    }
}

impl NotificationFeed {
    pub const CONSUMER: &'static str = "graphql.notifications";

    pub fn new(poll_every: Duration) -> Self {
        EventFeed::named(Self::CONSUMER, poll_every)
    }
}

impl<E: IntegrationEvent + Clone + Send + Sync + 'static> EventFeed<E> {
    /// A feed read by the bus consumer `consumer`, for subscriptions that poll every `poll_every`.
    pub fn named(consumer: &'static str, poll_every: Duration) -> Self {
        Self { consumer, sender: broadcast::channel(1024).0, poll_every }
    }

    /// The bus consumer that feeds subscriptions.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            name: self.consumer.to_owned(),
            event_types: vec![E::TYPE.to_owned()],
            handler: Arc::new(self.clone()),
            dead_letters: Arc::new(NoDeadLetters),
            each_process: true,
        }
    }
}

#[async_trait::async_trait]
impl<E: IntegrationEvent + Clone + Send + Sync + 'static> EventHandler for EventFeed<E> {
    async fn handle(&self, event: &EventEnvelope) -> std::result::Result<(), HandlerError> {
        match event.decode::<E>() {
            // No subscriber is not an error.
            Ok(decoded) => drop(self.sender.send(decoded)),
            Err(error) => tracing::warn!(%error, event_type = E::TYPE, "an event does not decode; subscribers miss it"),
        }
        Ok(())
    }
}

/// An order's new status.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct OrderStatusChange {
    pub order_id: ID,
    pub status: OrderStatusObject,
    /// Why the order was rejected.
    pub failure_reason: Option<String>,
}

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The order's status now, then every change; it completes after `REJECTED` or
    /// `CANCELLED`. Only the order's owner or an admin may subscribe (anyone else gets
    /// `not-found`).
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> Result<std::pin::Pin<Box<dyn Stream<Item = OrderStatusChange> + Send>>> {
        let slot = take_slot(ctx)?;
        Ok(Box::pin(holding(slot, self.order_status_stream(ctx, order_id).await?)))
    }

    /// Each notification made for the caller from now on, once. A signed-in user only.
    async fn notification_received(&self, ctx: &Context<'_>) -> Result<std::pin::Pin<Box<dyn Stream<Item = Notification> + Send>>> {
        let slot = take_slot(ctx)?;
        let caller = caller(ctx).clone();
        let user = caller.require_user().map_err(gql_error)?.id;
        let notifications = modules(ctx).notifications.clone();
        let feed = ctx.data_unchecked::<NotificationFeed>();
        let since = chrono::Utc::now();
        let events = BroadcastStream::new(feed.sender.subscribe()).filter_map(move |event| match event {
            Ok(created) if created.user_id == user => Some(vec![view_of(created)]),
            _ => None,
        });
        // The net for a process whose bus does not carry notifications' events: the caller's
        // newest ones, made since the subscription began.
        let polls = IntervalStream::new(tokio::time::interval(feed.poll_every)).then(move |_| {
            let (notifications, caller) = (notifications.clone(), caller.clone());
            async move {
                let newest =
                    notifications.list_notifications(&caller, PageRequest::default()).await.map(|page| page.items).unwrap_or_default();
                newest.into_iter().filter(|notification| notification.created_at >= since).rev().collect::<Vec<_>>()
            }
        });
        let mut seen = std::collections::HashSet::new();
        let updates = futures::StreamExt::flat_map(events.merge(polls), futures::stream::iter)
            .filter_map(move |notification| seen.insert(notification.id).then_some(Notification(notification)));
        Ok(Box::pin(holding(slot, updates)))
    }
}

impl Subscription {
    async fn order_status_stream(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> Result<std::pin::Pin<Box<dyn Stream<Item = OrderStatusChange> + Send>>> {
        let id = OrderId::parse(&order_id).map_err(|_| gql_error(ApiError::not_found("order not found")))?;
        let orders = modules(ctx).orders.clone();
        let caller = caller(ctx).clone();
        // Authorizes, and gives the status to start from.
        let current = orders.get_order(&caller, id).await.map_err(gql_error)?;
        let feed = ctx.data_unchecked::<OrderStatusFeed>();
        let events = BroadcastStream::new(feed.sender.subscribe()).filter_map(move |event| match event {
            Ok(changed) if changed.order_id == id => Some(change(id, changed.status, changed.failure_reason)),
            _ => None,
        });
        let polls = IntervalStream::new(tokio::time::interval(feed.poll_every)).then(move |_| {
            let (orders, caller) = (orders.clone(), caller.clone());
            async move { orders.get_order(&caller, id).await.ok().map(|order| change(id, order.status, order.failure_reason)) }
        });
        let first = change(id, current.status, current.failure_reason);
        let mut last = None::<OrderStatusChange>;
        let updates = tokio_stream::once(first).chain(events.merge(polls.filter_map(|polled| polled)));
        // Each status once, and never backwards (a late event after a poll saw a newer status).
        let changes = updates.filter_map(move |update| {
            if last.as_ref().is_some_and(|last| rank(last.status) >= rank(update.status)) {
                None
            } else {
                last = Some(update.clone());
                Some(update)
            }
        });
        // A rejected or cancelled order changes no more: the subscription completes after it
        // (and stops checking the order).
        let until_final = futures::stream::unfold((Box::pin(changes), false), |(mut changes, done)| async move {
            if done {
                return None;
            }
            let update = changes.next().await?;
            let last = matches!(update.status, OrderStatusObject::Rejected | OrderStatusObject::Cancelled);
            Some((update, (changes, last)))
        });
        Ok(Box::pin(until_final))
    }
}

/// How many subscriptions one WebSocket connection may hold open at once
/// (`graphql.max_subscriptions_per_socket`; schema data).
pub(super) struct SubscriptionLimit(pub usize);

/// The subscriptions open on one WebSocket connection (connection data, from its
/// `connection_init`).
#[derive(Default)]
pub(super) struct SocketSubscriptions(Arc<AtomicUsize>);

/// One open subscription's place in its connection's count, given back when its stream is
/// dropped (it completed, the client stopped it, or the socket closed).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place for one more subscription on this connection, or a `rate-limited` error when it holds
/// as many as it may. `None` outside a WebSocket connection (nothing to count).
fn take_slot(ctx: &Context<'_>) -> Result<Option<Slot>> {
    let Some(SocketSubscriptions(open)) = ctx.data_opt::<SocketSubscriptions>() else { return Ok(None) };
    let max = ctx.data_opt::<SubscriptionLimit>().map_or(usize::MAX, |limit| limit.0);
    if open.fetch_add(1, Ordering::AcqRel) >= max {
        open.fetch_sub(1, Ordering::AcqRel);
        let detail = format!("this connection holds {max} subscriptions already, the most it may: stop one first");
        return Err(gql_error(ApiError::rate_limited(detail, 1)));
    }
    Ok(Some(Slot(open.clone())))
}

/// `stream`, holding `slot` for as long as it lives.
fn holding<S: Stream + Send + 'static>(slot: Option<Slot>, stream: S) -> impl Stream<Item = S::Item> + Send + 'static {
    stream.map(move |item| {
        let _held = &slot;
        item
    })
}

fn view_of(created: NotificationCreatedV1) -> NotificationView {
    NotificationView {
        id: created.notification_id,
        kind: created.kind,
        subject: created.subject,
        body: created.body,
        order_id: created.order_id,
        created_at: created.created_at,
        read_at: None,
    }
}

/// How far along an order is: statuses only move forward.
fn rank(status: OrderStatusObject) -> u8 {
    match status {
        OrderStatusObject::Pending => 0,
        OrderStatusObject::Confirmed | OrderStatusObject::Rejected => 1,
        OrderStatusObject::Cancelled => 2,
    }
}

fn change(id: OrderId, status: OrderStatus, failure_reason: Option<String>) -> OrderStatusChange {
    OrderStatusChange { order_id: ID(id.to_string()), status: status.into(), failure_reason }
}
