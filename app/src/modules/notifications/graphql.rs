//! The notifications part of the schema, against `NotificationsApi`: the caller's
//! notifications, marking one read, and (`subscription.rs`) `notificationReceived`.

use crate::graphql::support::{caller, connection, gql_error, modules, page_request};
use crate::edge::ClientId;
use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, Object, Result};
use notifications_contract::{NotificationId, NotificationKind, NotificationView};

#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(name = "NotificationKind")]
pub enum NotificationKindObject {
    /// The account was created.
    Welcome,
    /// An order was confirmed: paid and its stock sold.
    OrderConfirmed,
    /// An order was rejected: nothing was charged.
    OrderRejected,
    /// A confirmed order was cancelled: refunded and restocked.
    OrderCancelled,
}

impl From<NotificationKind> for NotificationKindObject {
    fn from(kind: NotificationKind) -> Self {
        match kind {
            NotificationKind::Welcome => Self::Welcome,
            NotificationKind::OrderConfirmed => Self::OrderConfirmed,
            NotificationKind::OrderRejected => Self::OrderRejected,
            NotificationKind::OrderCancelled => Self::OrderCancelled,
        }
    }
}

/// A notification for the caller.
pub struct Notification(pub NotificationView);

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn kind(&self) -> NotificationKindObject {
        self.0.kind.into()
    }
    /// One line, as in an email's subject.
    async fn subject(&self) -> &str {
        &self.0.subject
    }
    /// Plain text.
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The order it is about, if any.
    async fn order_id(&self) -> Option<ID> {
        self.0.order_id.map(|id| ID(id.to_string()))
    }
    async fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.created_at
    }
    /// When the caller marked it read; null while unread.
    async fn read_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.read_at
    }
}

#[derive(Default)]
pub struct NotificationsQuery;

#[Object]
impl NotificationsQuery {
    /// The caller's notifications, newest first.
    #[graphql(complexity = "first.unwrap_or(20).max(1) as usize * child_complexity")]
    async fn my_notifications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Notification>> {
        let had_cursor = after.is_some();
        let page = page_request(first, after)?;
        let found = modules(ctx).notifications.list_notifications(caller(ctx), page).await.map_err(gql_error)?;
        Ok(connection(found, had_cursor, |n| n.id.to_string(), Notification))
    }
}

#[derive(Default)]
pub struct NotificationsMutation;

#[Object]
impl NotificationsMutation {
    /// Marks one of the caller's notifications read; again, it answers it unchanged.
    async fn mark_notification_read(&self, ctx: &Context<'_>, id: ID) -> Result<Notification> {
        let id = ClientId::<NotificationId>::new(&id);
        Ok(Notification(id.explain(modules(ctx).notifications.mark_read(caller(ctx), id.get()).await).map_err(gql_error)?))
    }
}

/// Its part of the GraphQL queries.
pub type Query = NotificationsQuery;
/// Its part of the GraphQL mutations.
pub type Mutation = NotificationsMutation;
