//! Upstream's validation for each served kind (`pkg/apis/core/validation`, `pkg/apis/apps/validation`, ...),
//! returning field causes with upstream's reasons, paths and message texts, so that kubectl prints the same
//! `The Deployment "web" is invalid: * spec.selector: Required value` a real cluster would.
//!
//! This module only inspects objects: it never defaults, never allocates (cluster IPs, node ports) and never
//! looks at other objects. Wrong JSON *types* are a decoding problem, not a validation one; see [`strict`].

mod names;
mod pod;
pub mod quantity;
mod service;
mod simple;
pub mod strict;
mod workloads;

use serde_json::Value;

use crate::meta;
use crate::resources::RESOURCES;
use crate::status::Cause;

pub use names::{is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value};
pub use strict::{decode_error, prune_unknown_fields, strict_unknown_fields};

/// Validates `obj` of `kind`; `old` is the stored object on update (for immutability checks), `None` on create.
/// Returns every problem found, in upstream's order where it matters; an empty list means valid.
pub fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let name_fn: NameFn = match kind {
        "Namespace" => names::dns1123_label_msgs,
        "Service" => names::dns1035_label_msgs,
        _ => names::dns1123_subdomain_msgs,
    };
    // Events skip ObjectMeta validation upstream (legacy compatibility); they only need a name.
    if kind == "Event" {
        if meta::name(obj).is_empty() {
            errs.push(required("metadata.name", "name or generateName is required"));
        }
    } else {
        let namespaced = RESOURCES.iter().find(|r| r.kind == kind).is_none_or(|r| r.namespaced());
        object_meta(
            obj.get("metadata").unwrap_or(&Value::Null),
            namespaced,
            name_fn,
            "metadata",
            &mut errs,
        );
    }
    if let Some(old) = old {
        object_meta_update(obj, old, &mut errs);
    }
    match kind {
        "Pod" => pod::validate_pod(obj, old, &mut errs),
        "Deployment" | "ReplicaSet" => workloads::validate_apps(kind, obj, old, &mut errs),
        "ReplicationController" => workloads::validate_rc(obj, &mut errs),
        "Service" => service::validate_service(obj, old, &mut errs),
        "Endpoints" => service::validate_endpoints(obj, &mut errs),
        "EndpointSlice" => service::validate_endpoint_slice(obj, &mut errs),
        "ConfigMap" => simple::validate_config_map(obj, old, &mut errs),
        "Secret" => simple::validate_secret(obj, old, &mut errs),
        "Node" => simple::validate_node(obj, &mut errs),
        "Event" => simple::validate_event(obj, &mut errs),
        "Lease" => simple::validate_lease(obj, &mut errs),
        _ => {}
    }
    errs
}

/// A name-validation function: the name and whether it is a `generateName` prefix, to the error messages.
type NameFn = fn(&str, bool) -> Vec<String>;

/// Upstream's `ValidateObjectMeta`: name (or generateName), namespace, labels and annotations.
pub(crate) fn object_meta(m: &Value, namespaced: bool, name_fn: NameFn, path: &str, errs: &mut Vec<Cause>) {
    let generate_name = str_at(m, "generateName");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(invalid(&format!("{path}.generateName"), &go_quote(generate_name), &msg));
        }
    }
    let name = str_at(m, "name");
    if name.is_empty() {
        errs.push(required(&format!("{path}.name"), "name or generateName is required"));
    } else {
        for msg in name_fn(name, false) {
            errs.push(invalid(&format!("{path}.name"), &go_quote(name), &msg));
        }
    }
    let ns = str_at(m, "namespace");
    if namespaced {
        if ns.is_empty() {
            errs.push(required(&format!("{path}.namespace"), ""));
        } else {
            for msg in names::dns1123_label_msgs(ns, false) {
                errs.push(invalid(&format!("{path}.namespace"), &go_quote(ns), &msg));
            }
        }
    } else if !ns.is_empty() {
        errs.push(forbidden(&format!("{path}.namespace"), "not allowed on this type"));
    }
    if let Some(g) = m.get("generation").and_then(Value::as_i64) {
        if g < 0 {
            errs.push(invalid(&format!("{path}.generation"), &g.to_string(), NEGATIVE));
        }
    }
    labels(m.get("labels"), &format!("{path}.labels"), errs);
    annotations(m.get("annotations"), &format!("{path}.annotations"), errs);
}

/// Upstream's `ValidateObjectMetaUpdate`, for the fields a client could try to change: name and namespace.
/// (uid, creationTimestamp and resourceVersion are the server's business and it restores them.)
fn object_meta_update(obj: &Value, old: &Value, errs: &mut Vec<Cause>) {
    for field in ["name", "namespace"] {
        let new_v = meta::str_field(obj, field).unwrap_or("");
        let old_v = meta::str_field(old, field).unwrap_or("");
        if new_v != old_v {
            errs.push(invalid(&format!("metadata.{field}"), &go_quote(new_v), IMMUTABLE));
        }
    }
}

/// Upstream's `ValidateLabels`: every key a qualified name, every value a valid label value. Errors name the
/// whole `labels` path, not the key, as upstream does.
pub(crate) fn labels(v: Option<&Value>, path: &str, errs: &mut Vec<Cause>) {
    let Some(map) = v.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        for msg in names::is_qualified_name(k) {
            errs.push(invalid(path, &go_quote(k), &msg));
        }
        let value = v.as_str().unwrap_or("");
        for msg in names::is_valid_label_value(value) {
            errs.push(invalid(path, &go_quote(value), &msg));
        }
    }
}

/// The total size limit of all annotations on one object (256 KiB), upstream's `TotalAnnotationSizeLimitB`.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Upstream's `ValidateAnnotations`: keys are qualified names (checked lower-cased) and the total size of keys
/// and values stays under [`TOTAL_ANNOTATION_SIZE_LIMIT`].
fn annotations(v: Option<&Value>, path: &str, errs: &mut Vec<Cause>) {
    let Some(map) = v.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid(path, &go_quote(k), &msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

// ---- cause constructors, mirroring k8s.io/apimachinery/pkg/util/validation/field ----

/// Upstream's message for a negative count.
pub(crate) const NEGATIVE: &str = "must be greater than or equal to 0";
/// Upstream's message for a changed immutable field.
pub(crate) const IMMUTABLE: &str = "field is immutable";

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.to_string(),
        message,
        field: field.to_string(),
    }
}

/// `field.Required`: `Required value` (with `: detail` when given).
pub(crate) fn required(field: &str, detail: &str) -> Cause {
    let msg = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    cause("FieldValueRequired", field, msg)
}

/// `field.Invalid`: `Invalid value: <value>: detail`. `value` is already rendered the way Go would print it
/// (use [`go_quote`] for strings).
pub(crate) fn invalid(field: &str, value: &str, detail: &str) -> Cause {
    let msg = if detail.is_empty() {
        format!("Invalid value: {value}")
    } else {
        format!("Invalid value: {value}: {detail}")
    };
    cause("FieldValueInvalid", field, msg)
}

/// `field.NotSupported`: `Unsupported value: "x": supported values: "a", "b"`.
pub(crate) fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    cause(
        "FieldValueNotSupported",
        field,
        format!(
            "Unsupported value: {}: supported values: {}",
            go_quote(value),
            list.join(", ")
        ),
    )
}

/// `field.Forbidden`: `Forbidden: detail`.
pub(crate) fn forbidden(field: &str, detail: &str) -> Cause {
    cause("FieldValueForbidden", field, format!("Forbidden: {detail}"))
}

/// `field.Duplicate`: `Duplicate value: <value>`.
pub(crate) fn duplicate(field: &str, value: &str) -> Cause {
    cause("FieldValueDuplicate", field, format!("Duplicate value: {value}"))
}

/// `field.NotFound`: `Not found: <value>`.
pub(crate) fn not_found(field: &str, value: &str) -> Cause {
    cause("FieldValueNotFound", field, format!("Not found: {value}"))
}

/// `field.TooLong`: `Too long: may not be more than N bytes`.
pub(crate) fn too_long(field: &str, max: usize) -> Cause {
    let unit = if max == 1 { "byte" } else { "bytes" };
    cause(
        "FieldValueTooLong",
        field,
        format!("Too long: may not be more than {max} {unit}"),
    )
}

/// `field.TooMany`: `Too many: N: must have at most M items`.
pub(crate) fn cause_too_many(field: &str, actual: usize, max: usize) -> Cause {
    cause(
        "FieldValueTooMany",
        field,
        format!("Too many: {actual}: must have at most {max} items"),
    )
}

/// Quotes a string the way Go's `%q` does for the printable ASCII that names and keys contain.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a string map as Go's `%#v` prints a `map[string]string` (keys sorted; `(nil)` when absent).
pub(crate) fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", body.join(", "))
        }
    }
}

/// Renders a label selector as Go's `%#v` prints a `v1.LabelSelector`, as upstream's immutability and
/// empty-selector messages show it.
pub(crate) fn go_label_selector(v: &Value) -> String {
    let labels = match v.get("matchLabels") {
        Some(Value::Object(_)) => go_string_map(v.get("matchLabels")),
        _ => "map[string]string(nil)".to_string(),
    };
    let exprs = match v.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => format!(
                            "[]string{{{}}}",
                            vs.iter()
                                .map(|v| go_quote(v.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(str_at(e, "key")),
                        go_quote(str_at(e, "operator")),
                        values
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

// ---- small JSON accessors shared by the kind validators ----

/// A string field of an object, or `""`.
pub(crate) fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An array field of an object, or an empty slice.
pub(crate) fn arr_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Renders a JSON scalar the way Go's `%v` would print the typed value behind it.
pub(crate) fn render(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
