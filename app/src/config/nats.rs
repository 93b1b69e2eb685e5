//! `[nats]`: how this process connects to the broker, for the NATS wire and the JetStream bus.

use serde::{Deserialize, Serialize};
use shared_kernel::Secret;
use std::path::PathBuf;

/// How this process connects to NATS: for the NATS wire (serving the modules hosted here, and
/// calling the modules set to `wire = "nats"`). Unset `url`: no NATS at all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// One server URL, or several separated by commas (`nats://a:4222,nats://b:4222`).
    pub url: Option<String>,
    pub token: Option<Secret<String>>,
    pub user: Option<String>,
    pub password: Option<Secret<String>>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A file holding this process's NKey seed (`SU…`), to authenticate with as that nkey user:
    /// `cleave trust init` gives every process kind its identity key for it.
    pub nkey_seed_file: Option<PathBuf>,
    /// The prefix of this process's reply subjects (`_INBOX` unless set): `cleave trust init`
    /// gives each process kind one of its own, which only it may subscribe to.
    pub inbox_prefix: Option<String>,
    /// A CA certificate (PEM); when set, TLS is required and the servers are verified with it.
    pub tls_ca_file: Option<PathBuf>,
    /// This process's client certificate and its key (PEM), for a server that requires them.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The first token of every wire subject (`<prefix>.rpc.<module>.<operation>`).
    pub subject_prefix: String,
    /// Calls one instance of a module handles at once; more wait.
    pub max_in_flight: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            user: None,
            password: None,
            credentials_file: None,
            nkey_seed_file: None,
            inbox_prefix: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            subject_prefix: "cleave".to_owned(),
            max_in_flight: 512,
        }
    }
}

impl NatsSettings {
    /// The connection options, when `url` is set; `name` is this process's name.
    pub fn options(&self, name: &str) -> Option<shared_kernel::nats_wire::NatsOptions> {
        let url = self.url.as_ref()?;
        Some(shared_kernel::nats_wire::NatsOptions {
            urls: url.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_owned).collect(),
            token: self.token.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            credentials_file: self.credentials_file.clone(),
            nkey_seed_file: self.nkey_seed_file.clone(),
            inbox_prefix: self.inbox_prefix.clone(),
            tls_ca_file: self.tls_ca_file.clone(),
            tls_client: self.tls_cert_file.clone().zip(self.tls_key_file.clone()),
            name: name.to_owned(),
        })
    }
}
