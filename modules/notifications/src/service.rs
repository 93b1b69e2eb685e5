//! The read side: a user's own notifications, and marking one read.

use crate::entities::notifications;
use async_trait::async_trait;
use notifications_contract::{NotificationId, NotificationKind, NotificationView, NotificationsApi};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use shared_kernel::{ApiError, Caller, Clock, OrderId, Page, PageRequest, UserId};
use std::sync::Arc;

/// The notifications module's contract, in process.
#[derive(Clone)]
pub struct NotificationsService {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl NotificationsService {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// Whether the module's database answers (readiness).
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    async fn owned(&self, owner: UserId, id: NotificationId) -> Result<notifications::Model, ApiError> {
        notifications::Entity::find_by_id(id.as_uuid())
            .filter(notifications::Column::UserId.eq(owner.as_uuid()))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("notification not found"))
    }
}

#[async_trait]
impl NotificationsApi for NotificationsService {
    async fn list_notifications(&self, caller: &Caller, page: PageRequest) -> Result<Page<NotificationView>, ApiError> {
        let user = caller.require_user()?.id;
        let mut select = notifications::Entity::find()
            .filter(notifications::Column::UserId.eq(user.as_uuid()))
            .order_by_desc(notifications::Column::Id)
            .limit(u64::from(page.limit()) + 1);
        if let Some(before) = page.after_key()? {
            let before =
                uuid::Uuid::parse_str(&before).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
            select = select.filter(notifications::Column::Id.lt(before));
        }
        let rows = select.all(&self.db).await?;
        let page = Page::from_overfetched(rows, page.limit(), |row| row.id.to_string());
        let items = page.items.into_iter().map(view).collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor: page.next_cursor })
    }

    async fn mark_read(&self, caller: &Caller, id: NotificationId) -> Result<NotificationView, ApiError> {
        // Only the recipient: an admin reads no one else's notifications either.
        let user = caller.require_user()?.id;
        self.owned(user, id).await?;
        notifications::Entity::update_many()
            .col_expr(notifications::Column::ReadAt, Expr::value(self.clock.now()))
            .filter(notifications::Column::Id.eq(id.as_uuid()))
            .filter(notifications::Column::ReadAt.is_null())
            .exec(&self.db)
            .await?;
        view(self.owned(user, id).await?)
    }
}

/// A stored notification as its recipient sees it.
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
