//! The read side: a user's own notifications, newest first, and marking one read. Only the
//! recipient: an admin reads no one else's notifications either.

use crate::context::Context;
use crate::entities::notifications;
use crate::store;
use crate::views::view;
use notifications_contract::{NotificationId, NotificationView};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use shared_kernel::{ApiError, Caller, Page, PageRequest};

impl Context {
    pub(crate) async fn list_notifications(&self, caller: &Caller, page: PageRequest) -> Result<Page<NotificationView>, ApiError> {
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

    pub(crate) async fn mark_read(&self, caller: &Caller, id: NotificationId) -> Result<NotificationView, ApiError> {
        let user = caller.require_user()?.id;
        store::owned(&self.db, user, id).await?;
        notifications::Entity::update_many()
            .col_expr(notifications::Column::ReadAt, Expr::value(self.clock.now()))
            .filter(notifications::Column::Id.eq(id.as_uuid()))
            .filter(notifications::Column::ReadAt.is_null())
            .exec(&self.db)
            .await?;
        view(store::owned(&self.db, user, id).await?)
    }
}
