//! What the read side of notifications is given: its database and the clock. Its use cases are
//! methods on [`Context`] (`queries`); the facade ([`crate::NotificationsService`]) calls them.
//! The write side is choreographed: `reactions` makes notifications from other modules' events
//! and `dispatch` sends them.

use sea_orm::DatabaseConnection;
use shared_kernel::Clock;
use std::sync::Arc;

/// The read side's dependencies. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: Arc<dyn Clock>,
}
