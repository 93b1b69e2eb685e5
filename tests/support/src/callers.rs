//! Callers for contract suites, which test modules without real tokens: `Bearer <role>:<user id>`
//! stands for a verified user, and a service-name header for a service. (Real token
//! verification is proven by the users suite and the black-box suites.)

use shared_kernel::wire::CallerResolver;
use shared_kernel::{ApiError, AuthenticatedUser, Caller, Role, Secret, ServiceName, UserId};

/// The services a contract suite's caller may speak as: every module and the edge.
pub const SERVICES: [ServiceName; 6] = [
    ServiceName::named("users"),
    ServiceName::named("catalog"),
    ServiceName::named("orders"),
    ServiceName::named("payments"),
    ServiceName::named("notifications"),
    ServiceName::EDGE,
];

/// Resolves the test conventions above on the server side of a contract's wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestResolver;

#[async_trait::async_trait]
impl CallerResolver for TestResolver {
    async fn resolve(&self, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            let token = value.trim_start_matches("Bearer ");
            let (role, id) = token.split_once(':').ok_or_else(|| ApiError::unauthenticated("bad test token"))?;
            return Ok(user(Role::parse(role).unwrap_or(Role::Customer), UserId::parse(id)?));
        }
        if let Some(name) = headers.get(shared_kernel::wire::SERVICE_NAME_HEADER).and_then(|v| v.to_str().ok()) {
            let service = ServiceName::parse_among(name, &SERVICES);
            return service.map(Caller::Service).ok_or_else(|| ApiError::unauthenticated("unknown service name"));
        }
        Ok(Caller::Anonymous)
    }
}

/// A user with `role` (an admin is a customer too), whose test token the resolver understands.
pub fn user(role: Role, id: UserId) -> Caller {
    let roles = if role == Role::Admin { vec![Role::Customer, Role::Admin] } else { vec![Role::Customer] };
    Caller::User(AuthenticatedUser { id, roles, token: Secret::new(format!("{}:{id}", role.as_str())) })
}

pub fn admin() -> Caller {
    user(Role::Admin, UserId::new())
}

pub fn customer() -> Caller {
    user(Role::Customer, UserId::new())
}

/// The orders module calling on its own behalf.
pub fn orders_service() -> Caller {
    Caller::Service(ServiceName::named("orders"))
}

/// Any module (or the edge) calling on its own behalf, by name.
pub fn service(name: &str) -> Caller {
    Caller::Service(ServiceName::parse_among(name, &SERVICES).unwrap_or_else(|| panic!("{name} is not a service of the suites")))
}

/// Serves `router` on a free loopback port; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// The guard of a test's calls to `module`: the defaults, with a timeout that a slow CI
/// machine does not hit.
pub fn upstream(module: &'static str) -> std::sync::Arc<shared_kernel::resilience::Upstream> {
    let policy = shared_kernel::resilience::ResiliencePolicy { timeout: std::time::Duration::from_secs(20), ..Default::default() };
    shared_kernel::resilience::Upstream::new(module, "http", policy).expect("the default policy is valid")
}

/// An RPC client for a contract suite's server.
pub fn rpc_client(base_url: String) -> shared_kernel::wire::RpcClient {
    shared_kernel::wire::RpcClient::new(shared_kernel::wire::RpcClientConfig {
        identity: None,
        tls: None,
        base_url,
        upstream: upstream("remote"),
        service_name: "contract-tests".into(),
        service_token: None,
        discovery: shared_kernel::discovery::DiscoveryPolicy::default(),
    })
    .expect("an HTTP client")
}
