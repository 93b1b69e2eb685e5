//! What the public routes share: the module handles, the caller resolver and the GraphQL
//! schema, in a room of their own so that `rest` and `graphql` both depend on it and not on
//! each other.

use crate::edge::HasCallerResolver;
use crate::module_list::ModuleHandles;
use axum::extract::FromRef;
use shared_kernel::wire::CallerResolver;
use std::sync::Arc;

/// The state of the public router. Cloned per request by axum, so it is one `Arc` (one
/// reference count to touch, not one per field).
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

/// The module contracts and edge services behind [`AppState`]. Derefs to the module handles,
/// so a handler writes `state.orders`.
pub struct Handles {
    pub modules: ModuleHandles,
    pub resolver: Arc<dyn CallerResolver>,
    pub trust_forwarded_for: bool,
    pub bus: Arc<dyn shared_kernel::events::EventBus>,
    pub dead_letters: Arc<Vec<Arc<dyn shared_kernel::outbox::admin::DeadLettersApi>>>,
    /// Every module as composed here, for `GET /api/admin/status`.
    pub status: Arc<Vec<crate::composition::ModuleStatus>>,
    /// This process's name (`server.service_name`).
    pub service_name: String,
    pub graphql: crate::graphql::CleaveSchema,
    pub graphql_responses: crate::graphql::ResponseCache,
}

impl std::ops::Deref for Handles {
    type Target = ModuleHandles;
    fn deref(&self) -> &ModuleHandles {
        &self.modules
    }
}

impl HasCallerResolver for AppState {
    fn caller_resolver(&self) -> &Arc<dyn CallerResolver> {
        &self.resolver
    }
}

impl FromRef<AppState> for crate::graphql::GraphqlState {
    fn from_ref(state: &AppState) -> Self {
        Self {
            schema: state.graphql.clone(),
            modules: state.modules.clone(),
            resolver: state.resolver.clone(),
            trust_forwarded_for: state.trust_forwarded_for,
            responses: state.graphql_responses.clone(),
        }
    }
}
