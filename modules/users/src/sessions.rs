//! Sessions: login (rate limited per account and per client address), refresh-token rotation
//! with reuse detection (a token presented twice revokes its whole family), and logout.

use crate::context::Context;
use crate::domain::{self, Email};
use crate::entities::{refresh_tokens, users};
use crate::store::{self, STATUS_ACTIVE};
use crate::{passwords, tokens};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use shared_kernel::{ApiError, Secret, UserId};
use users_contract::{Credentials, RefreshRequest, TokenPair};

impl Context {
    #[tracing::instrument(skip_all)]
    pub(crate) async fn login(&self, credentials: Credentials, client_addr: Option<String>) -> Result<TokenPair, ApiError> {
        let wrong = || ApiError::unauthenticated("wrong email or password");
        let email = Email::parse(&credentials.email).map_err(|_| wrong())?;
        self.login_limiter.check(email.as_str(), client_addr.as_deref())?;
        let password = credentials.password.expose().clone();
        let Some(user) = store::user_by_email(&self.db, &email).await? else {
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
    pub(crate) async fn refresh(&self, request: RefreshRequest) -> Result<TokenPair, ApiError> {
        let invalid = || ApiError::unauthenticated("the refresh token is invalid, expired or revoked");
        let now = self.clock.now();
        let Some(stored) = store::refresh_token(&self.db, request.refresh_token.expose()).await? else {
            return Err(invalid());
        };
        if stored.revoked_at.is_some() {
            return Err(invalid());
        }
        if stored.used_at.is_some() {
            store::revoke_family(&self.db, stored.family_id, now).await?;
            tracing::warn!(user_id = %stored.user_id, family = %stored.family_id, "a used refresh token was presented again: family revoked");
            return Err(invalid());
        }
        if stored.expires_at <= now {
            return Err(invalid());
        }
        let user = match store::user(&self.db, UserId::from_uuid(stored.user_id)).await {
            Ok(user) => user,
            Err(ApiError::NotFound { .. }) => return Err(invalid()),
            Err(other) => return Err(other),
        };
        if user.status != STATUS_ACTIVE {
            store::revoke_family(&self.db, stored.family_id, now).await?;
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
            store::revoke_family(&self.db, stored.family_id, now).await?;
            tracing::warn!(user_id = %stored.user_id, family = %stored.family_id, "a refresh token was used twice at once: family revoked");
            return Err(invalid());
        }
        let pair = self.issue_tokens(&transaction, &user, stored.family_id, now).await?;
        transaction.commit().await?;
        Ok(pair)
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn logout(&self, request: RefreshRequest) -> Result<(), ApiError> {
        if let Some(stored) = store::refresh_token(&self.db, request.refresh_token.expose()).await? {
            store::revoke_family(&self.db, stored.family_id, self.clock.now()).await?;
            tracing::info!(user_id = %stored.user_id, "logged out");
        }
        Ok(())
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
}
