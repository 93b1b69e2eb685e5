//! The GraphQL API (`POST /graphql`): one schema merged from per-module parts
//! (`crate::modules::<name>::graphql`, merged in `root`, from the module list), each written
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
pub mod root;
pub mod settings;
mod subscription;
pub mod support;

pub use documents::DocumentCache;
pub use responses::ResponseCache;
pub use subscription::{NotificationFeed, OrderStatusFeed};

use async_graphql::Schema;
use async_graphql::dataloader::{DataLoader, HashMapCache};
use shared_kernel::{ApiError, Caller};
use std::sync::Arc;

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

pub use root::{Mutation, Query};

/// The edge's own consumers for GraphQL, subscribed to the composed process's bus: the
/// subscriptions' feeds and the kept answers to public catalog queries. Built here, by the edge,
/// not by the composition.
#[derive(Clone)]
pub struct EdgeConsumers {
    pub order_status: OrderStatusFeed,
    pub notifications: NotificationFeed,
    pub responses: ResponseCache,
}

impl EdgeConsumers {
    /// # Errors
    /// The bus refuses a subscription.
    pub async fn subscribe(settings: &crate::config::Settings, composition: &crate::composition::Composition) -> anyhow::Result<Self> {
        let poll = std::time::Duration::from_millis(settings.graphql.subscription_poll_ms.max(100));
        let order_status = OrderStatusFeed::new(poll);
        composition.subscribe(order_status.consumer()).await?;
        let notifications = NotificationFeed::new(poll);
        composition.subscribe(notifications.consumer()).await?;
        let sees_catalog_events = settings.events.bus == crate::config::BusKind::Nats || composition.local_modules.contains(&"catalog");
        let responses = ResponseCache::new(settings, sees_catalog_events);
        if responses.enabled() {
            composition.subscribe(responses.consumer()).await?;
        }
        Ok(Self { order_status, notifications, responses })
    }
}
pub use support::{Modules, NoFields, RequestScope, caller, connection, gql_error, modules, page_request, scope};

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
