//! Every module's part of the app, each in its own directory here, expanded from the module list
//! (`crate::module_list`, the one line a new module adds):
//!
//! ```text
//! modules/<name>/mod.rs      type Api (its contract), spec() and info() (how the composition
//!                            places and migrates it), event_schemas() and event_samples(),
//!                            describe_metrics() (the help text of its own metrics)
//! modules/<name>/rest.rs     routes() (its REST routes) and Doc (their OpenAPI paths and tags)
//! modules/<name>/graphql.rs  Query and Mutation (its part of the GraphQL schema)
//! ```
//!
//! Here the list gives the order in which the composition places the modules (a module after
//! those it calls), the CLI's list, the REST routes, the OpenAPI paths and the event schemas of
//! the compatibility check. This file is the top of the app's module parts: it may use the
//! composition, the REST and GraphQL rooms, and none of them uses it.

use crate::composition::{Composition, Context, ModuleInfo};
use crate::config::Settings;
use crate::module_list::ModuleHandles;
use crate::rest::{ApiRoutes, AppState};

macro_rules! modules {
    ($($name:ident: $api:path),+ $(,)?) => {
        $(pub mod $name;)+

        /// Places every module, in the order of the list.
        async fn place_all(ctx: &mut Context) -> anyhow::Result<ModuleHandles> {
            $(
                let $name = crate::composition::place(&$name::spec(), ctx).await?;
                ctx.handles.$name = Some($name.clone());
            )+
            Ok(ModuleHandles { $($name,)+ })
        }

        /// Every module, in composition order.
        pub fn infos() -> Vec<ModuleInfo> {
            vec![$($name::info(),)+]
        }

        /// Every versioned REST route: each module's, then the edge's own (`crate::rest`).
        pub fn routes() -> ApiRoutes<AppState> {
            ApiRoutes::new()$(.merge($name::rest::routes()))+.merge(crate::rest::admin::routes()).merge(crate::rest::me::routes())
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
    };
}

crate::module_list::module_list!(modules);

/// Builds every module's adapter as configured, in the order of the list (see
/// [`crate::composition::compose`]).
///
/// # Errors
/// As [`crate::composition::compose`].
pub async fn compose(settings: &Settings) -> anyhow::Result<Composition> {
    crate::composition::compose(settings, |ctx| Box::pin(place_all(ctx))).await
}

/// An event as its JSON (for [`event_samples`]).
#[cfg(test)]
pub(crate) fn sample<E: shared_kernel::events::IntegrationEvent>(event: E) -> (&'static str, serde_json::Value) {
    (E::TYPE, serde_json::to_value(&event).expect("an event serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_module_serves_its_dead_letters_under_its_own_name() {
        let names = crate::modules::dead_letter_names();
        assert!(names.len() >= 5, "{names:?}");
        for (module, dead_letters) in names {
            assert_eq!(dead_letters, format!("{module}_dead_letters"));
        }
    }

    #[test]
    fn every_composed_module_has_its_settings_and_no_others() {
        let composed: std::collections::BTreeSet<&str> = infos().iter().map(|module| module.name).collect();
        let configured: std::collections::BTreeSet<&str> =
            crate::config::ModulesSettings::default().each().into_iter().map(|(name, _)| name).collect();
        assert_eq!(composed, configured, "crate::modules and config::ModulesSettings name the same modules");
    }

    #[test]
    fn the_handles_and_the_placement_follow_the_one_list() {
        let placed: Vec<&str> = infos().iter().map(|module| module.name).collect();
        assert_eq!(placed, crate::module_list::NAMES, "each module's spec names it as the list does, in its order");
    }
}
