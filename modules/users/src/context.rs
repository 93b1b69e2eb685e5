//! What every use case of users is given: its database and outbox, the signing key ring, the
//! settings, the clock and the login rate limiter. The use cases are methods on [`Context`], one
//! file per group (`accounts`, `sessions`); the facade ([`crate::UsersService`]) calls them.

use crate::keys::KeyRing;
use crate::rate_limit::LoginRateLimiter;
use crate::settings::UsersSettings;
use sea_orm::DatabaseConnection;
use shared_kernel::Clock;
use shared_kernel::outbox::Outbox;
use std::sync::Arc;

/// Users' dependencies. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) db: DatabaseConnection,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) settings: Arc<UsersSettings>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) login_limiter: Arc<LoginRateLimiter>,
    pub(crate) outbox: Outbox,
}
