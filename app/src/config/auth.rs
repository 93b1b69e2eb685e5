//! `[auth]`: how tokens are issued and verified, and how processes prove themselves to each
//! other: this process's identity (`identity_*`) and the processes whose calls it accepts on its
//! internal wire (`trusted`).

use super::Settings;
use serde::{Deserialize, Serialize};
use shared_kernel::Secret;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    /// At most 900.
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// The signing key file (see `cleave keys generate`). Default: `<data_dir>/signing-keys.json`.
    pub keys_file: Option<PathBuf>,
    /// The key set itself, as JSON in the key-file format (takes precedence over the file).
    pub keys_json: Option<Secret<String>>,
    /// Create the key file with a new key when it is missing (development). Turn off in
    /// production so a missing key is an error, not a silent new identity.
    pub generate_keys: bool,
    pub login_per_account_per_minute: u32,
    pub login_per_address_per_minute: u32,
    /// Shared token for service-to-service calls made on a service's own behalf. Superseded by
    /// service identities (`identity_seed_file`, `trusted`): where `trusted` is set it is not
    /// asked for.
    pub service_token: Option<Secret<String>>,
    /// This process's identity: the file holding its nkey seed (`SU…`). Every contract call it
    /// makes then carries an assertion signed with it.
    pub identity_seed_file: Option<PathBuf>,
    /// The name this process's assertions carry. Default: `server.service_name`.
    pub identity_process: Option<String>,
    /// The processes whose calls this one accepts on its internal wire (HTTP and NATS), each with
    /// its public keys and the services it may call as. Set: every call must carry a valid
    /// assertion of one of them, and no service token is needed.
    pub trusted: std::collections::BTreeMap<String, TrustedProcess>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "cleave".to_owned(),
            audience: "cleave-api".to_owned(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            keys_file: None,
            keys_json: None,
            generate_keys: true,
            login_per_account_per_minute: 5,
            login_per_address_per_minute: 20,
            service_token: None,
            identity_seed_file: None,
            identity_process: None,
            trusted: std::collections::BTreeMap::new(),
        }
    }
}

/// `auth.trusted.<process>`: a process this one accepts calls from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustedProcess {
    /// Its public keys (`U…`): a list, or separated by commas; two while its key is rotated.
    #[serde(deserialize_with = "comma_list")]
    pub keys: Vec<String>,
    /// The services it may call as on their own behalf (the modules it hosts, `edge`): a list,
    /// or separated by commas.
    #[serde(deserialize_with = "comma_list")]
    pub services: Vec<String>,
}

/// A list of strings, or one string of items separated by commas.
fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect(),
        OneOrMany::Many(items) => items,
    })
}

impl Settings {
    /// Whether calls on this process's internal wire must prove their process (`auth.trusted`)
    /// or carry the service token.
    pub fn internal_wire_guarded(&self) -> bool {
        !self.auth.trusted.is_empty() || self.auth.service_token.is_some()
    }

    /// A process that serves or calls an internal wire does so with its identity and over TLS,
    /// unless `server.allow_unauthenticated_internal` says this is development. Checked when the
    /// process starts serving (a one-off command such as `cleave data move` may be given the
    /// deployment's environment without its identity).
    ///
    /// # Errors
    /// What is missing, and how to get it.
    pub fn validate_wire_security(&self) -> anyhow::Result<()> {
        if self.server.allow_unauthenticated_internal {
            return Ok(());
        }
        let urls = self.modules.each().into_iter().any(|(_, module)| module.url.is_some());
        let wires = self.server.internal_addr.is_some() || urls || self.nats.url.is_some();
        if !wires {
            return Ok(());
        }
        const HOW: &str = "`cleave trust init` writes every process's settings; or set server.allow_unauthenticated_internal = true, for development only";
        anyhow::ensure!(
            self.auth.identity_seed_file.is_some() && !self.auth.trusted.is_empty(),
            "this process serves or calls an internal wire (server.internal_addr, modules.<m>.url or nats.url) without its identity: set auth.identity_seed_file and auth.trusted ({HOW})"
        );
        if self.server.internal_addr.is_some() || urls {
            anyhow::ensure!(
                self.tls.files().is_some(),
                "the internal HTTP wire needs TLS: set tls.ca_file, tls.cert_file and tls.key_file ({HOW})"
            );
        }
        for (name, module) in self.modules.each() {
            for url in module.url.iter().flat_map(|urls| urls.split(',')).map(str::trim) {
                anyhow::ensure!(url.starts_with("https://"), "modules.{name}.url must be an https:// URL ({HOW})");
            }
        }
        if self.nats.url.is_some() {
            let credentials = self.nats.nkey_seed_file.is_some()
                || self.nats.credentials_file.is_some()
                || self.nats.user.is_some()
                || self.nats.token.is_some();
            anyhow::ensure!(credentials, "nats.url needs credentials: set nats.nkey_seed_file ({HOW})");
            anyhow::ensure!(self.nats.tls_ca_file.is_some(), "nats.url needs TLS: set nats.tls_ca_file ({HOW})");
        }
        Ok(())
    }

    /// The name this process's assertions carry.
    pub fn identity_process(&self) -> &str {
        self.auth.identity_process.as_deref().unwrap_or(&self.server.service_name)
    }

    pub(super) fn validate_identities(&self) -> anyhow::Result<()> {
        let known = crate::module_list::service_names();
        for (process, trusted) in &self.auth.trusted {
            anyhow::ensure!(!trusted.keys.is_empty(), "auth.trusted.{process}.keys names no key");
            for service in &trusted.services {
                anyhow::ensure!(
                    known.iter().any(|name| name.as_str() == service),
                    "auth.trusted.{process}.services names {service:?}, which is no module of this build nor `edge`"
                );
            }
        }
        shared_kernel::identity::TrustedProcesses::new(&self.trusted_keys()).map_err(|error| anyhow::anyhow!("auth.trusted: {error}"))?;
        if self.auth.identity_seed_file.is_some() {
            let process = self.identity_process();
            anyhow::ensure!(
                !process.is_empty() && process.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "auth.identity_process (or server.service_name) must be lower-case letters, digits and `-` to name an identity"
            );
        }
        Ok(())
    }

    /// `auth.trusted`'s keys per process.
    pub fn trusted_keys(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.auth.trusted.iter().map(|(process, trusted)| (process.clone(), trusted.keys.clone())).collect()
    }
}
