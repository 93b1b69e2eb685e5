//! A read-through cache of single products (`GET /api/catalog/products/{id}`), invalidated by
//! every write this process makes and bounded in age by a TTL.
//!
//! **Architecture Invariant:** a write by this process is visible to its next read: each write
//! path invalidates the products it touched after it commits, and a read stores what it loaded
//! only if no invalidation happened since it began (a generation counter checked under the same
//! lock), so a slow read cannot put back a value a write has replaced. The TTL bounds only what
//! this process cannot see: writes by another catalog instance on the same database.

use catalog_contract::ProductView;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Entries kept at most; past it the cache starts over (a hot set refills at once).
const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub(crate) struct ProductCache {
    ttl: Duration,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    entries: HashMap<uuid::Uuid, (ProductView, Instant)>,
}

impl ProductCache {
    /// `ttl` zero disables the cache.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, inner: RwLock::new(Inner::default()) }
    }

    pub(crate) fn get(&self, id: uuid::Uuid) -> Option<ProductView> {
        if self.ttl.is_zero() {
            return None;
        }
        let inner = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.entries.get(&id).filter(|(_, at)| at.elapsed() < self.ttl).map(|(view, _)| view.clone())
    }

    /// The generation to pass to [`ProductCache::put`]: take it before reading the database.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).generation
    }

    /// Stores `view` as read at `generation`, unless something was invalidated since.
    pub(crate) fn put(&self, view: &ProductView, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.clear();
        }
        inner.entries.insert(view.id.as_uuid(), (view.clone(), Instant::now()));
    }

    /// Forgets `ids` (call after the write commits).
    pub(crate) fn invalidate(&self, ids: impl IntoIterator<Item = uuid::Uuid>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.generation += 1;
        for id in ids {
            inner.entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_kernel::{Currency, Money, ProductId};

    fn view(name: &str) -> ProductView {
        let now = chrono::Utc::now();
        ProductView {
            id: ProductId::from_uuid(uuid::Uuid::nil()),
            sku: "S".into(),
            name: name.into(),
            description: String::new(),
            price: Money::new(1, Currency::EUR),
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

    #[test]
    fn a_read_that_began_before_a_write_does_not_put_back_the_old_value() {
        let cache = ProductCache::new(Duration::from_secs(60));
        let id = uuid::Uuid::nil();
        let before_write = cache.generation();
        cache.invalidate([id]);
        cache.put(&view("old"), before_write);
        assert!(cache.get(id).is_none());
        cache.put(&view("new"), cache.generation());
        assert_eq!(cache.get(id).unwrap().name, "new");
        cache.invalidate([id]);
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_disables_the_cache() {
        let cache = ProductCache::new(Duration::from_millis(1));
        cache.put(&view("x"), cache.generation());
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get(uuid::Uuid::nil()).is_none());
        let off = ProductCache::new(Duration::ZERO);
        off.put(&view("x"), off.generation());
        assert!(off.get(uuid::Uuid::nil()).is_none());
    }
}
