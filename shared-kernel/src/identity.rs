//! Service identities: each process kind (the gateway, a module's service, the monolith) has an
//! Ed25519 key of its own, an NATS *nkey* (public `U…`, seed `SU…`), so one key both logs the
//! process in to the broker and signs its contract calls.
//!
//! Every call a process makes carries an **assertion** (`x-cleave-assertion`), signed with its
//! key and bound to the operation, the request body and the call's deadline:
//!
//! ```text
//! v1;<process>;<issued at, ms>;<deadline, ms>;<nonce>;<signature>
//! signed: "cleave-assertion-v1" LF process LF issued LF deadline LF nonce LF operation LF sha256(body)
//! ```
//!
//! The callee verifies it with [`TrustedProcesses`]: against the public keys it is configured
//! with (several per process while a key is being rotated), not expired, not issued in the
//! future beyond the allowed skew, valid for at most [`MAX_LIFETIME`], and never seen before (a
//! replayed assertion is refused: the nonces of the live assertions are kept until they expire).
//! A refusal says what was wrong but never echoes a key or a signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// The header an assertion travels in (HTTP and NATS alike).
pub const ASSERTION_HEADER: &str = "x-cleave-assertion";
/// The longest an assertion may be valid for, whatever deadline the call carries.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// How far in the future an assertion's issue time may be (clocks of two hosts differ).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Assertions remembered at most for replay detection; past this, new calls are refused until
/// older ones expire (a flood of valid calls from trusted processes, not an attacker's).
pub const MAX_REMEMBERED: usize = 200_000;

/// This process's identity: its kind's name and its key.
pub struct ServiceIdentity {
    process: String,
    key: nkeys::KeyPair,
}

impl std::fmt::Debug for ServiceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIdentity").field("process", &self.process).field("public_key", &self.key.public_key()).finish()
    }
}

/// Why an assertion was refused. The text is safe to log and to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the call carries no service assertion")]
    Missing,
    #[error("the service assertion is malformed")]
    Malformed,
    #[error("the service assertion names a process this service does not trust")]
    UnknownProcess,
    #[error("the service assertion's signature does not verify")]
    Forged,
    #[error("the service assertion has expired")]
    Expired,
    /// A genuine call taken after its deadline (it waited in a queue): the caller has given up,
    /// so nothing is done. Only within [`MAX_LIFETIME`] of the deadline; an older one is
    /// [`AssertionError::Expired`].
    #[error("the caller's deadline passed before the call was taken; nothing was done")]
    DeadlinePassed,
    #[error("the service assertion is not valid yet")]
    NotYetValid,
    #[error("the service assertion has been used before")]
    Replayed,
    #[error("too many calls at once to remember; try again")]
    Overloaded,
}

impl AssertionError {
    /// The label of `service_assertions_refused_total`.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::UnknownProcess => "unknown_process",
            Self::Forged => "forged",
            Self::Expired => "expired",
            Self::DeadlinePassed => "deadline_passed",
            Self::NotYetValid => "not_yet_valid",
            Self::Replayed => "replayed",
            Self::Overloaded => "overloaded",
        }
    }
}

fn message(process: &str, issued_ms: i64, deadline_ms: i64, nonce: &str, operation: &str, body: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(body);
    let mut text = format!("cleave-assertion-v1\n{process}\n{issued_ms}\n{deadline_ms}\n{nonce}\n{operation}\n").into_bytes();
    text.extend_from_slice(hex(&digest).as_bytes());
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A process kind's name: lower-case letters, digits and `-`, as the broker's user names are.
fn valid_process(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ServiceIdentity {
    /// A new key for `process` (what `cleave trust init` writes).
    ///
    /// # Panics
    /// Never for a valid name; an invalid one is a programming error.
    pub fn generate(process: &str) -> Self {
        assert!(valid_process(process), "a process name is lower-case letters, digits and `-`");
        Self { process: process.to_owned(), key: nkeys::KeyPair::new_user() }
    }

    /// The identity of `process` from its nkey seed (`SU…`).
    ///
    /// # Errors
    /// A seed that is not a user nkey seed, or an invalid process name.
    pub fn from_seed(process: &str, seed: &str) -> Result<Self, String> {
        if !valid_process(process) {
            return Err(format!("{process:?} is not a process name (lower-case letters, digits and `-`)"));
        }
        let key = nkeys::KeyPair::from_seed(seed.trim()).map_err(|_| "the key is not an nkey seed".to_owned())?;
        if key.key_pair_type() != nkeys::KeyPairType::User {
            return Err("the key is not a user nkey seed (SU…)".to_owned());
        }
        Ok(Self { process: process.to_owned(), key })
    }

    pub fn process(&self) -> &str {
        &self.process
    }

    /// The public key (`U…`), what callees and the broker are configured with.
    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// The seed (`SU…`), for the key file. A secret.
    ///
    /// # Errors
    /// Never for a key made here.
    pub fn seed(&self) -> Result<crate::Secret<String>, String> {
        self.key.seed().map(crate::Secret::new).map_err(|error| error.to_string())
    }

    /// An assertion for one call of `operation` (`<module>.<operation>`) with `body`, issued at
    /// `now` and valid until `deadline` (at most [`MAX_LIFETIME`] after `now`).
    pub fn assert(
        &self,
        operation: &str,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
        deadline: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let longest = now + chrono::Duration::from_std(MAX_LIFETIME).unwrap_or(chrono::Duration::MAX);
        let (issued_ms, deadline_ms) = (now.timestamp_millis(), deadline.min(longest).timestamp_millis());
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let signature = self.key.sign(&message(&self.process, issued_ms, deadline_ms, &nonce, operation, body)).unwrap_or_default();
        format!("v1;{};{issued_ms};{deadline_ms};{nonce};{}", self.process, URL_SAFE_NO_PAD.encode(signature))
    }
}

/// What a verified assertion says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCall {
    /// The calling process kind.
    pub process: String,
    /// Past this, the caller has given up: work not started should not start.
    pub deadline: chrono::DateTime<chrono::Utc>,
}

/// The processes a service accepts calls from, each with its public keys, and the assertions it
/// has already accepted.
pub struct TrustedProcesses {
    keys: BTreeMap<String, Vec<nkeys::KeyPair>>,
    seen: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for TrustedProcesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedProcesses").field("processes", &self.keys.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl TrustedProcesses {
    /// `keys`: each trusted process kind with its public keys (`U…`; two while one is rotated).
    ///
    /// # Errors
    /// A key that is not a user public nkey, or an invalid process name.
    pub fn new(keys: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        let mut parsed = BTreeMap::new();
        for (process, public_keys) in keys {
            if !valid_process(process) {
                return Err(format!("{process:?} is not a process name (lower-case letters, digits and `-`)"));
            }
            let mut pairs = Vec::new();
            for key in public_keys {
                let pair = nkeys::KeyPair::from_public_key(key.trim()).map_err(|_| format!("the key of {process} is not a public nkey"))?;
                if pair.key_pair_type() != nkeys::KeyPairType::User {
                    return Err(format!("the key of {process} is not a user public nkey (U…)"));
                }
                pairs.push(pair);
            }
            parsed.insert(process.clone(), pairs);
        }
        Ok(Self { keys: parsed, seen: Mutex::new(HashMap::new()) })
    }

    /// Whether any process is trusted at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `header` (the assertion) for a call of `operation` with `body`, at `now`.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn verify(
        &self,
        header: Option<&str>,
        operation: &str,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<VerifiedCall, AssertionError> {
        let header = header.ok_or(AssertionError::Missing)?;
        let parts: Vec<&str> = header.split(';').collect();
        let [version, process, issued, deadline, nonce, signature] = parts.as_slice() else { return Err(AssertionError::Malformed) };
        if *version != "v1" || nonce.is_empty() || nonce.len() > 64 {
            return Err(AssertionError::Malformed);
        }
        let issued_ms: i64 = issued.parse().map_err(|_| AssertionError::Malformed)?;
        let deadline_ms: i64 = deadline.parse().map_err(|_| AssertionError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| AssertionError::Malformed)?;
        let keys = self.keys.get(*process).ok_or(AssertionError::UnknownProcess)?;
        let signed = message(process, issued_ms, deadline_ms, nonce, operation, body);
        if !keys.iter().any(|key| key.verify(&signed, &signature).is_ok()) {
            return Err(AssertionError::Forged);
        }
        let now_ms = now.timestamp_millis();
        let lifetime_ms = i64::try_from(MAX_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        let skew_ms = i64::try_from(CLOCK_SKEW.as_millis()).unwrap_or(i64::MAX);
        if issued_ms > now_ms + skew_ms {
            return Err(AssertionError::NotYetValid);
        }
        if deadline_ms > issued_ms + lifetime_ms || deadline_ms + lifetime_ms < now_ms {
            return Err(AssertionError::Expired);
        }
        if deadline_ms <= now_ms {
            return Err(AssertionError::DeadlinePassed);
        }
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, expires| *expires > now_ms);
            if seen.len() >= MAX_REMEMBERED {
                return Err(AssertionError::Overloaded);
            }
        }
        let key = format!("{process};{nonce}");
        if seen.get(&key).is_some_and(|expires| *expires > now_ms) {
            return Err(AssertionError::Replayed);
        }
        seen.insert(key, deadline_ms);
        let deadline = chrono::DateTime::from_timestamp_millis(deadline_ms).ok_or(AssertionError::Malformed)?;
        Ok(VerifiedCall { process: (*process).to_owned(), deadline })
    }
}

/// The gate of a service's internal wire (HTTP and NATS alike): every call must carry a valid
/// assertion of a trusted process, and a call made on a service's own behalf
/// (`x-cleave-service`) may name only a service that process may speak as (the modules it hosts,
/// or `edge`). It replaces the shared service token: a stolen key of one process speaks for
/// that process's services, never for another's.
#[derive(Debug)]
pub struct WireGate {
    trusted: TrustedProcesses,
    speaks_as: BTreeMap<String, Vec<crate::ServiceName>>,
}

impl WireGate {
    /// `speaks_as`: per trusted process, the services it may call as.
    pub fn new(trusted: TrustedProcesses, speaks_as: BTreeMap<String, Vec<crate::ServiceName>>) -> Self {
        Self { trusted, speaks_as }
    }

    /// Admits the call of `operation` (`<module>.<operation>`) with `body` and these headers, or
    /// says why not (logged and counted here, without any secret).
    ///
    /// # Errors
    /// 401 naming what was wrong with the assertion; 403 for a service name the process may not
    /// use.
    pub fn admit(&self, headers: &http::HeaderMap, operation: &str, body: &[u8]) -> Result<VerifiedCall, crate::ApiError> {
        let assertion = headers.get(ASSERTION_HEADER).and_then(|value| value.to_str().ok());
        let verified = match self.trusted.verify(assertion, operation, body, chrono::Utc::now()) {
            Ok(verified) => verified,
            // Not a credential problem: a genuine call that waited past its caller's deadline.
            // Nothing is started for a caller who is gone.
            Err(error @ AssertionError::DeadlinePassed) => {
                metrics::counter!("calls_past_deadline_total", "operation" => operation.to_owned()).increment(1);
                tracing::debug!(operation, "a call taken after its caller's deadline was not started");
                return Err(crate::ApiError::unavailable(error.to_string(), 1));
            }
            Err(error) => {
                metrics::counter!("service_assertions_refused_total", "operation" => operation.to_owned(), "reason" => error.reason())
                    .increment(1);
                tracing::warn!(operation, reason = error.reason(), "a call without a valid service assertion was refused");
                return Err(crate::ApiError::unauthenticated(error.to_string()));
            }
        };
        if let Some(name) = headers.get(crate::wire::SERVICE_NAME_HEADER).and_then(|value| value.to_str().ok()) {
            let allowed = self.speaks_as.get(&verified.process).is_some_and(|names| names.iter().any(|service| service.as_str() == name));
            if !allowed {
                metrics::counter!("service_assertions_refused_total", "operation" => operation.to_owned(), "reason" => "not_its_service")
                    .increment(1);
                tracing::warn!(operation, process = %verified.process, service = name, "a process called as a service it does not host");
                return Err(crate::ApiError::forbidden(format!("the {} process may not call as the {name} service", verified.process)));
            }
        }
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn trusting(identities: &[&ServiceIdentity]) -> TrustedProcesses {
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for identity in identities {
            keys.entry(identity.process().to_owned()).or_default().push(identity.public_key());
        }
        TrustedProcesses::new(&keys).unwrap()
    }

    #[test]
    fn a_signed_call_verifies_once_for_its_operation_and_body() {
        let orders = ServiceIdentity::generate("orders");
        let payments = trusting(&[&orders]);
        let assertion = orders.assert("payments.charge", b"{\"amount\":1}", at(0), at(5_000));
        let verified = payments.verify(Some(&assertion), "payments.charge", b"{\"amount\":1}", at(10)).unwrap();
        assert_eq!((verified.process.as_str(), verified.deadline), ("orders", at(5_000)));
        assert_eq!(payments.verify(Some(&assertion), "payments.charge", b"{\"amount\":1}", at(20)), Err(AssertionError::Replayed));
    }

    #[test]
    fn a_changed_operation_body_or_deadline_does_not_verify() {
        let orders = ServiceIdentity::generate("orders");
        let payments = trusting(&[&orders]);
        let assertion = orders.assert("payments.charge", b"{\"amount\":1}", at(0), at(5_000));
        assert_eq!(payments.verify(Some(&assertion), "payments.refund", b"{\"amount\":1}", at(10)), Err(AssertionError::Forged));
        assert_eq!(payments.verify(Some(&assertion), "payments.charge", b"{\"amount\":9}", at(10)), Err(AssertionError::Forged));
        let longer = assertion.replacen(";1800000005000;", ";1800000009000;", 1);
        assert_ne!(longer, assertion);
        assert_eq!(payments.verify(Some(&longer), "payments.charge", b"{\"amount\":1}", at(10)), Err(AssertionError::Forged));
    }

    #[test]
    fn another_key_or_an_unknown_process_is_refused() {
        let orders = ServiceIdentity::generate("orders");
        let impostor = ServiceIdentity::generate("orders");
        let notifications = ServiceIdentity::generate("notifications");
        let payments = trusting(&[&orders]);
        let forged = impostor.assert("payments.charge", b"{}", at(0), at(1_000));
        assert_eq!(payments.verify(Some(&forged), "payments.charge", b"{}", at(1)), Err(AssertionError::Forged));
        let stranger = notifications.assert("payments.charge", b"{}", at(0), at(1_000));
        assert_eq!(payments.verify(Some(&stranger), "payments.charge", b"{}", at(1)), Err(AssertionError::UnknownProcess));
        assert_eq!(payments.verify(None, "payments.charge", b"{}", at(1)), Err(AssertionError::Missing));
        assert_eq!(payments.verify(Some("v1;orders;x"), "payments.charge", b"{}", at(1)), Err(AssertionError::Malformed));
    }

    #[test]
    fn expired_future_and_overlong_assertions_are_refused() {
        let orders = ServiceIdentity::generate("orders");
        let payments = trusting(&[&orders]);
        let late = orders.assert("payments.charge", b"{}", at(0), at(1_000));
        assert_eq!(payments.verify(Some(&late), "payments.charge", b"{}", at(1_000)), Err(AssertionError::DeadlinePassed), "taken late");
        assert_eq!(payments.verify(Some(&late), "payments.charge", b"{}", at(61_001)), Err(AssertionError::Expired), "long past");
        let future = orders.assert("payments.charge", b"{}", at(60_000), at(61_000));
        assert_eq!(payments.verify(Some(&future), "payments.charge", b"{}", at(0)), Err(AssertionError::NotYetValid));
        // A deadline past the longest lifetime is cut to it by the signer.
        let capped = orders.assert("payments.charge", b"{}", at(0), at(3_600_000));
        let verified = payments.verify(Some(&capped), "payments.charge", b"{}", at(1)).unwrap();
        assert_eq!(verified.deadline, at(60_000));
    }

    #[test]
    fn both_keys_verify_while_one_is_rotated() {
        let old = ServiceIdentity::generate("orders");
        let new = ServiceIdentity::generate("orders");
        let payments = trusting(&[&old, &new]);
        for identity in [&old, &new] {
            let assertion = identity.assert("payments.charge", b"{}", at(0), at(1_000));
            assert!(payments.verify(Some(&assertion), "payments.charge", b"{}", at(1)).is_ok());
        }
        let retired = trusting(&[&new]);
        let assertion = old.assert("payments.charge", b"{}", at(0), at(1_000));
        assert_eq!(retired.verify(Some(&assertion), "payments.charge", b"{}", at(1)), Err(AssertionError::Forged));
    }

    #[test]
    fn a_seed_round_trips_and_is_never_printed() {
        let identity = ServiceIdentity::generate("gateway");
        let seed = identity.seed().unwrap();
        let again = ServiceIdentity::from_seed("gateway", seed.expose()).unwrap();
        assert_eq!(again.public_key(), identity.public_key());
        assert!(!format!("{identity:?}").contains(seed.expose()));
        assert!(ServiceIdentity::from_seed("gateway", &identity.public_key()).is_err(), "a public key is not a seed");
        assert!(ServiceIdentity::from_seed("Gateway", seed.expose()).is_err(), "process names are lower case");
    }
}
