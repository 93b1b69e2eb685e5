//! The in-process adapter: a bounded, TTL-limited map in this process (moka), and the level in
//! front of Redis in [`super::RedisCache`].

use super::{CacheSettings, CacheStore, Cached, Key, Lookup, Stamp, Tag, count};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries in this process. Pages are stored under their tag's epoch, so invalidating every page
/// is one increment (the old ones are never read again and age out).
#[derive(Debug)]
pub struct InProcessCache {
    entries: Option<moka::sync::Cache<(u64, Key), Cached>>,
    /// Bumped by every invalidation, under the write lock; a put checks it under the read lock.
    generation: RwLock<u64>,
    product_pages: AtomicU64,
    categories: AtomicU64,
}

impl InProcessCache {
    pub fn new(settings: CacheSettings) -> Self {
        let entries = (!settings.ttl.is_zero())
            .then(|| moka::sync::Cache::builder().max_capacity(settings.max_entries).time_to_live(settings.ttl).build());
        Self { entries, generation: RwLock::new(0), product_pages: AtomicU64::new(0), categories: AtomicU64::new(0) }
    }

    fn epoch(&self, key: &Key) -> u64 {
        match key.tag() {
            Tag::Product(_) => 0,
            Tag::ProductPages => self.product_pages.load(Ordering::Acquire),
            Tag::Categories => self.categories.load(Ordering::Acquire),
        }
    }

    fn generation(&self) -> u64 {
        *self.generation.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry, without counting the look-up (the Redis adapter counts its own).
    pub(super) fn lookup(&self, key: &Key) -> Lookup {
        // The stamp is taken first: an invalidation between it and the read below makes the
        // caller's later put a no-op, never a stale entry.
        let stamp = Stamp { local: self.generation(), shared: None };
        match &self.entries {
            Some(entries) => match entries.get(&(self.epoch(key), key.clone())) {
                Some(value) => Lookup::Hit(value),
                None => Lookup::Miss(stamp),
            },
            None => Lookup::Miss(stamp),
        }
    }

    pub(super) fn store(&self, key: &Key, value: Cached, stamp: Stamp) {
        let Some(entries) = &self.entries else { return };
        let generation = self.generation.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *generation == stamp.local {
            entries.insert((self.epoch(key), key.clone()), value);
        }
    }

    pub(super) fn drop_tags(&self, tags: &[Tag]) {
        let Some(entries) = &self.entries else { return };
        let mut generation = self.generation.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *generation += 1;
        for tag in tags {
            match tag {
                Tag::Product(id) => entries.invalidate(&(0, Key::Product(*id))),
                Tag::ProductPages => drop(self.product_pages.fetch_add(1, Ordering::AcqRel)),
                Tag::Categories => drop(self.categories.fetch_add(1, Ordering::AcqRel)),
            }
        }
    }
}

#[async_trait::async_trait]
impl CacheStore for InProcessCache {
    async fn get(&self, key: &Key) -> Lookup {
        let lookup = self.lookup(key);
        count("in_process", if matches!(lookup, Lookup::Hit(_)) { "hit" } else { "miss" });
        lookup
    }

    async fn put(&self, key: &Key, value: Cached, stamp: Stamp) {
        self.store(key, value, stamp);
    }

    async fn invalidate(&self, tags: &[Tag]) {
        self.drop_tags(tags);
    }

    async fn healthy(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "in_process"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn product(name: &str) -> catalog_contract::ProductView {
        let now = chrono::DateTime::UNIX_EPOCH;
        catalog_contract::ProductView {
            id: catalog_contract::ProductId::from_uuid(uuid::Uuid::nil()),
            sku: "S".into(),
            name: name.into(),
            description: String::new(),
            price: shared_kernel::Money::new(1, shared_kernel::Currency::EUR),
            category_id: None,
            stock_available: 1,
            stock_on_hand: 1,
            stock_reserved: 0,
            units_sold: 0,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn miss(lookup: Lookup) -> Stamp {
        match lookup {
            Lookup::Miss(stamp) => stamp,
            Lookup::Hit(value) => panic!("expected a miss, got {value:?}"),
        }
    }

    fn hit(lookup: Lookup) -> Cached {
        match lookup {
            Lookup::Hit(value) => value,
            Lookup::Miss(_) => panic!("expected a hit"),
        }
    }

    #[tokio::test]
    async fn a_read_that_began_before_an_invalidation_is_not_stored() {
        let cache = InProcessCache::new(CacheSettings { ttl: Duration::from_secs(60), max_entries: 100 });
        let key = Key::Product(uuid::Uuid::nil());
        let before_write = miss(cache.get(&key).await);
        cache.invalidate(&Tag::products([uuid::Uuid::nil()])).await;
        cache.put(&key, Cached::Product(product("old")), before_write).await;
        let after_write = miss(cache.get(&key).await);
        cache.put(&key, Cached::Product(product("new")), after_write).await;
        assert_eq!(hit(cache.get(&key).await), Cached::Product(product("new")));
        cache.invalidate(&Tag::products([uuid::Uuid::nil()])).await;
        miss(cache.get(&key).await);
    }

    #[tokio::test]
    async fn a_product_write_drops_every_product_page_and_only_those() {
        let cache = InProcessCache::new(CacheSettings { ttl: Duration::from_secs(60), max_entries: 100 });
        let page = Key::product_page(None, None, None, 20).expect("a short key");
        let categories = Key::category_page(None, 20).expect("a short key");
        let stamp = miss(cache.get(&page).await);
        cache.put(&page, Cached::Products(catalog_contract::Page { items: vec![product("a")], next_cursor: None }), stamp).await;
        let stamp = miss(cache.get(&categories).await);
        cache.put(&categories, Cached::Categories(catalog_contract::Page { items: vec![], next_cursor: None }), stamp).await;
        hit(cache.get(&page).await);
        cache.invalidate(&Tag::products([uuid::Uuid::now_v7()])).await;
        miss(cache.get(&page).await);
        hit(cache.get(&categories).await);
        cache.invalidate(&[Tag::Categories]).await;
        miss(cache.get(&categories).await);
    }

    #[tokio::test]
    async fn entries_expire_and_a_zero_ttl_disables_the_cache() {
        let key = Key::Product(uuid::Uuid::nil());
        let cache = InProcessCache::new(CacheSettings { ttl: Duration::from_millis(20), max_entries: 100 });
        let stamp = miss(cache.get(&key).await);
        cache.put(&key, Cached::Product(product("x")), stamp).await;
        hit(cache.get(&key).await);
        tokio::time::sleep(Duration::from_millis(40)).await;
        miss(cache.get(&key).await);
        let off = InProcessCache::new(CacheSettings { ttl: Duration::ZERO, max_entries: 100 });
        let stamp = miss(off.get(&key).await);
        off.put(&key, Cached::Product(product("x")), stamp).await;
        miss(off.get(&key).await);
    }

    #[test]
    fn a_long_query_gets_no_key() {
        assert!(Key::product_page(None, Some(&"x".repeat(400)), None, 20).is_none());
        assert!(Key::product_page(None, Some("books"), None, 20).is_some());
    }
}
