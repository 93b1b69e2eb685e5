//! Notifications' rows: the queries the use cases share.

use crate::entities::notifications;
use notifications_contract::NotificationId;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use shared_kernel::{ApiError, UserId};

/// The notification `id` of `owner`, or 404 (also for another user's).
pub(crate) async fn owned(connection: &impl ConnectionTrait, owner: UserId, id: NotificationId) -> Result<notifications::Model, ApiError> {
    notifications::Entity::find_by_id(id.as_uuid())
        .filter(notifications::Column::UserId.eq(owner.as_uuid()))
        .one(connection)
        .await?
        .ok_or_else(|| ApiError::not_found("notification not found"))
}
