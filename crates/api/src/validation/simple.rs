//! Validation of the small kinds: ConfigMap, Secret, Node, Event and Lease. Each follows its upstream
//! `Validate<Kind>` function; none of them looks beyond the object itself.

use base64::Engine;
use serde_json::Value;

use super::names::{self, config_map_key};
use super::{arr_at, forbidden, go_quote, invalid, not_supported, required, str_at, too_long, IMMUTABLE, NEGATIVE};
use crate::status::Cause;

/// Upstream's `MaxSecretSize`: the data of a ConfigMap or Secret must fit in 1 MiB.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// ConfigMap: valid keys, no key in both `data` and `binaryData`, at most 1 MiB in total, and no change at
/// all once `immutable` is set.
pub(super) fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Vec<Cause>) {
    let mut total = 0;
    let binary = obj.get("binaryData").and_then(Value::as_object);
    if let Some(data) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            for msg in config_map_key(k) {
                errs.push(invalid(&format!("data[{k}]"), &go_quote(k), &msg));
            }
            if binary.is_some_and(|b| b.contains_key(k)) {
                errs.push(invalid(
                    &format!("data[{k}]"),
                    &go_quote(k),
                    "duplicate of key present in binaryData",
                ));
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if let Some(b) = binary {
        for (k, v) in b {
            for msg in config_map_key(k) {
                errs.push(invalid(&format!("binaryData[{k}]"), &go_quote(k), &msg));
            }
            total += decoded_len(v.as_str().unwrap_or(""));
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(too_long("", MAX_DATA_SIZE));
    }
    immutable_data(obj, old, &["data", "binaryData"], errs);
}

/// Secret: valid keys holding base64 data, at most 1 MiB, the keys its type requires, an immutable type,
/// and no data change once `immutable` is set.
pub(super) fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Vec<Cause>) {
    let mut total = 0;
    let data = obj.get("data").and_then(Value::as_object);
    if let Some(data) = data {
        for (k, v) in data {
            for msg in config_map_key(k) {
                errs.push(invalid(&format!("data[{k}]"), &go_quote(k), &msg));
            }
            let text = v.as_str().unwrap_or("");
            if base64::engine::general_purpose::STANDARD.decode(text).is_err() {
                errs.push(invalid(
                    &format!("data[{k}]"),
                    "\"<secret contents redacted>\"",
                    "must be base64-encoded",
                ));
            }
            total += decoded_len(text);
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(too_long("data", MAX_DATA_SIZE));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    match str_at(obj, "type") {
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(required(&format!("data[{key}]"), ""));
                }
            }
        }
        // Each of these types requires one key (basic-auth: either of two).
        ty @ ("kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg" | "kubernetes.io/ssh-auth") => {
            let key = match ty {
                "kubernetes.io/dockerconfigjson" => ".dockerconfigjson",
                "kubernetes.io/dockercfg" => ".dockercfg",
                _ => "ssh-privatekey",
            };
            if !has(key) {
                errs.push(required(&format!("data[{key}]"), ""));
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("data[username]", ""));
            errs.push(required("data[password]", ""));
        }
        "kubernetes.io/service-account-token" => {
            let sa = crate::meta::path(obj, "metadata.annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if sa.is_empty() {
                errs.push(required("metadata.annotations[kubernetes.io/service-account.name]", ""));
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let (new_t, old_t) = (str_at(obj, "type"), str_at(old, "type"));
        if new_t != old_t {
            errs.push(invalid("type", &go_quote(new_t), IMMUTABLE));
        }
    }
    immutable_data(obj, old, &["data"], errs);
}

/// The length of base64 text once decoded (an estimate that is exact for valid input).
fn decoded_len(text: &str) -> usize {
    let pad = text.bytes().rev().take_while(|&c| c == b'=').count();
    (text.len() / 4 * 3).saturating_sub(pad)
}

/// Once `immutable: true` is stored, the data and the flag itself are frozen (upstream's immutable
/// ConfigMaps and Secrets, which let kubelets stop watching them).
fn immutable_data(obj: &Value, old: Option<&Value>, fields: &[&str], errs: &mut Vec<Cause>) {
    let Some(old) = old else { return };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(forbidden("immutable", "field is immutable when `immutable` is set"));
    }
    for f in fields {
        let norm = |v: Option<&Value>| {
            v.filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(Value::Object(Default::default()))
        };
        if norm(obj.get(*f)) != norm(old.get(*f)) {
            errs.push(forbidden(f, "field is immutable when `immutable` is set"));
        }
    }
}

/// Node: valid taints and a valid pod CIDR.
pub(super) fn validate_node(obj: &Value, errs: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (i, t) in arr_at(spec, "taints").iter().enumerate() {
        let idx = format!("spec.taints[{i}]");
        let key = str_at(t, "key");
        if key.is_empty() {
            errs.push(required(&format!("{idx}.key"), ""));
        } else {
            for msg in names::is_qualified_name(key) {
                errs.push(invalid(&format!("{idx}.key"), &go_quote(key), &msg));
            }
        }
        let value = str_at(t, "value");
        for msg in names::is_valid_label_value(value) {
            errs.push(invalid(&format!("{idx}.value"), &go_quote(value), &msg));
        }
        match str_at(t, "effect") {
            "" => errs.push(required(&format!("{idx}.effect"), "")),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.push(not_supported(
                &format!("{idx}.effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
    }
    let cidr = str_at(spec, "podCIDR");
    if !cidr.is_empty() {
        let valid = cidr
            .split_once('/')
            .is_some_and(|(ip, bits)| names::is_ip(ip) && bits.parse::<u8>().is_ok_and(|b| b <= 128));
        if !valid {
            errs.push(invalid(
                "spec.podCIDR",
                &go_quote(cidr),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
}

/// Event (core/v1): upstream's legacy checks — the involved object's namespace agrees with the Event's,
/// and new-style Events (with `eventTime`) carry their reporting fields.
pub(super) fn validate_event(obj: &Value, errs: &mut Vec<Cause>) {
    let ns = crate::meta::namespace(obj);
    let involved_ns = crate::meta::path(obj, "involvedObject.namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let has_event_time = obj.get("eventTime").is_some_and(|v| !v.is_null());
    let mismatch = if !has_event_time {
        if involved_ns.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != involved_ns
        }
    } else {
        involved_ns.is_empty() && ns != "default" && ns != "kube-system"
    };
    if mismatch {
        errs.push(invalid(
            "involvedObject.namespace",
            &go_quote(involved_ns),
            "does not match event.namespace",
        ));
    }
    if has_event_time {
        let controller = str_at(obj, "reportingComponent");
        if controller.is_empty() {
            errs.push(required("reportingComponent", ""));
        }
        for msg in names::is_qualified_name(controller) {
            errs.push(invalid("reportingComponent", &go_quote(controller), &msg));
        }
        for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = str_at(obj, field);
            if v.is_empty() {
                errs.push(required(field, ""));
            } else if v.len() > limit {
                errs.push(invalid(field, "\"\"", &format!("can have at most {limit} characters")));
            }
        }
        if str_at(obj, "message").len() > 1024 {
            errs.push(invalid("message", "\"\"", "can have at most 1024 characters"));
        }
    }
    for msg in names::dns1123_subdomain(ns) {
        errs.push(invalid("namespace", &go_quote(ns), &msg));
    }
}

/// Lease: a positive duration and non-negative transition count.
pub(super) fn validate_lease(obj: &Value, errs: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(d) = spec.get("leaseDurationSeconds").and_then(Value::as_i64) {
        if d <= 0 {
            errs.push(invalid(
                "spec.leaseDurationSeconds",
                &d.to_string(),
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = spec.get("leaseTransitions").and_then(Value::as_i64) {
        if t < 0 {
            errs.push(invalid("spec.leaseTransitions", &t.to_string(), NEGATIVE));
        }
    }
}
