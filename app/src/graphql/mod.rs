//! The GraphQL API (`POST /graphql`): one schema merged from per-module parts
//! (`crate::modules::<name>::graphql`), each written
//! against its module's contract, so it answers the same whether a module is local or remote.
//!
//! Per request the schema gets the caller (from the same bearer token as REST) and fresh
//! DataLoaders, which batch nested lookups into one contract call per kind (order items →
//! `CatalogApi::get_products`, product categories → `CatalogApi::get_categories`).
//!
//! Not an API boundary for Rust code; its SDL (`docs/schema.graphql`, `cleave graphql-schema`)
//! is the public contract.

mod documents;
mod limits;
pub mod playground;
pub mod responses;
pub mod settings;
mod subscription;

pub use documents::DocumentCache;
pub use responses::ResponseCache;
pub use subscription::{NotificationFeed, OrderStatusFeed};

use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::{Context, ErrorExtensions, Schema};
use shared_kernel::{ApiError, Caller};
use std::sync::Arc;

/// The contracts the schema resolves against (schema-wide data).
pub type Modules = crate::modules::ModuleHandles;

/// What the GraphQL routes take from the router's state.
#[derive(Clone)]
pub struct GraphqlState {
    pub schema: CleaveSchema,
    pub modules: Modules,
    pub resolver: Arc<dyn shared_kernel::wire::CallerResolver>,
    pub trust_forwarded_for: bool,
    pub responses: ResponseCache,
}

/// Limits on what one query may ask for; past them the query is refused with an error before
/// anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub root_fields: usize,
    pub aliases: usize,
    pub introspection: bool,
    /// Subscriptions one WebSocket connection may hold open at once.
    pub subscriptions_per_socket: usize,
}

pub use crate::modules::{Mutation, Query};

pub type CleaveSchema = Schema<Query, Mutation, subscription::Subscription>;

/// The schema, with its limits.
pub fn schema(modules: Modules, feeds: (OrderStatusFeed, NotificationFeed), limits: Limits, documents: DocumentCache) -> CleaveSchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), subscription::Subscription)
        .data(modules)
        .data(feeds.0)
        .data(feeds.1)
        .data(subscription::SubscriptionLimit(limits.subscriptions_per_socket))
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        // Outermost: a cached document has passed the shape limits already.
        .extension(documents)
        .extension(limits::QueryShape { max_root_fields: limits.root_fields, max_aliases: limits.aliases });
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The SDL, as committed in `docs/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), subscription::Subscription).finish().sdl()
}

/// Who is asking, and from where (per request).
pub struct RequestScope {
    pub caller: Caller,
    pub client_addr: Option<String>,
}

/// Adds what one request needs to `request`: its caller and fresh loaders (their caches live
/// only as long as the request).
pub fn scoped(request: async_graphql::Request, modules: &Modules, scope: RequestScope) -> async_graphql::Request {
    let (products, categories, payments) = loaders(modules, &scope.caller);
    request.data(scope).data(products).data(categories).data(payments)
}

use crate::modules::catalog::graphql as catalog;
use crate::modules::orders::graphql as orders;

type Loaders = (DataLoader<catalog::ProductLoader>, DataLoader<catalog::CategoryLoader, HashMapCache>, DataLoader<orders::PaymentLoader>);

fn loaders(modules: &Modules, caller: &Caller) -> Loaders {
    let products = DataLoader::new(catalog::ProductLoader { catalog: modules.catalog.clone(), caller: caller.clone() }, in_this_request());
    // Kept for the request: a product list puts its page's categories here in one call
    // (`catalog::prefetch_categories`), and each product's `category` is then answered from it,
    // without the loader's batching delay.
    let categories = DataLoader::with_cache(
        catalog::CategoryLoader { catalog: modules.catalog.clone(), caller: caller.clone() },
        in_this_request(),
        HashMapCache::default(),
    );
    let payments = DataLoader::new(orders::PaymentLoader { payments: modules.payments.clone(), caller: caller.clone() }, in_this_request());
    (products, categories, payments)
}

/// Spawns a loader's batch in the request it was made for: its calls carry the request's id
/// and trace, and its spans sit under the request's.
fn in_this_request() -> impl Fn(futures::future::BoxFuture<'static, ()>) -> tokio::task::JoinHandle<()> + Send + Sync + 'static {
    use tracing::Instrument as _;
    let context = shared_kernel::current_request_context();
    let span = tracing::Span::current();
    move |batch| {
        let run = match context.clone() {
            Some(context) => futures::FutureExt::boxed(shared_kernel::with_request_context(context, batch)),
            None => batch,
        };
        tokio::spawn(run.instrument(span.clone()))
    }
}

/// `GET /graphql/ws`: subscriptions (and queries) over `graphql-transport-ws` (or the older
/// `graphql-ws`). The caller comes from the upgrade request's bearer token, or from the
/// `connection_init` payload: `{"Authorization": "Bearer <token>"}` (also `authorization`,
/// `token`, or inside `headers`), which browsers need since they cannot set headers on a
/// WebSocket.
pub async fn subscribe(
    axum::extract::State(state): axum::extract::State<GraphqlState>,
    crate::edge::PeerAddr(peer): crate::edge::PeerAddr,
    headers: axum::http::HeaderMap,
    protocol: async_graphql_axum::GraphQLProtocol,
    upgrade: axum::extract::WebSocketUpgrade,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let caller = match state.resolver.resolve(&headers).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let client_addr = crate::edge::client_addr(&headers, peer, state.trust_forwarded_for);
    let GraphqlState { schema, modules, resolver, .. } = state;
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            async_graphql_axum::GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let caller = match token_in(&payload) {
                        Some(token) => {
                            let mut headers = axum::http::HeaderMap::new();
                            let value = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
                                .map_err(|_| gql_error(ApiError::unauthenticated("malformed token")))?;
                            headers.insert(axum::http::header::AUTHORIZATION, value);
                            resolver.resolve(&headers).await.map_err(gql_error)?
                        }
                        None => caller,
                    };
                    let (products, categories, payments) = loaders(&modules, &caller);
                    let mut data = async_graphql::Data::default();
                    data.insert(RequestScope { caller, client_addr });
                    data.insert(subscription::SocketSubscriptions::default());
                    data.insert(products);
                    data.insert(categories);
                    data.insert(payments);
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}

/// The bearer token in a `connection_init` payload, if any.
fn token_in(payload: &serde_json::Value) -> Option<String> {
    let find = |object: &serde_json::Value| {
        ["Authorization", "authorization", "token"]
            .iter()
            .find_map(|key| object.get(key).and_then(serde_json::Value::as_str).map(str::to_owned))
    };
    let text = find(payload).or_else(|| payload.get("headers").and_then(find))?;
    let token = text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")).unwrap_or(&text).trim();
    (!token.is_empty()).then(|| token.to_owned())
}

pub(crate) fn modules<'a>(ctx: &Context<'a>) -> &'a Modules {
    ctx.data_unchecked::<Modules>()
}

pub(crate) fn scope<'a>(ctx: &Context<'a>) -> &'a RequestScope {
    ctx.data_unchecked::<RequestScope>()
}

pub(crate) fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    &scope(ctx).caller
}

/// A contract error as a GraphQL error: the message is the problem's detail (never internal
/// detail), `extensions.code` the problem type's code (`not-found`, `validation-failed`, …),
/// plus `status`, and the field errors of a validation failure.
pub(crate) fn gql_error(error: ApiError) -> async_graphql::Error {
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
pub(crate) fn page_request(first: Option<i32>, after: Option<String>) -> async_graphql::Result<shared_kernel::PageRequest> {
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
pub(crate) fn connection<T, N: async_graphql::OutputType>(
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

/// `POST /graphql`: the caller comes from the same bearer token as REST. An anonymous catalog
/// query may be answered from [`ResponseCache`] without running.
pub async fn execute(
    axum::extract::State(state): axum::extract::State<GraphqlState>,
    crate::edge::CallerExt(caller): crate::edge::CallerExt,
    crate::edge::PeerAddr(peer): crate::edge::PeerAddr,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::extract::FromRequest as _;
    use axum::response::IntoResponse as _;
    let (parts, body) = request.into_parts();
    let is_json = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    // The body is kept only for an answer that might be kept by it.
    let (body, kept_by) = if state.responses.enabled() && is_json && matches!(caller, Caller::Anonymous) {
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(error) => return body_error(&error).into_response(),
        };
        if let Some(answer) = state.responses.lookup(&bytes) {
            return answer;
        }
        (axum::body::Body::from(bytes.clone()), Some(bytes))
    } else {
        (body, None)
    };
    // Only for a query that runs: a kept answer needs nothing of the caller.
    let client_addr = crate::edge::client_addr(&parts.headers, peer, state.trust_forwarded_for);
    let request = match async_graphql_axum::GraphQLRequest::<async_graphql_axum::rejection::GraphQLRejection>::from_request(
        axum::extract::Request::from_parts(parts, body),
        &(),
    )
    .await
    {
        Ok(request) => request.into_inner(),
        Err(rejection) => return rejection.into_response(),
    };
    let kind = state.responses.kind(&request);
    let generation = state.responses.generation();
    let request = scoped(request, &state.modules, RequestScope { caller, client_addr });
    let mut response = state.schema.execute(request).await;
    for error in &mut response.errors {
        tag_query_error(error);
    }
    let keep = kind == responses::Kind::CatalogRead && response.errors.is_empty();
    let response = async_graphql_axum::GraphQLResponse::from(response).into_response();
    match kept_by {
        Some(body) if keep => state.responses.keep(body, generation, response).await,
        _ => {
            if kind == responses::Kind::Write {
                state.responses.forget();
            }
            response
        }
    }
}

/// A request body that could not be read: too large (the edge's limit), or cut off.
fn body_error(error: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge { detail: "the request body is larger than allowed".to_owned() };
        }
        source = cause.source();
    }
    ApiError::bad_request("the request body could not be read")
}

/// Errors the engine raises itself (a malformed query, an unknown field, a limit) are the
/// query's fault: they get `extensions.code = "bad-request"`, as contract errors get theirs.
fn tag_query_error(error: &mut async_graphql::ServerError) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", ApiError::bad_request("").code());
        extensions.set("status", 400);
    }
}
