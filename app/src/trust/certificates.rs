//! The TLS half of `cleave trust init`: a CA of the deployment's own, and a certificate signed by
//! it for every process kind (served on its internal listener and presented as its client
//! certificate, on the HTTP wire and to NATS) and for the NATS server.
//!
//! - `DIR/ca.pem` (the CA certificate, public) and `DIR/ca.key` (0600): made once and kept, so
//!   a rotation issues new certificates that every running process already trusts;
//! - `DIR/<kind>.crt` and `DIR/<kind>.key` (0600) for each process kind, and `DIR/nats.crt` /
//!   `DIR/nats.key` for the broker. Each names the kind (or `nats`), `localhost`, 127.0.0.1, ::1
//!   and the `--host` names given, and is valid for a year: run `cleave trust init` again well
//!   before (it rotates the keys and certificates together).

use super::write_secret;
use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// The CA's name: every certificate it signs carries it as its issuer.
const CA_NAME: &str = "cleave deployment CA";

/// How long a certificate is valid, in days.
const VALID_DAYS: i64 = 365;

/// The CA certificate of `dir`.
pub fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// The certificate and key of `name` (a process kind, or `nats`) in `dir`.
pub fn certificate_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 10 * VALID_DAYS);
    params
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0));
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(u64::try_from(days * 24 * 3600).unwrap_or(0));
}

/// The deployment's CA: made (and written) when `dir` has none, else read back from its key.
fn ca(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let key_path = dir.join("ca.key");
    if key_path.exists() && ca_file(dir).exists() {
        let pem = std::fs::read_to_string(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
        let key = KeyPair::from_pem(&pem).with_context(|| format!("{} holds no key", key_path.display()))?;
        // The same name and key sign as the CA certificate on file does.
        return Ok(Issuer::new(ca_params(), key));
    }
    let key = KeyPair::generate().context("cannot make the CA's key")?;
    let params = ca_params();
    let certificate = params.self_signed(&key).context("cannot make the CA certificate")?;
    write_secret(&key_path, &key.serialize_pem())?;
    std::fs::write(ca_file(dir), certificate.pem()).with_context(|| format!("cannot write {}", ca_file(dir).display()))?;
    Ok(Issuer::new(params, key))
}

/// Writes a certificate for `name`, valid for `name`, `localhost`, the loopback addresses and
/// `hosts`, for a server and a client at once.
fn issue(dir: &Path, issuer: &Issuer<'static, KeyPair>, name: &str, hosts: &[String]) -> anyhow::Result<()> {
    // The identity name says which kind this is (a client calling a module accepts only the
    // kinds that may host it); the others are where it is reached.
    let mut names =
        vec![shared_kernel::tls::identity_name(name), name.to_owned(), "localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    names.extend(hosts.iter().cloned());
    names.dedup();
    let mut params = CertificateParams::new(names).with_context(|| format!("the names of {name}'s certificate"))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, VALID_DAYS);
    let key = KeyPair::generate().with_context(|| format!("cannot make {name}'s TLS key"))?;
    let certificate = params.signed_by(&key, issuer).with_context(|| format!("cannot sign {name}'s certificate"))?;
    let (certificate_path, key_path) = certificate_files(dir, name);
    write_secret(&key_path, &key.serialize_pem())?;
    std::fs::write(&certificate_path, certificate.pem()).with_context(|| format!("cannot write {}", certificate_path.display()))
}

/// Makes the CA if `dir` has none, and a new certificate for every name in `names` and for the
/// NATS server.
///
/// # Errors
/// A file that cannot be read or written, a host name a certificate cannot carry.
pub fn issue_all(dir: &Path, names: &[&str], hosts: &[String]) -> anyhow::Result<()> {
    for host in hosts {
        anyhow::ensure!(
            !host.ends_with(shared_kernel::tls::IDENTITY_SUFFIX),
            "--host {host}: names under {} say which kind a certificate is, and are not hosts",
            shared_kernel::tls::IDENTITY_SUFFIX
        );
    }
    let issuer = ca(dir)?;
    for name in names.iter().copied().chain(["nats"]) {
        issue(dir, &issuer, name, hosts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_is_signed_by_the_ca_that_stays_across_rotations() {
        let temp = tempfile::tempdir().unwrap();
        issue_all(temp.path(), &["orders"], &["orders.internal".to_owned()]).unwrap();
        let ca = std::fs::read_to_string(ca_file(temp.path())).unwrap();
        let first = std::fs::read_to_string(certificate_files(temp.path(), "orders").0).unwrap();
        issue_all(temp.path(), &["orders"], &[]).unwrap();
        assert_eq!(std::fs::read_to_string(ca_file(temp.path())).unwrap(), ca, "the CA stays");
        assert_ne!(std::fs::read_to_string(certificate_files(temp.path(), "orders").0).unwrap(), first, "the certificate is new");
        // Both ends load them, and each verifies against the CA (the TLS tests prove the
        // handshakes).
        for name in ["orders", "nats"] {
            let (certificate, key) = certificate_files(temp.path(), name);
            let files = shared_kernel::tls::TlsFiles { ca: ca_file(temp.path()), certificate, key };
            shared_kernel::tls::server_config(&files).unwrap();
            shared_kernel::tls::client_config(&files).unwrap();
        }
        assert!(issue_all(temp.path(), &["orders"], &["users.identities.cleave".to_owned()]).is_err(), "no kind's name as a host");
    }

    fn files(dir: &Path, kind: &str) -> shared_kernel::tls::TlsFiles {
        let (certificate, key) = certificate_files(dir, kind);
        shared_kernel::tls::TlsFiles { ca: ca_file(dir), certificate, key }
    }

    /// Served with `kind`'s certificate, called as the gateway calls users: only a kind that
    /// may host users is believed, wherever it answers.
    async fn answers_for_users(dir: &Path, kind: &str) -> bool {
        shared_kernel::tls::install_default_provider();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let listener = shared_kernel::tls::TlsListener::new(tcp, shared_kernel::tls::server_config(&files(dir, kind)).unwrap()).unwrap();
        let router = axum::Router::new().route("/health/live", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let tls = shared_kernel::tls::client_config_for(&files(dir, "gateway"), "users", &["users", "monolith"]).unwrap();
        let client = reqwest::Client::builder().tls_backend_preconfigured(tls).build().unwrap();
        let answered = client.get(format!("https://{address}/health/live")).send().await.is_ok_and(|response| response.status() == 200);
        server.abort();
        answered
    }

    #[tokio::test]
    async fn a_module_is_believed_only_from_a_kind_that_may_host_it() {
        let temp = tempfile::tempdir().unwrap();
        issue_all(temp.path(), &["gateway", "users", "monolith", "notifications"], &[]).unwrap();
        assert!(answers_for_users(temp.path(), "users").await, "users' own certificate");
        assert!(answers_for_users(temp.path(), "monolith").await, "the monolith hosts users too");
        assert!(!answers_for_users(temp.path(), "notifications").await, "another kind of the same deployment is refused");
    }
}
