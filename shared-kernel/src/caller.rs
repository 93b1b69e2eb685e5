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

/// A process calling on its own behalf (a saga step, a consumer, a readiness probe): a module's
/// name as its contract declares it (`orders_contract::SERVICE`), or [`ServiceName::EDGE`]. Not a
/// closed list: the names a process accepts from the wire are the ones its composition knows (the
/// module list and the edge), so a new module needs no edit here. A module decides what a service
/// may do by the lists its contract declares per operation (`services [orders]` in `contract!`),
/// read through [`Caller::service_allowed`] and [`Caller::require_service_or_admin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(&'static str);

impl ServiceName {
    /// The edge (a gateway or any process serving the public API) on its own behalf, e.g. the
    /// readiness probe of a remote module.
    pub const EDGE: ServiceName = ServiceName("edge");

    /// The service of the module `name` (a contract's `SERVICE` constant is made with this).
    pub const fn named(name: &'static str) -> Self {
        Self(name)
    }

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// `name` when it is one of `known`; an unknown name is never guessed.
    pub fn parse_among(name: &str, known: &[ServiceName]) -> Option<Self> {
        known.iter().copied().find(|service| service.0 == name)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
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

    /// For an operation that the services in `allowed` may call on their own behalf (its
    /// contract's `services_allowed` list): `true` for one of them, `false` for a user or an
    /// anonymous caller (the module then decides what they may do), and 403 for any other
    /// service. `operation` names it in the refusal.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] for a service not in `allowed`.
    pub fn service_allowed(&self, allowed: &[ServiceName], operation: &str) -> Result<bool, ApiError> {
        match self {
            Self::Service(service) if allowed.contains(service) => Ok(true),
            Self::Service(service) => Err(ApiError::forbidden(format!("the {service} service may not call {operation}"))),
            Self::Anonymous | Self::User(_) => Ok(false),
        }
    }

    /// One of the services in `allowed` (its contract's list for `operation`), or an admin user.
    ///
    /// # Errors
    /// 403 for another service or a user without the admin role, 401 without any identity.
    pub fn require_service_or_admin(&self, allowed: &[ServiceName], operation: &str) -> Result<(), ApiError> {
        if self.service_allowed(allowed, operation)? { Ok(()) } else { self.require_admin().map(|_| ()) }
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
    fn service_names_parse_only_among_the_known_ones() {
        let orders = ServiceName::named("orders");
        let known = [orders, ServiceName::EDGE];
        assert_eq!(ServiceName::parse_among("orders", &known), Some(orders));
        assert_eq!(ServiceName::parse_among("edge", &known), Some(ServiceName::EDGE));
        assert_eq!(ServiceName::parse_among("Orders", &known), None);
        assert_eq!(ServiceName::parse_among("payments", &known), None);
    }

    #[test]
    fn only_the_listed_services_or_an_admin_pass() {
        let orders = ServiceName::named("orders");
        let allowed = [orders];
        assert!(Caller::Service(orders).require_service_or_admin(&allowed, "payments.charge").is_ok());
        let edge = Caller::Service(ServiceName::EDGE).require_service_or_admin(&allowed, "payments.charge").unwrap_err();
        assert_eq!(edge.status(), 403);
        assert!(edge.to_string().contains("the edge service may not call payments.charge"), "{edge}");
        assert_eq!(Caller::Service(ServiceName::named("notifications")).service_allowed(&allowed, "x").unwrap_err().status(), 403);
        assert!(user(vec![Role::Admin]).require_service_or_admin(&allowed, "payments.charge").is_ok());
        assert_eq!(user(vec![Role::Customer]).require_service_or_admin(&allowed, "payments.charge").unwrap_err().status(), 403);
        assert_eq!(Caller::Anonymous.require_service_or_admin(&allowed, "payments.charge").unwrap_err().status(), 401);
        assert_eq!(user(vec![Role::Customer]).service_allowed(&allowed, "x"), Ok(false));
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
