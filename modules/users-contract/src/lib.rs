//! The users module's contract. **API Boundary**: other modules, the edge and remote callers
//! see the users module only through what is here.
//!
//! - [`UsersApi`]: the operations, each taking the [`Caller`] first.
//! - The DTOs they take and return (plain data, serde, OpenAPI schemas).
//! - With feature `http`: [`http_wire`], the axum router serving any `Arc<dyn UsersApi>` and
//!   the client implementing `UsersApi` over HTTP, both generated from the one declaration.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
pub use shared_kernel::{ApiError, Caller, Page, PageRequest, Role, Secret, UserId};

/// `POST /api/users/register`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterUser {
    /// Unique, compared case-insensitively.
    #[schema(example = "ada@example.com", format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// 10 to 128 characters, not a commonly used password, not one character repeated, not
    /// containing the email address.
    #[schema(value_type = String, example = "correct horse battery staple", min_length = 10, max_length = 128)]
    pub password: Secret<String>,
    /// No control characters.
    #[schema(example = "Ada Lovelace", min_length = 1, max_length = 100)]
    pub name: String,
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[schema(example = "ada@example.com")]
    pub email: String,
    #[schema(value_type = String, example = "correct horse battery staple")]
    pub password: Secret<String>,
}

/// `POST /api/auth/refresh` and `POST /api/auth/logout`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The `refresh_token` of the last token pair.
    #[schema(value_type = String)]
    pub refresh_token: Secret<String>,
}

/// An access token and the refresh token that renews it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// A JWT (EdDSA) for `Authorization: Bearer`.
    #[schema(value_type = String)]
    pub access_token: Secret<String>,
    /// Single use: each refresh returns a new one and retires this one.
    #[schema(value_type = String)]
    pub refresh_token: Secret<String>,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
}

/// Whether an account may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Deactivated,
}

/// A user as others see it. Never carries a password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
}

/// One public signing key, as a JSON Web Key (RFC 8037 for Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicJwk {
    /// `OKP`
    pub kty: String,
    /// `Ed25519`
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    /// `EdDSA`
    pub alg: String,
    /// `sig`
    #[serde(rename = "use")]
    pub use_: String,
}

/// `GET /.well-known/jwks.json`: every key a current token may be signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKeySet {
    pub keys: Vec<PublicJwk>,
}

shared_kernel::contract! {
    /// What the users module offers to the edge and to other modules.
    ///
    /// # Errors
    /// Every operation returns the contract's [`ApiError`]; each says below which variants an
    /// implementation MUST use, so a client behaves the same in process and over a wire.
    pub trait UsersApi as "users" {
        /// Creates a customer account. 409 when the email (compared case-insensitively) is
        /// taken; 422 for a malformed email, a weak password or an empty name.
        fn register(input: RegisterUser) -> UserView;
        /// Exchanges credentials for tokens. 401 for wrong credentials (never saying which part
        /// was wrong); 403 for a deactivated account; 429 when the account or the client address
        /// (`client_addr`, filled by the edge) has tried too often.
        fn login(credentials: Credentials, client_addr: Option<String>) -> TokenPair;
        /// Rotates a refresh token: the presented one stops working. Presenting one already used
        /// revokes every token of its family. 401 for anything but a live token of an active user.
        fn refresh(request: RefreshRequest) -> TokenPair;
        /// Revokes the refresh token's family. Succeeds for unknown or revoked tokens too.
        fn logout(request: RefreshRequest) -> ();
        /// The calling user. 401 without a user.
        fn me() -> UserView, idempotent;
        /// One user: the user themself or an admin; 404 for anyone else.
        fn get_user(id: UserId) -> UserView, idempotent;
        /// Every user, oldest first. Admin only (401/403).
        fn list_users(page: PageRequest) -> Page<UserView>, idempotent;
        /// Deactivates an account: no more logins or refreshes; its refresh tokens are revoked.
        /// Admin only; 404 for an unknown id; 409 for the caller's own account.
        fn deactivate_user(id: UserId) -> UserView;
        /// The public keys that verify access tokens (anyone may ask; every process does).
        fn signing_keys() -> PublicKeySet, idempotent, every_process;
    }
}

/// The users module's integration events. Each type name is a compatibility promise: a change
/// that breaks consumers is a new `…v2` type.
pub mod events {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};
    use shared_kernel::UserId;
    use shared_kernel::events::IntegrationEvent;

    /// The JSON Schema of every event type this module publishes, by type (`docs/events/`, kept
    /// compatible by the contract check).
    pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
        vec![shared_kernel::events::json_schema::<UserRegisteredV1>(), shared_kernel::events::json_schema::<UserDeactivatedV1>()]
    }

    /// An account was created (by registration or by admin bootstrap).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct UserRegisteredV1 {
        #[schema(value_type = String, format = Uuid)]
        pub user_id: UserId,
        pub email: String,
        pub name: String,
        pub registered_at: DateTime<Utc>,
    }

    impl IntegrationEvent for UserRegisteredV1 {
        const TYPE: &'static str = "users.user_registered.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.user_id.to_string()
        }
    }

    /// An account was deactivated: it can no longer log in, refresh or place orders.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct UserDeactivatedV1 {
        #[schema(value_type = String, format = Uuid)]
        pub user_id: UserId,
        pub deactivated_at: DateTime<Utc>,
    }

    impl IntegrationEvent for UserDeactivatedV1 {
        const TYPE: &'static str = "users.user_deactivated.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.user_id.to_string()
        }
    }
}
