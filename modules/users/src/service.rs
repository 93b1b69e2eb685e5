//! Users' facade: [`UsersService`] implements [`UsersApi`], each operation one call into its use
//! case (`accounts`, `sessions`). Nothing in the crate imports this file.

use crate::context::Context;
use crate::keys::KeyRing;
use crate::rate_limit::LoginRateLimiter;
use crate::settings::UsersSettings;
use sea_orm::DatabaseConnection;
use shared_kernel::outbox::Outbox;
use shared_kernel::{ApiError, Caller, Clock, Page, PageRequest, UserId};
use std::sync::Arc;
use users_contract::{Credentials, PublicKeySet, RefreshRequest, RegisterUser, TokenPair, UserView, UsersApi};

/// The users module. Cheap to clone.
#[derive(Clone)]
pub struct UsersService {
    context: Context,
}

impl std::fmt::Debug for UsersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersService").field("keys", &self.context.keys).finish_non_exhaustive()
    }
}

impl UsersService {
    /// `db` must be the users module's own database, already migrated; `outbox` is where its
    /// events go (a relay delivers them).
    pub fn new(db: DatabaseConnection, keys: Arc<KeyRing>, settings: UsersSettings, clock: Arc<dyn Clock>, outbox: Outbox) -> Self {
        let limits = &settings.login_rate_limits;
        let login_limiter = Arc::new(LoginRateLimiter::new(limits.per_account_per_minute, limits.per_address_per_minute));
        Self { context: Context { db, keys, settings: Arc::new(settings), clock, login_limiter, outbox } }
    }

    /// Makes sure `email` is an admin: creates the account with `password`, or adds the admin
    /// role to an existing account (its password is left alone). Used by start-up bootstrap and
    /// the `create-admin` command, never over a wire.
    ///
    /// # Errors
    /// 422 for a malformed email or a weak password on creation.
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<UserView, ApiError> {
        self.context.ensure_admin(email, password).await
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.context.db.ping().await.is_ok()
    }
}

#[async_trait::async_trait]
impl UsersApi for UsersService {
    async fn register(&self, _caller: &Caller, input: RegisterUser) -> Result<UserView, ApiError> {
        self.context.register(input).await
    }

    async fn login(&self, _caller: &Caller, credentials: Credentials, client_addr: Option<String>) -> Result<TokenPair, ApiError> {
        self.context.login(credentials, client_addr).await
    }

    async fn refresh(&self, _caller: &Caller, request: RefreshRequest) -> Result<TokenPair, ApiError> {
        self.context.refresh(request).await
    }

    async fn logout(&self, _caller: &Caller, request: RefreshRequest) -> Result<(), ApiError> {
        self.context.logout(request).await
    }

    async fn me(&self, caller: &Caller) -> Result<UserView, ApiError> {
        self.context.me(caller).await
    }

    async fn get_user(&self, caller: &Caller, id: UserId) -> Result<UserView, ApiError> {
        self.context.get_user(caller, id).await
    }

    async fn list_users(&self, caller: &Caller, page: PageRequest) -> Result<Page<UserView>, ApiError> {
        self.context.list_users(caller, page).await
    }

    async fn deactivate_user(&self, caller: &Caller, id: UserId) -> Result<UserView, ApiError> {
        self.context.deactivate_user(caller, id).await
    }

    async fn signing_keys(&self, _caller: &Caller) -> Result<PublicKeySet, ApiError> {
        Ok(self.context.keys.public_keys())
    }
}

/// The users module is the source of its own verification keys in process.
#[async_trait::async_trait]
impl shared_kernel::auth::KeySource for UsersService {
    async fn fetch_keys(&self) -> Result<jsonwebtoken::jwk::JwkSet, ApiError> {
        let json = serde_json::to_value(self.context.keys.public_keys()).map_err(|_| ApiError::Internal)?;
        serde_json::from_value(json).map_err(|_| ApiError::Internal)
    }
}
