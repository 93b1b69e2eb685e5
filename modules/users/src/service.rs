//! The users module's use cases, behind [`UsersApi`].

use crate::domain::{self, Email, InvalidField, NewUser};
use crate::entities::{refresh_tokens, users};
use crate::keys::KeyRing;
use crate::rate_limit::LoginRateLimiter;
use crate::settings::UsersSettings;
use crate::{passwords, tokens};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
    TransactionTrait,
};
use shared_kernel::outbox::{Outbox, UnitOfWork};
use shared_kernel::{ApiError, Caller, Clock, Page, PageRequest, Role, Secret, UserId};
use std::sync::Arc;
use users_contract::events::{UserDeactivatedV1, UserRegisteredV1};
use users_contract::{Credentials, PublicKeySet, RefreshRequest, RegisterUser, TokenPair, UserStatus, UserView, UsersApi};

const STATUS_ACTIVE: &str = "active";
const STATUS_DEACTIVATED: &str = "deactivated";

/// The users module. Cheap to clone.
#[derive(Clone)]
pub struct UsersService {
    db: DatabaseConnection,
    keys: Arc<KeyRing>,
    settings: Arc<UsersSettings>,
    clock: Arc<dyn Clock>,
    login_limiter: Arc<LoginRateLimiter>,
    outbox: Outbox,
}

impl std::fmt::Debug for UsersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersService").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl UsersService {
    /// `db` must be the users module's own database, already migrated; `outbox` is where its
    /// events go (a relay delivers them).
    pub fn new(db: DatabaseConnection, keys: Arc<KeyRing>, settings: UsersSettings, clock: Arc<dyn Clock>, outbox: Outbox) -> Self {
        let limits = &settings.login_rate_limits;
        let login_limiter = Arc::new(LoginRateLimiter::new(limits.per_account_per_minute, limits.per_address_per_minute));
        Self { db, keys, settings: Arc::new(settings), clock, login_limiter, outbox }
    }

    /// Makes sure `email` is an admin: creates the account with `password`, or adds the admin
    /// role to an existing account (its password is left alone). Used by start-up bootstrap and
    /// the `create-admin` command, never over a wire.
    ///
    /// # Errors
    /// 422 for a malformed email or a weak password on creation.
    #[tracing::instrument(skip_all)]
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<UserView, ApiError> {
        let normalised = Email::parse(email).map_err(|message| ApiError::invalid_field("email", message))?;
        if let Some(existing) = self.find_by_email(&normalised).await? {
            let mut roles = domain::roles_from_column(&existing.roles);
            let promote = !roles.contains(&Role::Admin);
            let reactivate = existing.status != STATUS_ACTIVE;
            if !promote && !reactivate {
                return Ok(view(&existing));
            }
            if promote {
                roles.push(Role::Admin);
            }
            let updated = users::Entity::update_many()
                .col_expr(users::Column::Roles, Expr::value(domain::roles_to_column(&roles)))
                .col_expr(users::Column::Status, Expr::value(STATUS_ACTIVE))
                .col_expr(users::Column::UpdatedAt, Expr::value(self.clock.now()))
                .col_expr(users::Column::Version, Expr::value(existing.version + 1))
                .filter(users::Column::Id.eq(existing.id))
                .filter(users::Column::Version.eq(existing.version))
                .exec(&self.db)
                .await?;
            if updated.rows_affected != 1 {
                return Err(ApiError::conflict("the account changed meanwhile; try again"));
            }
            // The operator named this account as the admin: a deactivated one is reactivated, or
            // the bootstrap would leave nobody able to administer.
            tracing::info!(user_id = %existing.id, promote, reactivate, "made an existing account the admin");
            return self.load(UserId::from_uuid(existing.id)).await.map(|model| view(&model));
        }
        let new_user = NewUser::parse(email, password, "Administrator").map_err(invalid)?;
        let created = self.insert_user(new_user, vec![Role::Customer, Role::Admin]).await?;
        tracing::info!(user_id = %created.id, "created the admin account");
        Ok(created)
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    async fn insert_user(&self, new_user: NewUser, roles: Vec<Role>) -> Result<UserView, ApiError> {
        let password_hash = passwords::hash(new_user.password.as_str().to_owned()).await?;
        let now = self.clock.now();
        let id = UserId::new();
        let model = users::ActiveModel {
            id: Set(id.as_uuid()),
            email: Set(new_user.email.as_str().to_owned()),
            name: Set(new_user.name.as_str().to_owned()),
            password_hash: Set(password_hash),
            roles: Set(domain::roles_to_column(&roles)),
            status: Set(STATUS_ACTIVE.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            version: Set(1),
        };
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await?;
        let inserted = match model.insert(&*unit).await {
            Ok(inserted) => inserted,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(ApiError::conflict("an account with this email already exists"));
            }
            Err(error) => return Err(error.into()),
        };
        let event = UserRegisteredV1 { user_id: id, email: inserted.email.clone(), name: inserted.name.clone(), registered_at: now };
        unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await?;
        unit.commit().await?;
        Ok(view(&inserted))
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<users::Model>, ApiError> {
        users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(&self.db).await.map_err(ApiError::from)
    }

    async fn load(&self, id: UserId) -> Result<users::Model, ApiError> {
        users::Entity::find_by_id(id.as_uuid()).one(&self.db).await?.ok_or_else(|| ApiError::not_found("user not found"))
    }

    /// Issues an access token and a refresh token of `family` (a new family on login).
    async fn issue_tokens(
        &self,
        connection: &impl ConnectionTrait,
        user: &users::Model,
        family: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, ApiError> {
        let roles = domain::roles_from_column(&user.roles);
        let settings = &self.settings;
        let access_token = tokens::sign_access_token(
            &self.keys,
            UserId::from_uuid(user.id),
            &roles,
            &settings.issuer,
            &settings.audience,
            now,
            settings.access_ttl(),
        )?;
        let refresh_token = tokens::new_refresh_token();
        refresh_tokens::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            family_id: Set(family),
            user_id: Set(user.id),
            token_hash: Set(tokens::refresh_token_hash(&refresh_token)),
            issued_at: Set(now),
            expires_at: Set(now + settings.refresh_ttl()),
            used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(connection)
        .await?;
        Ok(TokenPair {
            access_token: Secret::new(access_token),
            refresh_token: Secret::new(refresh_token),
            token_type: "Bearer".to_owned(),
            expires_in: settings.access_ttl().num_seconds().unsigned_abs(),
        })
    }

    async fn revoke_family(&self, connection: &impl ConnectionTrait, family: uuid::Uuid, now: DateTime<Utc>) -> Result<(), ApiError> {
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
            .filter(refresh_tokens::Column::FamilyId.eq(family))
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(connection)
            .await?;
        Ok(())
    }

    async fn find_refresh_token(&self, token: &str) -> Result<Option<refresh_tokens::Model>, ApiError> {
        refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(tokens::refresh_token_hash(token)))
            .one(&self.db)
            .await
            .map_err(ApiError::from)
    }
}

#[async_trait::async_trait]
impl UsersApi for UsersService {
    #[tracing::instrument(skip_all)]
    async fn register(&self, _caller: &Caller, input: RegisterUser) -> Result<UserView, ApiError> {
        let new_user = NewUser::parse(&input.email, input.password.expose(), &input.name).map_err(invalid)?;
        let user = self.insert_user(new_user, vec![Role::Customer]).await?;
        tracing::info!(user_id = %user.id, "registered a user");
        Ok(user)
    }

    #[tracing::instrument(skip_all)]
    async fn login(&self, _caller: &Caller, credentials: Credentials, client_addr: Option<String>) -> Result<TokenPair, ApiError> {
        let wrong = || ApiError::unauthenticated("wrong email or password");
        let email = Email::parse(&credentials.email).map_err(|_| wrong())?;
        self.login_limiter.check(email.as_str(), client_addr.as_deref())?;
        let password = credentials.password.expose().clone();
        let Some(user) = self.find_by_email(&email).await? else {
            passwords::verify_against_dummy(password).await;
            return Err(wrong());
        };
        if !passwords::verify(password, user.password_hash.clone()).await? {
            tracing::info!(user_id = %user.id, "login refused: wrong password");
            return Err(wrong());
        }
        if user.status != STATUS_ACTIVE {
            return Err(ApiError::forbidden("this account is deactivated"));
        }
        let pair = self.issue_tokens(&self.db, &user, uuid::Uuid::now_v7(), self.clock.now()).await?;
        tracing::info!(user_id = %user.id, "logged in");
        Ok(pair)
    }

    #[tracing::instrument(skip_all)]
    async fn refresh(&self, _caller: &Caller, request: RefreshRequest) -> Result<TokenPair, ApiError> {
        let invalid = || ApiError::unauthenticated("the refresh token is invalid, expired or revoked");
        let now = self.clock.now();
        let Some(stored) = self.find_refresh_token(request.refresh_token.expose()).await? else {
            return Err(invalid());
        };
        if stored.revoked_at.is_some() {
            return Err(invalid());
        }
        if stored.used_at.is_some() {
            self.revoke_family(&self.db, stored.family_id, now).await?;
            tracing::warn!(user_id = %stored.user_id, family = %stored.family_id, "a used refresh token was presented again: family revoked");
            return Err(invalid());
        }
        if stored.expires_at <= now {
            return Err(invalid());
        }
        let user = match self.load(UserId::from_uuid(stored.user_id)).await {
            Ok(user) => user,
            Err(ApiError::NotFound { .. }) => return Err(invalid()),
            Err(other) => return Err(other),
        };
        if user.status != STATUS_ACTIVE {
            self.revoke_family(&self.db, stored.family_id, now).await?;
            return Err(invalid());
        }
        let transaction = self.db.begin().await?;
        // Claim the token: only one concurrent refresh can flip `used_at`; a loser is a reuse.
        let claimed = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
            .filter(refresh_tokens::Column::Id.eq(stored.id))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(&transaction)
            .await?;
        if claimed.rows_affected != 1 {
            transaction.rollback().await?;
            self.revoke_family(&self.db, stored.family_id, now).await?;
            tracing::warn!(user_id = %stored.user_id, family = %stored.family_id, "a refresh token was used twice at once: family revoked");
            return Err(invalid());
        }
        let pair = self.issue_tokens(&transaction, &user, stored.family_id, now).await?;
        transaction.commit().await?;
        Ok(pair)
    }

    #[tracing::instrument(skip_all)]
    async fn logout(&self, _caller: &Caller, request: RefreshRequest) -> Result<(), ApiError> {
        if let Some(stored) = self.find_refresh_token(request.refresh_token.expose()).await? {
            self.revoke_family(&self.db, stored.family_id, self.clock.now()).await?;
            tracing::info!(user_id = %stored.user_id, "logged out");
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn me(&self, caller: &Caller) -> Result<UserView, ApiError> {
        let user = caller.require_user()?;
        self.load(user.id).await.map(|model| view(&model))
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn get_user(&self, caller: &Caller, id: UserId) -> Result<UserView, ApiError> {
        if !caller.service_allowed(users_contract::services_allowed::get_user, "users.get_user")? {
            caller.require_self_or_admin(id, "user")?;
        }
        self.load(id).await.map(|model| view(&model))
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(&self, caller: &Caller, page: PageRequest) -> Result<Page<UserView>, ApiError> {
        caller.require_admin()?;
        let mut query = users::Entity::find().order_by_asc(users::Column::Id).limit(u64::from(page.limit()) + 1);
        if let Some(after) = page.after_key()? {
            let after = uuid::Uuid::parse_str(&after).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
            query = query.filter(users::Column::Id.gt(after));
        }
        let rows = query.all(&self.db).await?;
        Ok(Page::from_overfetched(rows, page.limit(), |row| row.id.to_string()).map(|row| view(&row)))
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn deactivate_user(&self, caller: &Caller, id: UserId) -> Result<UserView, ApiError> {
        let admin = caller.require_admin()?;
        if admin.id == id {
            return Err(ApiError::conflict("an admin cannot deactivate their own account"));
        }
        let user = self.load(id).await?;
        if user.status == STATUS_DEACTIVATED {
            return Ok(view(&user));
        }
        let now = self.clock.now();
        let mut transaction = UnitOfWork::begin(&self.db, &self.outbox).await?;
        let updated = users::Entity::update_many()
            .col_expr(users::Column::Status, Expr::value(STATUS_DEACTIVATED))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .col_expr(users::Column::Version, Expr::value(user.version + 1))
            .filter(users::Column::Id.eq(user.id))
            .filter(users::Column::Version.eq(user.version))
            .exec(&*transaction)
            .await?;
        if updated.rows_affected != 1 {
            // Dropping the unit of work rolls it back.
            return Err(ApiError::conflict("the user changed meanwhile; try again"));
        }
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
            .filter(refresh_tokens::Column::UserId.eq(user.id))
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(&*transaction)
            .await?;
        let event = UserDeactivatedV1 { user_id: id, deactivated_at: now };
        transaction.publish(&event, now, shared_kernel::current_request_context().as_ref()).await?;
        transaction.commit().await?;
        tracing::info!(user_id = %user.id, admin_id = %admin.id, "deactivated a user");
        self.load(id).await.map(|model| view(&model))
    }

    async fn signing_keys(&self, _caller: &Caller) -> Result<PublicKeySet, ApiError> {
        Ok(self.keys.public_keys())
    }
}

fn invalid(fields: Vec<InvalidField>) -> ApiError {
    ApiError::invalid(
        fields.into_iter().map(|f| shared_kernel::FieldError { field: f.field.to_owned(), message: f.message.to_owned() }).collect(),
    )
}

fn view(model: &users::Model) -> UserView {
    UserView {
        id: UserId::from_uuid(model.id),
        email: model.email.clone(),
        name: model.name.clone(),
        roles: domain::roles_from_column(&model.roles),
        status: if model.status == STATUS_ACTIVE { UserStatus::Active } else { UserStatus::Deactivated },
        created_at: model.created_at,
    }
}

/// The users module is the source of its own verification keys in process.
#[async_trait::async_trait]
impl shared_kernel::auth::KeySource for UsersService {
    async fn fetch_keys(&self) -> Result<jsonwebtoken::jwk::JwkSet, ApiError> {
        let json = serde_json::to_value(self.keys.public_keys()).map_err(|_| ApiError::Internal)?;
        serde_json::from_value(json).map_err(|_| ApiError::Internal)
    }
}
