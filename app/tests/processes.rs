//! Topologies as users run them: `cleave` binaries started as OS processes.
//!
//! Client-side discovery over the HTTP wire: two catalog processes behind one configured module
//! URL list; one is killed under traffic, and every call made after that succeeds on the other.

use catalog_contract::{CatalogApi, ProductQuery, http_wire};
use shared_kernel::discovery::DiscoveryPolicy;
use shared_kernel::wire::{RpcClient, RpcClientConfig};
use shared_kernel::{Caller, PageRequest};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `cleave` with `args`, configured as a process that hosts only the catalog, on `data_dir`.
fn cleave(data_dir: &Path, log: &str, args: &[&str], envs: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cleave"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CLEAVE_DATA_DIR", data_dir)
        .env("CLEAVE_SERVER__ADDR", "127.0.0.1:0")
        .env("CLEAVE_LOG__FILTER", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(data_dir.join(format!("{log}.out"))).unwrap())
        .stderr(std::fs::File::create(data_dir.join(format!("{log}.err"))).unwrap());
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

/// `cleave trust init --dir DIR`, as an operator runs it: every process kind's identity and
/// certificate.
fn trust_init(dir: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_cleave")).args(["trust", "init", "--dir"]).arg(dir).stdout(Stdio::null()).status();
    assert!(status.expect("cleave trust init runs").success());
}

/// The `KEY=value` lines of `cleave trust init`'s env file for `kind`.
fn trust_env(trust: &Path, kind: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(trust.join(format!("{kind}.env"))).expect("the env file");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// A catalog process answering on `internal` (its HTTP wire, over TLS, to trusted processes),
/// the other modules not deployed.
struct CatalogProcess(Child);

impl CatalogProcess {
    fn start(data_dir: &Path, trust: &Path, name: &str, internal: u16) -> Self {
        let mut envs = trust_env(trust, "catalog");
        envs.extend(
            [
                ("CLEAVE_SERVER__INTERNAL_ADDR", format!("127.0.0.1:{internal}")),
                ("CLEAVE_SERVER__SERVICE_NAME", name.to_owned()),
                ("CLEAVE_MODULES__USERS__MODE", "not_deployed".to_owned()),
                ("CLEAVE_MODULES__ORDERS__MODE", "not_deployed".to_owned()),
                ("CLEAVE_MODULES__PAYMENTS__MODE", "not_deployed".to_owned()),
            ]
            .map(|(name, value)| (name.to_owned(), value)),
        );
        let child = cleave(data_dir, name, &["serve"], &envs).spawn().expect("cleave starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", internal)).is_err() {
            assert!(Instant::now() < deadline, "{name} did not start; see {}", data_dir.join(format!("{name}.err")).display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for CatalogProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_catalog_processes_share_the_calls_and_a_killed_one_is_ejected() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let seeded = cleave(data, "seed", &["seed"], &[]).status().expect("cleave seed runs");
    assert!(seeded.success(), "seeding failed; see {}", data.join("seed.err").display());
    let trust = data.join("trust");
    trust_init(&trust);
    let (a, b) = (free_port(), free_port());
    let first = CatalogProcess::start(data, &trust, "catalog-a", a);
    let _second = CatalogProcess::start(data, &trust, "catalog-b", b);

    let catalog: Arc<dyn CatalogApi> = Arc::new(http_wire::Client::new(rpc_client(&trust, a, b)));
    let query = || ProductQuery { category: None, q: None, page: PageRequest::new(Some(5), None).unwrap() };
    let listed = catalog.list_products(&Caller::Anonymous, query()).await.expect("the catalog answers");
    assert_eq!(listed.items.len(), 5, "both processes serve the seeded catalog");

    // Traffic from four callers; one process is killed a moment in.
    let started = Instant::now();
    let killed_at = started + Duration::from_millis(700);
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while started.elapsed() < Duration::from_secs(2) {
                    let at = Instant::now();
                    let result = catalog.list_products(&Caller::Anonymous, query()).await;
                    calls.push((at, Instant::now(), result.map(|page| page.items.len())));
                }
                calls
            })
        })
        .collect();
    let mut first = first;
    tokio::time::sleep_until(killed_at.into()).await;
    first.0.kill().expect("the first catalog process is killed");
    first.0.wait().expect("the killed process is reaped");
    // Calls already sent to it, or racing its sockets' teardown, may fail: they are ambiguous
    // (the call may have run), and retrying them is for the resilience layer, which knows which
    // operations are idempotent. Every call from a moment after it is gone must succeed.
    let killed = Instant::now() + Duration::from_millis(100);
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(caller.await.unwrap());
    }
    // Calls in flight at the kill may fail (the process died under them); none other may.
    let before: Vec<_> = calls.iter().filter(|(_, ended, _)| *ended < killed_at).collect();
    let after: Vec<_> = calls.iter().filter(|(at, _, _)| *at > killed).collect();
    let failed_before: Vec<_> = before.iter().filter(|(_, _, result)| result != &Ok(5)).collect();
    assert!(failed_before.is_empty(), "before the kill every call succeeds: {failed_before:?}");
    assert!(after.len() > 20, "traffic went on after the kill: {} calls", after.len());
    let failed: Vec<_> = after.iter().filter(|(_, _, result)| result != &Ok(5)).collect();
    assert!(failed.is_empty(), "every call after the kill succeeds on the other process: {failed:?}");

    // A client that has not met the dead process yet: each call that picks it is refused at
    // connect (it never ran) and goes to the other instance, so none fails.
    let fresh = http_wire::Client::new(rpc_client(&trust, a, b));
    for _ in 0..10 {
        assert_eq!(fresh.list_products(&Caller::Anonymous, query()).await.map(|page| page.items.len()), Ok(5));
    }
}

/// A client of the two catalog processes as the gateway calls them: its identity signs every
/// call, its certificate opens the TLS connection.
fn rpc_client(trust: &Path, a: u16, b: u16) -> RpcClient {
    let seed = std::fs::read_to_string(trust.join("gateway.nk")).unwrap();
    let identity = shared_kernel::identity::ServiceIdentity::from_seed("gateway", &seed).unwrap();
    let files =
        shared_kernel::tls::TlsFiles { ca: trust.join("ca.pem"), certificate: trust.join("gateway.crt"), key: trust.join("gateway.key") };
    RpcClient::new(RpcClientConfig {
        identity: Some(Arc::new(identity)),
        tls: Some(shared_kernel::tls::client_config(&files).unwrap()),
        base_url: format!("https://127.0.0.1:{a},https://127.0.0.1:{b}"),
        upstream: shared_kernel::resilience::Upstream::new(
            "catalog",
            "http",
            shared_kernel::resilience::ResiliencePolicy { timeout: Duration::from_secs(10), ..Default::default() },
        )
        .unwrap(),
        service_name: "process-tests".into(),
        service_token: None,
        discovery: DiscoveryPolicy { resolve_every: Duration::from_secs(10), eject_for: Duration::from_secs(30) },
    })
    .unwrap()
}
