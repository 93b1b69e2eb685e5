//! Accounts: registration, the admin bootstrap, reading one account or every one, and
//! deactivation (its refresh tokens revoked and `UserDeactivatedV1` appended in one transaction).

use crate::context::Context;
use crate::domain::{self, Email, NewUser};
use crate::entities::{refresh_tokens, users};
use crate::passwords;
use crate::store::{self, STATUS_ACTIVE, STATUS_DEACTIVATED};
use crate::views::view;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use shared_kernel::db::conflict_on_duplicate;
use shared_kernel::outbox::UnitOfWork;
use shared_kernel::{ApiError, Caller, Page, PageRequest, Role, UserId};
use users_contract::events::{UserDeactivatedV1, UserRegisteredV1};
use users_contract::{RegisterUser, UserView, services_allowed};

impl Context {
    #[tracing::instrument(skip_all)]
    pub(crate) async fn register(&self, input: RegisterUser) -> Result<UserView, ApiError> {
        let new_user = NewUser::parse(&input.email, input.password.expose(), &input.name)?;
        let user = self.insert_user(new_user, vec![Role::Customer]).await?;
        tracing::info!(user_id = %user.id, "registered a user");
        Ok(user)
    }

    /// Makes sure `email` is an admin: creates the account with `password`, or adds the admin
    /// role to an existing account (its password is left alone).
    #[tracing::instrument(skip_all)]
    pub(crate) async fn ensure_admin(&self, email: &str, password: &str) -> Result<UserView, ApiError> {
        let normalised = Email::parse(email)?;
        if let Some(existing) = store::user_by_email(&self.db, &normalised).await? {
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
            return store::user(&self.db, UserId::from_uuid(existing.id)).await.map(|model| view(&model));
        }
        let new_user = NewUser::parse(email, password, "Administrator")?;
        let created = self.insert_user(new_user, vec![Role::Customer, Role::Admin]).await?;
        tracing::info!(user_id = %created.id, "created the admin account");
        Ok(created)
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
        let inserted = conflict_on_duplicate(model.insert(&*unit).await, "an account with this email already exists")?;
        let event = UserRegisteredV1 { user_id: id, email: inserted.email.clone(), name: inserted.name.clone(), registered_at: now };
        unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await?;
        unit.commit().await?;
        Ok(view(&inserted))
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn me(&self, caller: &Caller) -> Result<UserView, ApiError> {
        let user = caller.require_user()?;
        store::user(&self.db, user.id).await.map(|model| view(&model))
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub(crate) async fn get_user(&self, caller: &Caller, id: UserId) -> Result<UserView, ApiError> {
        if !caller.service_allowed(services_allowed::get_user, "users.get_user")? {
            caller.require_self_or_admin(id, "user")?;
        }
        store::user(&self.db, id).await.map(|model| view(&model))
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn list_users(&self, caller: &Caller, page: PageRequest) -> Result<Page<UserView>, ApiError> {
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
    pub(crate) async fn deactivate_user(&self, caller: &Caller, id: UserId) -> Result<UserView, ApiError> {
        let admin = caller.require_admin()?;
        if admin.id == id {
            return Err(ApiError::conflict("an admin cannot deactivate their own account"));
        }
        let user = store::user(&self.db, id).await?;
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
        store::user(&self.db, id).await.map(|model| view(&model))
    }
}
