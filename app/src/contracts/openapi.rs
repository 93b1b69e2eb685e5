//! What changed between two OpenAPI documents, route by route, for an existing client.

use super::Change;
use super::schema::{Comparison, Flow};
use crate::openapi::METHODS;
use serde_json::Value;
use std::collections::BTreeMap;

const CONTRACT: &str = "openapi";

/// Every change from `old` to `new`; `today` (`YYYY-MM-DD`) decides whether a removed route's
/// sunset has passed.
pub fn compare(old: &Value, new: &Value, today: &str, changes: &mut Vec<Change>) {
    let old_operations = operations(old);
    let new_operations = operations(new);
    for (route, old_operation) in &old_operations {
        match new_operations.get(route) {
            None => match old_operation.get("x-sunset").and_then(Value::as_str) {
                Some(sunset) if sunset <= today => {
                    changes.push(Change::compatible(CONTRACT, format!("{route}: removed after its sunset ({sunset})")));
                }
                Some(sunset) => changes.push(Change::breaking(CONTRACT, format!("{route}: removed before its sunset ({sunset})"))),
                None => changes.push(Change::breaking(CONTRACT, format!("{route}: removed (deprecate it with a sunset first)"))),
            },
            Some(new_operation) => operation(route, old, new, old_operation, new_operation, changes),
        }
    }
    for route in new_operations.keys().filter(|route| !old_operations.contains_key(*route)) {
        changes.push(Change::compatible(CONTRACT, format!("{route}: added")));
    }
}

/// Every operation of `document` by `METHOD /path`.
pub fn operations(document: &Value) -> BTreeMap<String, &Value> {
    let mut found = BTreeMap::new();
    if let Some(paths) = document.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    found.insert(format!("{} {path}", method.to_uppercase()), operation);
                }
            }
        }
    }
    found
}

fn operation(route: &str, old_root: &Value, new_root: &Value, old: &Value, new: &Value, changes: &mut Vec<Change>) {
    if old.get("deprecated") != Some(&Value::Bool(true)) && new.get("deprecated") == Some(&Value::Bool(true)) {
        let sunset = new.get("x-sunset").and_then(Value::as_str).unwrap_or("no date");
        changes.push(Change::compatible(CONTRACT, format!("{route}: deprecated (sunset {sunset})")));
    }
    let secured = |op: &Value| op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    if !secured(old) && secured(new) {
        changes.push(Change::breaking(CONTRACT, format!("{route}: now needs a bearer token")));
    }
    parameters(route, old_root, new_root, old, new, changes);
    request_body(route, old_root, new_root, old, new, changes);
    responses(route, old_root, new_root, old, new, changes);
}

fn parameters<'a>(route: &str, old_root: &Value, new_root: &Value, old: &'a Value, new: &'a Value, changes: &mut Vec<Change>) {
    let list = |op: &'a Value| -> BTreeMap<(String, String), &'a Value> {
        op.get("parameters")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let key =
                            (p["in"].as_str().unwrap_or_default().to_owned(), p["name"].as_str().unwrap_or_default().to_ascii_lowercase());
                        (key, p)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old_params, new_params) = (list(old), list(new));
    let required = |p: &Value| p.get("required").and_then(Value::as_bool).unwrap_or(false);
    for ((place, name), new_param) in &new_params {
        let at = format!("{route}: {place} parameter `{name}`");
        match old_params.get(&(place.clone(), name.clone())) {
            None if required(new_param) => changes.push(Change::breaking(CONTRACT, format!("{at} added as required"))),
            None => changes.push(Change::compatible(CONTRACT, format!("{at} added (optional)"))),
            Some(old_param) => {
                if !required(old_param) && required(new_param) {
                    changes.push(Change::breaking(CONTRACT, format!("{at} is now required")));
                }
                if let (Some(o), Some(n)) = (old_param.get("schema"), new_param.get("schema")) {
                    Comparison::new(CONTRACT, old_root, new_root, changes).schema(&at, o, n, Flow::Input);
                }
            }
        }
    }
    for (place, name) in old_params.keys().filter(|key| !new_params.contains_key(*key)) {
        // A parameter the server stops reading is ignored when a client still sends it.
        changes.push(Change::compatible(CONTRACT, format!("{route}: {place} parameter `{name}` no longer read")));
    }
}

fn request_body(route: &str, old_root: &Value, new_root: &Value, old: &Value, new: &Value, changes: &mut Vec<Change>) {
    let required = |body: &Value| body.get("required").and_then(Value::as_bool).unwrap_or(false);
    match (old.get("requestBody"), new.get("requestBody")) {
        (None, Some(body)) if required(body) => {
            changes.push(Change::breaking(CONTRACT, format!("{route}: a request body is now required")))
        }
        (None, Some(_)) => changes.push(Change::compatible(CONTRACT, format!("{route}: accepts an optional request body"))),
        (Some(_), None) => changes.push(Change::compatible(CONTRACT, format!("{route}: the request body is no longer read"))),
        (Some(o), Some(n)) => {
            if !required(o) && required(n) {
                changes.push(Change::breaking(CONTRACT, format!("{route}: the request body is now required")));
            }
            for (media, old_content) in o.get("content").and_then(Value::as_object).into_iter().flatten() {
                let at = format!("{route}: request body");
                match n.get("content").and_then(|c| c.get(media)) {
                    None => changes.push(Change::breaking(CONTRACT, format!("{at}: {media} no longer accepted"))),
                    Some(new_content) => {
                        if let (Some(os), Some(ns)) = (old_content.get("schema"), new_content.get("schema")) {
                            Comparison::new(CONTRACT, old_root, new_root, changes).schema(&at, os, ns, Flow::Input);
                        }
                    }
                }
            }
        }
        (None, None) => {}
    }
}

fn responses(route: &str, old_root: &Value, new_root: &Value, old: &Value, new: &Value, changes: &mut Vec<Change>) {
    let empty = serde_json::Map::new();
    let old_responses = old.get("responses").and_then(Value::as_object).unwrap_or(&empty);
    let new_responses = new.get("responses").and_then(Value::as_object).unwrap_or(&empty);
    for (status, old_response) in old_responses {
        let at = format!("{route}: response {status}");
        let Some(new_response) = new_responses.get(status) else {
            if status.starts_with('2') {
                changes.push(Change::breaking(CONTRACT, format!("{at} is no longer answered")));
            } else {
                changes.push(Change::compatible(CONTRACT, format!("{at} is no longer answered")));
            }
            continue;
        };
        for (media, old_content) in old_response.get("content").and_then(Value::as_object).into_iter().flatten() {
            match new_response.get("content").and_then(|c| c.get(media)) {
                None => changes.push(Change::breaking(CONTRACT, format!("{at}: no longer {media}"))),
                Some(new_content) => {
                    if let (Some(os), Some(ns)) = (old_content.get("schema"), new_content.get("schema")) {
                        Comparison::new(CONTRACT, old_root, new_root, changes).schema(&at, os, ns, Flow::Output);
                    }
                }
            }
        }
    }
    for status in new_responses.keys().filter(|status| !old_responses.contains_key(*status)) {
        changes.push(Change::compatible(CONTRACT, format!("{route}: may answer {status}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(operation: Value) -> Value {
        json!({
            "paths": {"/api/v1/things/{id}": {"get": operation}},
            "components": {"schemas": {"Thing": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}, "required": ["id", "name"]}}}
        })
    }

    fn thing_response() -> Value {
        json!({"200": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}})
    }

    fn breaking(old: &Value, new: &Value, today: &str) -> Vec<String> {
        let mut changes = Vec::new();
        compare(old, new, today, &mut changes);
        changes.into_iter().filter(|c| c.breaking).map(|c| c.text).collect()
    }

    #[test]
    fn a_removed_route_breaks_unless_its_sunset_has_passed() {
        let old = document(json!({"responses": thing_response()}));
        let gone = json!({"paths": {}});
        assert_eq!(breaking(&old, &gone, "2027-01-01"), vec!["GET /api/v1/things/{id}: removed (deprecate it with a sunset first)"]);
        let deprecated = document(json!({"responses": thing_response(), "deprecated": true, "x-sunset": "2027-06-01"}));
        assert_eq!(breaking(&deprecated, &gone, "2027-05-31"), vec!["GET /api/v1/things/{id}: removed before its sunset (2027-06-01)"]);
        assert!(breaking(&deprecated, &gone, "2027-06-01").is_empty());
    }

    #[test]
    fn required_inputs_narrowed_types_and_removed_fields_break_and_additions_do_not() {
        let old = document(
            json!({"parameters": [{"in": "query", "name": "limit", "required": false, "schema": {"type": "integer", "maximum": 100}}], "responses": thing_response()}),
        );
        let mut new = document(json!({
            "parameters": [
                {"in": "query", "name": "limit", "required": false, "schema": {"type": "integer", "maximum": 50}},
                {"in": "header", "name": "X-Tenant", "required": true, "schema": {"type": "string"}}
            ],
            "security": [{"bearer": []}],
            "responses": thing_response()
        }));
        new["components"]["schemas"]["Thing"]["properties"].as_object_mut().unwrap().remove("name");
        let found = breaking(&old, &new, "2027-01-01");
        assert_eq!(
            found,
            vec![
                "GET /api/v1/things/{id}: now needs a bearer token",
                "GET /api/v1/things/{id}: header parameter `x-tenant` added as required",
                "GET /api/v1/things/{id}: query parameter `limit`: maximum lowered from 100 to 50",
                "GET /api/v1/things/{id}: response 200.name: removed",
            ]
        );
        let mut added = document(json!({"responses": thing_response()}));
        added["paths"]["/api/v1/other"] = json!({"get": {"responses": {}}});
        added["components"]["schemas"]["Thing"]["properties"]["colour"] = json!({"type": "string"});
        let mut changes = Vec::new();
        compare(&document(json!({"responses": thing_response()})), &added, "2027-01-01", &mut changes);
        assert!(changes.iter().all(|c| !c.breaking), "{changes:?}");
        assert!(changes.iter().any(|c| c.text == "GET /api/v1/other: added"));
        assert!(changes.iter().any(|c| c.text == "GET /api/v1/things/{id}: response 200.colour: added"));
    }
}
