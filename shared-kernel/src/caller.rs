//! Who is asking: every contract operation takes a `Caller` first, and decides authorization
//! itself (a module may be called from elsewhere once extracted).

use crate::{ApiError, Secret, UserId};
use serde::{Deserialize, Serialize};

/// A role a user holds. Unknown role names from a token are ignored, never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A user whose access token was verified.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub id: UserId,
    pub roles: Vec<Role>,
    /// The verified access token, forwarded when this caller's request crosses a wire so the
    /// remote side can verify it itself.
    pub token: Secret<String>,
}

/// A process calling on its own behalf (a saga step, a consumer, a readiness probe): a closed
/// set, so a module decides what a service may do by matching on it, never by comparing text.
/// Over the wire it is named by the `x-cleave-service` header and believed only with the
/// service token; an unknown name is refused (401) by the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    Users,
    Catalog,
    Orders,
    Payments,
    /// The edge (a gateway or any process serving the public API) on its own behalf, e.g. the
    /// readiness probe of a remote module.
    Edge,
}

impl ServiceName {
    pub const ALL: [ServiceName; 5] = [Self::Users, Self::Catalog, Self::Orders, Self::Payments, Self::Edge];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Catalog => "catalog",
            Self::Orders => "orders",
            Self::Payments => "payments",
            Self::Edge => "edge",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|service| service.as_str() == name)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity behind a call.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials (public endpoints: register, login, product lists).
    Anonymous,
    User(AuthenticatedUser),
    Service(ServiceName),
}

impl Caller {
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Self::User(user) => Some(user.id),
            _ => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Self::User(user) if user.roles.contains(&Role::Admin))
    }

    /// The authenticated user, or 401.
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`] for anonymous and service callers.
    pub fn require_user(&self) -> Result<&AuthenticatedUser, ApiError> {
        match self {
            Self::User(user) => Ok(user),
            _ => Err(ApiError::unauthenticated("a valid bearer token is required")),
        }
    }

    /// An admin user, or 401 (no user) / 403 (a user without the role).
    ///
    /// # Errors
    /// As above.
    pub fn require_admin(&self) -> Result<&AuthenticatedUser, ApiError> {
        let user = self.require_user()?;
        if user.roles.contains(&Role::Admin) { Ok(user) } else { Err(ApiError::forbidden("this operation requires the admin role")) }
    }

    /// The user themself, or an admin; anyone else gets 404 so nobody learns what exists.
    ///
    /// # Errors
    /// 401 without a user, 404 for another non-admin user.
    pub fn require_self_or_admin(&self, owner: UserId, what: &str) -> Result<&AuthenticatedUser, ApiError> {
        let user = self.require_user()?;
        if user.id == owner || user.roles.contains(&Role::Admin) { Ok(user) } else { Err(ApiError::not_found(format!("{what} not found"))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: Vec<Role>) -> Caller {
        Caller::User(AuthenticatedUser { id: UserId::new(), roles, token: Secret::new("t".into()) })
    }

    #[test]
    fn service_names_round_trip_and_unknown_ones_are_refused() {
        for service in ServiceName::ALL {
            assert_eq!(ServiceName::parse(service.as_str()), Some(service));
        }
        assert_eq!(ServiceName::parse("Orders"), None);
        assert_eq!(ServiceName::parse("readiness"), None);
    }

    #[test]
    fn authorization_helpers_map_to_the_right_errors() {
        assert_eq!(Caller::Anonymous.require_user().unwrap_err().status(), 401);
        assert_eq!(user(vec![Role::Customer]).require_admin().unwrap_err().status(), 403);
        assert!(user(vec![Role::Admin]).require_admin().is_ok());
        let someone = user(vec![Role::Customer]);
        assert_eq!(someone.require_self_or_admin(UserId::new(), "order").unwrap_err().status(), 404);
        assert!(someone.require_self_or_admin(someone.user_id().unwrap(), "order").is_ok());
        assert!(user(vec![Role::Admin]).require_self_or_admin(UserId::new(), "order").is_ok());
    }
}
