//! Every module, listed once. A module's part of the app lives in its own directory here, and
//! the one line in [`modules!`] below is all the rest of the app needs to know of it:
//!
//! ```text
//! modules/<name>/mod.rs      type Api (its contract), spec() and info() (how the composition
//!                            places and migrates it), event_schemas() and event_samples(),
//!                            describe_metrics() (the help text of its own metrics)
//! modules/<name>/rest.rs     routes() (its REST routes) and Doc (their OpenAPI paths and tags)
//! modules/<name>/graphql.rs  Query and Mutation (its part of the GraphQL schema)
//! ```
//!
//! From the list come the handles every handler takes ([`ModuleHandles`]), the order in which
//! the composition places the modules (a module after those it calls), the CLI's list, the REST
//! routes, the OpenAPI paths, the GraphQL `Query` and `Mutation`, and the event schemas of the
//! compatibility check.

use crate::composition::{Context, ModuleInfo};
use crate::rest::{ApiRoutes, AppState};
use async_graphql::MergedObject;
use std::sync::Arc;

macro_rules! modules {
    ($($name:ident),+ $(,)?) => {
        $(pub mod $name;)+

        /// A handle per module contract, whatever the adapter behind it (the implementation
        /// here, a client of its HTTP or NATS wire, or "not deployed"). The REST handlers, the
        /// GraphQL schema and the tests all take this one struct. Cheap to clone.
        #[derive(Clone)]
        pub struct ModuleHandles {
            $(pub $name: Arc<$name::Api>,)+
        }

        /// The handles placed so far: a module is placed after the ones it calls, and finds
        /// them here.
        #[derive(Default)]
        pub(crate) struct Placed {
            $(pub $name: Option<Arc<$name::Api>>,)+
        }

        /// Places every module, in the order of the list.
        pub(crate) async fn place_all(ctx: &mut Context) -> anyhow::Result<ModuleHandles> {
            $(
                let $name = crate::composition::place(&$name::spec(), ctx).await?;
                ctx.handles.$name = Some($name.clone());
            )+
            Ok(ModuleHandles { $($name,)+ })
        }

        /// The services a process believes on its internal wire: every module of the list, and
        /// the edge.
        pub fn service_names() -> Vec<shared_kernel::ServiceName> {
            vec![$(shared_kernel::ServiceName::named($name::spec().name),)+ shared_kernel::ServiceName::EDGE]
        }

        /// Every module, in composition order.
        pub fn infos() -> Vec<ModuleInfo> {
            vec![$($name::info(),)+]
        }

        /// Every module's versioned REST routes.
        pub(crate) fn routes() -> ApiRoutes<AppState> {
            ApiRoutes::new()$(.merge($name::rest::routes()))+
        }

        /// Every module's OpenAPI paths, schemas and tags.
        pub(crate) fn openapi() -> Vec<utoipa::openapi::OpenApi> {
            vec![$(<$name::rest::Doc as utoipa::OpenApi>::openapi(),)+]
        }

        /// Every integration event type's JSON Schema, from each module's contract.
        pub fn event_schemas() -> Vec<(&'static str, serde_json::Value)> {
            let mut schemas = Vec::new();
            $(schemas.extend($name::event_schemas());)+
            schemas
        }

        /// The help text of every module's own metrics, for `/metrics`.
        pub(crate) fn describe_metrics() {
            $($name::describe_metrics();)+
        }

        /// Each module's name and the name its dead letters are served under.
        #[cfg(test)]
        pub(crate) fn dead_letter_names() -> Vec<(&'static str, &'static str)> {
            vec![$(($name::spec().name, $name::spec().dead_letters),)+]
        }

        /// An example of every integration event type, as published.
        #[cfg(test)]
        pub(crate) fn event_samples() -> Vec<(&'static str, serde_json::Value)> {
            let mut samples = Vec::new();
            $(samples.extend($name::event_samples());)+
            samples
        }

        // The GraphQL queries: each module's, merged (a plain comment: a doc comment would be
        // the type's description in the schema).
        #[derive(MergedObject, Default)]
        pub struct Query($($name::graphql::Query),+);

        // The GraphQL mutations: each module's, merged.
        #[derive(MergedObject, Default)]
        pub struct Mutation($($name::graphql::Mutation),+);
    };
}

modules!(users, catalog, payments, orders, notifications);

/// An event as its JSON (for [`event_samples`]).
#[cfg(test)]
pub(crate) fn sample<E: shared_kernel::events::IntegrationEvent>(event: E) -> (&'static str, serde_json::Value) {
    (E::TYPE, serde_json::to_value(&event).expect("an event serializes"))
}

// A GraphQL part with no fields, for a module with no queries or no mutations of its own.
#[derive(MergedObject, Default)]
pub struct NoFields;
