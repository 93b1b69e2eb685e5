//! `Application`: builds the router for the configured topology, binds, runs until stopped.

use crate::composition::Composition;
use crate::config::Settings;
use crate::modules::compose;
use crate::rest::AppState;
use crate::{edge, health, openapi, rest, telemetry};
use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The internal listener: HTTPS under `[tls]`, else plain HTTP (development only).
enum InternalListener {
    Plain(TcpListener),
    Tls(shared_kernel::tls::TlsListener),
}

/// A built, bound application: the public listener, and the internal one when configured.
pub struct Application {
    listener: TcpListener,
    router: Router,
    internal: Option<(InternalListener, Router, SocketAddr)>,
    local_addr: SocketAddr,
    local_modules: Vec<&'static str>,
    composition: Composition,
    shutdown: Shutdown,
}

/// How the application stops (`server.shutdown_*`), and the flag readiness reads.
struct Shutdown {
    draining: health::Draining,
    grace: std::time::Duration,
    delay: std::time::Duration,
}

impl Application {
    /// Composes the modules, builds the router and binds `settings.server.addr` (port 0 picks a
    /// free port).
    ///
    /// # Errors
    /// Composition failures (see [`compose`]) and an address that cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate_wire_security()?;
        let composition = compose(&settings).await?;
        let graphql = crate::graphql::EdgeConsumers::subscribe(&settings, &composition).await?;
        let shutdown = Shutdown {
            draining: health::Draining::default(),
            grace: std::time::Duration::from_secs(settings.server.shutdown_grace_secs.max(1)),
            delay: std::time::Duration::from_millis(settings.server.shutdown_delay_ms),
        };
        let router = build_router(&settings, &composition, &graphql, &shutdown.draining);
        let listener =
            TcpListener::bind(settings.server.addr).await.with_context(|| format!("cannot listen on {}", settings.server.addr))?;
        let local_addr = listener.local_addr()?;
        let internal = match settings.server.internal_addr {
            Some(addr) => {
                if !settings.internal_wire_guarded() || settings.tls.files().is_none() {
                    tracing::warn!(
                        "server.internal_addr without identities or TLS (server.allow_unauthenticated_internal): anyone who reaches it can read the calls, and may make some"
                    );
                }
                let tcp = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
                let internal_addr = tcp.local_addr()?;
                let listener = match settings.tls.files() {
                    Some(files) => {
                        let config = shared_kernel::tls::server_config(&files).context("[tls]")?;
                        InternalListener::Tls(shared_kernel::tls::TlsListener::new(tcp, config)?)
                    }
                    None => InternalListener::Plain(tcp),
                };
                Some((listener, build_internal_router(&settings, &composition, &shutdown.draining), internal_addr))
            }
            None => {
                if !composition.local_modules.is_empty() {
                    tracing::debug!("server.internal_addr is unset: the modules hosted here are not reachable by other processes");
                }
                None
            }
        };
        let local_modules = composition.local_modules.clone();
        Ok(Self { listener, router, internal, local_addr, local_modules, composition, shutdown })
    }

    /// The internal listener's address (wire routes), when one is configured.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().map(|(_, _, addr)| *addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The modules as composed (tests reach the local services through it).
    pub fn composition(&self) -> &Composition {
        &self.composition
    }

    /// What a person needs to know once the server is up.
    pub fn banner(&self) -> String {
        let base = format!("http://{}", self.local_addr);
        let mut banner = format!(
            "cleave is ready on {base}\n  modules here: {}\n  API:          {base}/api\n  API docs:     {base}/docs\n  OpenAPI:      {base}/openapi.json\n  health:       {base}/health/ready\n  metrics:      {base}/metrics",
            if self.local_modules.is_empty() { "none (gateway)".to_owned() } else { self.local_modules.join(", ") },
        );
        if let Some(internal) = self.internal_addr() {
            let scheme = if matches!(self.internal, Some((InternalListener::Tls(_), _, _))) { "https" } else { "http" };
            banner.push_str(&format!("\n  module wire:  {scheme}://{internal}/rpc/<module>/<operation> (internal)"));
        }
        banner
    }

    /// Serves until Ctrl-C or SIGTERM, then drains in-flight requests.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes (tests stop an app this way and start it again), then
    /// shuts down gracefully: readiness answers 503 at once; after `server.shutdown_delay_ms`
    /// the listeners stop accepting; the requests and NATS calls in flight finish, then the
    /// background work (relays, sweeps) and the event consumers finish what they hold and stop.
    /// All of it within `server.shutdown_grace_secs`, past which the rest is cut off (nothing
    /// is lost: an unfinished saga resumes at the next start, an unacked event comes again).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(mut self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        use futures::FutureExt as _;
        let (grace, delay) = (self.shutdown.grace, self.shutdown.delay);
        let draining = self.shutdown.draining.clone();
        // The stop as the listeners see it: readiness first, then (after the delay) no new
        // connections.
        let stop = {
            let draining = draining.clone();
            async move {
                stop.await;
                draining.start();
                tracing::info!(
                    delay_ms = delay.as_millis() as u64,
                    grace_secs = grace.as_secs(),
                    "shutting down: readiness now answers 503"
                );
                tokio::time::sleep(delay).await;
            }
        }
        .boxed()
        .shared();
        // Background work (outbox relays, sweeps), stopped after the servers drain.
        let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
        let background: Vec<_> = std::mem::take(&mut self.composition.background)
            .into_iter()
            .map(|task| tokio::spawn(task(background_stopped.clone())))
            .collect();
        // The NATS services leave their queue groups when the stop comes, and their calls in
        // flight finish, while the HTTP listeners drain.
        let nats_services = std::mem::take(&mut self.composition.nats_services);
        let nats_stopped = {
            let stop = stop.clone();
            tokio::spawn(async move {
                stop.await;
                futures::future::join_all(nats_services.into_iter().map(|service| service.stop(grace))).await;
            })
        };
        let internal = self.internal.map(|(listener, router, _)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                // The wire's routes read no client address (the caller is who its assertion says).
                match listener {
                    InternalListener::Plain(listener) => axum::serve(listener, router).with_graceful_shutdown(stop).await,
                    InternalListener::Tls(listener) => axum::serve(listener, router).with_graceful_shutdown(stop).await,
                }
            })
        });
        let mut public = tokio::spawn(
            axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(stop.clone())
                .into_future(),
        );
        // Until the stop comes (or the server fails before it).
        let failed_early = tokio::select! {
            () = stop.clone() => None,
            result = &mut public => Some(result),
        };
        if let Some(result) = failed_early {
            nats_stopped.abort();
            return result.context("the server task failed")?.context("the server failed");
        }
        let deadline = tokio::time::Instant::now() + grace;
        let drained = tokio::time::timeout_at(deadline, async {
            let public = (&mut public).await;
            let internal = match internal {
                Some(internal) => Some(internal.await),
                None => None,
            };
            let _ = nats_stopped.await;
            (public, internal)
        })
        .await;
        let public = match drained {
            Ok((public, internal)) => {
                if let Some(internal) = internal {
                    internal.context("the internal server task failed")?.context("the internal server failed")?;
                }
                public.context("the server task failed")?.context("the server failed")
            }
            Err(_) => {
                tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after server.shutdown_grace_secs: cut off");
                public.abort();
                Ok(())
            }
        };
        let _ = stop_background.send(true);
        let finished = tokio::time::timeout_at(deadline.max(tokio::time::Instant::now() + std::time::Duration::from_secs(1)), async {
            for task in background {
                let _ = task.await;
            }
            self.composition.bus.shutdown().await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!("background work still running after server.shutdown_grace_secs: cut off");
        }
        tracing::info!("stopped");
        public
    }
}

/// The whole router: public API, wire routes of local modules, operations endpoints, docs; all
/// behind the edge.
pub fn build_router(
    settings: &Settings,
    composition: &Composition,
    graphql: &crate::graphql::EdgeConsumers,
    draining: &health::Draining,
) -> Router {
    let limits = crate::graphql::Limits {
        depth: settings.graphql.max_depth,
        complexity: settings.graphql.max_complexity,
        root_fields: settings.graphql.max_root_fields,
        aliases: settings.graphql.max_aliases,
        introspection: settings.graphql.introspection,
        subscriptions_per_socket: settings.graphql.max_subscriptions_per_socket,
    };
    let state = AppState::new(rest::Handles {
        graphql: crate::graphql::schema(
            composition.modules.clone(),
            (graphql.order_status.clone(), graphql.notifications.clone()),
            limits,
            graphql.responses.documents(),
        ),
        graphql_responses: graphql.responses.clone(),
        modules: composition.modules.clone(),
        resolver: composition.resolver.clone(),
        trust_forwarded_for: settings.server.trust_forwarded_for,
        bus: composition.bus.clone(),
        dead_letters: std::sync::Arc::new(composition.dead_letter_admin.clone()),
        status: std::sync::Arc::new(composition.status.clone()),
        service_name: settings.server.service_name.clone(),
    });
    let checks = composition.readiness.clone();
    let draining = draining.clone();
    let metrics = telemetry::metrics_handle();
    let router = Router::new()
        .merge(crate::modules::routes().into_router())
        .merge(crate::modules::users::rest::well_known())
        .route("/graphql", get(crate::graphql::playground::page).post(crate::graphql::execute))
        .route("/graphql/assets/{name}", get(crate::graphql::playground::asset))
        .route("/graphql/ws", get(crate::graphql::subscribe))
        .with_state(state)
        .route("/health/live", get(health::live))
        .route("/health/ready", get(move || health::ready(checks.clone(), draining.clone())))
        .route("/metrics", get(move || health::metrics(metrics.clone())))
        .merge(openapi::routes())
        .layer(axum::middleware::from_fn_with_state(graphql.responses.clone(), crate::graphql::responses::forget_after_writes));
    let router = if settings.server.rate_limit.enabled {
        let limit = crate::rate_limit::EdgeRateLimit::new(
            &settings.server.rate_limit,
            composition.resolver.clone(),
            settings.server.trust_forwarded_for,
        );
        router.layer(axum::middleware::from_fn_with_state(std::sync::Arc::new(limit), crate::rate_limit::limit))
    } else {
        router
    };
    edge::layer(router, &settings.server)
}

/// The internal listener's router: the wire routes of the modules hosted here and health, behind
/// the same edge, and behind the service token when one is configured.
pub fn build_internal_router(settings: &Settings, composition: &Composition, draining: &health::Draining) -> Router {
    let checks = composition.readiness.clone();
    let draining = draining.clone();
    let guard = edge::InternalGuard {
        gate: composition.wire_gate.clone(),
        service_token: settings.auth.service_token.clone(),
        body_limit: settings.server.body_limit_bytes,
    };
    let router = composition
        .internal_routes
        .clone()
        .layer(axum::middleware::from_fn(move |request, next| edge::guard_internal_wire(guard.clone(), request, next)))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(move || health::ready(checks.clone(), draining.clone())));
    edge::layer(router, &settings.server)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
