//! Topologies as users run them: the preset binaries as OS processes.
//!
//! [`preset_binary`] builds each preset once per test run (or takes it from
//! `PRESET_BIN_DIR`); [`OsProcess`] starts one with a configuration file of its own, waits
//! until it serves and is ready, and keeps its log.

use anyhow::Context as _;
use cleave::config::Settings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How the processes of a [`crate::Topology::Processes`] topology are laid out. Every process
/// has a PostgreSQL database of its own, and every split layout carries events on JetStream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The default binary, everything in one process.
    Monolith,
    /// Every module's service (five today) and the gateway, each from its preset, every wire and
    /// event on NATS, no address configured anywhere.
    ServicesOverNats,
    /// The strangler step: the default binary twice, payments in a process of its own, reached
    /// over HTTP; configuration only.
    PaymentsApart,
    /// The default binary three times: orders and payments each in a process of their own, over
    /// HTTP.
    OrdersAndPaymentsApart,
}

/// Which implementation a process hosts, or that it reaches every module remotely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Monolith,
    Gateway,
    /// Module `name` alone (the `<name>-service` feature).
    Service(&'static str),
}

impl Preset {
    /// The cargo feature that selects it.
    pub fn feature(self) -> String {
        match self {
            Self::Monolith => "monolith".to_owned(),
            Self::Gateway => "gateway".to_owned(),
            Self::Service(module) => format!("{module}-service"),
        }
    }
}

/// The binary of `preset`: `$PRESET_BIN_DIR/<feature>` when that variable is set (binaries
/// built elsewhere, for example by a container build), else built here with cargo, once per
/// test run, into the target directory this test binary lives in.
///
/// # Panics
/// When the build fails: every test that needs the binary fails with cargo's output.
pub fn preset_binary(preset: Preset) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    if let Some(dir) = std::env::var_os("PRESET_BIN_DIR") {
        let binary = Path::new(&dir).join(preset.feature());
        assert!(binary.is_file(), "PRESET_BIN_DIR is set but holds no {}", binary.display());
        return binary;
    }
    // One build at a time: cargo would serialize them anyway, and each replaces `cleave-preset`.
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(binary) = built.get(&preset.feature()) {
        return binary.clone();
    }
    let binary = build(preset).unwrap_or_else(|error| panic!("cannot build the {} preset: {error:#}", preset.feature()));
    built.insert(preset.feature(), binary.clone());
    binary
}

fn build(preset: Preset) -> anyhow::Result<PathBuf> {
    // This binary is <target>/<profile>/deps/<name>: build into the same target and profile, so
    // only the `cleave` crate is compiled again.
    let exe = std::env::current_exe().context("no path to the test binary")?;
    let profile_dir = exe.parent().and_then(Path::parent).context("the test binary is not in <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target directory")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("no workspace")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "cleave", "--bin", "cleave-preset", "--no-default-features", "--features"])
        .arg(format!("{},preset-binary", preset.feature()))
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let output = command.output().context("cannot run cargo")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo build failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let presets = profile_dir.join("presets");
    std::fs::create_dir_all(&presets)?;
    let binary = presets.join(preset.feature());
    let _ = std::fs::remove_file(&binary);
    // The next preset's build replaces `cleave-preset` with a new file; this link keeps the old.
    let built = profile_dir.join(format!("cleave-preset{}", std::env::consts::EXE_SUFFIX));
    if std::fs::hard_link(&built, &binary).is_err() {
        std::fs::copy(&built, &binary).with_context(|| format!("cannot copy {}", built.display()))?;
    }
    Ok(binary)
}

/// The log filter of every test process, in process or not: tests read the lines to prove what
/// is logged and what never is.
pub const LOG_FILTER: &str = "debug,hyper=info,hyper_util=info,h2=info,reqwest=info,tower=info";

/// One `cleave serve` process.
pub struct OsProcess {
    pub name: String,
    /// `http://<public address>`.
    pub address: String,
    /// `https://<internal address>` (`http://` without TLS), when it has an internal listener.
    pub internal: Option<String>,
    log: PathBuf,
    child: Child,
}

impl OsProcess {
    /// Starts `binary` as `name`, configured by `settings` (written to a file in `dir`; the admin
    /// to bootstrap goes in the environment, as it must), with its log in `dir/<name>.log`.
    /// Returns once it serves (it has bound its listeners); [`OsProcess::wait_ready`] waits for
    /// its readiness.
    ///
    /// Its environment holds only `PATH`, `NO_COLOR` and `env`.
    pub async fn start(binary: &Path, name: &str, settings: &Settings, dir: &Path, env: &[(String, String)]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml::to_string(settings).context("the settings as TOML")?)?;
        let log = dir.join(format!("{name}.log"));
        // A process started again keeps its earlier life's log beside the new one.
        if log.exists() {
            let earlier = (1..).map(|life| dir.join(format!("{name}.{life}.log"))).find(|path| !path.exists()).expect("a free name");
            std::fs::rename(&log, earlier)?;
        }
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stderr(out.try_clone()?)
            .stdout(out);
        if let Some(admin) = &settings.admin_bootstrap {
            command.env("ADMIN_EMAIL", &admin.email).env("ADMIN_PASSWORD", admin.password.expose());
        }
        let child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let mut process = Self { name: name.to_owned(), address: String::new(), internal: None, log, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((address, internal)) = serving_line(&process.log()) {
                process.address = format!("http://{address}");
                // Its internal listener serves HTTPS when its env file gives it a certificate.
                let scheme = if env.iter().any(|(name, _)| name == "CLEAVE_TLS__CERT_FILE") { "https" } else { "http" };
                process.internal = internal.map(|internal| format!("{scheme}://{internal}"));
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!("{name} exited ({status}) before serving:\n{}", process.tail(40));
            }
            anyhow::ensure!(Instant::now() < deadline, "{name} did not serve within a minute:\n{}", process.tail(40));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `/health/ready` answers 200 and reports every module it calls reachable
    /// (a process is ready without them; a test wants the whole topology up).
    pub async fn wait_ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/health/ready", self.address);
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status() == 200
                && let Ok(report) = response.json::<serde_json::Value>().await
                && report["checks"].as_object().is_some_and(|checks| {
                    checks.iter().all(|(name, result)| !(name.ends_with(".remote") || name.ends_with(".circuit")) || result == "ok")
                })
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("{} exited ({status}):\n{}", self.name, self.tail(40));
            }
            anyhow::ensure!(Instant::now() < deadline, "{} was not ready within a minute:\n{}", self.name, self.tail(40));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// Its last `lines` log lines.
    pub fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends it SIGTERM, as an orchestrator does, and returns at once.
    pub fn terminate(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    /// Waits up to `within` for it to exit; its exit status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops it as an orchestrator does: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.kill();
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The addresses from the `serving` line a process logs once its listeners are bound, as text
/// or as JSON (`log.format = "json"`).
fn serving_line(log: &str) -> Option<(String, Option<String>)> {
    log.lines().find_map(|line| {
        if line.starts_with('{') {
            let line: serde_json::Value = serde_json::from_str(line).ok()?;
            let field = |name: &str| line[name].as_str().map(str::to_owned);
            return (line["message"] == "serving").then(|| Some((field("addr")?, field("internal")))).flatten();
        }
        if !(line.contains(" serving") && line.contains("addr=")) {
            return None;
        }
        let field = |name: &str| line.split_whitespace().find_map(|word| word.strip_prefix(name)).map(str::to_owned);
        Some((field("addr=")?, field("internal=")))
    })
}

#[cfg(test)]
mod tests {
    use super::serving_line;

    #[test]
    fn the_serving_line_gives_both_addresses() {
        let log = "2026-12-01T13:00:00Z  INFO cleave::composition: composed\n\
                   2026-12-01T13:00:01Z  INFO cleave::cli: serving addr=127.0.0.1:4100 internal=127.0.0.1:4101\n";
        assert_eq!(serving_line(log), Some(("127.0.0.1:4100".into(), Some("127.0.0.1:4101".into()))));
        let public_only = "2026-12-01T13:00:01Z  INFO cleave::cli: serving addr=127.0.0.1:4100\n";
        assert_eq!(serving_line(public_only), Some(("127.0.0.1:4100".into(), None)));
        assert_eq!(serving_line("2026-12-01T13:00:00Z  INFO cleave::startup: listening\n"), None);
        let json = "{\"level\":\"INFO\",\"message\":\"composed\"}\n\
                    {\"level\":\"INFO\",\"message\":\"serving\",\"addr\":\"127.0.0.1:4100\",\"internal\":\"127.0.0.1:4101\"}\n";
        assert_eq!(serving_line(json), Some(("127.0.0.1:4100".into(), Some("127.0.0.1:4101".into()))));
    }
}
