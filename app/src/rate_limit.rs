//! Per-client rate limiting of the public API (`server.rate_limit`): GCRA per client, in memory,
//! per process (`governor`). A client is the subject of the access token the request carries
//! when it verifies, else its address. Every limited response carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`; a refused one is 429 problem+json with
//! `Retry-After`. Health, metrics, the API docs and the playground's assets are never limited.

use crate::config::RateLimitSettings;
use crate::edge::{ResolvedCaller, client_addr};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use shared_kernel::wire::CallerResolver;
use shared_kernel::{ApiError, Caller};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Keys kept before idle ones are forgotten.
const KEYS_BEFORE_PRUNING: usize = 10_000;

pub struct EdgeRateLimit {
    limiter: Limiter,
    clock: DefaultClock,
    resolver: Arc<dyn CallerResolver>,
    trust_forwarded_for: bool,
    per_second: u32,
    burst: u32,
    checks: AtomicU64,
}

impl EdgeRateLimit {
    pub fn new(settings: &RateLimitSettings, resolver: Arc<dyn CallerResolver>, trust_forwarded_for: bool) -> Self {
        let per_second = NonZeroU32::new(settings.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(per_second);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)).with_middleware::<StateInformationMiddleware>(),
            clock: DefaultClock::default(),
            resolver,
            trust_forwarded_for,
            per_second: per_second.get(),
            burst: burst.get(),
            checks: AtomicU64::new(0),
        }
    }

    /// Seconds until a client with `remaining` requests left is back to its full burst.
    fn reset_secs(&self, remaining: u32) -> u64 {
        u64::from(self.burst.saturating_sub(remaining)).div_ceil(u64::from(self.per_second))
    }

    fn forget_idle_clients(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(1_024) && self.limiter.len() > KEYS_BEFORE_PRUNING {
            self.limiter.retain_recent();
        }
    }
}

/// Whether `path` is part of the public API that is limited.
fn is_limited(path: &str) -> bool {
    path.starts_with("/api/") || path == "/graphql" || path == "/graphql/ws"
}

/// The middleware. It resolves the caller once (the handlers reuse it, see [`ResolvedCaller`]).
pub async fn limit(State(limit): State<Arc<EdgeRateLimit>>, mut request: Request, next: Next) -> Response {
    if !is_limited(request.uri().path()) {
        return next.run(request).await;
    }
    let caller = limit.resolver.resolve(request.headers()).await;
    let key = match &caller {
        Ok(Caller::User(user)) => format!("user:{}", user.id),
        _ => {
            let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
            format!("addr:{}", client_addr(request.headers(), peer, limit.trust_forwarded_for).unwrap_or_default())
        }
    };
    request.extensions_mut().insert(ResolvedCaller(caller));
    limit.forget_idle_clients();
    let (mut response, remaining) = match limit.limiter.check_key(&key) {
        Ok(snapshot) => (next.run(request).await, snapshot.remaining_burst_capacity()),
        Err(not_until) => {
            let wait = not_until.wait_time_from(limit.clock.now());
            metrics::counter!("http_rate_limited_total").increment(1);
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            (ApiError::rate_limited("too many requests from this client; slow down", seconds).into_response(), 0)
        }
    };
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(limit.burst));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(limit.reset_secs(remaining)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Anonymous;

    #[async_trait::async_trait]
    impl CallerResolver for Anonymous {
        async fn resolve(&self, _headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
            Ok(Caller::Anonymous)
        }
    }

    #[test]
    fn only_the_public_api_is_limited() {
        for path in ["/api/catalog/products", "/api/me/overview", "/graphql", "/graphql/ws"] {
            assert!(is_limited(path), "{path}");
        }
        for path in ["/health/ready", "/health/live", "/metrics", "/docs", "/openapi.json", "/graphql/assets/graphiql.js"] {
            assert!(!is_limited(path), "{path}");
        }
    }

    #[test]
    fn the_reset_is_the_time_to_refill_the_burst() {
        let limit = EdgeRateLimit::new(&RateLimitSettings { enabled: true, per_second: 10, burst: 30 }, Arc::new(Anonymous), false);
        assert_eq!(limit.reset_secs(30), 0);
        assert_eq!(limit.reset_secs(29), 1);
        assert_eq!(limit.reset_secs(0), 3);
    }
}
