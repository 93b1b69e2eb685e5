//! Finds a Redis server for the tests, once per test process:
//! 1. `REDIS_URL`;
//! 2. a throwaway `redis-server` of our own (found on `PATH`, `/usr/bin` or `/usr/local/bin`), on
//!    a free loopback port, keeping nothing on disk, stopped when the test process ends;
//! 3. with the `testcontainers` feature, a Redis container when a Docker engine answers.
//!
//! When none is found, [`redis`] returns `None` and prints why; under `CI=true` it panics
//! instead: CI never skips.

use anyhow::Context as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A Redis server the tests may use.
#[derive(Debug)]
pub struct RedisServer {
    pub url: String,
    /// Where it came from, for messages.
    pub source: &'static str,
}

static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The Redis server for this test process, found or started on first use. Tests share it:
/// give each its own key prefix ([`crate::nats::unique_prefix`]).
///
/// # Panics
/// Under `CI=true` when no server can be found or started.
pub fn redis() -> Option<&'static RedisServer> {
    SERVER
        .get_or_init(|| {
            let found = find_or_start();
            match &found {
                Ok(server) => eprintln!("test Redis: {} ({})", server.url, server.source),
                Err(error) if ci() => panic!("CI=true but no Redis server is available for the tests: {error:#}"),
                Err(error) => eprintln!("SKIPPING Redis tests: no server available ({error:#}). Set REDIS_URL to run them."),
            }
            found.ok()
        })
        .as_ref()
}

fn find_or_start() -> anyhow::Result<RedisServer> {
    if let Ok(url) = std::env::var("REDIS_URL")
        && !url.trim().is_empty()
    {
        return Ok(RedisServer { url, source: "REDIS_URL" });
    }
    match OwnRedisServer::start_process() {
        Ok(server) => {
            let url = server.url();
            // Lives as long as the test process; a watchdog stops it when that is gone.
            watch(&server);
            std::mem::forget(server);
            return Ok(RedisServer { url, source: "a throwaway redis-server started by the tests" });
        }
        Err(error) => eprintln!("no throwaway Redis server: {error:#}"),
    }
    start_container()
}

fn redis_server_binary() -> Option<PathBuf> {
    let on_path =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("redis-server")).find(|p| p.is_file()));
    on_path.or_else(|| ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
}

fn watch(server: &OwnRedisServer) {
    let Some(child) = &server.child else { return };
    let watchdog = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null", std::process::id(), child.id());
    let _ = Command::new("sh").args(["-c", &watchdog]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
}

/// A `redis-server` of one test's own, which the test may stop and start again on the same port
/// (an outage).
pub struct OwnRedisServer {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl OwnRedisServer {
    /// Starts one, or `None` (with the reason printed) when there is no `redis-server` binary.
    ///
    /// # Panics
    /// Under `CI=true` when there is no binary, or when it does not start.
    pub fn start() -> Option<Self> {
        match Self::start_process() {
            Ok(server) => Some(server),
            Err(error) if ci() => panic!("CI=true but this test's redis-server cannot start: {error:#}"),
            Err(error) => {
                eprintln!("SKIPPING: this test needs the redis-server binary ({error:#})");
                None
            }
        }
    }

    fn start_process() -> anyhow::Result<Self> {
        let binary = redis_server_binary().context("redis-server not found (Debian package redis-server)")?;
        let dir = tempfile::Builder::new().prefix("cleave-redis-").tempdir()?.keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self { child: None, binary, port, dir };
        server.try_restart()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: it keeps nothing on disk).
    ///
    /// # Panics
    /// When it does not start within 10 s.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|error| panic!("{error:#}"));
    }

    fn try_restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log"))?;
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start; see {}", self.dir.join("log").display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for OwnRedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "testcontainers")]
fn start_container() -> anyhow::Result<RedisServer> {
    use testcontainers::runners::SyncRunner as _;
    anyhow::ensure!(std::path::Path::new("/var/run/docker.sock").exists() || std::env::var_os("DOCKER_HOST").is_some(), "no Docker engine");
    let container = testcontainers_modules::redis::Redis::default().start().context("cannot start a Redis container")?;
    let port = container.get_host_port_ipv4(6379)?;
    // The container lives as long as the test process.
    std::mem::forget(container);
    Ok(RedisServer { url: format!("redis://127.0.0.1:{port}"), source: "a testcontainers container" })
}

#[cfg(not(feature = "testcontainers"))]
fn start_container() -> anyhow::Result<RedisServer> {
    anyhow::bail!("built without the `testcontainers` feature")
}
