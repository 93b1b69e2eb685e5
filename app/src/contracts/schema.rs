//! Comparing two JSON Schemas (an OpenAPI body, a parameter, an event payload) for what a change
//! does to the other side: a schema the client *sends* must accept everything the old one
//! accepted; a schema the client *reads* (a response, an event) must produce only what old
//! readers understand.

use super::Change;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};

/// Which way the data flows, seen from the client or consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The client sends it (a request body, a parameter).
    Input,
    /// The client reads it (a response body, an event).
    Output,
}

/// Two documents whose `$ref`s the schemas point into.
pub struct Comparison<'a> {
    pub contract: &'static str,
    pub old_root: &'a Value,
    pub new_root: &'a Value,
    pub changes: &'a mut Vec<Change>,
    seen: HashSet<(String, String, bool)>,
}

const DEPTH: usize = 32;

impl<'a> Comparison<'a> {
    pub fn new(contract: &'static str, old_root: &'a Value, new_root: &'a Value, changes: &'a mut Vec<Change>) -> Self {
        Self { contract, old_root, new_root, changes, seen: HashSet::new() }
    }

    fn breaking(&mut self, at: &str, text: impl std::fmt::Display) {
        self.changes.push(Change::breaking(self.contract, format!("{at}: {text}")));
    }

    fn compatible(&mut self, at: &str, text: impl std::fmt::Display) {
        self.changes.push(Change::compatible(self.contract, format!("{at}: {text}")));
    }

    /// Compares `old` with `new` at `at` (a path in words: `POST /api/v1/orders request body`).
    pub fn schema(&mut self, at: &str, old: &Value, new: &Value, flow: Flow) {
        self.compare(at, old, new, flow, 0);
    }

    fn compare(&mut self, at: &str, old: &Value, new: &Value, flow: Flow, depth: usize) {
        if depth > DEPTH {
            return;
        }
        // A pair of named schemas is compared once per direction (they may refer to themselves).
        if let (Some(o), Some(n)) = (reference(old), reference(new)) {
            let key = (o.to_owned(), n.to_owned(), flow == Flow::Input);
            if !self.seen.insert(key) {
                return;
            }
        }
        let old = Shape::of(resolve(self.old_root, old), self.old_root);
        let new = Shape::of(resolve(self.new_root, new), self.new_root);

        if old.union.is_some() || new.union.is_some() {
            if canonical(old.union.unwrap_or(&Value::Null)) != canonical(new.union.unwrap_or(&Value::Null)) {
                self.breaking(at, "a union of types changed (compared as a whole)");
            }
            return;
        }
        self.types(at, &old, &new, flow);
        self.nullability(at, &old, &new, flow);
        self.enums(at, &old, &new, flow);
        if flow == Flow::Input {
            self.bounds(at, old.schema, new.schema);
        }
        self.objects(at, &old, &new, flow, depth);
        if let (Some(o), Some(n)) = (old.schema.get("items"), new.schema.get("items")) {
            self.compare(&format!("{at}[]"), o, n, flow, depth + 1);
        }
    }

    fn types(&mut self, at: &str, old: &Shape, new: &Shape, flow: Flow) {
        let covers = |wide: &BTreeSet<String>, narrow: &BTreeSet<String>| {
            narrow.iter().all(|t| wide.contains(t) || (t == "integer" && wide.contains("number")))
        };
        match (old.types.is_empty(), new.types.is_empty()) {
            (true, true) => {}
            (true, false) if flow == Flow::Input => self.breaking(at, format_args!("now accepts only {}", list(&new.types))),
            (false, true) if flow == Flow::Output => self.breaking(at, "may now be of any type"),
            (true, false) | (false, true) => self.compatible(at, "the type changed compatibly"),
            (false, false) => match flow {
                Flow::Input if !covers(&new.types, &old.types) => {
                    self.breaking(at, format_args!("type narrowed from {} to {}", list(&old.types), list(&new.types)));
                }
                Flow::Output if !covers(&old.types, &new.types) => {
                    self.breaking(at, format_args!("type changed from {} to {}", list(&old.types), list(&new.types)));
                }
                _ if old.types != new.types => {
                    self.compatible(at, format_args!("type widened from {} to {}", list(&old.types), list(&new.types)));
                }
                _ => {}
            },
        }
    }

    fn nullability(&mut self, at: &str, old: &Shape, new: &Shape, flow: Flow) {
        match (old.nullable, new.nullable, flow) {
            (true, false, Flow::Input) => self.breaking(at, "no longer accepts null"),
            (false, true, Flow::Output) => self.breaking(at, "may now be null"),
            (true, false, Flow::Output) => self.compatible(at, "is never null now"),
            (false, true, Flow::Input) => self.compatible(at, "now accepts null"),
            _ => {}
        }
    }

    fn enums(&mut self, at: &str, old: &Shape, new: &Shape, flow: Flow) {
        match (&old.values, &new.values) {
            (Some(o), Some(n)) => {
                let gone: Vec<_> = o.difference(n).cloned().collect();
                let added: Vec<_> = n.difference(o).cloned().collect();
                match flow {
                    Flow::Input if !gone.is_empty() => self.breaking(at, format_args!("no longer accepts {}", values(&gone))),
                    Flow::Output if !added.is_empty() => {
                        self.breaking(at, format_args!("may now be {} (readers that match every value break)", values(&added)));
                    }
                    _ => {}
                }
                match flow {
                    Flow::Input if !added.is_empty() => self.compatible(at, format_args!("now also accepts {}", values(&added))),
                    Flow::Output if !gone.is_empty() => self.compatible(at, format_args!("is never {} now", values(&gone))),
                    _ => {}
                }
            }
            (None, Some(n)) if flow == Flow::Input => self.breaking(at, format_args!("now accepts only {}", values(n))),
            (Some(_), None) if flow == Flow::Output => self.breaking(at, "is no longer limited to a set of values"),
            (None, Some(_)) | (Some(_), None) => self.compatible(at, "its set of values changed compatibly"),
            (None, None) => {}
        }
    }

    /// Limits on what a client may send: a tighter one refuses requests the old one took.
    fn bounds(&mut self, at: &str, old: &Value, new: &Value) {
        for key in ["maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties"] {
            match (number(old, key), number(new, key)) {
                (None, Some(n)) => self.breaking(at, format_args!("{key} {n} added")),
                (Some(o), Some(n)) if n < o => self.breaking(at, format_args!("{key} lowered from {o} to {n}")),
                (Some(o), None) => self.compatible(at, format_args!("{key} {o} removed")),
                (Some(o), Some(n)) if n > o => self.compatible(at, format_args!("{key} raised from {o} to {n}")),
                _ => {}
            }
        }
        for key in ["minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties"] {
            match (number(old, key), number(new, key)) {
                (None, Some(n)) if n > 0.0 => self.breaking(at, format_args!("{key} {n} added")),
                (Some(o), Some(n)) if n > o => self.breaking(at, format_args!("{key} raised from {o} to {n}")),
                (Some(o), None) => self.compatible(at, format_args!("{key} {o} removed")),
                (Some(o), Some(n)) if n < o => self.compatible(at, format_args!("{key} lowered from {o} to {n}")),
                _ => {}
            }
        }
        for key in ["pattern", "format"] {
            match (old.get(key), new.get(key)) {
                (None, Some(n)) => self.breaking(at, format_args!("{key} {n} added")),
                (Some(o), Some(n)) if o != n => self.breaking(at, format_args!("{key} changed from {o} to {n}")),
                (Some(o), None) => self.compatible(at, format_args!("{key} {o} removed")),
                _ => {}
            }
        }
    }

    fn objects(&mut self, at: &str, old: &Shape, new: &Shape, flow: Flow, depth: usize) {
        let (Some(old_props), Some(new_props)) = (old.schema.get("properties"), new.schema.get("properties")) else {
            if old.schema.get("properties").is_some() && flow == Flow::Output {
                self.breaking(at, "is no longer an object with known properties");
            }
            return;
        };
        let (Some(old_props), Some(new_props)) = (old_props.as_object(), new_props.as_object()) else { return };
        let old_required = required(old.schema);
        let new_required = required(new.schema);
        for (name, old_prop) in old_props {
            let here = format!("{at}.{name}");
            match new_props.get(name) {
                None => match flow {
                    // Input types refuse unknown fields: a client still sending it is refused.
                    Flow::Input => self.breaking(&here, "no longer accepted (requests that send it are refused)"),
                    Flow::Output => self.breaking(&here, "removed"),
                },
                Some(new_prop) => {
                    match (old_required.contains(name), new_required.contains(name), flow) {
                        (true, false, Flow::Output) => self.breaking(&here, "may now be absent"),
                        (false, true, Flow::Input) => self.breaking(&here, "is now required"),
                        (true, false, Flow::Input) => self.compatible(&here, "is now optional"),
                        (false, true, Flow::Output) => self.compatible(&here, "is now always present"),
                        _ => {}
                    }
                    self.compare(&here, old_prop, new_prop, flow, depth + 1);
                }
            }
        }
        for name in new_props.keys().filter(|name| !old_props.contains_key(*name)) {
            let here = format!("{at}.{name}");
            match (new_required.contains(name), flow) {
                (true, Flow::Input) => self.breaking(&here, "added as a required property"),
                (false, Flow::Input) => self.compatible(&here, "added (optional)"),
                (_, Flow::Output) => self.compatible(&here, "added"),
            }
        }
    }
}

/// A schema with its type set, nullability and values read off.
struct Shape<'v> {
    schema: &'v Value,
    types: BTreeSet<String>,
    nullable: bool,
    values: Option<BTreeSet<String>>,
    /// A `oneOf`/`anyOf` that is more than "T or null": compared as a whole.
    union: Option<&'v Value>,
}

impl<'v> Shape<'v> {
    fn of(schema: &'v Value, root: &'v Value) -> Self {
        let mut shape = Shape { schema, types: BTreeSet::new(), nullable: false, values: None, union: None };
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                let (nulls, others): (Vec<&Value>, Vec<&Value>) =
                    branches.iter().partition(|b| b.get("type").and_then(Value::as_str) == Some("null"));
                if !nulls.is_empty() && others.len() == 1 {
                    let mut inner = Shape::of(resolve(root, others[0]), root);
                    inner.nullable = true;
                    return inner;
                }
                shape.union = Some(schema);
                return shape;
            }
        }
        match schema.get("type") {
            Some(Value::String(t)) => {
                shape.types.insert(t.clone());
            }
            Some(Value::Array(ts)) => shape.types.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned)),
            _ => {}
        }
        shape.nullable = shape.types.remove("null") || schema.get("nullable").and_then(Value::as_bool) == Some(true);
        shape.values = schema.get("enum").and_then(Value::as_array).map(|values| {
            values.iter().filter(|v| !v.is_null()).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect()
        });
        if schema.get("enum").and_then(Value::as_array).is_some_and(|values| values.iter().any(Value::is_null)) {
            shape.nullable = true;
        }
        shape
    }
}

fn reference(schema: &Value) -> Option<&str> {
    schema.get("$ref").and_then(Value::as_str)
}

/// Follows `$ref` (`#/components/schemas/X`, `#/$defs/X`) within `root`.
pub fn resolve<'v>(root: &'v Value, mut schema: &'v Value) -> &'v Value {
    for _ in 0..DEPTH {
        match reference(schema).and_then(|target| target.strip_prefix('#')).and_then(|pointer| root.pointer(pointer)) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn number(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn canonical(value: &Value) -> String {
    // serde_json's maps are ordered by key here (no preserve_order): equal values print alike.
    value.to_string()
}

fn list(types: &BTreeSet<String>) -> String {
    types.iter().cloned().collect::<Vec<_>>().join(" or ")
}

fn values(values: &impl std::fmt::Debug) -> String {
    format!("{values:?}").replace('"', "`")
}

/// Whether `value` has the shape `schema` describes (types, required properties, known
/// properties, enums, items): enough to prove an event's committed schema describes what the
/// code sends. Formats and bounds are not checked.
pub fn conforms(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let shape = Shape::of(resolve(root, schema), root);
    if value.is_null() {
        return if shape.nullable || (shape.types.is_empty() && shape.union.is_none()) { Ok(()) } else { Err(format!("{at}: null")) };
    }
    if let Some(union) = shape.union {
        let branches = union.get("oneOf").or_else(|| union.get("anyOf")).and_then(Value::as_array).cloned().unwrap_or_default();
        return if branches.iter().any(|b| conforms(root, b, value, at).is_ok()) {
            Ok(())
        } else {
            Err(format!("{at}: no branch matches"))
        };
    }
    let schema = shape.schema;
    let actual = match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    };
    let fits = shape.types.is_empty() || shape.types.contains(actual) || (actual == "integer" && shape.types.contains("number"));
    if !fits {
        return Err(format!("{at}: {actual}, the schema says {}", list(&shape.types)));
    }
    if let (Some(values), Some(text)) = (&shape.values, value.as_str())
        && !values.contains(text)
    {
        return Err(format!("{at}: {text:?} is not one of {values:?}"));
    }
    if let Value::Object(map) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in required(schema) {
            if !map.contains_key(&name) {
                return Err(format!("{at}.{name}: required, absent"));
            }
        }
        if let Some(properties) = properties {
            for (name, item) in map {
                let Some(property) = properties.get(name) else { return Err(format!("{at}.{name}: not in the schema")) };
                conforms(root, property, item, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(root, item_schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compare(old: Value, new: Value, flow: Flow) -> Vec<Change> {
        let (old_root, new_root) = (json!({}), json!({}));
        let mut changes = Vec::new();
        Comparison::new("test", &old_root, &new_root, &mut changes).schema("body", &old, &new, flow);
        changes
    }

    fn breaking(changes: &[Change]) -> Vec<String> {
        changes.iter().filter(|c| c.breaking).map(|c| c.text.clone()).collect()
    }

    fn object(properties: Value, required: &[&str]) -> Value {
        json!({"type": "object", "properties": properties, "required": required})
    }

    #[test]
    fn a_reader_breaks_when_a_property_goes_may_be_absent_or_changes_type() {
        let old = object(json!({"id": {"type": "string"}, "total": {"type": "integer"}, "note": {"type": "string"}}), &["id", "total"]);
        let new = object(json!({"id": {"type": "integer"}, "total": {"type": ["integer", "null"]}, "extra": {"type": "string"}}), &["id"]);
        let found = breaking(&compare(old.clone(), new.clone(), Flow::Output));
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found.iter().any(|t| t == "body.note: removed"), "{found:?}");
        assert!(found.iter().any(|t| t == "body.total: may now be absent"), "{found:?}");
        assert!(found.iter().any(|t| t == "body.total: may now be null"), "{found:?}");
        assert!(found.iter().any(|t| t.starts_with("body.id: type changed")), "{found:?}");
        // Adding a property is fine for a reader.
        let added = object(
            json!({"id": {"type": "string"}, "total": {"type": "integer"}, "note": {"type": "string"}, "x": {"type": "string"}}),
            &["id", "total"],
        );
        assert!(breaking(&compare(old, added, Flow::Output)).is_empty());
    }

    #[test]
    fn a_sender_breaks_when_a_field_becomes_required_or_a_limit_tightens() {
        let old = object(json!({"name": {"type": "string", "maxLength": 200}, "note": {"type": "string"}}), &["name"]);
        let new = object(
            json!({"name": {"type": "string", "maxLength": 100, "pattern": "^[a-z]+$"}, "note": {"type": "string"}, "sku": {"type": "string"}}),
            &["name", "note", "sku"],
        );
        let found = breaking(&compare(old.clone(), new, Flow::Input));
        assert_eq!(
            found,
            vec![
                "body.name: maxLength lowered from 200 to 100",
                "body.name: pattern \"^[a-z]+$\" added",
                "body.note: is now required",
                "body.sku: added as a required property"
            ]
        );
        let relaxed =
            object(json!({"name": {"type": "string", "maxLength": 300}, "note": {"type": "string"}, "x": {"type": "integer"}}), &[]);
        let changes = compare(old, relaxed, Flow::Input);
        assert!(breaking(&changes).is_empty(), "{changes:?}");
        assert!(changes.iter().any(|c| c.text == "body.name: maxLength raised from 200 to 300"));
    }

    #[test]
    fn enum_values_break_senders_when_removed_and_readers_when_added() {
        let old = json!({"type": "string", "enum": ["a", "b"]});
        let new = json!({"type": "string", "enum": ["b", "c"]});
        assert_eq!(breaking(&compare(old.clone(), new.clone(), Flow::Input)), vec!["body: no longer accepts [`a`]"]);
        assert_eq!(breaking(&compare(old, new, Flow::Output)), vec!["body: may now be [`c`] (readers that match every value break)"]);
    }

    #[test]
    fn references_are_followed_on_both_sides() {
        let old_root = json!({"components": {"schemas": {"Money": object(json!({"amount": {"type": "integer"}, "currency": {"type": "string"}}), &["amount", "currency"])}}});
        let new_root = json!({"components": {"schemas": {"Money": object(json!({"amount": {"type": "integer"}}), &["amount"])}}});
        let reference = json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Money"}]});
        let mut changes = Vec::new();
        Comparison::new("test", &old_root, &new_root, &mut changes).schema("price", &reference, &reference, Flow::Output);
        assert_eq!(breaking(&changes), vec!["price.currency: removed"]);
    }

    #[test]
    fn conformance_names_what_does_not_fit() {
        let root = json!({});
        let schema =
            object(json!({"id": {"type": "string"}, "n": {"type": "integer"}, "kind": {"type": "string", "enum": ["a"]}}), &["id"]);
        assert!(conforms(&root, &schema, &json!({"id": "x", "n": 1, "kind": "a"}), "e").is_ok());
        assert_eq!(conforms(&root, &schema, &json!({"n": 1}), "e").unwrap_err(), "e.id: required, absent");
        assert_eq!(conforms(&root, &schema, &json!({"id": "x", "m": 1}), "e").unwrap_err(), "e.m: not in the schema");
        assert!(conforms(&root, &schema, &json!({"id": "x", "kind": "b"}), "e").unwrap_err().contains("not one of"));
        assert!(conforms(&root, &schema, &json!({"id": 3}), "e").unwrap_err().contains("integer, the schema says string"));
    }
}
