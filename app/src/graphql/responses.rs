//! Answers to public catalog queries, kept in this process and sent again without running the
//! engine until the catalog changes.
//!
//! Most GraphQL traffic is the same public query again: a product page, a list. Its answer
//! depends only on the catalog's data, the query and its variables, so it is kept by the
//! request's body (its exact bytes) and sent again as it was.
//!
//! **What is kept:** the answer to a `POST /graphql` with a JSON body from an anonymous caller
//! (no token), whose operation is a query and whose root fields all read the catalog
//! (`product`, `products`, `categories`, `__typename`), when it has no errors. A caller with a
//! token, a mutation or any other field runs through the engine as before.
//!
//! **What drops it:** every catalog event on this process's bus (a product, its stock or a
//! category changed, on whichever instance), every write this process answers (a REST `POST`,
//! `PUT`, `PATCH` or `DELETE`, at once when it is answered; a GraphQL mutation), and
//! `cache.ttl_ms` after it was kept, the same bound as the catalog's own cache. An answer
//! computed while any of these happened is not kept: a generation is read before the query runs
//! and checked when its answer is stored.

use crate::config::Settings;
use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use catalog_contract::events::{CategoryCreatedV1, ProductChangedV1, StockChangedV1};
use shared_kernel::events::{Consumer, EventEnvelope, EventHandler, HandlerError, IntegrationEvent, NoDeadLetters};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::documents::DocumentCache;

/// Root fields whose answers depend on the catalog's data alone.
const CATALOG_FIELDS: &[&str] = &["product", "products", "categories", "__typename"];

/// Longest request body kept (as the document cache's longest query).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// What running a request's operation does, as far as the cache is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A query of catalog fields only: its answer may be kept.
    CatalogRead,
    /// Reads something else (or cannot be told): runs every time.
    OtherRead,
    /// A mutation: what is kept is dropped once it ran.
    Write,
}

/// The kept answers of one process (cheap to clone: a handle).
#[derive(Clone)]
pub struct ResponseCache {
    inner: Option<Arc<Inner>>,
    documents: DocumentCache,
}

struct Inner {
    answers: moka::sync::Cache<Bytes, Answer>,
    /// Query text → the kind of each of its operations (`None`: the only one).
    kinds: moka::sync::Cache<Arc<str>, Operations>,
    generation: AtomicU64,
    /// `graphql_response_cache_total{result="hit"}` and `{result="miss"}`, registered on first
    /// use (after the process's recorder is installed), not looked up by name per request.
    counters: std::sync::OnceLock<[metrics::Counter; 2]>,
}

/// The kind of each operation of a document, by name (`None`: its only, unnamed one).
type Operations = Arc<[(Option<String>, Kind)]>;

#[derive(Clone)]
struct Answer {
    generation: u64,
    content_type: HeaderValue,
    body: Bytes,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("enabled", &self.inner.is_some()).finish()
    }
}

impl ResponseCache {
    pub const CONSUMER: &'static str = "graphql.responses";

    /// As configured: `graphql.response_cache_max_bytes` of answers at most (0: none kept),
    /// each for `cache.ttl_ms` at most (0: none kept). A process that does not see the catalog's
    /// events (`sees_catalog_events`: the catalog runs here, or events go over NATS) keeps none:
    /// it could not tell when an answer went stale.
    pub fn new(settings: &Settings, sees_catalog_events: bool) -> Self {
        let max_bytes = if sees_catalog_events { settings.graphql.response_cache_max_bytes } else { 0 };
        Self::with_limits(max_bytes, settings.cache_ttl(), DocumentCache::new(1_000))
    }

    pub(crate) fn with_limits(max_bytes: u64, ttl: std::time::Duration, documents: DocumentCache) -> Self {
        let inner = (max_bytes > 0 && !ttl.is_zero()).then(|| {
            Arc::new(Inner {
                answers: moka::sync::Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(|key: &Bytes, answer: &Answer| u32::try_from(key.len() + answer.body.len()).unwrap_or(u32::MAX))
                    .time_to_live(ttl)
                    .build(),
                kinds: moka::sync::Cache::new(1_000),
                generation: AtomicU64::new(0),
                counters: std::sync::OnceLock::new(),
            })
        });
        Self { inner, documents }
    }

    /// The parsed documents and persisted queries the schema shares with this cache.
    pub fn documents(&self) -> DocumentCache {
        self.documents.clone()
    }

    /// Whether answers are kept at all.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The kept answer to `body`, if it is still current.
    pub fn lookup(&self, body: &Bytes) -> Option<Response> {
        let inner = self.inner.as_ref()?;
        let found = inner.answers.get(body).filter(|answer| answer.generation == inner.generation.load(Ordering::Acquire));
        let [hits, misses] = inner.counters.get_or_init(|| {
            [
                metrics::counter!("graphql_response_cache_total", "result" => "hit"),
                metrics::counter!("graphql_response_cache_total", "result" => "miss"),
            ]
        });
        if found.is_some() { hits } else { misses }.increment(1);
        let answer = found?;
        let mut response = (StatusCode::OK, answer.body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, answer.content_type);
        response.headers_mut().insert(HeaderName::from_static("x-cache"), HeaderValue::from_static("hit"));
        Some(response)
    }

    /// The generation an answer computed from now on is stored under.
    pub fn generation(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.generation.load(Ordering::Acquire))
    }

    /// What `request` does: a catalog read, another read, or a write.
    pub fn kind(&self, request: &async_graphql::Request) -> Kind {
        let Some(inner) = &self.inner else { return Kind::OtherRead };
        let persisted;
        let text: &str = if request.query.is_empty() {
            match self.documents.persisted_text(request) {
                Some(found) => {
                    persisted = found;
                    &persisted
                }
                None => return Kind::OtherRead,
            }
        } else {
            &request.query
        };
        // Looked up by the text itself: it is copied only when first classified.
        let kinds = match inner.kinds.get(text) {
            Some(kinds) => kinds,
            None => {
                let kinds: Operations = classify(text).into();
                if text.len() <= MAX_BODY_BYTES {
                    inner.kinds.insert(Arc::from(text), kinds.clone());
                }
                kinds
            }
        };
        // Without a name, the engine runs the only operation there is.
        let wanted = request.operation_name.as_deref();
        let chosen = match (wanted, &kinds[..]) {
            (None, [(_, kind)]) => Some(*kind),
            _ => kinds.iter().find(|(name, _)| name.is_none() || name.as_deref() == wanted).map(|(_, kind)| *kind),
        };
        chosen.unwrap_or(Kind::OtherRead)
    }

    /// Keeps `response` (the answer to `body`, computed from `generation` on) unless the catalog
    /// changed meanwhile; gives the response back either way.
    pub async fn keep(&self, body: Bytes, generation: u64, response: Response) -> Response {
        let Some(inner) = &self.inner else { return response };
        if body.len() > MAX_BODY_BYTES || response.status() != StatusCode::OK {
            return response;
        }
        let (parts, answer) = response.into_parts();
        let Ok(answer) = axum::body::to_bytes(answer, usize::MAX).await else {
            return Response::from_parts(parts, axum::body::Body::empty());
        };
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        // Only the content type is sent again: an answer with any other header is not kept.
        if let Some(content_type) = content_type.filter(|_| parts.headers.len() == 1)
            && inner.generation.load(Ordering::Acquire) == generation
        {
            inner.answers.insert(body, Answer { generation, content_type, body: answer.clone() });
            metrics::counter!("graphql_response_cache_total", "result" => "kept").increment(1);
        }
        Response::from_parts(parts, axum::body::Body::from(answer))
    }

    /// Drops every kept answer: the catalog changed, or may have.
    pub fn forget(&self) {
        if let Some(inner) = &self.inner {
            inner.generation.fetch_add(1, Ordering::AcqRel);
            inner.answers.invalidate_all();
        }
    }

    /// The consumer that drops the kept answers on the catalog's events: one per process, since
    /// each has its own answers.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            name: Self::CONSUMER.to_owned(),
            event_types: vec![ProductChangedV1::TYPE.to_owned(), StockChangedV1::TYPE.to_owned(), CategoryCreatedV1::TYPE.to_owned()],
            handler: Arc::new(self.clone()),
            dead_letters: Arc::new(NoDeadLetters),
            each_process: true,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for ResponseCache {
    async fn handle(&self, _event: &EventEnvelope) -> Result<(), HandlerError> {
        self.forget();
        Ok(())
    }
}

/// The kind of each operation of `query` (a text that does not parse: none, so another read).
fn classify(query: &str) -> Vec<(Option<String>, Kind)> {
    let Ok(document) = async_graphql::parser::parse_query(query) else { return Vec::new() };
    let kind = |operation: &async_graphql::parser::types::OperationDefinition| match operation.ty {
        OperationType::Mutation => Kind::Write,
        OperationType::Subscription => Kind::OtherRead,
        OperationType::Query => {
            let catalog_only = operation.selection_set.node.items.iter().all(|selection| match &selection.node {
                Selection::Field(field) => CATALOG_FIELDS.contains(&field.node.name.node.as_str()),
                // A fragment at the root may hold anything: not worth following.
                Selection::FragmentSpread(_) | Selection::InlineFragment(_) => false,
            });
            if catalog_only { Kind::CatalogRead } else { Kind::OtherRead }
        }
    };
    match &document.operations {
        DocumentOperations::Single(operation) => vec![(None, kind(&operation.node))],
        DocumentOperations::Multiple(operations) => {
            operations.iter().map(|(name, operation)| (Some(name.to_string()), kind(&operation.node))).collect()
        }
    }
}

/// Middleware on the public router: once a REST write is answered, what is kept may be stale.
/// GraphQL mutations are handled by [`super::execute`]; sign-in and token routes change no
/// catalog data.
pub async fn forget_after_writes(
    axum::extract::State(cache): axum::extract::State<ResponseCache>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let write = cache.enabled() && !request.method().is_safe() && {
        let path = request.uri().path();
        path != "/graphql" && !is_auth_route(path)
    };
    let response = next.run(request).await;
    if write {
        cache.forget();
    }
    response
}

/// `/api/auth/...` or `/api/v{N}/auth/...`.
fn is_auth_route(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else { return false };
    let rest = match rest.split_once('/') {
        Some((version, rest)) if version.len() > 1 && version.starts_with('v') && version[1..].bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => rest,
    };
    rest.starts_with("auth/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cache() -> ResponseCache {
        ResponseCache::with_limits(1 << 20, Duration::from_secs(60), DocumentCache::new(10))
    }

    fn request(query: &str) -> async_graphql::Request {
        async_graphql::Request::new(query)
    }

    fn answer(text: &'static str) -> Response {
        let mut response = text.into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/graphql-response+json"));
        response
    }

    async fn text(response: Response) -> String {
        String::from_utf8(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
    }

    #[test]
    fn only_queries_of_catalog_fields_are_catalog_reads() {
        let cache = cache();
        assert_eq!(cache.kind(&request("{ product(id: \"x\") { id name } }")), Kind::CatalogRead);
        assert_eq!(
            cache.kind(&request("query Q { a: products(first: 2) { edges { node { id } } } categories { __typename } }")),
            Kind::CatalogRead
        );
        assert_eq!(cache.kind(&request("{ me { id } }")), Kind::OtherRead);
        assert_eq!(cache.kind(&request("{ product(id: \"x\") { id } me { id } }")), Kind::OtherRead);
        assert_eq!(cache.kind(&request("{ ...F } fragment F on Query { product(id: \"x\") { id } }")), Kind::OtherRead);
        assert_eq!(cache.kind(&request("{ __schema { types { name } } }")), Kind::OtherRead);
        assert_eq!(cache.kind(&request("subscription { orderStatus(orderId: \"x\") { status } }")), Kind::OtherRead);
        assert_eq!(cache.kind(&request("mutation { createCategory(name: \"A\") { id } }")), Kind::Write);
        assert_eq!(cache.kind(&request("{ product(")), Kind::OtherRead);
    }

    #[test]
    fn a_named_operation_is_judged_on_its_own() {
        let cache = cache();
        let text = "query Read { products { edges { node { id } } } } mutation Write { createCategory(name: \"A\") { id } }";
        assert_eq!(cache.kind(&request(text).operation_name("Read")), Kind::CatalogRead);
        assert_eq!(cache.kind(&request(text).operation_name("Write")), Kind::Write);
        assert_eq!(cache.kind(&request(text)), Kind::OtherRead, "no operation chosen: the engine refuses it");
    }

    #[tokio::test]
    async fn a_kept_answer_is_sent_again_until_the_catalog_changes() {
        let cache = cache();
        let body = Bytes::from_static(br#"{"query":"{ products { edges { node { id } } } }"}"#);
        assert!(cache.lookup(&body).is_none());
        let kept = cache.keep(body.clone(), cache.generation(), answer("first")).await;
        assert_eq!(text(kept).await, "first", "the response is passed on as it was");
        let again = cache.lookup(&body).expect("kept");
        assert_eq!(again.headers()[header::CONTENT_TYPE], "application/graphql-response+json");
        assert_eq!(again.headers()["x-cache"], "hit");
        assert_eq!(text(again).await, "first");
        cache.forget();
        assert!(cache.lookup(&body).is_none(), "dropped when the catalog changes");
    }

    #[tokio::test]
    async fn an_answer_computed_across_a_change_is_not_kept() {
        let cache = cache();
        let body = Bytes::from_static(br#"{"query":"{ categories { edges { node { id } } } }"}"#);
        let before = cache.generation();
        cache.forget();
        cache.keep(body.clone(), before, answer("stale")).await;
        assert!(cache.lookup(&body).is_none());
        let mut failed = answer("refused");
        *failed.status_mut() = StatusCode::BAD_REQUEST;
        cache.keep(body.clone(), cache.generation(), failed).await;
        assert!(cache.lookup(&body).is_none(), "only 200 answers are kept");
    }

    #[tokio::test]
    async fn a_catalog_event_drops_what_is_kept() {
        let cache = cache();
        let body = Bytes::from_static(b"{}");
        cache.keep(body.clone(), cache.generation(), answer("kept")).await;
        assert!(cache.lookup(&body).is_some());
        let created =
            CategoryCreatedV1 { category_id: shared_kernel::CategoryId::new(), name: "Books".to_owned(), created_at: chrono::Utc::now() };
        let event = EventEnvelope::wrap(&created, chrono::Utc::now(), None).unwrap();
        cache.handle(&event).await.unwrap();
        assert!(cache.lookup(&body).is_none());
    }

    #[test]
    fn nothing_is_kept_when_turned_off() {
        let off = ResponseCache::with_limits(0, Duration::from_secs(60), DocumentCache::new(10));
        assert!(!off.enabled());
        assert_eq!(off.kind(&request("{ products { edges { node { id } } } }")), Kind::OtherRead);
        let no_ttl = ResponseCache::with_limits(1 << 20, Duration::ZERO, DocumentCache::new(10));
        assert!(!no_ttl.enabled());
    }

    #[test]
    fn sign_in_routes_are_told_apart() {
        assert!(is_auth_route("/api/auth/login"));
        assert!(is_auth_route("/api/v1/auth/refresh"));
        assert!(!is_auth_route("/api/v1/catalog/products"));
        assert!(!is_auth_route("/api/orders"));
        assert!(!is_auth_route("/api/vx/auth/login"));
    }
}
