//! Notifications' facade: [`NotificationsService`] implements [`NotificationsApi`], each operation
//! one call into its use case (`queries`). Nothing in the crate imports this file.

use crate::context::Context;
use async_trait::async_trait;
use notifications_contract::{NotificationId, NotificationView, NotificationsApi};
use sea_orm::DatabaseConnection;
use shared_kernel::{ApiError, Caller, Clock, Page, PageRequest};
use std::sync::Arc;

/// The notifications module's contract, in process.
#[derive(Clone)]
pub struct NotificationsService {
    context: Context,
}

impl NotificationsService {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { context: Context { db, clock } }
    }

    /// Whether the module's database answers (readiness).
    pub async fn ping(&self) -> bool {
        self.context.db.ping().await.is_ok()
    }
}

#[async_trait]
impl NotificationsApi for NotificationsService {
    async fn list_notifications(&self, caller: &Caller, page: PageRequest) -> Result<Page<NotificationView>, ApiError> {
        self.context.list_notifications(caller, page).await
    }

    async fn mark_read(&self, caller: &Caller, id: NotificationId) -> Result<NotificationView, ApiError> {
        self.context.mark_read(caller, id).await
    }
}
