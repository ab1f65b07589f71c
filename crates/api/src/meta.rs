//! Small accessors for `metadata` on objects held as JSON values. Objects stay as `serde_json::Value` through
//! the server so that no field is ever lost to a typed round trip; these helpers keep the access readable.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The Node annotation carrying the lowercase hex SHA-256 (of the DER) of the node agent's serving certificate. The
/// agent publishes it with its own credentials; the API server pins exactly that certificate when it dials the
/// agent for logs and exec.
pub const AGENT_CERT_ANNOTATION: &str = "berth.dev/agent-cert-sha256";

/// A string field of `metadata`, if present.
pub fn str_field<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`, or `""`.
pub fn name(obj: &Value) -> &str {
    str_field(obj, "name").unwrap_or("")
}

/// `metadata.namespace`, or `""`.
pub fn namespace(obj: &Value) -> &str {
    str_field(obj, "namespace").unwrap_or("")
}

/// `metadata.labels` as a map (empty when absent or malformed).
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj.get("metadata").and_then(|m| m.get("labels")))
}

/// A JSON object of strings as a map, skipping non-string values.
pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata` as a mutable map, creating it when absent or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Follows a dotted path of object keys (`spec.template.spec`).
pub fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, k| v.get(k))
}
