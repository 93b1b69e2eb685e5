//! Finds a NATS server (with JetStream) for the tests, once per test process:
//! 1. `NATS_URL`;
//! 2. a throwaway `nats-server` of our own (found on `PATH`, `/usr/sbin` or `/usr/bin`), on a
//!    free loopback port with its store in a temporary directory, stopped when the test process
//!    ends;
//! 3. with the `testcontainers` feature, a NATS container when a Docker engine answers.
//!
//! When none is found, [`nats`] returns `None` and prints why; under `CI=true` it panics
//! instead: CI never skips.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A NATS server the tests may use.
#[derive(Debug)]
pub struct NatsServer {
    pub url: String,
    /// Where it came from, for messages.
    pub source: &'static str,
}

static SERVER: OnceLock<Option<NatsServer>> = OnceLock::new();

/// The NATS server for this test process, found or started on first use.
///
/// # Panics
/// Under `CI=true` when no server can be found or started.
pub fn nats() -> Option<&'static NatsServer> {
    SERVER
        .get_or_init(|| {
            let found = find_or_start();
            match &found {
                Ok(server) => {
                    eprintln!("test NATS: {} ({})", server.url, server.source);
                    keep_a_stream(&server.url);
                }
                Err(error) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
                    panic!("CI=true but no NATS server is available for the tests: {error:#}")
                }
                Err(error) => eprintln!("SKIPPING NATS tests: no server available ({error:#}). Set NATS_URL to run them."),
            }
            found.ok()
        })
        .as_ref()
}

/// Makes sure the server always holds one stream of ours, which no test deletes.
///
/// Tests delete their streams when done. When the last file-stored stream of an account goes,
/// nats-server 2.9 removes the account's stream directory, and a stream another test creates
/// at that moment fails ("could not create storage directory", error 10077, seen in CI). With
/// one stream that stays, the directory always exists.
fn keep_a_stream(url: &str) {
    let url = url.to_owned();
    let kept = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async move {
            let client = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url)).await.ok()?.ok()?;
            let context = async_nats::jetstream::new(client);
            let config = async_nats::jetstream::stream::Config {
                name: "KEEP_FOR_TESTS".to_owned(),
                subjects: vec!["keep-for-tests".to_owned()],
                ..Default::default()
            };
            context.get_or_create_stream(config).await.ok().map(|_| ())
        })
    });
    if !matches!(kept.join(), Ok(Some(()))) {
        eprintln!("warning: cannot keep a stream on the test NATS server; a test may meet nats-server 2.9's storage race");
    }
}

/// A subject prefix no other test shares, so tests on one server never answer each other.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}

fn find_or_start() -> anyhow::Result<NatsServer> {
    if let Ok(url) = std::env::var("NATS_URL")
        && !url.trim().is_empty()
    {
        return Ok(NatsServer { url, source: "NATS_URL" });
    }
    match start_throwaway_server() {
        Ok(server) => return Ok(server),
        Err(error) => eprintln!("no throwaway NATS server: {error:#}"),
    }
    start_container()
}

/// The `nats-server` binary: on `PATH`, else where Debian puts it.
pub fn nats_server_binary() -> Option<PathBuf> {
    let on_path =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("nats-server")).find(|p| p.is_file()));
    on_path.or_else(|| ["/usr/sbin/nats-server", "/usr/bin/nats-server"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// Starts `nats-server -js` on a free port and waits until it accepts connections.
///
/// # Errors
/// No binary, or a server that does not come up within 10 s.
pub fn start_throwaway_server() -> anyhow::Result<NatsServer> {
    let binary = nats_server_binary().context("nats-server not found (Debian package nats-server)")?;
    let dir = tempfile::Builder::new().prefix("cleave-nats-").tempdir()?.keep();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log"))?)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    watch(child.id(), &dir)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nats-server did not start; see {}", dir.join("log").display());
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(NatsServer { url: format!("nats://127.0.0.1:{port}"), source: "a throwaway nats-server started by the tests" })
}

/// Stops the server and removes its directory once this test process is gone.
fn watch(server_pid: u32, dir: &Path) -> anyhow::Result<()> {
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {server_pid} 2>/dev/null; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh").args(["-c", &watchdog]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    Ok(())
}

#[cfg(feature = "testcontainers")]
fn start_container() -> anyhow::Result<NatsServer> {
    use testcontainers::ImageExt as _;
    use testcontainers::runners::SyncRunner as _;
    anyhow::ensure!(Path::new("/var/run/docker.sock").exists() || std::env::var_os("DOCKER_HOST").is_some(), "no Docker engine");
    let image = testcontainers_modules::nats::Nats::default().with_cmd(["-js"]);
    let container = image.start().context("cannot start a NATS container")?;
    let port = container.get_host_port_ipv4(4222)?;
    // The container lives as long as the test process.
    std::mem::forget(container);
    Ok(NatsServer { url: format!("nats://127.0.0.1:{port}"), source: "a testcontainers container" })
}

#[cfg(not(feature = "testcontainers"))]
fn start_container() -> anyhow::Result<NatsServer> {
    anyhow::bail!("built without the `testcontainers` feature")
}

/// A client of the test server, or `None` (with the reason printed) when there is none.
///
/// # Panics
/// When the server found does not accept a connection.
pub async fn client() -> Option<async_nats::Client> {
    let server = nats()?;
    Some(async_nats::connect(server.url.as_str()).await.unwrap_or_else(|error| panic!("cannot connect to {}: {error}", server.url)))
}

/// How a contract suite serves a module over NATS: under `prefix`, no service token.
pub fn serve_options(client: &async_nats::Client, prefix: &str) -> shared_kernel::nats_wire::ServeOptions {
    shared_kernel::nats_wire::ServeOptions {
        gate: None,
        client: client.clone(),
        subject_prefix: prefix.to_owned(),
        service_token: None,
        max_in_flight: 256,
    }
}

/// The client half for `module` under `prefix`.
pub fn rpc_client(client: &async_nats::Client, module: &'static str, prefix: &str) -> shared_kernel::nats_wire::NatsClient {
    shared_kernel::nats_wire::NatsClient::new(client.clone(), module, prefix, crate::callers::upstream(module), None)
}

/// A `nats-server` of one test's own, which the test may stop and start again on the same port
/// and store (a broker restart).
pub struct OwnNatsServer {
    child: Option<std::process::Child>,
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    config: Option<PathBuf>,
}

impl OwnNatsServer {
    /// Starts one, or `None` (with the reason printed) when there is no `nats-server` binary.
    ///
    /// # Panics
    /// Under `CI=true` when there is no binary, or when it does not start.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// [`OwnNatsServer::start`] from configuration file `config` (`cleave trust init`'s
    /// `nats.conf`: TLS, nkey users and their permissions), its port and store given on the
    /// command line as an operator would.
    ///
    /// # Panics
    /// As [`OwnNatsServer::start`].
    pub fn start_with(config: Option<&Path>) -> Option<Self> {
        let Some(binary) = nats_server_binary() else {
            assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "CI=true but nats-server is not installed");
            eprintln!("SKIPPING: this test needs the nats-server binary");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("cleave-nats-own-").tempdir().expect("a directory").keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port();
        let mut server = Self { child: None, binary, port, dir, config: config.map(Path::to_owned) };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store, and waits until it accepts
    /// connections.
    ///
    /// # Panics
    /// When it does not start within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log")).expect("a log file");
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start; see {}", self.dir.join("log").display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OwnNatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
