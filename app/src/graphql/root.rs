//! The schema's roots: every module's `Query` and `Mutation`, merged, from the module list.

use async_graphql::MergedObject;

macro_rules! graphql_root {
    ($($name:ident: $api:path),+ $(,)?) => {
        // The GraphQL queries: each module's, merged (a plain comment: a doc comment would be
        // the type's description in the schema).
        #[derive(MergedObject, Default)]
        pub struct Query($(crate::modules::$name::graphql::Query),+);

        // The GraphQL mutations: each module's, merged.
        #[derive(MergedObject, Default)]
        pub struct Mutation($(crate::modules::$name::graphql::Mutation),+);
    };
}

crate::module_list::module_list!(graphql_root);
