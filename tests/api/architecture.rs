//! design.md's dependency rules between crates, checked over `cargo metadata`.
//!
//! - A contract crate (`*-contract`) depends on no module implementation crate and not on sea-orm.
//! - A module implementation crate depends on no other module's implementation crate.
//! - Only `cleave` (app) and the test crates depend on module implementation crates, with one
//!   exception for module tests: a module may *dev*-depend on the implementation of a module
//!   whose contract it already depends on (Spring Modulith's "a module with its direct
//!   dependencies"), so its contract suite runs against the real neighbours. Never a normal or
//!   build dependency: the shipped crate still sees them only through their contracts.
//! - `shared-kernel` depends on no module crate.
//! - A contract crate depends on no other contract crate, except the edges allowed below, each
//!   with its reason: a contract that names another's type makes the two move together.

use std::collections::BTreeSet;

const ALLOWED_TO_LINK_IMPLEMENTATIONS: &[&str] = &["cleave", "cleave-tests"];

/// Contract → contract edges that are meant, each with why.
const ALLOWED_CONTRACT_EDGES: &[(&str, &str, &str)] = &[(
    "orders-contract",
    "payments-contract",
    "a placement carries the payment method payments issued for the card (`PaymentMethod`), and payments owns what a card is",
)];

/// One dependency edge: `from` depends on `to`; `dev` for a dev-dependency (tests only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub dev: bool,
}

pub fn violations(workspace_members: &BTreeSet<String>, edges: &[Edge]) -> Vec<String> {
    // A module implementation crate: a member `<name>` beside its contract `<name>-contract`
    // (so a module added later is checked without naming it here).
    let is_implementation = |name: &str| workspace_members.contains(name) && workspace_members.contains(&format!("{name}-contract"));
    let mut found = Vec::new();
    let uses_contract = |from: &str, module: &str| {
        let contract = format!("{module}-contract");
        edges.iter().any(|edge| edge.from == from && edge.to == contract && !edge.dev)
    };
    for Edge { from, to, dev } in edges {
        if !workspace_members.contains(from) {
            continue;
        }
        if from.ends_with("-contract") && (is_implementation(to) || to == "sea-orm" || to.starts_with("sqlx")) {
            found.push(format!("contract crate `{from}` depends on `{to}`"));
        }
        let allowed_contract_edge = ALLOWED_CONTRACT_EDGES.iter().any(|(a, b, _)| a == from && b == to);
        if from.ends_with("-contract") && to.ends_with("-contract") && from != to && !*dev && !allowed_contract_edge {
            found.push(format!(
                "contract crate `{from}` depends on contract `{to}`: allow it in ALLOWED_CONTRACT_EDGES with a reason, or move the type"
            ));
        }
        if from == "shared-kernel" && (is_implementation(to) || to.ends_with("-contract")) {
            found.push(format!("shared-kernel depends on module crate `{to}`"));
        }
        let module_test_of_a_neighbour = *dev && is_implementation(from) && uses_contract(from, to);
        if is_implementation(to) && from != to && !ALLOWED_TO_LINK_IMPLEMENTATIONS.contains(&from.as_str()) && !module_test_of_a_neighbour {
            found.push(format!("`{from}` depends on module implementation `{to}`: only app and tests may"));
        }
    }
    found
}

fn workspace_graph() -> (BTreeSet<String>, Vec<Edge>) {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let metadata = cargo_metadata::MetadataCommand::new().manifest_path(manifest).no_deps().exec().expect("cargo metadata");
    let members: BTreeSet<String> = metadata.workspace_packages().iter().map(|p| p.name.to_string()).collect();
    let edges = metadata
        .workspace_packages()
        .iter()
        .flat_map(|package| {
            package.dependencies.iter().map(move |dependency| Edge {
                from: package.name.to_string(),
                to: dependency.name.clone(),
                dev: dependency.kind == cargo_metadata::DependencyKind::Development,
            })
        })
        .collect();
    (members, edges)
}

#[test]
fn the_workspace_respects_the_module_boundaries() {
    let (members, edges) = workspace_graph();
    assert!(members.contains("users") && members.contains("users-contract") && members.contains("cleave"), "{members:?}");
    let found = violations(&members, &edges);
    assert!(found.is_empty(), "module boundary violations:\n{}", found.join("\n"));
}

#[test]
fn the_checker_catches_each_kind_of_forbidden_edge() {
    let (mut members, mut edges) = workspace_graph();
    members.insert("orders".into());
    let edge = |from: &str, to: &str| Edge { from: from.into(), to: to.into(), dev: false };
    let dev_edge = |from: &str, to: &str| Edge { from: from.into(), to: to.into(), dev: true };
    edges.extend([
        edge("users-contract", "users"),
        edge("users-contract", "sea-orm"),
        edge("orders", "users"),
        edge("shared-kernel", "users-contract"),
        edge("migrations", "users"),
        // A module's tests may boot a neighbour it reaches through its contract, but only as a
        // dev-dependency, and only a neighbour: payments uses no catalog contract.
        dev_edge("payments", "catalog"),
        // Orders' own dev-edge to catalog is allowed (the real graph has it); a normal one is not.
        edge("orders", "catalog"),
        // A contract naming another contract's types, other than the one allowed edge.
        edge("notifications-contract", "orders-contract"),
    ]);
    let found = violations(&members, &edges);
    assert_eq!(found.len(), 9, "{found:#?}");
    assert!(found.iter().any(|v| v.contains("contract crate `notifications-contract` depends on contract `orders-contract`")));
    assert!(!found.iter().any(|v| v.contains("`orders-contract` depends on contract `payments-contract`")), "the allowed edge");
    assert!(found.iter().any(|v| v.contains("`orders` depends on module implementation `catalog`")));
    assert!(found.iter().any(|v| v.contains("`orders` depends on module implementation `users`")));
    assert!(found.iter().any(|v| v.contains("`payments` depends on module implementation `catalog`")));
    assert!(found.iter().any(|v| v.contains("contract crate `users-contract` depends on `sea-orm`")));
}
