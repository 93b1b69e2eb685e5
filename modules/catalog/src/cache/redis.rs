//! The Redis adapter: entries shared by every catalog instance, with this process's
//! [`InProcessCache`] in front (a hit there costs no round trip).
//!
//! Keys, under `<prefix>:catalog:`:
//! - `gen` and `gen:<tag>` (`gen:product:<id>`, `gen:pages`, `gen:categories`): generations,
//!   counters without expiry, seeded with the current time in microseconds when absent (so a
//!   counter lost to eviction or a flush never comes back at a value an old entry carries);
//! - `v:<key>` (`v:product:<id>`, `v:pages:<query>`, `v:categories:<query>`,
//!   `v:category:<id>`): `<global gen>:<tag gen>\n<JSON>`, with the TTL.
//!
//! A read takes the two generations and the entry in one `MGET` and serves the entry only if
//! both match; invalidating is `INCR` of the tag's generation. So a value read from the database
//! before a write, and stored after it, is never served (its generation is already old), with
//! no lock and no script. Every instance increments on the catalog's events too, so a writer
//! that died between its commit and its `INCR` is covered.
//!
//! When Redis fails, reads go to the in-process level and the database, the failure is logged
//! once, and Redis is tried again after a second. Invalidations that could not be sent are kept
//! (up to [`MAX_PENDING`] tags; past that, the global generation is bumped instead) and sent
//! before the next read from Redis, so an outage never brings a replaced value back.

use super::{CacheSettings, CacheStore, Cached, InProcessCache, Key, Lookup, Stamp, Tag, count};
use redis::aio::ConnectionManager;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Invalidations kept while Redis is away, at most.
const MAX_PENDING: usize = 10_000;
/// How long Redis is left alone after it failed.
const BACK_OFF: Duration = Duration::from_secs(1);

/// Where Redis is and how patiently to use it.
#[derive(Debug, Clone)]
pub struct RedisCacheSettings {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS).
    pub url: String,
    /// The first part of every key, so several deployments can share a server.
    pub key_prefix: String,
    /// Each command's time limit: past it the database answers instead.
    pub timeout: Duration,
}

pub struct RedisCache {
    near: InProcessCache,
    connection: ConnectionManager,
    prefix: String,
    ttl_ms: u64,
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Set while Redis is failing: not tried again before this instant.
    down_until: Option<Instant>,
    /// Tags whose invalidation has not reached Redis.
    pending: HashSet<Tag>,
    /// More than [`MAX_PENDING`] were lost: bump the global generation.
    overflowed: bool,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache").field("prefix", &self.prefix).field("ttl_ms", &self.ttl_ms).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl RedisCache {
    /// Connects lazily: a Redis that is down at start-up is a degraded cache, not a failed start.
    ///
    /// # Errors
    /// A URL that does not parse.
    pub fn new(redis: &RedisCacheSettings, settings: CacheSettings) -> Result<Self, String> {
        let client = redis::Client::open(redis.url.as_str()).map_err(|error| format!("cache.redis_url: {error}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(redis.timeout))
            .set_response_timeout(Some(redis.timeout))
            .set_number_of_retries(1);
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|error| format!("cannot set up the Redis client: {error}"))?;
        Ok(Self {
            near: InProcessCache::new(settings),
            connection,
            prefix: format!("{}:catalog", redis.key_prefix),
            ttl_ms: u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX),
            timeout: redis.timeout,
            state: Mutex::new(State::default()),
        })
    }

    fn global_key(&self) -> String {
        format!("{}:gen", self.prefix)
    }

    fn tag_key(&self, tag: &Tag) -> String {
        match tag {
            Tag::Product(id) => format!("{}:gen:product:{id}", self.prefix),
            Tag::ProductPages => format!("{}:gen:pages", self.prefix),
            Tag::Categories => format!("{}:gen:categories", self.prefix),
        }
    }

    fn value_key(&self, key: &Key) -> String {
        match key {
            Key::Product(id) => format!("{}:v:product:{id}", self.prefix),
            Key::ProductPage(text) => format!("{}:v:pages:{text}", self.prefix),
            Key::CategoryPage(text) => format!("{}:v:categories:{text}", self.prefix),
            Key::Category(id) => format!("{}:v:category:{id}", self.prefix),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether Redis may be tried now.
    fn usable(&self) -> bool {
        self.state().down_until.is_none_or(|until| Instant::now() >= until)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, Failure> {
        let mut connection = self.connection.clone();
        let outcome = tokio::time::timeout(self.timeout, command.query_async::<T>(&mut connection)).await;
        let result = match outcome {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => Err(Failure::Timeout(self.timeout)),
        };
        self.record(result.as_ref().err());
        result
    }

    async fn run_pipeline(&self, pipeline: &redis::Pipeline) -> Result<(), Failure> {
        let mut connection = self.connection.clone();
        let outcome = tokio::time::timeout(self.timeout, pipeline.query_async::<()>(&mut connection)).await;
        let result = match outcome {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => Err(Failure::Timeout(self.timeout)),
        };
        self.record(result.as_ref().err());
        result
    }

    /// Notes an outcome: the first failure of an outage is logged, and so is the recovery.
    fn record(&self, failure: Option<&Failure>) {
        let mut state = self.state();
        match failure {
            Some(failure) => {
                if state.down_until.is_none() {
                    tracing::warn!(error = %failure, "the Redis cache is failing: reads go to the database until it answers");
                }
                state.down_until = Some(Instant::now() + BACK_OFF);
                count("redis", "error");
            }
            None if state.down_until.is_some() => {
                state.down_until = None;
                tracing::info!("the Redis cache answers again");
            }
            None => {}
        }
    }

    /// Sends the invalidations Redis missed. `false`: it still fails (do not read from it).
    async fn catch_up(&self) -> bool {
        let (tags, overflowed) = {
            let state = self.state();
            if state.pending.is_empty() && !state.overflowed {
                return true;
            }
            (state.pending.iter().copied().collect::<Vec<_>>(), state.overflowed)
        };
        let mut keys: Vec<String> = tags.iter().map(|tag| self.tag_key(tag)).collect();
        if overflowed {
            keys.push(self.global_key());
        }
        if self.run_pipeline(&bump(&keys)).await.is_err() {
            return false;
        }
        let mut state = self.state();
        for tag in &tags {
            state.pending.remove(tag);
        }
        if overflowed {
            state.overflowed = false;
        }
        true
    }

    fn keep_pending(&self, tags: &[Tag]) {
        let mut state = self.state();
        state.pending.extend(tags.iter().copied());
        if state.pending.len() > MAX_PENDING {
            state.pending.clear();
            state.overflowed = true;
        }
    }

    /// Seeds missing generations; the value is not served this time.
    async fn seed(&self, keys: &[String]) {
        let mut pipeline = redis::pipe();
        for key in keys {
            seed(&mut pipeline, key);
        }
        let _ = self.run_pipeline(&pipeline).await;
    }

    fn decode(raw: &[u8], global: u64, tag: u64) -> Option<Cached> {
        let newline = raw.iter().position(|byte| *byte == b'\n')?;
        let header = std::str::from_utf8(&raw[..newline]).ok()?;
        let (stored_global, stored_tag) = header.split_once(':')?;
        if stored_global.parse::<u64>().ok()? != global || stored_tag.parse::<u64>().ok()? != tag {
            return None;
        }
        serde_json::from_slice(&raw[newline + 1..]).ok()
    }
}

/// A generation that is absent starts at the current time in microseconds: above any value it
/// held before it was lost, so an old entry never matches it again.
fn seed(pipeline: &mut redis::Pipeline, key: &str) {
    pipeline.cmd("SET").arg(key).arg(chrono::Utc::now().timestamp_micros()).arg("NX").ignore();
}

/// Moves generations on (seeding them first, for the same reason).
fn bump(keys: &[String]) -> redis::Pipeline {
    let mut pipeline = redis::pipe();
    for key in keys {
        seed(&mut pipeline, key);
        pipeline.cmd("INCR").arg(key).ignore();
    }
    pipeline
}

#[async_trait::async_trait]
impl CacheStore for RedisCache {
    async fn get(&self, key: &Key) -> Lookup {
        let stamp = match self.near.lookup(key) {
            Lookup::Hit(value) => {
                count("in_process", "hit");
                return Lookup::Hit(value);
            }
            Lookup::Miss(stamp) => stamp,
        };
        count("in_process", "miss");
        if !self.usable() || !self.catch_up().await {
            count("redis", "skipped");
            return Lookup::Miss(stamp);
        }
        let (global_key, tag_key) = (self.global_key(), self.tag_key(&key.tag()));
        let mut read = redis::cmd("MGET");
        read.arg(&global_key).arg(&tag_key).arg(self.value_key(key));
        let (global, tag, value) = match self.run::<(Option<u64>, Option<u64>, Option<Vec<u8>>)>(&read).await {
            Ok(found) => found,
            Err(_) => return Lookup::Miss(stamp),
        };
        let (Some(global), Some(tag)) = (global, tag) else {
            let missing: Vec<String> = [(global, global_key), (tag, tag_key)]
                .into_iter()
                .filter_map(|(generation, key)| generation.is_none().then_some(key))
                .collect();
            self.seed(&missing).await;
            count("redis", "miss");
            return Lookup::Miss(stamp);
        };
        if let Some(cached) = value.as_deref().and_then(|raw| Self::decode(raw, global, tag)) {
            count("redis", "hit");
            self.near.store(key, cached.clone(), stamp);
            return Lookup::Hit(cached);
        }
        count("redis", "miss");
        Lookup::Miss(Stamp { local: stamp.local, shared: Some((global, tag)) })
    }

    async fn put(&self, key: &Key, value: Cached, stamp: Stamp) {
        let encoded = stamp.shared.and_then(|(global, tag)| {
            let json = serde_json::to_vec(&value).ok()?;
            let mut raw = format!("{global}:{tag}\n").into_bytes();
            raw.extend_from_slice(&json);
            Some(raw)
        });
        self.near.store(key, value, stamp);
        if let Some(raw) = encoded
            && self.usable()
        {
            let _ = self.run::<()>(redis::cmd("SET").arg(self.value_key(key)).arg(raw).arg("PX").arg(self.ttl_ms.max(1))).await;
        }
    }

    async fn invalidate(&self, tags: &[Tag]) {
        // Redis first, then this process: a read here after both cannot meet the old value on
        // either level.
        let sent = self.usable()
            && self.catch_up().await
            && self.run_pipeline(&bump(&tags.iter().map(|tag| self.tag_key(tag)).collect::<Vec<_>>())).await.is_ok();
        if !sent {
            self.keep_pending(tags);
        }
        self.near.drop_tags(tags);
    }

    async fn healthy(&self) -> bool {
        self.run::<String>(&redis::cmd("PING")).await.is_ok()
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::in_process::tests::product;

    fn settings(url: &str, prefix: &str) -> RedisCacheSettings {
        RedisCacheSettings { url: url.to_owned(), key_prefix: prefix.to_owned(), timeout: Duration::from_millis(200) }
    }

    fn cache_settings() -> CacheSettings {
        CacheSettings { ttl: Duration::from_secs(60), max_entries: 100 }
    }

    /// Two instances on one Redis server, as two catalog processes would be.
    fn pair() -> Option<(RedisCache, RedisCache)> {
        let server = cleave_test_support::redis()?;
        let prefix = cleave_test_support::nats::unique_prefix();
        let one = RedisCache::new(&settings(&server.url, &prefix), cache_settings()).expect("a client");
        let two = RedisCache::new(&settings(&server.url, &prefix), cache_settings()).expect("a client");
        Some((one, two))
    }

    /// A fresh instance (an empty in-process level) on `of`'s server and key prefix.
    fn another_instance(of: &RedisCache) -> RedisCache {
        let url = &cleave_test_support::redis().expect("a server").url;
        RedisCache::new(&settings(url, of.prefix.trim_end_matches(":catalog")), cache_settings()).expect("a client")
    }

    async fn miss(cache: &RedisCache, key: &Key) -> Stamp {
        match cache.get(key).await {
            Lookup::Miss(stamp) => stamp,
            Lookup::Hit(value) => panic!("expected a miss, got {value:?}"),
        }
    }

    /// A miss that has seen the shared generations (the first look-up of a tag only seeds them).
    async fn shared_miss(cache: &RedisCache, key: &Key) -> Stamp {
        let stamp = miss(cache, key).await;
        if stamp.shared.is_some() { stamp } else { miss(cache, key).await }
    }

    #[tokio::test]
    async fn an_entry_stored_by_one_instance_is_served_to_another() {
        let Some((one, two)) = pair() else { return };
        assert!(one.healthy().await, "the test's Redis answers");
        let id = uuid::Uuid::now_v7();
        let key = Key::Product(id);
        let stamp = shared_miss(&one, &key).await;
        one.put(&key, Cached::Product(product("shared")), stamp).await;
        match two.get(&key).await {
            Lookup::Hit(Cached::Product(view)) => assert_eq!(view.name, "shared"),
            other => panic!("the second instance should read the first one's entry from Redis: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_value_read_before_a_write_elsewhere_is_never_served_from_redis() {
        let Some((one, two)) = pair() else { return };
        let id = uuid::Uuid::now_v7();
        let key = Key::Product(id);
        // Instance one reads the database (the old value) ...
        let before_write = shared_miss(&one, &key).await;
        // ... instance two writes and invalidates ...
        two.invalidate(&Tag::products([id])).await;
        // ... and one stores what it read after that.
        one.put(&key, Cached::Product(product("old")), before_write).await;
        // Redis holds it under a generation that is no longer current: nobody else gets it.
        let third = another_instance(&one);
        assert!(matches!(third.get(&key).await, Lookup::Miss(_)), "a replaced value was served from Redis");
        // One's own level holds it until the event reaches it, which invalidates both levels.
        one.invalidate(&Tag::products([id])).await;
        assert!(matches!(one.get(&key).await, Lookup::Miss(_)));
        // A read after the write is stored and shared.
        let after = shared_miss(&one, &key).await;
        one.put(&key, Cached::Product(product("new")), after).await;
        match two.get(&key).await {
            Lookup::Hit(Cached::Product(view)) => assert_eq!(view.name, "new"),
            other => panic!("expected the new value: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_product_write_drops_the_shared_pages() {
        let Some((one, two)) = pair() else { return };
        let page = Key::product_page(None, None, None, 20).expect("a key");
        let stamp = shared_miss(&one, &page).await;
        one.put(&page, Cached::Products(catalog_contract::Page { items: vec![product("a")], next_cursor: None }), stamp).await;
        assert!(matches!(two.get(&page).await, Lookup::Hit(_)));
        one.invalidate(&Tag::products([uuid::Uuid::now_v7()])).await;
        let fresh = another_instance(&one);
        assert!(matches!(fresh.get(&page).await, Lookup::Miss(_)), "a page survived a product write");
    }

    #[tokio::test]
    async fn while_redis_is_down_reads_miss_quickly_and_invalidations_are_sent_when_it_is_back() {
        let Some(mut server) = cleave_test_support::redis::OwnRedisServer::start() else { return };
        let cache = RedisCache::new(&settings(&server.url(), "outage"), cache_settings()).expect("a client");
        let key = Key::Product(uuid::Uuid::now_v7());
        let stamp = shared_miss(&cache, &key).await;
        cache.put(&key, Cached::Product(product("before")), stamp).await;
        server.stop();
        assert!(!cache.healthy().await);
        cache.invalidate(&Tag::products([uuid::Uuid::nil()])).await;
        let started = Instant::now();
        for _ in 0..20 {
            // The in-process level was invalidated for nil only: this key is still served here.
            let _ = cache.get(&Key::Product(uuid::Uuid::now_v7())).await;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "reads waited on a dead Redis: {:?}", started.elapsed());
        assert!(!cache.state().pending.is_empty(), "the invalidation made while Redis was down is kept");
        server.restart();
        tokio::time::sleep(BACK_OFF + Duration::from_millis(100)).await;
        assert!(cache.healthy().await, "the client reconnects");
        let _ = cache.get(&Key::Product(uuid::Uuid::now_v7())).await;
        assert!(cache.state().pending.is_empty(), "the kept invalidation was sent once Redis answered");
    }
}
