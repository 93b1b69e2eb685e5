//! Limits on a query's shape that the engine's depth and complexity limits do not cover: how
//! many fields an operation selects at its root, and how many aliases the document uses (each
//! alias can repeat an expensive field: `a: products … b: products …`).

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};
use std::sync::Arc;

/// Refuses documents past `max_root_fields` per operation or `max_aliases` in all.
#[derive(Debug, Clone, Copy)]
pub struct QueryShape {
    pub max_root_fields: usize,
    pub max_aliases: usize,
}

impl ExtensionFactory for QueryShape {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_trait::async_trait]
impl Extension for QueryShape {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        for (_, operation) in document.operations.iter() {
            let roots = root_fields(&document, &operation.node.selection_set.node);
            if roots > self.max_root_fields {
                return Err(ServerError::new(
                    format!("an operation may select at most {} root fields (this one selects {roots})", self.max_root_fields),
                    None,
                ));
            }
        }
        let mut aliases = 0;
        for (_, operation) in document.operations.iter() {
            aliases += count_aliases(&operation.node.selection_set.node);
        }
        for fragment in document.fragments.values() {
            aliases += count_aliases(&fragment.node.selection_set.node);
        }
        if aliases > self.max_aliases {
            return Err(ServerError::new(format!("a query may use at most {} aliases (this one uses {aliases})", self.max_aliases), None));
        }
        Ok(document)
    }
}

/// Fields selected at the root, through fragments (a fragment cycle is the validator's to refuse).
fn root_fields(document: &ExecutableDocument, set: &SelectionSet) -> usize {
    fn count(document: &ExecutableDocument, set: &SelectionSet, budget: usize) -> usize {
        if budget == 0 {
            return 0;
        }
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(fragment) => count(document, &fragment.node.selection_set.node, budget - 1),
                Selection::FragmentSpread(spread) => document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .map_or(0, |fragment| count(document, &fragment.node.selection_set.node, budget - 1)),
            })
            .sum()
    }
    count(document, set, 8)
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => usize::from(field.node.alias.is_some()) + count_aliases(&field.node.selection_set.node),
            Selection::InlineFragment(fragment) => count_aliases(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}
