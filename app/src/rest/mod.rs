//! The public REST API (shared/api.md), written once against the module contracts: the same
//! handlers serve whether a module is local or remote.

pub mod admin;
pub mod catalog;
pub mod orders;
pub mod payments;
pub mod users;

use crate::edge::HasCallerResolver;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use shared_kernel::wire::CallerResolver;
use std::net::SocketAddr;
use std::sync::Arc;
use users_contract::UsersApi;

/// What the public handlers need: the module contracts and the caller resolver. Cloned per
/// request by axum, so it is one `Arc` (one reference count to touch, not one per field).
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl AppState {
    pub fn new(handles: Handles) -> Self {
        Self(Arc::new(handles))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// The module contracts and edge services behind [`AppState`].
pub struct Handles {
    pub users: Arc<dyn UsersApi>,
    pub catalog: Arc<dyn catalog_contract::CatalogApi>,
    pub payments: Arc<dyn payments_contract::PaymentsApi>,
    pub orders: Arc<dyn orders_contract::OrdersApi>,
    pub resolver: Arc<dyn CallerResolver>,
    pub trust_forwarded_for: bool,
    pub bus: Arc<dyn shared_kernel::events::EventBus>,
    pub dead_letters: Arc<Vec<shared_kernel::outbox::DeadLetterStore>>,
    pub graphql: crate::graphql::CleaveSchema,
    pub graphql_modules: crate::graphql::Modules,
}

impl HasCallerResolver for AppState {
    fn caller_resolver(&self) -> &Arc<dyn CallerResolver> {
        &self.resolver
    }
}

/// The TCP peer, when the server was started with connection info (absent in `oneshot` tests).
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|info| info.0)))
    }
}
