//! Decoding checks: whether a body decodes as its kind at all (wrong JSON types, bad quantities, bad base64
//! are 400 BadRequest upstream, before validation), and for `fieldValidation=Strict` which fields are unknown.
//!
//! Unknown fields are found by a round trip through the `k8s-openapi` type: a field present in the input but
//! absent after decoding and re-encoding was not understood. `null`s are skipped (they decode to "absent"),
//! and maps such as labels survive the trip whole, so only real schema misses are reported.
//!
//! Outside `fieldValidation=Strict` upstream drops unknown fields: the body is decoded into the kind's Go struct,
//! which has nowhere to keep them. [`prune_unknown_fields`] does the same to the JSON berth stores, so that no
//! field outside the schema (where nothing validates or bounds it) is ever stored.

use base64::Engine;
use k8s_openapi::api::{apps, coordination, core, discovery};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::quantity::{Quantity, QUANTITY_REGEX_ERROR};
use crate::resources::RESOURCES;

/// Keys whose values are maps of resource quantities (`resources.limits`, `status.capacity`, ...).
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "overhead",
    "hard",
    "used",
];

/// Why `obj` cannot be decoded as `kind`, in upstream's form
/// (`Deployment in version "v1" cannot be handled as a Deployment: <detail>`), or `None` if it decodes.
/// Kinds berth does not serve always decode.
pub fn decode_error(kind: &str, obj: &Value) -> Option<String> {
    roundtrip(kind, obj).and_then(Result::err)
}

/// For `fieldValidation=Strict`/`Warn`: the dotted paths of fields the kind's schema does not have, such as
/// `spec.replica` or `spec.template.spec.containers[0].imagePullPolcy`, in input order. The server words them
/// as upstream does: `strict decoding error: unknown field "spec.replica"`. `Err` carries the
/// [`decode_error`] message when the body does not decode at all.
pub fn strict_unknown_fields(kind: &str, obj: &Value) -> Result<Vec<String>, String> {
    match roundtrip(kind, obj) {
        None => Ok(Vec::new()),
        Some(Err(e)) => Err(e),
        Some(Ok(decoded)) => {
            let mut out = Vec::new();
            unknown(obj, &decoded, &mut String::new(), &mut out);
            Ok(out)
        }
    }
}

/// Removes from `obj` every field the kind's schema does not have and returns their paths, as
/// [`strict_unknown_fields`] words them (input order); `Err` carries the [`decode_error`] message when the body
/// does not decode at all, and then `obj` is unchanged. One round trip does both checks, so a write pays for it
/// once. Kinds without a typed view keep every field.
pub fn prune_unknown_fields(kind: &str, obj: &mut Value) -> Result<Vec<String>, String> {
    match roundtrip(kind, obj) {
        None => Ok(Vec::new()),
        Some(Err(e)) => Err(e),
        Some(Ok(decoded)) => {
            let mut out = Vec::new();
            prune(obj, &decoded, &mut String::new(), &mut out);
            Ok(out)
        }
    }
}

/// Like [`unknown`], removing what it finds instead of only listing it.
///
/// Every write runs this over its whole object, so the path is one buffer grown and truncated in place, and a
/// path is only copied out for a field that is actually unknown.
fn prune(input: &mut Value, decoded: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            i.retain(|k, v| {
                if v.is_null() {
                    return true;
                }
                let len = path.len();
                push_key(path, k);
                let keep = match d.get(k) {
                    None => {
                        out.push(path.clone());
                        false
                    }
                    Some(dv) => {
                        prune(v, dv, path, out);
                        true
                    }
                };
                path.truncate(len);
                keep
            });
        }
        (Value::Array(i), Value::Array(d)) => {
            for (n, (iv, dv)) in i.iter_mut().zip(d).enumerate() {
                let len = path.len();
                push_index(path, n);
                prune(iv, dv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Appends `.key` (or `key` at the root) to a dotted path.
fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Appends `[n]` to a dotted path.
fn push_index(path: &mut String, n: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{n}]");
}

/// Decodes into the typed struct and encodes back; `None` for kinds without a typed view.
fn roundtrip(kind: &str, obj: &Value) -> Option<Result<Value, String>> {
    let info = RESOURCES.iter().find(|r| r.kind == kind)?;
    let prefix = format!("{kind} in version \"{}\" cannot be handled as a {kind}", info.version);
    let mut v = obj.clone();
    if let Err(detail) = normalize_quantities(&mut v) {
        return Some(Err(format!("{prefix}: {detail}")));
    }
    if kind == "Secret" {
        if let Some(detail) = bad_base64(&v) {
            return Some(Err(format!("{prefix}: {detail}")));
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(info.api_version()));
        m.insert("kind".into(), Value::String(kind.to_string()));
    }
    let result = match kind {
        "Namespace" => via::<core::v1::Namespace>(v),
        "Pod" => via::<core::v1::Pod>(v),
        "Service" => via::<core::v1::Service>(v),
        "Endpoints" => via::<core::v1::Endpoints>(v),
        "ConfigMap" => via::<core::v1::ConfigMap>(v),
        "Secret" => via::<core::v1::Secret>(v),
        "Node" => via::<core::v1::Node>(v),
        "Event" => via::<core::v1::Event>(v),
        "ReplicationController" => via::<core::v1::ReplicationController>(v),
        "Deployment" => via::<apps::v1::Deployment>(v),
        "ReplicaSet" => via::<apps::v1::ReplicaSet>(v),
        "EndpointSlice" => via::<discovery::v1::EndpointSlice>(v),
        "Lease" => via::<coordination::v1::Lease>(v),
        _ => return None,
    };
    Some(result.map_err(|detail| format!("{prefix}: {detail}")))
}

fn via<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v).map_err(|e| go_style(&e.to_string()))?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Rewords serde's type errors towards Go's (`json: cannot unmarshal string into Go value of type int32`),
/// which is what users of kubectl have learnt to read.
fn go_style(serde_msg: &str) -> String {
    let Some(rest) = serde_msg.strip_prefix("invalid type: ") else {
        return serde_msg.to_string();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return serde_msg.to_string();
    };
    let found_kind = match found.split_whitespace().next().unwrap_or("") {
        "string" => "string",
        "integer" | "floating" => "number",
        "boolean" => "bool",
        "map" => "object",
        "sequence" => "array",
        other => other,
    };
    let go_type = match expected {
        e if e.starts_with("i32") => "int32",
        e if e.starts_with("i64") => "int64",
        e if e.starts_with("a boolean") => "bool",
        e if e.starts_with("a string") => "string",
        e if e.starts_with("a sequence") => "[]interface {}",
        e if e.contains("map") || e.starts_with("struct") => "map[string]interface {}",
        e => e,
    };
    format!("json: cannot unmarshal {found_kind} into Go value of type {go_type}")
}

/// Upstream accepts quantities written as JSON numbers (`cpu: 1` in YAML); `k8s-openapi` wants strings.
/// Converts them, and rejects strings that are not quantities with upstream's message.
fn normalize_quantities(v: &mut Value) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str()) {
                    if let Value::Object(q) = child {
                        quantity_map(q)?;
                        continue;
                    }
                }
                if k == "sizeLimit" {
                    if let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                    }
                }
                normalize_quantities(child)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(normalize_quantities),
        _ => Ok(()),
    }
}

fn quantity_map(q: &mut Map<String, Value>) -> Result<(), String> {
    for val in q.values_mut() {
        match val {
            Value::Number(n) => *val = Value::String(n.to_string()),
            Value::String(s) if Quantity::parse(s).is_none() => return Err(QUANTITY_REGEX_ERROR.to_string()),
            _ => {}
        }
    }
    Ok(())
}

/// Go's `illegal base64 data at input byte N` for the first Secret value that is not base64.
fn bad_base64(secret: &Value) -> Option<String> {
    let data = secret.get("data")?.as_object()?;
    for v in data.values() {
        let text = v.as_str()?;
        if base64::engine::general_purpose::STANDARD.decode(text).is_err() {
            let at = text
                .bytes()
                .position(|c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='))
                .unwrap_or(text.len().saturating_sub(text.len() % 4));
            return Some(format!("illegal base64 data at input byte {at}"));
        }
    }
    None
}

/// Collects the paths present in `input` but missing from `decoded`.
fn unknown(input: &Value, decoded: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let len = path.len();
                push_key(path, k);
                match d.get(k) {
                    None => out.push(path.clone()),
                    Some(dv) => unknown(v, dv, path, out),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(d)) => {
            for (n, (iv, dv)) in i.iter().zip(d).enumerate() {
                let len = path.len();
                push_index(path, n);
                unknown(iv, dv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
