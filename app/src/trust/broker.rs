//! The broker's half of `cleave trust init`: `DIR/nats.conf`, a complete `nats-server`
//! configuration in which every process kind is an nkey user with only the subjects its part
//! needs, derived from the contracts (`services [..]` and `every_process` per operation), the
//! module list and the wire's subject layout (`nats_wire::subject`, the JetStream bus's streams).
//!
//! What each kind may do (with `P` the subject prefix, `S_m` module `m`'s stream):
//! - **publish** the requests of the operations it may call: every operation for the edge kinds
//!   (the gateway and the monolith forward users' calls, and the callee decides for the user);
//!   for a module's service, the operations whose contract admits its module, and those every
//!   process calls (`users.signing_keys`);
//! - **publish** its own modules' events (`P.events.<m>.>`) and manage its own modules' streams
//!   (`$JS.API.STREAM.{CREATE,UPDATE,INFO}.S_m`), nobody else's;
//! - **read** every module's stream through consumers (`$JS.API.CONSUMER.*` and `$JS.ACK` on the
//!   streams of the deployment's modules, nothing else on the server);
//! - **subscribe** to its own modules' request subjects (`P.rpc.<m>.>` and its dead letters'),
//!   their micro-service discovery subjects, and its own inbox (`_INBOX_<kind>.>`: the env file
//!   sets `nats.inbox_prefix`, so no process can read another's replies), and answer what it
//!   receives (`allow_responses`: one answer per request and connection, so each hosted
//!   service answers on a connection of its own; a larger `max` keeps every answered
//!   request's entry on the server, which made every call 4× slower in the benchmark);
//! - **ask** who serves what (`$SRV.PING|INFO|STATS.>`): metadata only, answered by the services.

use super::services_of;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// One contract as the broker sees it: the service name it is served under, the module that
/// hosts it, and its operations with the services each admits and whether every process calls
/// it for itself.
struct Contract {
    service: String,
    module: &'static str,
    operations: &'static [(&'static str, &'static [shared_kernel::ServiceName])],
    every_process: &'static [(&'static str, bool)],
}

macro_rules! contracts {
    ($($name:ident: $krate:ident :: $api:ident),+ $(,)?) => {
        /// Every module's contract, and each module's dead letters (served as `<m>_dead_letters`).
        fn contracts() -> Vec<Contract> {
            let mut all = Vec::new();
            $(
                all.push(Contract {
                    service: stringify!($name).to_owned(),
                    module: stringify!($name),
                    operations: $krate::OPERATION_SERVICES,
                    every_process: $krate::OPERATION_EVERY_PROCESS,
                });
                all.push(Contract {
                    service: format!("{}_dead_letters", stringify!($name)),
                    module: stringify!($name),
                    operations: shared_kernel::outbox::admin::OPERATION_SERVICES,
                    every_process: shared_kernel::outbox::admin::OPERATION_EVERY_PROCESS,
                });
            )+
            all
        }
    };
}
crate::module_list::module_list!(contracts);

/// The modules process `kind` hosts.
fn hosted(kind: &str) -> Vec<&'static str> {
    crate::module_list::NAMES.iter().copied().filter(|module| kind == "monolith" || *module == kind).collect()
}

/// Whether process `kind` serves the public API for every module (and so forwards users' calls).
fn is_edge(kind: &str) -> bool {
    matches!(kind, "gateway" | "monolith")
}

/// The inbox prefix of process `kind`: its replies arrive under it, and only it may read them.
pub fn inbox_prefix(kind: &str) -> String {
    format!("_INBOX_{kind}")
}

/// The stream of `module`'s events under `prefix` (as the JetStream bus names it).
fn stream(prefix: &str, module: &str) -> String {
    shared_kernel::jetstream_bus::stream_name(prefix, module)
}

/// What process `kind` may publish and subscribe to, under subject prefix `prefix`.
pub fn permissions(kind: &str, prefix: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut publish, mut subscribe) = (BTreeSet::new(), BTreeSet::new());
    let hosted = hosted(kind);
    let speaks_as: Vec<String> = services_of(kind);
    for contract in contracts() {
        for (operation, services) in contract.operations {
            let every = contract.every_process.iter().any(|(name, every)| name == operation && *every);
            let admitted = services.iter().any(|service| speaks_as.iter().any(|name| name == service.as_str()));
            if is_edge(kind) || admitted || every {
                publish.insert(shared_kernel::nats_wire::subject(prefix, &contract.service, operation));
            }
        }
        if hosted.contains(&contract.module) {
            subscribe.insert(format!("{prefix}.rpc.{}.>", contract.service));
            subscribe.insert(format!("$SRV.*.{}", contract.service));
            subscribe.insert(format!("$SRV.*.{}.*", contract.service));
        }
    }
    for module in &hosted {
        publish.insert(format!("{prefix}.events.{module}.>"));
        for verb in ["CREATE", "UPDATE", "INFO"] {
            publish.insert(format!("$JS.API.STREAM.{verb}.{}", stream(prefix, module)));
        }
    }
    for module in crate::module_list::NAMES {
        let stream = stream(prefix, module);
        publish.insert(format!("$JS.API.STREAM.INFO.{stream}"));
        publish.insert(format!("$JS.API.CONSUMER.CREATE.{stream}"));
        for api in ["CREATE", "DURABLE.CREATE", "INFO", "MSG.NEXT"] {
            publish.insert(format!("$JS.API.CONSUMER.{api}.{stream}.>"));
        }
        publish.insert(format!("$JS.ACK.{stream}.>"));
    }
    publish.insert("$JS.API.INFO".to_owned());
    for verb in ["PING", "INFO", "STATS"] {
        publish.insert(format!("$SRV.{verb}"));
        publish.insert(format!("$SRV.{verb}.>"));
        if !hosted.is_empty() {
            subscribe.insert(format!("$SRV.{verb}"));
        }
    }
    subscribe.insert(format!("{}.>", inbox_prefix(kind)));
    (publish, subscribe)
}

/// A quoted string in the server's configuration language.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `items` as a list whose entries are indented by `indent` spaces, its closing bracket by two
/// fewer.
fn list(items: &BTreeSet<String>, indent: usize) -> String {
    let mut out = String::from("[\n");
    for item in items {
        let _ = writeln!(out, "{:indent$}{},", "", quoted(item));
    }
    let _ = write!(out, "{:width$}]", "", width = indent - 2);
    out
}

/// The TLS files `nats.conf` names, when the deployment has them.
pub struct BrokerTls<'a> {
    pub ca: &'a std::path::Path,
    pub certificate: &'a std::path::Path,
    pub key: &'a std::path::Path,
}

/// The whole `nats.conf`: JetStream on (its store is `-sd STORE_DIR`: a file that named it
/// could not be given another), the client port 4222 (`-p` overrides it), TLS with client
/// certificates when `tls` is given, and one user per public key in `users` (a kind's current
/// and, while rotating, previous key), each with its kind's permissions.
pub fn render(prefix: &str, users: &[(&str, Vec<String>)], tls: Option<&BrokerTls<'_>>) -> String {
    let mut out = String::new();
    out.push_str("# Written by `cleave trust init`: every process kind of a cleave deployment is an nkey user\n");
    out.push_str("# with only the subjects its part needs. Run: nats-server -c nats.conf [-p PORT] [-sd STORE_DIR]\n");
    out.push_str("# Do not edit: run `cleave trust init` again (it rotates the keys and rewrites this file).\n\n");
    out.push_str("port: 4222\n");
    out.push_str("# The store is `-sd STORE_DIR` (the server's temporary directory without it).\n");
    out.push_str("jetstream: enabled\n\n");
    if let Some(tls) = tls {
        let _ = writeln!(
            out,
            "tls {{\n  ca_file: {}\n  cert_file: {}\n  key_file: {}\n  verify: true\n  timeout: 5\n}}\n",
            quoted(&tls.ca.display().to_string()),
            quoted(&tls.certificate.display().to_string()),
            quoted(&tls.key.display().to_string())
        );
    }
    out.push_str("authorization {\n  users: [\n");
    for (kind, keys) in users {
        let (publish, subscribe) = permissions(kind, prefix);
        for key in keys {
            let _ = writeln!(out, "    # {kind}");
            let _ = writeln!(out, "    {{\n      nkey: {}", quoted(key));
            let _ = writeln!(
                out,
                "      permissions: {{\n        publish: {{ allow: {} }}\n        subscribe: {{ allow: {} }}\n        allow_responses: true\n      }}\n    }}",
                list(&publish, 10),
                list(&subscribe, 10),
            );
        }
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::process_kinds;
    use super::*;

    fn allows(patterns: &BTreeSet<String>, subject: &str) -> bool {
        patterns.iter().any(|pattern| matches(pattern, subject))
    }

    /// NATS subject matching: `*` one token, `>` the rest.
    fn matches(pattern: &str, subject: &str) -> bool {
        let (mut pattern, mut subject) = (pattern.split('.'), subject.split('.'));
        loop {
            match (pattern.next(), subject.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(expected), Some(token)) if expected == token => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn each_kind_may_say_only_what_its_part_needs() {
        let (publish, subscribe) = permissions("notifications", "cleave");
        assert!(!allows(&publish, "cleave.rpc.payments.charge"), "notifications calls no payment");
        assert!(!allows(&subscribe, "cleave.rpc.payments.charge"));
        assert!(!allows(&subscribe, "cleave.rpc.users.signing_keys"), "only users answers for users");
        assert!(!allows(&publish, "cleave.events.users.user.deactivated.v1"), "only users publishes users' events");
        assert!(allows(&publish, "cleave.events.notifications.notification.created.v1"));
        assert!(allows(&publish, "cleave.rpc.users.signing_keys"), "every process verifies tokens");
        assert!(allows(&subscribe, "cleave.rpc.notifications.list_notifications"));
        assert!(allows(&subscribe, "_INBOX_notifications.abc"));
        assert!(!allows(&subscribe, "_INBOX_orders.abc"), "no process reads another's replies");
        assert!(!allows(&publish, "$JS.API.STREAM.UPDATE.CLEAVE_EVENTS_USERS"), "nor changes another's stream");
        assert!(allows(&publish, "$JS.API.CONSUMER.MSG.NEXT.CLEAVE_EVENTS_ORDERS.notifications_reactions"));

        let (publish, subscribe) = permissions("orders", "cleave");
        for operation in ["charge", "refund", "get_payment", "get_payments"] {
            assert!(allows(&publish, &format!("cleave.rpc.payments.{operation}")), "orders calls payments.{operation}");
        }
        for operation in ["reserve", "release", "commit", "restock", "get_products"] {
            assert!(allows(&publish, &format!("cleave.rpc.catalog.{operation}")), "orders calls catalog.{operation}");
        }
        assert!(!allows(&publish, "cleave.rpc.catalog.create_product"), "a user's operation, for the edge to forward");
        assert!(allows(&subscribe, "cleave.rpc.orders_dead_letters.list"));
        assert!(allows(&subscribe, "$SRV.PING.orders"));
        assert!(!allows(&subscribe, "$SRV.PING.payments"), "no one answers discovery for another");

        let (publish, subscribe) = permissions("gateway", "cleave");
        assert!(allows(&publish, "cleave.rpc.catalog.create_product"), "the edge forwards users' calls");
        assert!(allows(&publish, "cleave.rpc.payments_dead_letters.list"));
        assert!(!subscribe.iter().any(|subject| subject.starts_with("cleave.rpc.")), "the gateway answers no request");
        assert!(!publish.iter().any(|subject| subject.starts_with("cleave.events.")), "nor publishes any event");
    }

    #[test]
    fn every_operation_of_every_contract_has_a_caller() {
        for contract in contracts() {
            for (operation, _) in contract.operations {
                let subject = shared_kernel::nats_wire::subject("cleave", &contract.service, operation);
                assert!(
                    process_kinds().iter().any(|kind| allows(&permissions(kind, "cleave").0, &subject)),
                    "{subject} may be published by some process"
                );
            }
        }
    }
}
