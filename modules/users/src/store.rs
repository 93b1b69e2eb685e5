//! Users' rows: the account statuses as stored, and the queries the use cases share.

use crate::domain::Email;
use crate::entities::{refresh_tokens, users};
use crate::tokens;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use shared_kernel::{ApiError, UserId};

pub(crate) const STATUS_ACTIVE: &str = "active";
pub(crate) const STATUS_DEACTIVATED: &str = "deactivated";

pub(crate) async fn user_by_email(connection: &impl ConnectionTrait, email: &Email) -> Result<Option<users::Model>, ApiError> {
    Ok(users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(connection).await?)
}

/// The account, or 404.
pub(crate) async fn user(connection: &impl ConnectionTrait, id: UserId) -> Result<users::Model, ApiError> {
    users::Entity::find_by_id(id.as_uuid()).one(connection).await?.ok_or_else(|| ApiError::not_found("user not found"))
}

/// The refresh token presented as `token`, found by its hash (the token itself is never stored).
pub(crate) async fn refresh_token(connection: &impl ConnectionTrait, token: &str) -> Result<Option<refresh_tokens::Model>, ApiError> {
    Ok(refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(tokens::refresh_token_hash(token)))
        .one(connection)
        .await?)
}

/// Revokes every live refresh token of `family`.
pub(crate) async fn revoke_family(connection: &impl ConnectionTrait, family: uuid::Uuid, now: DateTime<Utc>) -> Result<(), ApiError> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
        .filter(refresh_tokens::Column::FamilyId.eq(family))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(connection)
        .await?;
    Ok(())
}
