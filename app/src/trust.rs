//! `cleave trust init --dir DIR`: what the processes of a split deployment need to prove who they
//! are to each other, with no other tool.
//!
//! - `DIR/<process>.nk`: one identity per process kind (the gateway, the monolith, each module's
//!   service), an Ed25519 key as an NATS user nkey seed, mode 0600;
//! - `DIR/<process>.env`: the `CLEAVE_*` settings that process needs: its key file and name, and
//!   every process kind it accepts calls from, with their public keys and the services each may
//!   call as (the modules it hosts; `edge` for the gateway and the monolith, which serve the
//!   whole public API), its key again as its NATS nkey and its own reply inbox, so
//!   `set -a; . DIR/orders.env` plus the topology's own settings starts it;
//! - `DIR/nats.conf`: the broker's configuration, TLS with client certificates required, one
//!   nkey user per process kind with only the subjects its part needs ([`broker`]);
//! - the deployment's CA and a certificate per process kind and for the broker
//!   ([`certificates`]): the internal HTTP wire and NATS run over TLS with them.
//!
//! Running it again rotates every key without downtime: the new key is written, the old one kept
//! as `<process>.previous.nk`, and every env file trusts both; restart every process, then run it
//! with `--retire` to drop the old keys (and restart again). What a leaked key exposes is in
//! docs/security.md.

use anyhow::Context as _;
use shared_kernel::identity::ServiceIdentity;
use std::path::{Path, PathBuf};

/// Every process kind of a deployment: the gateway, the monolith and one per module.
pub fn process_kinds() -> Vec<&'static str> {
    ["gateway", "monolith"].into_iter().chain(crate::module_list::NAMES.iter().copied()).collect()
}

/// The services process `kind` may call as: the modules it hosts, and `edge` for the processes
/// that serve the whole public API (the gateway and the monolith).
pub fn services_of(kind: &str) -> Vec<String> {
    match kind {
        "gateway" => vec!["edge".to_owned()],
        "monolith" => crate::module_list::NAMES.iter().copied().chain(["edge"]).map(str::to_owned).collect(),
        module => vec![module.to_owned()],
    }
}

fn key_file(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!("{kind}.nk"))
}

fn previous_key_file(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!("{kind}.previous.nk"))
}

/// A secret file only its owner reads.
pub(crate) fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
    };
    #[cfg(not(unix))]
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path);
    let mut file = file.with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

fn read_identity(path: &Path, kind: &str) -> anyhow::Result<ServiceIdentity> {
    let seed = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    ServiceIdentity::from_seed(kind, &seed).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

pub mod broker;
pub mod certificates;

/// What `init` does beyond making keys.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Drop the previous keys instead of making new ones.
    pub retire: bool,
    /// The deployment's `nats.subject_prefix`: the broker's permissions name its subjects.
    pub subject_prefix: String,
    /// Host names (or addresses) every certificate names besides its kind, `localhost` and the
    /// loopback addresses: the names the processes and the broker are reached by.
    pub hosts: Vec<String>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self { retire: false, subject_prefix: "cleave".to_owned(), hosts: Vec::new() }
    }
}

/// Creates (or rotates, or with `retire` drops the previous) keys in `dir` and writes every
/// process's env file and the broker's `nats.conf`. Returns what it did, a line per process.
///
/// # Errors
/// A directory or file that cannot be written or read, a key file that holds no key, a second
/// rotation before the previous key was retired.
pub fn init(dir: &Path, options: &InitOptions) -> anyhow::Result<Vec<String>> {
    let retire = options.retire;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let mut report = Vec::new();
    for kind in process_kinds() {
        let (current, previous) = (key_file(&dir, kind), previous_key_file(&dir, kind));
        if retire {
            if previous.exists() {
                std::fs::remove_file(&previous).with_context(|| format!("cannot remove {}", previous.display()))?;
                report.push(format!("{kind}: retired its previous key"));
            }
            continue;
        }
        if current.exists() {
            anyhow::ensure!(
                !previous.exists(),
                "{kind} has a previous key still trusted: restart every process with the current files, then run `cleave trust init --retire` before rotating again"
            );
            read_identity(&current, kind)?;
            std::fs::rename(&current, &previous).with_context(|| format!("cannot keep {} as the previous key", current.display()))?;
        }
        let identity = ServiceIdentity::generate(kind);
        let seed = identity.seed().map_err(|error| anyhow::anyhow!(error))?;
        write_secret(&current, &format!("{}\n", seed.expose()))?;
        let rotated = if previous.exists() { " (the previous one stays trusted until --retire)" } else { "" };
        report.push(format!("{kind}: {}{rotated}", identity.public_key()));
    }
    if !retire {
        certificates::issue_all(&dir, &process_kinds(), &options.hosts)?;
    }
    // Every process trusts every kind, each for the services it hosts: the operations' own
    // lists (`services [..]` in the contracts) then decide what each may call.
    let mut trusted = Vec::new();
    for kind in process_kinds() {
        let mut keys = vec![read_identity(&key_file(&dir, kind), kind)?.public_key()];
        if previous_key_file(&dir, kind).exists() {
            keys.push(read_identity(&previous_key_file(&dir, kind), kind)?.public_key());
        }
        trusted.push((kind, keys));
    }
    for kind in process_kinds() {
        let mut env = format!(
            "# cleave trust init: the identity of the {kind} process and the processes it trusts.\nCLEAVE_AUTH__IDENTITY_SEED_FILE={}\nCLEAVE_AUTH__IDENTITY_PROCESS={kind}\n",
            key_file(&dir, kind).display()
        );
        for (other, keys) in &trusted {
            let upper = other.to_uppercase();
            env.push_str(&format!("CLEAVE_AUTH__TRUSTED__{upper}__KEYS={}\n", keys.join(",")));
            env.push_str(&format!("CLEAVE_AUTH__TRUSTED__{upper}__SERVICES={}\n", services_of(other).join(",")));
        }
        // The same key is its nkey on the broker, with replies under an inbox of its own; one
        // certificate for both wires.
        let ca = certificates::ca_file(&dir);
        let (certificate, key) = certificates::certificate_files(&dir, kind);
        env.push_str(&format!("CLEAVE_NATS__NKEY_SEED_FILE={}\n", key_file(&dir, kind).display()));
        env.push_str(&format!("CLEAVE_NATS__INBOX_PREFIX={}\n", broker::inbox_prefix(kind)));
        for section in ["TLS", "NATS"] {
            let prefix = if section == "TLS" { "" } else { "TLS_" };
            env.push_str(&format!("CLEAVE_{section}__{prefix}CA_FILE={}\n", ca.display()));
            env.push_str(&format!("CLEAVE_{section}__{prefix}CERT_FILE={}\n", certificate.display()));
            env.push_str(&format!("CLEAVE_{section}__{prefix}KEY_FILE={}\n", key.display()));
        }
        let path = dir.join(format!("{kind}.env"));
        write_secret(&path, &env)?;
    }
    let users: Vec<(&str, Vec<String>)> = trusted.iter().map(|(kind, keys)| (*kind, keys.clone())).collect();
    let (nats_certificate, nats_key) = certificates::certificate_files(&dir, "nats");
    let tls = broker::BrokerTls { ca: &certificates::ca_file(&dir), certificate: &nats_certificate, key: &nats_key };
    let conf = broker::render(&options.subject_prefix, &users, Some(&tls));
    write_secret(&dir.join("nats.conf"), &conf)?;
    report.push(format!(
        "wrote {}/<process>.nk and <process>.env for {}, and nats.conf (run: nats-server -c {}/nats.conf -sd STORE_DIR)",
        dir.display(),
        process_kinds().join(", "),
        dir.display()
    ));
    Ok(report)
}

/// The `KEY=value` lines of an env file `init` wrote, as pairs.
///
/// # Errors
/// The file cannot be read.
pub fn read_env(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_key(dir: &Path, kind: &str) -> String {
        read_identity(&key_file(dir, kind), kind).unwrap().public_key()
    }

    #[test]
    fn every_process_gets_a_private_key_and_settings_that_load() {
        let temp = tempfile::tempdir().unwrap();
        init(temp.path(), &InitOptions::default()).unwrap();
        for kind in process_kinds() {
            let key = key_file(temp.path(), kind);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "{kind}'s key is private");
            }
            // The env file is what the process's settings read.
            let env = read_env(&temp.path().join(format!("{kind}.env"))).unwrap();
            figment::Jail::expect_with(|jail| {
                for (name, value) in &env {
                    jail.set_env(name, value);
                }
                let settings = Settings::load(None).map_err(|error| error.to_string())?;
                assert_eq!(settings.identity_process(), kind);
                assert_eq!(settings.auth.trusted.len(), process_kinds().len());
                assert_eq!(settings.auth.trusted["orders"].services, ["orders"]);
                assert_eq!(settings.auth.trusted["gateway"].services, ["edge"]);
                assert_eq!(settings.auth.trusted["payments"].keys, [public_key(temp.path(), "payments")]);
                Ok(())
            });
        }
    }

    #[test]
    fn running_it_again_rotates_with_both_keys_trusted_until_retired() {
        let temp = tempfile::tempdir().unwrap();
        init(temp.path(), &InitOptions::default()).unwrap();
        let old = public_key(temp.path(), "orders");
        init(temp.path(), &InitOptions::default()).unwrap();
        let new = public_key(temp.path(), "orders");
        assert_ne!(old, new);
        let trusted = |dir: &Path| {
            read_env(&dir.join("payments.env"))
                .unwrap()
                .into_iter()
                .find(|(name, _)| name == "CLEAVE_AUTH__TRUSTED__ORDERS__KEYS")
                .unwrap()
                .1
        };
        assert_eq!(trusted(temp.path()), format!("{new},{old}"), "both verify while processes restart");
        assert!(init(temp.path(), &InitOptions::default()).is_err(), "no second rotation before the first is retired");
        init(temp.path(), &InitOptions { retire: true, ..InitOptions::default() }).unwrap();
        assert_eq!(trusted(temp.path()), new, "the old key is no longer trusted");
        assert!(!previous_key_file(temp.path(), "orders").exists());
    }

    use crate::config::Settings;
}
