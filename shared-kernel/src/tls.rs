//! TLS on the internal HTTP wire, both ends, with rustls (ring, as NATS and SMTP use it):
//! the internal listener serves HTTPS with this process's certificate and admits only clients
//! that present one signed by the deployment's CA (mutual TLS); the RPC client verifies the
//! server with that CA and presents this process's certificate. `cleave trust init` writes the
//! CA and one certificate per process kind.
//!
//! TLS proves the channel (nobody reads or changes a call in transit, nobody outside the
//! deployment even completes a handshake); the signed assertion every call carries
//! ([`crate::identity`]) still proves which process made the call and what for.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The files of one process's TLS: the deployment's CA, and this process's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("the TLS configuration is refused: {0}")]
    Config(String),
}

/// Makes ring the process's default TLS provider (once; a provider already installed stays):
/// the HTTP client takes the process default.
pub fn install_default_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| TlsError::File { path: path.to_owned(), detail: error.to_string() })?;
    if certificates.is_empty() {
        return Err(TlsError::Empty { path: path.to_owned(), what: "certificate" });
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::File { path: path.to_owned(), detail: error.to_string() })
}

fn roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(ca)? {
        roots.add(certificate).map_err(|error| TlsError::Config(format!("{}: {error}", ca.display())))?;
    }
    Ok(Arc::new(roots))
}

fn config_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Config(error.to_string())
}

/// The internal listener's TLS: this process's certificate, and only clients whose certificate
/// the CA signed.
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, a key that does not match.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider()).build().map_err(config_error)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&files.certificate)?, private_key(&files.key)?)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// The RPC client's TLS: servers verified with the CA only (not the system's roots), this
/// process's certificate presented.
///
/// # Errors
/// As [`server_config`].
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(certificates(&files.certificate)?, private_key(&files.key)?)
        .map_err(config_error)
}

/// The name in a process kind's certificate that says which kind it is (`payments.identities.cleave`):
/// never a host of the network, so only `cleave trust init` puts it there, in that kind's
/// certificate alone.
pub fn identity_name(kind: &str) -> String {
    format!("{kind}{IDENTITY_SUFFIX}")
}

/// The domain of the identity names; a `--host` in it is refused.
pub const IDENTITY_SUFFIX: &str = ".identities.cleave";

/// Verifies a server as the CA's, for the host it was called at, *and* as one of the process
/// kinds that may answer for the module called: a certificate of another kind of the same
/// deployment (a stolen one, or a process that took a module's address) is refused.
#[derive(Debug)]
struct HostingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    kinds: Vec<rustls::pki_types::ServerName<'static>>,
    module: String,
}

impl rustls::client::danger::ServerCertVerifier for HostingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
        if self.kinds.iter().any(|kind| rustls::client::verify_server_name(&certificate, kind).is_ok()) {
            Ok(verified)
        } else {
            metrics::counter!("internal_tls_handshakes_failed_total", "reason" => "not_the_module").increment(1);
            Err(rustls::Error::General(format!("the server's certificate is not that of a process hosting {}", self.module)))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// [`client_config`] for calls to `module`, whose server must moreover present the certificate
/// of one of `kinds` (the process kinds that may host it): a process of the deployment holding
/// another kind's certificate cannot answer for the module, even at its address.
///
/// # Errors
/// As [`client_config`], or a kind that is no valid name.
pub fn client_config_for(files: &TlsFiles, module: &str, kinds: &[&str]) -> Result<rustls::ClientConfig, TlsError> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(&files.ca)?, provider()).build().map_err(config_error)?;
    let kinds = kinds
        .iter()
        .map(|kind| rustls::pki_types::ServerName::try_from(identity_name(kind)).map_err(config_error))
        .collect::<Result<Vec<_>, _>>()?;
    let verifier = Arc::new(HostingVerifier { inner, kinds, module: module.to_owned() });
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(certificates(&files.certificate)?, private_key(&files.key)?)
        .map_err(config_error)
}

/// How long a client may take over its handshake, and how many handshakes run at once; past
/// either the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKES_AT_ONCE: usize = 256;

/// A TCP listener whose connections are TLS, for `axum::serve`. Handshakes run in tasks of their
/// own, so a slow or hostile client holds up no one else; a failed one is counted
/// (`internal_tls_handshakes_failed_total`) and logged with the peer's address.
pub struct TlsListener {
    incoming: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    ///
    /// # Errors
    /// The listener has no local address.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, incoming) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_AT_ONCE));
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept on the internal listener");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    return;
                }
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    metrics::counter!("internal_tls_handshakes_failed_total", "reason" => "busy").increment(1);
                    continue;
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            metrics::counter!("internal_tls_handshakes_failed_total", "reason" => "refused").increment(1);
                            tracing::warn!(%peer, %error, "a TLS handshake on the internal listener failed");
                        }
                        Err(_) => {
                            metrics::counter!("internal_tls_handshakes_failed_total", "reason" => "timeout").increment(1);
                            tracing::warn!(%peer, "a TLS handshake on the internal listener timed out");
                        }
                    }
                });
            }
        });
        Ok(Self { incoming, local_addr, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accepting task is gone (only when the runtime shuts down): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
