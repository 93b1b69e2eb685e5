//! The notifications module's contract. **API Boundary**: the edge and remote callers see
//! notifications only through what is here.
//!
//! Notifications is pure choreography: no module calls it to make something happen. It reacts
//! to other modules' events (an order confirmed, rejected or cancelled; an account registered),
//! and this contract only lets a user read their notifications and mark them read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
pub use shared_kernel::{ApiError, Caller, OrderId, Page, PageRequest, UserId};

shared_kernel::define_id!(
    /// A notification (owned by the notifications module).
    NotificationId
);

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The account was created.
    Welcome,
    /// An order was confirmed: paid and its stock sold.
    OrderConfirmed,
    /// An order was rejected: nothing was charged.
    OrderRejected,
    /// A confirmed order was cancelled: refunded and restocked.
    OrderCancelled,
}

impl NotificationKind {
    /// As stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderRejected => "order_rejected",
            Self::OrderCancelled => "order_cancelled",
        }
    }

    /// The kind named `name` ([`Self::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Welcome, Self::OrderConfirmed, Self::OrderRejected, Self::OrderCancelled].into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One notification, as its recipient sees it (`GET /api/me/notifications`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationView {
    #[schema(value_type = String, format = Uuid)]
    pub id: NotificationId,
    pub kind: NotificationKind,
    /// One line, as in an email's subject.
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// The order it is about, if any.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub order_id: Option<OrderId>,
    pub created_at: DateTime<Utc>,
    /// When the recipient marked it read; null while unread.
    pub read_at: Option<DateTime<Utc>>,
}

shared_kernel::contract! {
    /// What notifications offers: a user's own notifications.
    ///
    /// # Errors
    /// The contract's [`ApiError`]: 401 without a user; 404 for an unknown notification or one
    /// that is not the caller's; 422 for a bad page request.
    pub trait NotificationsApi as "notifications" {
        /// The caller's notifications, newest first.
        fn list_notifications(page: PageRequest) -> Page<NotificationView>, idempotent;
        /// Marks one of the caller's notifications read. Marking it again changes nothing (the
        /// first time it was read stands).
        fn mark_read(id: NotificationId) -> NotificationView, idempotent;
    }
}

/// The notifications module's integration events.
pub mod events {
    use super::{NotificationId, NotificationKind};
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};
    use shared_kernel::events::IntegrationEvent;
    use shared_kernel::{OrderId, UserId};

    /// The JSON Schema of every event type this module publishes, by type (`docs/events/`, kept
    /// compatible by the contract check).
    pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
        vec![shared_kernel::events::json_schema::<NotificationCreatedV1>()]
    }

    /// A notification was made for a user. Notifications itself delivers it (email) from this
    /// event, through its outbox; GraphQL subscribers of `notificationReceived` see it live.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct NotificationCreatedV1 {
        #[schema(value_type = String, format = Uuid)]
        pub notification_id: NotificationId,
        #[schema(value_type = String, format = Uuid)]
        pub user_id: UserId,
        pub kind: NotificationKind,
        pub subject: String,
        pub body: String,
        #[schema(value_type = Option<String>, format = Uuid)]
        pub order_id: Option<OrderId>,
        pub created_at: DateTime<Utc>,
    }

    impl IntegrationEvent for NotificationCreatedV1 {
        const TYPE: &'static str = "notifications.notification_created.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.user_id.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in
            [NotificationKind::Welcome, NotificationKind::OrderConfirmed, NotificationKind::OrderRejected, NotificationKind::OrderCancelled]
        {
            assert_eq!(NotificationKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        assert_eq!(NotificationKind::parse("other"), None);
    }
}
