//! What changed between two GraphQL schemas (SDL) for an existing client's queries.

use super::Change;
use super::schema::Flow;
use async_graphql::parser::types::{BaseType, InputValueDefinition, Type, TypeKind, TypeSystemDefinition};
use std::collections::BTreeMap;

const CONTRACT: &str = "graphql";

/// A type with what a client can depend on, read off the SDL.
enum Shape {
    Scalar,
    /// Objects and interfaces: field → (type, arguments).
    Fields {
        kind: &'static str,
        fields: BTreeMap<String, (Type, BTreeMap<String, InputValueDefinition>)>,
    },
    Union(Vec<String>),
    Enum(Vec<String>),
    Input(BTreeMap<String, InputValueDefinition>),
}

impl Shape {
    fn kind(&self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Fields { kind, .. } => kind,
            Self::Union(_) => "union",
            Self::Enum(_) => "enum",
            Self::Input(_) => "input",
        }
    }
}

fn types(sdl: &str) -> Result<BTreeMap<String, Shape>, String> {
    let document = async_graphql::parser::parse_schema(sdl).map_err(|error| format!("the GraphQL schema does not parse: {error}"))?;
    let mut found = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else { continue };
        let definition = definition.node;
        let fields_of = |fields: &[async_graphql::Positioned<async_graphql::parser::types::FieldDefinition>]| {
            fields
                .iter()
                .map(|f| {
                    let arguments = f.node.arguments.iter().map(|a| (a.node.name.node.to_string(), a.node.clone())).collect();
                    (f.node.name.node.to_string(), (f.node.ty.node.clone(), arguments))
                })
                .collect()
        };
        let shape = match &definition.kind {
            TypeKind::Scalar => Shape::Scalar,
            TypeKind::Object(object) => Shape::Fields { kind: "type", fields: fields_of(&object.fields) },
            TypeKind::Interface(interface) => Shape::Fields { kind: "interface", fields: fields_of(&interface.fields) },
            TypeKind::Union(union) => Shape::Union(union.members.iter().map(|m| m.node.to_string()).collect()),
            TypeKind::Enum(e) => Shape::Enum(e.values.iter().map(|v| v.node.value.node.to_string()).collect()),
            TypeKind::InputObject(input) => {
                Shape::Input(input.fields.iter().map(|f| (f.node.name.node.to_string(), f.node.clone())).collect())
            }
        };
        found.insert(definition.name.node.to_string(), shape);
    }
    Ok(found)
}

/// Whether `new` still fits a client written against `old`: the same named type and list shape,
/// and for an output (what the client reads) non-null only where it was or newly so; for an
/// input (what the client sends) nullable wherever it was.
fn fits(old: &Type, new: &Type, flow: Flow) -> bool {
    let nullability = match flow {
        Flow::Output => old.nullable || !new.nullable,
        Flow::Input => new.nullable || !old.nullable,
    };
    nullability
        && match (&old.base, &new.base) {
            (BaseType::Named(o), BaseType::Named(n)) => o == n,
            (BaseType::List(o), BaseType::List(n)) => fits(o, n, flow),
            _ => false,
        }
}

fn required(input: &InputValueDefinition) -> bool {
    !input.ty.node.nullable && input.default_value.is_none()
}

/// Inputs (arguments or input fields) from `old` to `new` at `at`.
fn inputs(
    at: &str,
    what: &str,
    old: &BTreeMap<String, InputValueDefinition>,
    new: &BTreeMap<String, InputValueDefinition>,
    changes: &mut Vec<Change>,
) {
    for (name, old_input) in old {
        match new.get(name) {
            None => changes.push(Change::breaking(CONTRACT, format!("{at}: {what} `{name}` removed (queries that pass it fail)"))),
            Some(new_input) if !fits(&old_input.ty.node, &new_input.ty.node, Flow::Input) => changes.push(Change::breaking(
                CONTRACT,
                format!("{at}: {what} `{name}` changed from {} to {}", old_input.ty.node, new_input.ty.node),
            )),
            Some(new_input) if old_input.ty.node != new_input.ty.node => changes.push(Change::compatible(
                CONTRACT,
                format!("{at}: {what} `{name}` relaxed from {} to {}", old_input.ty.node, new_input.ty.node),
            )),
            Some(_) => {}
        }
    }
    for (name, new_input) in new.iter().filter(|(name, _)| !old.contains_key(*name)) {
        if required(new_input) {
            changes.push(Change::breaking(CONTRACT, format!("{at}: required {what} `{name}: {}` added", new_input.ty.node)));
        } else {
            changes.push(Change::compatible(CONTRACT, format!("{at}: optional {what} `{name}` added")));
        }
    }
}

/// Every change from `old` to `new`.
pub fn compare(old: &str, new: &str, changes: &mut Vec<Change>) -> Result<(), String> {
    let (old, new) = (types(old)?, types(new)?);
    for (name, old_type) in &old {
        let Some(new_type) = new.get(name) else {
            changes.push(Change::breaking(CONTRACT, format!("{} `{name}` removed", old_type.kind())));
            continue;
        };
        if old_type.kind() != new_type.kind() {
            changes.push(Change::breaking(CONTRACT, format!("`{name}` changed from {} to {}", old_type.kind(), new_type.kind())));
            continue;
        }
        match (old_type, new_type) {
            (Shape::Fields { fields: old_fields, .. }, Shape::Fields { fields: new_fields, .. }) => {
                for (field, (old_ty, old_args)) in old_fields {
                    let at = format!("{name}.{field}");
                    match new_fields.get(field) {
                        None => changes.push(Change::breaking(CONTRACT, format!("{at} removed"))),
                        Some((new_ty, new_args)) => {
                            if !fits(old_ty, new_ty, Flow::Output) {
                                changes.push(Change::breaking(CONTRACT, format!("{at} changed from {old_ty} to {new_ty}")));
                            } else if old_ty != new_ty {
                                changes.push(Change::compatible(CONTRACT, format!("{at} narrowed from {old_ty} to {new_ty}")));
                            }
                            inputs(&at, "argument", old_args, new_args, changes);
                        }
                    }
                }
                for field in new_fields.keys().filter(|f| !old_fields.contains_key(*f)) {
                    changes.push(Change::compatible(CONTRACT, format!("{name}.{field} added")));
                }
            }
            (Shape::Union(old_members), Shape::Union(new_members)) => {
                for member in old_members.iter().filter(|m| !new_members.contains(m)) {
                    changes.push(Change::breaking(CONTRACT, format!("union `{name}` no longer includes `{member}`")));
                }
                for member in new_members.iter().filter(|m| !old_members.contains(m)) {
                    changes.push(Change::compatible(CONTRACT, format!("union `{name}` now includes `{member}`")));
                }
            }
            (Shape::Enum(old_values), Shape::Enum(new_values)) => {
                for value in old_values.iter().filter(|v| !new_values.contains(v)) {
                    changes.push(Change::breaking(CONTRACT, format!("enum `{name}` value `{value}` removed")));
                }
                for value in new_values.iter().filter(|v| !old_values.contains(v)) {
                    changes.push(Change::compatible(CONTRACT, format!("enum `{name}` value `{value}` added")));
                }
            }
            (Shape::Input(old_fields), Shape::Input(new_fields)) => {
                inputs(&format!("input `{name}`"), "field", old_fields, new_fields, changes)
            }
            _ => {}
        }
    }
    for (name, new_type) in new.iter().filter(|(name, _)| !old.contains_key(*name)) {
        changes.push(Change::compatible(CONTRACT, format!("{} `{name}` added", new_type.kind())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"
        type Query { product(id: ID!): Product, products(first: Int): [Product!]! }
        type Product { id: ID!, name: String!, sku: String, status: Status! }
        enum Status { ACTIVE RETIRED }
        input NewProduct { name: String!, note: String }
    "#;

    fn changes(new: &str) -> (Vec<String>, Vec<String>) {
        let mut found = Vec::new();
        compare(OLD, new, &mut found).unwrap();
        let (breaking, compatible): (Vec<_>, Vec<_>) = found.into_iter().partition(|c| c.breaking);
        (breaking.into_iter().map(|c| c.text).collect(), compatible.into_iter().map(|c| c.text).collect())
    }

    #[test]
    fn removals_required_inputs_and_looser_outputs_break() {
        let (breaking, _) = changes(
            r#"
            type Query { product(id: ID!, locale: String!): Product, products(first: Int!): [Product!]! }
            type Product { id: ID!, name: String, status: Status! }
            enum Status { ACTIVE }
            input NewProduct { name: String!, sku: String! }
        "#,
        );
        assert_eq!(
            breaking,
            vec![
                "input `NewProduct`: field `note` removed (queries that pass it fail)",
                "input `NewProduct`: required field `sku: String!` added",
                "Product.name changed from String! to String",
                "Product.sku removed",
                "Query.product: required argument `locale: String!` added",
                "Query.products: argument `first` changed from Int to Int!",
                "enum `Status` value `RETIRED` removed",
            ]
        );
    }

    #[test]
    fn additions_and_stricter_outputs_do_not_break() {
        let (breaking, compatible) = changes(
            r#"
            type Query { product(id: ID!, locale: String): Product!, products(first: Int = 20): [Product!]!, categories: [String!]! }
            type Product { id: ID!, name: String!, sku: String!, status: Status!, price: Int }
            enum Status { ACTIVE RETIRED DRAFT }
            input NewProduct { name: String!, note: String, sku: String }
        "#,
        );
        assert!(breaking.is_empty(), "{breaking:?}");
        assert!(compatible.contains(&"Query.categories added".to_owned()), "{compatible:?}");
        assert!(compatible.contains(&"Product.sku narrowed from String to String!".to_owned()), "{compatible:?}");
    }
}
