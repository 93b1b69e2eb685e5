//! The catalog's read cache: a port, [`CacheStore`], and its two adapters, [`InProcessCache`]
//! (the default) and [`RedisCache`] (shared by every instance, with an in-process level in front).
//!
//! What is cached: products by id, pages of the product list, pages of categories and
//! categories by id. Every entry belongs to a [`Tag`]; a write invalidates the tags it touched
//! (a product's own tag and every product page, or every category entry).
//!
//! **Architecture Invariant:** a read never stores a value a write has replaced. A miss hands out
//! a [`Stamp`] taken *before* the database is read, and [`CacheStore::put`] stores the value only
//! if no invalidation happened since (in process: under the same lock as the invalidation;
//! on Redis: the value carries the tag's generation and is served only while that generation is
//! current). So a write is visible to the next read of the instance that made it (it invalidates
//! after it commits), and to every other instance as soon as it invalidates too: each one does on
//! the catalog's own events (`ProductChangedV1`, `StockChangedV1`, `CategoryCreatedV1`), which
//! every process consumes ([`crate::CacheInvalidator`]). The TTL bounds only what a lost event
//! costs.
//!
//! Stock shown from the cache may lag by that much; it never decides a sale: a reservation is
//! one conditional `UPDATE` on the database.

pub(crate) mod in_process;
mod redis;

pub use self::redis::{RedisCache, RedisCacheSettings};
pub use in_process::InProcessCache;

use catalog_contract::{CategoryView, Page, ProductView};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an entry is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Product(uuid::Uuid),
    /// A page of the product list, by its query (see [`Key::product_page`]).
    ProductPage(String),
    /// A page of the category list, by its query.
    CategoryPage(String),
    Category(uuid::Uuid),
}

/// Longest query text a page key may hold; longer queries are not cached.
const MAX_KEY_TEXT: usize = 300;

impl Key {
    /// The key of a product page, or `None` when the query is too long to be worth a key.
    pub fn product_page(category: Option<uuid::Uuid>, q: Option<&str>, after: Option<&str>, limit: u32) -> Option<Self> {
        let text = format!(
            "c={}&after={}&limit={limit}&q={}",
            category.map(|c| c.to_string()).unwrap_or_default(),
            after.unwrap_or_default(),
            q.unwrap_or_default()
        );
        (text.len() <= MAX_KEY_TEXT).then_some(Self::ProductPage(text))
    }

    /// The key of a category page.
    pub fn category_page(after: Option<&str>, limit: u32) -> Option<Self> {
        let text = format!("after={}&limit={limit}", after.unwrap_or_default());
        (text.len() <= MAX_KEY_TEXT).then_some(Self::CategoryPage(text))
    }

    /// The tag whose invalidation drops this entry.
    pub fn tag(&self) -> Tag {
        match self {
            Self::Product(id) => Tag::Product(*id),
            Self::ProductPage(_) => Tag::ProductPages,
            Self::CategoryPage(_) | Self::Category(_) => Tag::Categories,
        }
    }
}

/// A group of entries invalidated together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    Product(uuid::Uuid),
    /// Every page of the product list (any product write may change any page).
    ProductPages,
    /// Every category entry.
    Categories,
}

impl Tag {
    /// What a write to these products invalidates: each product and every product page.
    pub fn products(ids: impl IntoIterator<Item = uuid::Uuid>) -> Vec<Self> {
        ids.into_iter().map(Self::Product).chain([Self::ProductPages]).collect()
    }
}

/// A cached value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cached {
    Product(ProductView),
    Products(Page<ProductView>),
    Categories(Page<CategoryView>),
    Category(CategoryView),
}

/// What a miss hands out, to give back to [`CacheStore::put`]: the generations seen before the
/// database was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub(crate) local: u64,
    /// The global and the tag's generation on the shared store, when it answered.
    pub(crate) shared: Option<(u64, u64)>,
}

/// A cache look-up.
#[derive(Debug)]
pub enum Lookup {
    Hit(Cached),
    /// Read the database, then [`CacheStore::put`] what it gave with this stamp.
    Miss(Stamp),
}

/// The cache port. Errors never reach a caller: a store that fails answers misses (the
/// database serves), reports itself in [`CacheStore::healthy`] and logs once per outage.
#[async_trait::async_trait]
pub trait CacheStore: Send + Sync + std::fmt::Debug + 'static {
    async fn get(&self, key: &Key) -> Lookup;
    /// Stores `value` read after `stamp` was handed out, unless `key`'s tag was invalidated since.
    async fn put(&self, key: &Key, value: Cached, stamp: Stamp);
    /// Drops every entry under `tags`, on every level. Call after the write commits.
    async fn invalidate(&self, tags: &[Tag]);
    /// Whether every level answers (the in-process one always does).
    async fn healthy(&self) -> bool;
    /// `in_process` or `redis`, for the logs and the readiness report.
    fn kind(&self) -> &'static str;
}

/// How long entries live and how many a process keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// An entry is dropped this long after it was stored, whatever happens: the bound on what a
    /// lost invalidation costs. Zero turns caching off.
    pub ttl: Duration,
    /// Entries kept in this process at most (the least used go first).
    pub max_entries: u64,
}

/// Counts a look-up, for `/metrics`: `cache_lookups_total{cache, level, result}`.
fn count(level: &'static str, result: &'static str) {
    metrics::counter!("cache_lookups_total", "cache" => "catalog", "level" => level, "result" => result).increment(1);
}
