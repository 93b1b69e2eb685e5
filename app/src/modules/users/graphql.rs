//! The users module's part of the schema, against `UsersApi`.

use crate::graphql::support::{caller, gql_error, modules, scope};
use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use shared_kernel::{ApiError, Caller, Secret, UserId};
use users_contract::{Credentials, RefreshRequest, RegisterUser, TokenPair, UserStatus, UserView};

#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(name = "UserStatus")]
pub enum UserStatusObject {
    Active,
    Deactivated,
}

/// An account. Never carries a password or its hash.
pub struct User(pub UserView);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn roles(&self) -> Vec<&'static str> {
        self.0.roles.iter().map(shared_kernel::Role::as_str).collect()
    }
    async fn status(&self) -> UserStatusObject {
        match self.0.status {
            UserStatus::Active => UserStatusObject::Active,
            UserStatus::Deactivated => UserStatusObject::Deactivated,
        }
    }
    async fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.created_at
    }
}

/// An access token (a JWT to send as `Authorization: Bearer …`) and its refresh token.
#[derive(SimpleObject)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<TokenPair> for Tokens {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token.into_inner(),
            refresh_token: pair.refresh_token.into_inner(),
            token_type: pair.token_type,
            expires_in: pair.expires_in,
        }
    }
}

#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        Ok(User(modules(ctx).users.me(caller(ctx)).await.map_err(gql_error)?))
    }
}

#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Creates an account.
    async fn register(&self, ctx: &Context<'_>, email: String, password: String, name: String) -> Result<User> {
        let input = RegisterUser { email, password: Secret::new(password), name };
        Ok(User(modules(ctx).users.register(&Caller::Anonymous, input).await.map_err(gql_error)?))
    }

    /// Logs in (rate-limited per account and per client address, as REST).
    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> Result<Tokens> {
        let credentials = Credentials { email, password: Secret::new(password) };
        let client = scope(ctx).client_addr.clone();
        Ok(modules(ctx).users.login(&Caller::Anonymous, credentials, client).await.map_err(gql_error)?.into())
    }

    /// A new token pair for a refresh token, which stops working (rotation).
    async fn refresh_token(&self, ctx: &Context<'_>, refresh_token: String) -> Result<Tokens> {
        let request = RefreshRequest { refresh_token: Secret::new(refresh_token) };
        Ok(modules(ctx).users.refresh(&Caller::Anonymous, request).await.map_err(gql_error)?.into())
    }

    /// Admin. The account can no longer log in, refresh or place orders.
    async fn deactivate_user(&self, ctx: &Context<'_>, id: ID) -> Result<User> {
        let id = UserId::parse(&id).map_err(|_| gql_error(ApiError::not_found("user not found")))?;
        Ok(User(modules(ctx).users.deactivate_user(caller(ctx), id).await.map_err(gql_error)?))
    }
}

/// Its part of the GraphQL queries.
pub type Query = UsersQuery;
/// Its part of the GraphQL mutations.
pub type Mutation = UsersMutation;
