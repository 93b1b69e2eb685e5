//! `[tls]`: this process's certificate on the internal HTTP wire, both ends (`cleave trust init`
//! writes the CA and one certificate per process kind).

use serde::{Deserialize, Serialize};
use shared_kernel::tls::TlsFiles;
use std::path::PathBuf;

/// The internal HTTP wire's TLS. All three set: `server.internal_addr` serves HTTPS with this
/// certificate and admits only clients with one the CA signed, and this process's calls to
/// `https://` modules verify the server with the CA and present this certificate. None set: no
/// TLS (refused outside development: see `server.allow_unauthenticated_internal`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The deployment's CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// This process's certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// The three files, when all are set.
    pub fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles { ca: self.ca_file.clone()?, certificate: self.cert_file.clone()?, key: self.key_file.clone()? })
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let set = [&self.ca_file, &self.cert_file, &self.key_file].iter().filter(|file| file.is_some()).count();
        anyhow::ensure!(set == 0 || set == 3, "tls.ca_file, tls.cert_file and tls.key_file go together: set all three or none");
        if let Some(files) = self.files() {
            shared_kernel::tls::server_config(&files).map_err(|error| anyhow::anyhow!("[tls]: {error}"))?;
        }
        Ok(())
    }
}
