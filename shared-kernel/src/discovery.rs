//! Client-side discovery for the HTTP wire: a module reached at one or more URLs, each host name
//! resolved to every address it has (what a Kubernetes headless Service gives) and resolved
//! again periodically; calls go round-robin over the instances, and an instance that fails is
//! ejected for a cool-down, then tried again.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often names are resolved again, and how long a failing instance sits out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryPolicy {
    pub resolve_every: Duration,
    pub eject_for: Duration,
}

impl Default for DiscoveryPolicy {
    fn default() -> Self {
        Self { resolve_every: Duration::from_secs(10), eject_for: Duration::from_secs(10) }
    }
}

/// Turns a host and port into addresses (the system resolver in production).
#[async_trait::async_trait]
pub trait Resolve: Send + Sync + 'static {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// One configured URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    url: String,
    host: String,
    port: u16,
}

#[derive(Debug, Clone)]
struct Instance {
    /// `http://<address>` (or, over TLS, the configured `https://` URL), what calls go to.
    base: String,
    /// The configured URL it was found behind.
    target: usize,
    ejected_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    instances: Vec<Instance>,
    resolved_at: Option<Instant>,
}

/// The instances of one remote module.
pub struct Endpoints {
    targets: Vec<Target>,
    policy: DiscoveryPolicy,
    resolver: Box<dyn Resolve>,
    state: Mutex<State>,
    next: AtomicUsize,
    resolving: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").field("targets", &self.targets).field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Endpoints {
    /// `urls`: one or more `http://host:port` base URLs, separated by commas.
    ///
    /// # Errors
    /// No URL, or one that is not `http://host[:port]`.
    pub fn new(urls: &str, policy: DiscoveryPolicy, resolver: Box<dyn Resolve>) -> Result<Self, String> {
        let targets = urls.split(',').map(str::trim).filter(|url| !url.is_empty()).map(parse).collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err("no URL".to_owned());
        }
        Ok(Self {
            targets,
            policy,
            resolver,
            state: Mutex::new(State::default()),
            next: AtomicUsize::new(0),
            resolving: tokio::sync::Mutex::new(()),
        })
    }

    /// How many instances are known now (at least one per URL).
    pub async fn count(&self) -> usize {
        self.refresh_if_due().await;
        self.lock().instances.len().max(1)
    }

    /// The base URL for the next call: round-robin over the instances not ejected (over all of
    /// them when every one is ejected: better a call that may fail than none).
    pub async fn pick(&self) -> String {
        self.refresh_if_due().await;
        let state = self.lock();
        let now = Instant::now();
        let healthy: Vec<&Instance> = state.instances.iter().filter(|i| i.ejected_until.is_none_or(|until| until <= now)).collect();
        let pool: Vec<&Instance> = if healthy.is_empty() { state.instances.iter().collect() } else { healthy };
        match pool.len() {
            0 => self.targets[0].url.clone(),
            n => pool[self.next.fetch_add(1, Ordering::Relaxed) % n].base.clone(),
        }
    }

    /// Takes `base` out of rotation for the cool-down.
    pub fn eject(&self, base: &str) {
        let until = Instant::now() + self.policy.eject_for;
        let mut state = self.lock();
        for instance in state.instances.iter_mut().filter(|i| i.base == base) {
            if instance.ejected_until.is_none_or(|current| current < Instant::now()) {
                tracing::warn!(instance = %base, cooldown_secs = self.policy.eject_for.as_secs(), "ejecting a failing instance");
            }
            instance.ejected_until = Some(until);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves the names again when the last resolution is older than the policy says; one
    /// resolution at a time, the others go on with what is known.
    async fn refresh_if_due(&self) {
        let due = self.lock().resolved_at.is_none_or(|at| at.elapsed() >= self.policy.resolve_every);
        if !due {
            return;
        }
        let Ok(_only_one) = self.resolving.try_lock() else { return };
        let mut found: Vec<(String, usize)> = Vec::new();
        for (index, target) in self.targets.iter().enumerate() {
            let resolved = tokio::time::timeout(Duration::from_secs(2), self.resolver.resolve(&target.host, target.port))
                .await
                .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the resolver did not answer")));
            match resolved {
                // Over TLS the certificate names the host, so calls go to the name itself (the
                // system resolves it per connection): one instance to this client.
                _ if target.url.starts_with("https://") => found.push((target.url.clone(), index)),
                Ok(addresses) if !addresses.is_empty() => {
                    found.extend(addresses.into_iter().map(|address| (format!("http://{address}"), index)));
                }
                Ok(_) | Err(_) => {
                    let known: Vec<(String, usize)> =
                        self.lock().instances.iter().filter(|i| i.target == index).map(|i| (i.base.clone(), index)).collect();
                    tracing::warn!(url = %target.url, "cannot resolve a module's address; keeping what was known");
                    if known.is_empty() {
                        found.push((target.url.clone(), index));
                    } else {
                        found.extend(known);
                    }
                }
            }
        }
        found.sort();
        found.dedup_by(|a, b| a.0 == b.0);
        let mut state = self.lock();
        let previous = std::mem::take(&mut state.instances);
        state.instances = found
            .into_iter()
            .map(|(base, target)| {
                let ejected_until = previous.iter().find(|i| i.base == base).and_then(|i| i.ejected_until);
                Instance { base, target, ejected_until }
            })
            .collect();
        state.resolved_at = Some(Instant::now());
    }
}

fn parse(url: &str) -> Result<Target, String> {
    let (rest, default_port) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, 80),
        (_, Some(rest)) => (rest, 443),
        _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if rest.trim_end_matches('/') != authority {
        return Err(format!("{url:?} has a path: give the base URL of the internal listener"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host, port.parse::<u16>().map_err(|_| format!("{url:?} has no valid port"))?)
        }
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(Target { url: url.trim_end_matches('/').to_owned(), host: host.to_owned(), port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Arc;

    /// A resolver whose answers the test changes, as DNS records change under a running client.
    #[derive(Default, Clone)]
    struct Records(Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>);

    impl Records {
        fn set(&self, host: &str, addresses: &[&str]) {
            self.0.lock().unwrap().insert(host.to_owned(), addresses.iter().map(|a| a.parse().unwrap()).collect());
        }
    }

    #[async_trait::async_trait]
    impl Resolve for Records {
        async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
            let found = self.0.lock().unwrap().get(host).cloned();
            found
                .map(|addresses| addresses.into_iter().map(|a| SocketAddr::new(a.ip(), port)).collect())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        }
    }

    #[test]
    fn urls_are_http_or_https_base_urls() {
        assert_eq!(parse("http://catalog:9080").unwrap(), Target { url: "http://catalog:9080".into(), host: "catalog".into(), port: 9080 });
        assert_eq!(parse("http://catalog/").unwrap().port, 80);
        assert_eq!(parse("https://catalog/").unwrap().port, 443);
        assert_eq!(parse("http://[::1]:9080").unwrap().host, "::1");
        for bad in ["ftp://catalog:9080", "catalog:9080", "http://catalog:9080/rpc", "http://:9080", "http://catalog:port"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(Endpoints::new(" , ", DiscoveryPolicy::default(), Box::new(SystemResolver)).is_err());
    }

    #[tokio::test]
    async fn calls_go_round_robin_over_every_address_and_skip_an_ejected_one() {
        let records = Records::default();
        records.set("catalog", &["10.0.0.1:0", "10.0.0.2:0"]);
        let policy = DiscoveryPolicy { resolve_every: Duration::from_secs(3600), eject_for: Duration::from_millis(200) };
        let endpoints = Endpoints::new("http://catalog:9080, http://127.0.0.1:9081", policy, Box::new(records)).unwrap();
        let picks: BTreeSet<String> = futures::future::join_all((0..6).map(|_| endpoints.pick())).await.into_iter().collect();
        assert_eq!(picks, BTreeSet::from(["http://10.0.0.1:9080".into(), "http://10.0.0.2:9080".into(), "http://127.0.0.1:9081".into()]));
        endpoints.eject("http://10.0.0.1:9080");
        for _ in 0..6 {
            assert_ne!(endpoints.pick().await, "http://10.0.0.1:9080", "an ejected instance sits out its cool-down");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let picks: BTreeSet<String> = futures::future::join_all((0..6).map(|_| endpoints.pick())).await.into_iter().collect();
        assert!(picks.contains("http://10.0.0.1:9080"), "re-admitted after the cool-down: {picks:?}");
    }

    /// Over TLS the certificate names the host: calls go to the name, never to the addresses
    /// behind it (a certificate does not name them).
    #[tokio::test]
    async fn an_https_url_is_called_by_its_name() {
        let records = Records::default();
        records.set("catalog", &["10.0.0.1:0", "10.0.0.2:0"]);
        let endpoints = Endpoints::new("https://catalog:9080, https://orders:9080", DiscoveryPolicy::default(), Box::new(records)).unwrap();
        let picks: BTreeSet<String> = futures::future::join_all((0..4).map(|_| endpoints.pick())).await.into_iter().collect();
        assert_eq!(picks, BTreeSet::from(["https://catalog:9080".into(), "https://orders:9080".into()]));
        assert_eq!(endpoints.count().await, 2);
    }

    #[tokio::test]
    async fn names_are_resolved_again_and_a_failed_resolution_keeps_what_was_known() {
        let records = Records::default();
        records.set("catalog", &["10.0.0.1:0"]);
        let policy = DiscoveryPolicy { resolve_every: Duration::from_millis(50), eject_for: Duration::from_secs(10) };
        let endpoints = Endpoints::new("http://catalog:9080", policy, Box::new(records.clone())).unwrap();
        assert_eq!(endpoints.pick().await, "http://10.0.0.1:9080");
        records.set("catalog", &["10.0.0.1:0", "10.0.0.3:0"]);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(endpoints.count().await, 2, "a new instance behind the name is found");
        records.0.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(endpoints.count().await, 2, "a name that does not resolve now keeps the instances known");
        records.set("catalog", &["10.0.0.3:0"]);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(endpoints.pick().await, "http://10.0.0.3:9080", "an instance gone from the name is dropped");
    }
}
