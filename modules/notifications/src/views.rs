//! Notifications as their recipient sees them.

use crate::entities::notifications;
use notifications_contract::{NotificationId, NotificationKind, NotificationView};
use shared_kernel::{ApiError, OrderId};

/// A stored notification as its recipient sees it; a kind this build does not know is an error,
/// never a default.
pub(crate) fn view(row: notifications::Model) -> Result<NotificationView, ApiError> {
    let kind = NotificationKind::parse(&row.kind).ok_or_else(|| {
        tracing::error!(kind = %row.kind, "a stored notification has a kind this build does not know");
        ApiError::Internal
    })?;
    Ok(NotificationView {
        id: NotificationId::from_uuid(row.id),
        kind,
        subject: row.subject,
        body: row.body,
        order_id: row.order_id.map(OrderId::from_uuid),
        created_at: row.created_at,
        read_at: row.read_at,
    })
}
