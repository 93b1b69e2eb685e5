//! Parsed and validated documents, cached by query text, and automatic persisted queries.
//!
//! Parsing and validating a document costs more than running a small one: a client that sends
//! the same query again (every client does) gets the parsed document from memory, and its
//! validation result too, keyed by the query text, the operation name and the variables (a
//! result depends on them: variable types, complexity). Only documents that parsed and passed
//! the shape limits, and validations that passed, are kept.
//!
//! Automatic persisted queries (Apollo's protocol): a request may carry
//! `extensions.persistedQuery = {version: 1, sha256Hash}` instead of the query text. An unknown
//! hash answers `PersistedQueryNotFound`; the client then sends the text with its hash, which is
//! checked and remembered.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextValidation};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ServerResult, ValidationResult, Variables};
use sha2::Digest as _;
use std::sync::{Arc, Mutex};

/// Longest query text kept; longer ones are parsed every time.
const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The caches, shared by every request of a schema.
#[derive(Clone)]
pub struct DocumentCache {
    documents: moka::sync::Cache<Arc<str>, ExecutableDocument>,
    validations: moka::sync::Cache<String, ValidationResult>,
    /// sha256 (hex) → query text.
    persisted: moka::sync::Cache<String, Arc<str>>,
}

impl DocumentCache {
    /// Keeps at most `entries` of each kind (the least used go first).
    pub fn new(entries: u64) -> Self {
        Self {
            documents: moka::sync::Cache::new(entries),
            validations: moka::sync::Cache::new(entries),
            persisted: moka::sync::Cache::new(entries),
        }
    }

    /// The query text a persisted-query hash in `request` names, when this process knows it.
    pub(super) fn persisted_text(&self, request: &Request) -> Option<Arc<str>> {
        let persisted = PersistedQuery::decode(request.extensions.get("persistedQuery")?)?;
        self.persisted.get(&persisted.sha256_hash.to_ascii_lowercase())
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest { cache: self.clone(), validation_key: Mutex::new(None) })
    }
}

struct PerRequest {
    cache: DocumentCache,
    /// Set by `prepare_request` when the request's validation may be cached.
    validation_key: Mutex<Option<String>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersistedQuery {
    version: u32,
    sha256_hash: String,
}

impl PersistedQuery {
    /// `extensions.persistedQuery`, if it has the protocol's shape.
    fn decode(value: &async_graphql::Value) -> Option<Self> {
        serde_json::from_value(serde_json::to_value(value).ok()?).ok()
    }
}

fn persisted_error(message: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", message);
    error
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(value) = request.extensions.remove("persistedQuery") {
            let persisted = PersistedQuery::decode(&value)
                .ok_or_else(|| ServerError::new("extensions.persistedQuery must be {version: 1, sha256Hash}", None))?;
            if persisted.version != 1 {
                return Err(ServerError::new("only version 1 of persisted queries is supported", None));
            }
            let hash = persisted.sha256_hash.to_ascii_lowercase();
            if request.query.is_empty() {
                let text = self.cache.persisted.get(&hash).ok_or_else(|| persisted_error("PersistedQueryNotFound"))?;
                request.query = text.to_string();
            } else if format!("{:x}", sha2::Sha256::digest(request.query.as_bytes())) != hash {
                return Err(ServerError::new("extensions.persistedQuery.sha256Hash is not the SHA-256 of the query", None));
            } else if request.query.len() <= MAX_QUERY_BYTES {
                self.cache.persisted.insert(hash, Arc::from(request.query.as_str()));
            }
        }
        if !request.query.is_empty() && request.query.len() <= MAX_QUERY_BYTES {
            let variables = serde_json::to_string(&request.variables).unwrap_or_default();
            let key = format!("{}\u{0}{variables}\u{0}{}", request.operation_name.as_deref().unwrap_or_default(), request.query);
            *self.validation_key.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_QUERY_BYTES {
            return next.run(ctx, query, variables).await;
        }
        if let Some(document) = self.cache.documents.get(query) {
            metrics::counter!("graphql_document_cache_total", "result" => "hit").increment(1);
            return Ok(document);
        }
        metrics::counter!("graphql_document_cache_total", "result" => "miss").increment(1);
        let document = next.run(ctx, query, variables).await?;
        self.cache.documents.insert(Arc::from(query), document.clone());
        Ok(document)
    }

    async fn validation(&self, ctx: &ExtensionContext<'_>, next: NextValidation<'_>) -> Result<ValidationResult, Vec<ServerError>> {
        let key = self.validation_key.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(key) = key else { return next.run(ctx).await };
        if let Some(result) = self.cache.validations.get(&key) {
            return Ok(result);
        }
        let result = next.run(ctx).await?;
        self.cache.validations.insert(key, result);
        Ok(result)
    }
}
