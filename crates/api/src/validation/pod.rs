//! Pod and pod-template validation (`ValidatePodSpec`, `validateContainers`, `ValidatePodUpdate` upstream).
//! Covers what users get wrong in practice: containers, names, images, ports, env, volumes and mounts,
//! resources, probes, policies, and the near-immutability of a running Pod's spec.

use std::collections::BTreeSet;

use serde_json::Value;

use super::names;
use super::quantity::{Quantity, QUANTITY_REGEX_ERROR};
use super::{
    arr_at, duplicate, forbidden, go_quote, invalid, not_found, not_supported, render, required, str_at, NEGATIVE,
};
use crate::status::Cause;

/// The protocols a port may use, sorted as upstream lists them.
pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Upstream's list of the Pod spec fields an update may change, in its message's exact wording.
const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,\
`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),\
`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a Pod: its spec, and on update the immutability of everything but the few updatable fields.
pub(super) fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    pod_spec(spec, "spec", errs);
    if let Some(old) = old {
        pod_update(spec, old.get("spec").unwrap_or(&Value::Null), errs);
    }
}

/// Upstream's `ValidatePodTemplateSpec`: the template's labels and annotations, then its pod spec.
pub(super) fn pod_template(template: &Value, path: &str, errs: &mut Vec<Cause>) {
    let m = template.get("metadata").unwrap_or(&Value::Null);
    super::labels(m.get("labels"), &format!("{path}.metadata.labels"), errs);
    pod_spec(
        template.get("spec").unwrap_or(&Value::Null),
        &format!("{path}.spec"),
        errs,
    );
}

/// Upstream's `ValidatePodSpec`, reduced to the checks that matter for berth's users.
pub(super) fn pod_spec(spec: &Value, path: &str, errs: &mut Vec<Cause>) {
    let volumes = volumes(arr_at(spec, "volumes"), &format!("{path}.volumes"), errs);
    let mut container_names = BTreeSet::new();
    let containers = arr_at(spec, "containers");
    if containers.is_empty() {
        errs.push(required(&format!("{path}.containers"), ""));
    }
    for (i, c) in arr_at(spec, "initContainers").iter().enumerate() {
        container(
            c,
            &format!("{path}.initContainers[{i}]"),
            &volumes,
            true,
            &mut container_names,
            errs,
        );
    }
    for (i, c) in containers.iter().enumerate() {
        container(
            c,
            &format!("{path}.containers[{i}]"),
            &volumes,
            false,
            &mut container_names,
            errs,
        );
    }
    one_of(
        spec,
        "restartPolicy",
        &format!("{path}.restartPolicy"),
        &["Always", "OnFailure", "Never"],
        errs,
    );
    one_of(
        spec,
        "dnsPolicy",
        &format!("{path}.dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        errs,
    );
    super::labels(spec.get("nodeSelector"), &format!("{path}.nodeSelector"), errs);
    for (field, check) in [
        (
            "serviceAccountName",
            names::dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", names::dns1123_subdomain),
        ("hostname", names::dns1123_label),
        ("subdomain", names::dns1123_label),
    ] {
        let v = str_at(spec, field);
        if !v.is_empty() {
            for msg in check(v) {
                errs.push(invalid(&format!("{path}.{field}"), &go_quote(v), &msg));
            }
        }
    }
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if ads <= 0 || ads > i64::from(i32::MAX) {
            errs.push(invalid(
                &format!("{path}.activeDeadlineSeconds"),
                &ads.to_string(),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (i, t) in arr_at(spec, "tolerations").iter().enumerate() {
        toleration(t, &format!("{path}.tolerations[{i}]"), errs);
    }
    unsupported_pod_security(spec, path, errs);
}

/// The message for a security setting berth cannot honour yet. Such settings are refused rather than ignored: a
/// pod that asked for the host's network namespace, an extra capability or no seccomp filter and silently ran
/// without it behaves differently from what its author tested, and one that asked for a stricter profile would be
/// less confined than they believe. Once access control implements them under Pod Security admission they can be
/// honoured (and refused by policy instead).
const UNSUPPORTED_SECURITY: &str = "not supported by berth";

/// Refuses the pod-level settings berth would otherwise ignore: host namespaces, sysctls, and seccomp or
/// AppArmor profiles other than the runtime's default.
fn unsupported_pod_security(spec: &Value, path: &str, errs: &mut Vec<Cause>) {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec.get(field).and_then(Value::as_bool) == Some(true) {
            errs.push(forbidden(
                &format!("{path}.{field}"),
                &format!("{UNSUPPORTED_SECURITY}: pods always get their own network, PID and IPC namespaces"),
            ));
        }
    }
    let Some(sc) = spec.get("securityContext").filter(|v| !v.is_null()) else {
        return;
    };
    let sc_path = format!("{path}.securityContext");
    // Upstream's "safe" sysctls could be passed to Docker, but each needs its own namespace check and none is
    // common in the manifests berth targets; refusing all of them is the honest first step.
    if !arr_at(sc, "sysctls").is_empty() {
        errs.push(forbidden(
            &format!("{sc_path}.sysctls"),
            &format!("{UNSUPPORTED_SECURITY}: sysctls cannot be set"),
        ));
    }
    runtime_default_profiles(sc, &sc_path, errs);
}

/// Seccomp and AppArmor: `RuntimeDefault` is what Docker applies to every container anyway (its default seccomp
/// filter and the `docker-default` AppArmor profile where AppArmor is enabled), so it is accepted as honoured.
/// `Unconfined` would need the runtime told so and `Localhost` a profile on the node; both are refused.
fn runtime_default_profiles(sc: &Value, sc_path: &str, errs: &mut Vec<Cause>) {
    for field in ["seccompProfile", "appArmorProfile"] {
        let kind = sc.get(field).map(|p| str_at(p, "type")).unwrap_or("");
        if !kind.is_empty() && kind != "RuntimeDefault" {
            errs.push(forbidden(
                &format!("{sc_path}.{field}.type"),
                &format!("{UNSUPPORTED_SECURITY}: only RuntimeDefault (the container runtime's default profile)"),
            ));
        }
    }
}

/// Container-level settings berth would otherwise ignore. `capabilities.drop` is honoured (it only reduces
/// privilege, and hardened manifests commonly say `drop: [ALL]`); `capabilities.add` is refused.
fn unsupported_container_security(c: &Value, path: &str, errs: &mut Vec<Cause>) {
    let Some(sc) = c.get("securityContext").filter(|v| !v.is_null()) else {
        return;
    };
    let sc_path = format!("{path}.securityContext");
    if let Some(caps) = sc.get("capabilities") {
        if !arr_at(caps, "add").is_empty() {
            errs.push(forbidden(
                &format!("{sc_path}.capabilities.add"),
                &format!("{UNSUPPORTED_SECURITY}: capabilities can be dropped, not added"),
            ));
        }
    }
    runtime_default_profiles(sc, &sc_path, errs);
}

/// Requires `obj[key]` to be one of `allowed` (after defaulting it is never empty, so empty is Required).
fn one_of(obj: &Value, key: &str, path: &str, allowed: &[&str], errs: &mut Vec<Cause>) {
    match obj.get(key).and_then(Value::as_str) {
        None | Some("") => errs.push(required(path, "")),
        Some(v) if !allowed.contains(&v) => errs.push(not_supported(path, v, allowed)),
        _ => {}
    }
}

fn toleration(t: &Value, path: &str, errs: &mut Vec<Cause>) {
    let key = str_at(t, "key");
    if !key.is_empty() {
        for msg in names::is_qualified_name(key) {
            errs.push(invalid(&format!("{path}.key"), &go_quote(key), &msg));
        }
    }
    let op = str_at(t, "operator");
    match op {
        "" | "Equal" => {}
        "Exists" => {
            if !str_at(t, "value").is_empty() {
                errs.push(invalid(
                    &format!("{path}.operator"),
                    &go_quote(str_at(t, "value")),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(not_supported(&format!("{path}.operator"), other, &["Equal", "Exists"])),
    }
    let effect = str_at(t, "effect");
    if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        errs.push(not_supported(
            &format!("{path}.effect"),
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ));
    }
}

/// Upstream's `ValidateVolumes`; returns the volume names for the mount checks.
fn volumes(list: &[Value], path: &str, errs: &mut Vec<Cause>) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for (i, v) in list.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let sources = v
            .as_object()
            .map_or(0, |m| m.iter().filter(|(k, v)| *k != "name" && !v.is_null()).count());
        if sources == 0 {
            errs.push(required(&idx, "must specify a volume type"));
        } else if sources > 1 {
            errs.push(forbidden(&idx, "may not specify more than 1 volume type"));
        }
        let name = str_at(v, "name");
        if name.is_empty() {
            errs.push(required(&format!("{idx}.name"), ""));
        } else {
            for msg in names::dns1123_label(name) {
                errs.push(invalid(&format!("{idx}.name"), &go_quote(name), &msg));
            }
        }
        if !all.insert(name.to_string()) {
            errs.push(duplicate(&format!("{idx}.name"), &go_quote(name)));
        }
    }
    all
}

fn container(
    c: &Value,
    path: &str,
    volumes: &BTreeSet<String>,
    init: bool,
    seen: &mut BTreeSet<String>,
    errs: &mut Vec<Cause>,
) {
    let name = str_at(c, "name");
    if name.is_empty() {
        errs.push(required(&format!("{path}.name"), ""));
    } else {
        for msg in names::dns1123_label(name) {
            errs.push(invalid(&format!("{path}.name"), &go_quote(name), &msg));
        }
    }
    if !name.is_empty() && !seen.insert(name.to_string()) {
        errs.push(duplicate(&format!("{path}.name"), &go_quote(name)));
    }
    let image = str_at(c, "image");
    if image.is_empty() {
        errs.push(required(&format!("{path}.image"), ""));
    } else if image.trim() != image {
        errs.push(invalid(
            &format!("{path}.image"),
            &go_quote(image),
            "must not have leading or trailing whitespace",
        ));
    }
    one_of(
        c,
        "imagePullPolicy",
        &format!("{path}.imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
        errs,
    );
    one_of(
        c,
        "terminationMessagePolicy",
        &format!("{path}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        errs,
    );
    container_ports(arr_at(c, "ports"), &format!("{path}.ports"), errs);
    env(arr_at(c, "env"), &format!("{path}.env"), errs);
    volume_mounts(
        arr_at(c, "volumeMounts"),
        volumes,
        &format!("{path}.volumeMounts"),
        errs,
    );
    resources(
        c.get("resources").unwrap_or(&Value::Null),
        &format!("{path}.resources"),
        errs,
    );
    unsupported_container_security(c, path, errs);
    let restartable = init && str_at(c, "restartPolicy") == "Always";
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = c.get(probe_name).filter(|p| !p.is_null()) else {
            continue;
        };
        let ppath = format!("{path}.{probe_name}");
        if init && !restartable {
            errs.push(forbidden(
                &ppath,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        probe(p, &ppath, errs);
        if probe_name != "readinessProbe" {
            if let Some(st) = p.get("successThreshold").and_then(Value::as_i64) {
                if st != 1 {
                    errs.push(invalid(
                        &format!("{ppath}.successThreshold"),
                        &st.to_string(),
                        "must be 1",
                    ));
                }
            }
        }
    }
}

fn container_ports(ports: &[Value], path: &str, errs: &mut Vec<Cause>) {
    let mut names_seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(p, "name");
        if !name.is_empty() {
            let msgs = names::port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid(&format!("{idx}.name"), &go_quote(name), &msg));
                }
            } else if !names_seen.insert(name.to_string()) {
                errs.push(duplicate(&format!("{idx}.name"), &go_quote(name)));
            }
        }
        match p.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => errs.push(required(&format!("{idx}.containerPort"), "")),
            Some(n) => {
                for msg in names::port_num(n) {
                    errs.push(invalid(&format!("{idx}.containerPort"), &n.to_string(), &msg));
                }
            }
        }
        if let Some(n) = p.get("hostPort").and_then(Value::as_i64).filter(|n| *n != 0) {
            for msg in names::port_num(n) {
                errs.push(invalid(&format!("{idx}.hostPort"), &n.to_string(), &msg));
            }
        }
        one_of(p, "protocol", &format!("{idx}.protocol"), PROTOCOLS, errs);
    }
}

fn env(vars: &[Value], path: &str, errs: &mut Vec<Cause>) {
    for (i, e) in vars.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(e, "name");
        if name.is_empty() {
            errs.push(required(&format!("{idx}.name"), ""));
        } else {
            for msg in names::env_var_name(name) {
                errs.push(invalid(&format!("{idx}.name"), &go_quote(name), &msg));
            }
        }
        if let Some(from) = e.get("valueFrom").filter(|v| !v.is_null()) {
            let vpath = format!("{idx}.valueFrom");
            let sources = [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
                "fileKeyRef",
            ]
            .iter()
            .filter(|k| from.get(**k).is_some_and(|v| !v.is_null()))
            .count();
            if sources == 0 {
                errs.push(invalid(
                    &vpath,
                    "\"\"",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                ));
            } else if sources > 1 {
                errs.push(invalid(
                    &vpath,
                    "\"\"",
                    "may not have more than one field specified at a time",
                ));
            }
            if !str_at(e, "value").is_empty() && sources != 0 {
                errs.push(invalid(
                    &vpath,
                    "\"\"",
                    "may not be specified when `value` is not empty",
                ));
            }
        }
    }
}

fn volume_mounts(mounts: &[Value], volumes: &BTreeSet<String>, path: &str, errs: &mut Vec<Cause>) {
    let mut points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(m, "name");
        if name.is_empty() {
            errs.push(required(&format!("{idx}.name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(not_found(&format!("{idx}.name"), &go_quote(name)));
        }
        let mount_path = str_at(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(required(&format!("{idx}.mountPath"), ""));
        }
        if !points.insert(mount_path.to_string()) {
            errs.push(invalid(
                &format!("{idx}.mountPath"),
                &go_quote(mount_path),
                "must be unique",
            ));
        }
        // A subPath selects a part of the volume; it must stay inside it. The agent enforces that again on the
        // node (symlinks planted by a container are the real danger there), but a path that names `..` or an
        // absolute path is refused here already, as upstream does. Upstream's paths for these two lack the
        // mount's index (`volumeMounts.subPath`, not `volumeMounts[0].subPath`); kept for identical messages.
        let sub_path = str_at(m, "subPath");
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &format!("{path}.subPath"), errs);
        }
        let sub_path_expr = str_at(m, "subPathExpr");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &format!("{idx}.subPathExpr"),
                    &go_quote(sub_path_expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(sub_path_expr, &format!("{path}.subPathExpr"), errs);
        }
    }
}

/// Upstream's `validateLocalDescendingPath`: a relative path with no `..` component (one error for any number
/// of them).
fn local_descending_path(target: &str, path: &str, errs: &mut Vec<Cause>) {
    if target.starts_with('/') {
        errs.push(invalid(path, &go_quote(target), "must be a relative path"));
    }
    if target.split('/').any(|part| part == "..") {
        errs.push(invalid(path, &go_quote(target), "must not contain '..'"));
    }
}

/// Whether a resource name without a `/` is one containers may ask for.
fn standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Upstream's `ValidateContainerResourceRequirements`: names, non-negative quantities, requests ≤ limits.
pub(super) fn resources(r: &Value, path: &str, errs: &mut Vec<Cause>) {
    let parse_map = |key: &str, errs: &mut Vec<Cause>| -> Vec<(String, String, Option<Quantity>)> {
        let mut out = Vec::new();
        let Some(map) = r.get(key).and_then(Value::as_object) else {
            return out;
        };
        for (res, q) in map {
            let fpath = format!("{path}.{key}[{res}]");
            if !res.contains('/') && !standard_container_resource(res) {
                errs.push(invalid(&fpath, res, "must be a standard resource for containers"));
            }
            let text = match q {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            let parsed = Quantity::parse(&text);
            match parsed {
                None => errs.push(invalid(&fpath, &go_quote(&text), QUANTITY_REGEX_ERROR)),
                Some(qv) if qv.is_negative() => errs.push(invalid(&fpath, &go_quote(&text), NEGATIVE)),
                Some(qv) if res.contains('/') && !res.contains("kubernetes.io/") && !qv.is_integer() => {
                    errs.push(invalid(&fpath, &go_quote(&text), "must be an integer"));
                }
                _ => {}
            }
            out.push((res.clone(), text, parsed));
        }
        out
    };
    let limits = parse_map("limits", errs);
    let requests = parse_map("requests", errs);
    for (res, text, q) in &requests {
        let Some(q) = q else { continue };
        if let Some((_, ltext, Some(l))) = limits.iter().find(|(n, _, _)| n == res) {
            if q > l {
                errs.push(invalid(
                    &format!("{path}.requests"),
                    &go_quote(text),
                    &format!("must be less than or equal to {res} limit of {ltext}"),
                ));
            }
        }
    }
}

/// Upstream's `validateProbe` and `validateHandler`: exactly one handler, non-negative timings.
fn probe(p: &Value, path: &str, errs: &mut Vec<Cause>) {
    let mut handlers = 0;
    for kind in ["exec", "httpGet", "tcpSocket", "grpc"] {
        let Some(h) = p.get(kind).filter(|h| !h.is_null()) else {
            continue;
        };
        let hpath = format!("{path}.{kind}");
        if handlers > 0 {
            errs.push(forbidden(&hpath, "may not specify more than 1 handler type"));
            continue;
        }
        handlers += 1;
        match kind {
            "exec" => {
                if arr_at(h, "command").is_empty() {
                    errs.push(required(&format!("{hpath}.command"), ""));
                }
            }
            "httpGet" => {
                if str_at(h, "path").is_empty() {
                    errs.push(required(&format!("{hpath}.path"), ""));
                }
                port_num_or_name(h.get("port"), &format!("{hpath}.port"), errs);
                let scheme = str_at(h, "scheme");
                if !["HTTP", "HTTPS"].contains(&scheme) {
                    errs.push(not_supported(&format!("{hpath}.scheme"), scheme, &["HTTP", "HTTPS"]));
                }
            }
            "tcpSocket" => port_num_or_name(h.get("port"), &format!("{hpath}.port"), errs),
            _ => {
                let port = h.get("port").and_then(Value::as_i64).unwrap_or(0);
                for msg in names::port_num(port) {
                    errs.push(invalid(&format!("{hpath}.port"), &port.to_string(), &msg));
                }
            }
        }
    }
    if handlers == 0 {
        errs.push(required(path, "must specify a handler type"));
    }
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(n) = p.get(field).and_then(Value::as_i64) {
            if n < 0 {
                errs.push(invalid(&format!("{path}.{field}"), &n.to_string(), NEGATIVE));
            }
        }
    }
}

/// Upstream's `ValidatePortNumOrName`: a number in range, or an IANA port name.
pub(super) fn port_num_or_name(port: Option<&Value>, path: &str, errs: &mut Vec<Cause>) {
    match port {
        Some(Value::String(s)) => {
            for msg in names::port_name(s) {
                errs.push(invalid(path, &go_quote(s), &msg));
            }
        }
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            for msg in names::port_num(n) {
                errs.push(invalid(path, &n.to_string(), &msg));
            }
        }
        other => {
            let n = other.map_or_else(|| "0".to_string(), render);
            errs.push(invalid(path, &n, "must be between 1 and 65535, inclusive"));
        }
    }
}

/// Removes `null`s and empty containers recursively, so that "absent" and "null" compare equal.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// Upstream's `ValidatePodUpdate`: after copying over the fields an update may change, the new spec must
/// equal the old one. Running Pods are changed by replacing them, which is what controllers do.
fn pod_update(new_spec: &Value, old_spec: &Value, errs: &mut Vec<Cause>) {
    let mut munged = normalized(new_spec);
    let old = normalized(old_spec);
    for list in ["containers", "initContainers"] {
        let old_list = arr_at(&old, list);
        if let Some(Value::Array(items)) = munged.get_mut(list) {
            if items.len() == old_list.len() {
                for (c, o) in items.iter_mut().zip(old_list) {
                    if let (Some(obj), Some(img)) = (c.as_object_mut(), o.get("image")) {
                        obj.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    let Some(m) = munged.as_object_mut() else { return };
    // activeDeadlineSeconds may be set, or lowered; never raised or removed.
    let new_ads = m.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let old_ads = old.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let ads_ok = match (new_ads, old_ads) {
        (Some(n), Some(o)) => n <= o,
        (Some(_), None) => true,
        (None, o) => o.is_none(),
    };
    if ads_ok {
        match old.get("activeDeadlineSeconds") {
            Some(v) => m.insert("activeDeadlineSeconds".into(), v.clone()),
            None => m.remove("activeDeadlineSeconds"),
        };
    }
    // Tolerations may only be added to.
    let new_tol = m
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old_tol = arr_at(&old, "tolerations");
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        match old.get("tolerations") {
            Some(v) => m.insert("tolerations".into(), v.clone()),
            None => m.remove("tolerations"),
        };
    }
    // A negative grace period may be raised to 1.
    if old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g < 0)
        && m.get("terminationGracePeriodSeconds").and_then(Value::as_i64) == Some(1)
    {
        if let Some(v) = old.get("terminationGracePeriodSeconds") {
            m.insert("terminationGracePeriodSeconds".into(), v.clone());
        }
    }
    if munged != old {
        errs.push(forbidden(
            "spec",
            &format!("pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}"),
        ));
    }
}
