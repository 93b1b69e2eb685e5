//! Test harness for services: finds a PostgreSQL server and hands out fresh databases, and
//! finds a NATS server ([`nats`]) and a Redis server ([`redis`]).
//!
//! Order of search, once per test process:
//! 1. `DATABASE_URL` (a `postgres://` URL of a server where we may create databases);
//! 2. a throwaway server of our own (`initdb` + `pg_ctl` found on `PATH` or in the usual
//!    PostgreSQL install directories), in a temporary directory, stopped when the test process
//!    ends;
//! 3. with the `testcontainers` feature, a PostgreSQL container when a Docker engine answers.
//!
//! When none is found, [`postgres`] returns `None` and prints why, so a developer without
//! PostgreSQL still runs the SQLite suites; under `CI=true` it panics instead: CI never skips.

pub mod bench;
pub mod callers;
pub mod contract;
pub mod nats;
pub mod redis;
pub mod smtp;

pub use nats::{NatsServer, nats};
pub use redis::{RedisServer, redis};

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, Database};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A PostgreSQL server tests may create databases on.
#[derive(Debug)]
pub struct PostgresServer {
    /// Connects as a role allowed to create databases, to the maintenance database.
    admin_url: String,
    /// Where it came from, for messages.
    pub source: &'static str,
}

static SERVER: OnceLock<Option<PostgresServer>> = OnceLock::new();
static DATABASE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The PostgreSQL server for this test process, found or started on first use.
///
/// # Panics
/// Under `CI=true` when no server can be found or started.
pub fn postgres() -> Option<&'static PostgresServer> {
    SERVER
        .get_or_init(|| {
            let found = find_or_start();
            match &found {
                Ok(server) => eprintln!("test PostgreSQL: {}", server.source),
                Err(error) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
                    panic!("CI=true but no PostgreSQL is available for the tests: {error:#}")
                }
                Err(error) => eprintln!("SKIPPING PostgreSQL tests: no server available ({error:#}). Set DATABASE_URL to run them."),
            }
            found.ok()
        })
        .as_ref()
}

impl PostgresServer {
    /// Creates an empty database and returns its URL.
    ///
    /// # Errors
    /// When the server refuses.
    pub async fn fresh_database(&self) -> anyhow::Result<String> {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let name = format!("cleave_test_{started}_{}_{}", DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed), uuid::Uuid::new_v4().simple());
        let name = &name[..name.len().min(63)];
        let connection = Database::connect(self.admin_url.as_str()).await.context("cannot connect to the test PostgreSQL")?;
        connection.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.context("CREATE DATABASE")?;
        connection.close().await.ok();
        Ok(with_database(&self.admin_url, name))
    }
}

/// Replaces the database name in a `postgres://` URL.
fn with_database(url: &str, database: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn find_or_start() -> anyhow::Result<PostgresServer> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        drop_old_test_databases(&url);
        return Ok(PostgresServer { admin_url: url, source: "DATABASE_URL" });
    }
    match start_throwaway_server() {
        Ok(server) => return Ok(server),
        Err(error) => eprintln!("no throwaway PostgreSQL: {error:#}"),
    }
    start_container()
}

/// Best effort: drops `cleave_test_<unix seconds>_…` databases more than a day old (a shared
/// development server otherwise fills up with them). Age, not process ids: other machines and
/// containers share such a server, and no test runs for a day.
fn drop_old_test_databases(admin_url: &str) {
    let admin_url = admin_url.to_owned();
    let cleanup = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async move {
            let connection = Database::connect(admin_url.as_str()).await.ok()?;
            let rows = connection
                .query_all_raw(sea_orm::Statement::from_string(
                    connection.get_database_backend(),
                    "SELECT datname FROM pg_database WHERE datname LIKE 'cleave_test_%'",
                ))
                .await
                .ok()?;
            for row in rows {
                let Ok(name) = row.try_get::<String>("", "datname") else { continue };
                let created = name.trim_start_matches("cleave_test_").split('_').next().and_then(|p| p.parse::<u64>().ok());
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                if created.is_some_and(|created| now.saturating_sub(created) > 24 * 3600) {
                    let _ = connection.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                }
            }
            connection.close().await.ok()
        })
    });
    let _ = cleanup.join();
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let from_path =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()));
    from_path.or_else(|| {
        let mut versions: Vec<PathBuf> =
            std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name))).collect();
        versions.sort();
        versions.into_iter().rev().find(|p| p.is_file())
    })
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A command run as the `postgres` user when we are root (initdb refuses to run as root).
fn as_postgres_user(program: &Path, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_throwaway_server() -> anyhow::Result<PostgresServer> {
    let initdb = find_binary("initdb").context("initdb not found")?;
    let pg_ctl = find_binary("pg_ctl").context("pg_ctl not found")?;
    let root = running_as_root();
    let dir = tempfile::Builder::new().prefix("cleave-pg-").tempdir()?.keep();
    if root {
        let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status()?;
        anyhow::ensure!(status.success(), "cannot hand {} to the postgres user", dir.display());
    }
    let data = dir.join("data");
    let output = as_postgres_user(&initdb, root).args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"]).arg(&data).output()?;
    anyhow::ensure!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    let output = as_postgres_user(&pg_ctl, root)
        .args(["-D"])
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(dir.join("log"))
        .args(["-w", "start"])
        .output()?;
    anyhow::ensure!(output.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&output.stderr));
    // A watchdog stops the server and removes its directory once this test process is gone.
    let stop = if root {
        format!("runuser -u postgres -- {} -D {} stop -m immediate", pg_ctl.display(), data.display())
    } else {
        format!("{} -D {} stop -m immediate", pg_ctl.display(), data.display())
    };
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    Ok(PostgresServer {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        source: "a throwaway server started by the tests",
    })
}

#[cfg(feature = "testcontainers")]
fn start_container() -> anyhow::Result<PostgresServer> {
    use testcontainers::runners::SyncRunner as _;
    anyhow::ensure!(Path::new("/var/run/docker.sock").exists() || std::env::var_os("DOCKER_HOST").is_some(), "no Docker engine");
    let container = testcontainers_modules::postgres::Postgres::default().start().context("cannot start a PostgreSQL container")?;
    let port = container.get_host_port_ipv4(5432)?;
    // The container lives as long as the test process.
    std::mem::forget(container);
    Ok(PostgresServer {
        admin_url: format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
        source: "a testcontainers container",
    })
}

#[cfg(not(feature = "testcontainers"))]
fn start_container() -> anyhow::Result<PostgresServer> {
    anyhow::bail!("built without the `testcontainers` feature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"), "postgres://postgres@127.0.0.1:5432/x");
        assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
