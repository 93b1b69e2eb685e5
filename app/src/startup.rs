//! `Application`: builds the router for the configured topology, binds, runs until stopped.

use crate::composition::{Composition, compose};
use crate::config::Settings;
use crate::rest::AppState;
use crate::{edge, health, openapi, rest, telemetry};
use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A built, bound application: the public listener, and the internal one when configured.
pub struct Application {
    listener: TcpListener,
    router: Router,
    internal: Option<(TcpListener, Router, SocketAddr)>,
    local_addr: SocketAddr,
    local_modules: Vec<&'static str>,
    composition: Composition,
}

impl Application {
    /// Composes the modules, builds the router and binds `settings.server.addr` (port 0 picks a
    /// free port).
    ///
    /// # Errors
    /// Composition failures (see [`compose`]) and an address that cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let composition = compose(&settings).await?;
        let router = build_router(&settings, &composition);
        let listener =
            TcpListener::bind(settings.server.addr).await.with_context(|| format!("cannot listen on {}", settings.server.addr))?;
        let local_addr = listener.local_addr()?;
        let internal = match settings.server.internal_addr {
            Some(addr) => {
                if settings.auth.service_token.is_none() {
                    tracing::warn!(
                        "server.internal_addr without auth.service_token (server.allow_unauthenticated_internal): anyone who reaches it can call the modules hosted here"
                    );
                }
                let internal_listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
                let internal_addr = internal_listener.local_addr()?;
                Some((internal_listener, build_internal_router(&settings, &composition), internal_addr))
            }
            None => {
                if !composition.local_modules.is_empty() {
                    tracing::debug!("server.internal_addr is unset: the modules hosted here are not reachable by other processes");
                }
                None
            }
        };
        let local_modules = composition.local_modules.clone();
        Ok(Self { listener, router, internal, local_addr, local_modules, composition })
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
            banner.push_str(&format!("\n  module wire:  http://{internal}/rpc/<module>/<operation> (internal)"));
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

    /// Serves until `stop` completes (tests stop an app this way and start it again).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(mut self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        use futures::FutureExt as _;
        let stop = stop.boxed().shared();
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
                for service in nats_services {
                    service.stop(std::time::Duration::from_secs(10)).await;
                }
            })
        };
        let internal = self.internal.map(|(listener, router, _)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(stop).await
            })
        });
        let public = axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .await
            .context("the server failed");
        if let Some(internal) = internal {
            internal.await.context("the internal server task failed")?.context("the internal server failed")?;
        }
        if public.is_ok() {
            let _ = nats_stopped.await;
        } else {
            nats_stopped.abort();
        }
        let _ = stop_background.send(true);
        for task in background {
            let _ = task.await;
        }
        public
    }
}

/// The whole router: public API, wire routes of local modules, operations endpoints, docs; all
/// behind the edge.
pub fn build_router(settings: &Settings, composition: &Composition) -> Router {
    let limits = crate::graphql::Limits {
        depth: settings.graphql.max_depth,
        complexity: settings.graphql.max_complexity,
        root_fields: settings.graphql.max_root_fields,
        aliases: settings.graphql.max_aliases,
        introspection: settings.graphql.introspection,
    };
    let state = AppState::new(rest::Handles {
        graphql: crate::graphql::schema(composition.modules.clone(), composition.order_status_feed.clone(), limits),
        modules: composition.modules.clone(),
        resolver: composition.resolver.clone(),
        trust_forwarded_for: settings.server.trust_forwarded_for,
        bus: composition.bus.clone(),
        dead_letters: std::sync::Arc::new(composition.dead_letter_admin.clone()),
    });
    let checks = composition.readiness.clone();
    let metrics = telemetry::metrics_handle();
    let router = Router::new()
        .merge(rest::users::routes())
        .merge(rest::catalog::routes())
        .merge(rest::orders::routes())
        .merge(rest::payments::routes())
        .merge(rest::admin::routes())
        .route("/graphql", get(crate::graphql::playground::page).post(crate::graphql::execute))
        .route("/graphql/assets/{name}", get(crate::graphql::playground::asset))
        .route("/graphql/ws", get(crate::graphql::subscribe))
        .with_state(state)
        .route("/health/live", get(health::live))
        .route("/health/ready", get(move || health::ready(checks.clone())))
        .route("/metrics", get(move || health::metrics(metrics.clone())))
        .merge(openapi::routes());
    edge::layer(router, &settings.server)
}

/// The internal listener's router: the wire routes of the modules hosted here and health, behind
/// the same edge, and behind the service token when one is configured.
pub fn build_internal_router(settings: &Settings, composition: &Composition) -> Router {
    let checks = composition.readiness.clone();
    let token = settings.auth.service_token.clone();
    let router = composition
        .internal_routes
        .clone()
        .layer(axum::middleware::from_fn(move |request, next| edge::require_service_token(token.clone(), request, next)))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(move || health::ready(checks.clone())));
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
    tracing::info!("shutting down");
}
