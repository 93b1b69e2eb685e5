//! What every module's part of the GraphQL schema uses: the handles and the caller of a
//! request, contract errors as GraphQL errors, pages and connections. A leaf: the module parts
//! depend on it, never on the schema that merges them.

use async_graphql::{Context, ErrorExtensions, MergedObject};
use shared_kernel::{ApiError, Caller};

/// The contracts the schema resolves against (schema-wide data).
pub type Modules = crate::module_list::ModuleHandles;

/// Who is asking, and from where (per request).
pub struct RequestScope {
    pub caller: Caller,
    pub client_addr: Option<String>,
}

pub fn modules<'a>(ctx: &Context<'a>) -> &'a Modules {
    ctx.data_unchecked::<Modules>()
}

pub fn scope<'a>(ctx: &Context<'a>) -> &'a RequestScope {
    ctx.data_unchecked::<RequestScope>()
}

pub fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    &scope(ctx).caller
}

/// A contract error as a GraphQL error: the message is the problem's detail (never internal
/// detail), `extensions.code` the problem type's code (`not-found`, `validation-failed`, …),
/// plus `status`, and the field errors of a validation failure.
pub fn gql_error(error: ApiError) -> async_graphql::Error {
    let problem = error.to_problem();
    let message = problem.detail.clone();
    async_graphql::Error::new(message).extend_with(|_, extensions| {
        extensions.set("code", error.code());
        extensions.set("status", i32::from(error.status()));
        if let Some(retry_after) = error.retry_after_secs() {
            extensions.set("retryAfter", retry_after);
        }
        if !problem.errors.is_empty() {
            let fields: Vec<async_graphql::Value> = problem
                .errors
                .iter()
                .map(|e| {
                    let mut map = async_graphql::indexmap::IndexMap::new();
                    map.insert(async_graphql::Name::new("field"), async_graphql::Value::from(e.field.clone()));
                    map.insert(async_graphql::Name::new("message"), async_graphql::Value::from(e.message.clone()));
                    async_graphql::Value::Object(map)
                })
                .collect();
            extensions.set("errors", async_graphql::Value::List(fields));
        }
    })
}

/// `first` as a page size: 1..=100, default 20 (as REST's `limit`).
pub fn page_request(first: Option<i32>, after: Option<String>) -> async_graphql::Result<shared_kernel::PageRequest> {
    let limit = match first {
        None => None,
        Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        Some(_) => return Err(gql_error(ApiError::invalid_field("first", "must be between 1 and 100"))),
    };
    let cursor = after
        .map(|text| serde_json::from_value::<shared_kernel::Cursor>(serde_json::Value::String(text)))
        .transpose()
        .map_err(|_| gql_error(ApiError::invalid_field("after", "is not a cursor this API issued")))?;
    shared_kernel::PageRequest::new(limit, cursor).map_err(|error| {
        gql_error(match error {
            ApiError::Invalid { .. } => ApiError::invalid_field("first", "must be between 1 and 100"),
            other => other,
        })
    })
}

/// A Relay connection over one page of a module's list: each edge's cursor continues the list
/// after that item (`key` gives the module's sort key for an item).
pub fn connection<T, N: async_graphql::OutputType>(
    page: shared_kernel::Page<T>,
    had_cursor: bool,
    key: impl Fn(&T) -> String,
    node: impl Fn(T) -> N,
) -> async_graphql::connection::Connection<String, N> {
    let mut connection = async_graphql::connection::Connection::new(had_cursor, page.next_cursor.is_some());
    connection.edges.extend(page.items.into_iter().map(|item| {
        let cursor = shared_kernel::Cursor::encode(&key(&item)).as_str().to_owned();
        async_graphql::connection::Edge::new(cursor, node(item))
    }));
    connection
}

// A GraphQL part with no fields, for a module with no queries or no mutations of its own.
#[derive(MergedObject, Default)]
pub struct NoFields;
