//! Upstream's defaulting for each served kind (`pkg/apis/*/v1/defaults.go`), plus the few Pod fields that
//! upstream's admission plugins fill in (service account, priority, default tolerations), so that
//! `kubectl get -o yaml` shows what a real cluster shows and controllers can rely on the fields being set.
//!
//! Defaulting only fills in what is absent; it never overrides a value the client sent, never allocates
//! (cluster IPs and node ports are the server's job) and never validates.

use serde_json::{json, Map, Value};

/// Fills in upstream's defaults for an object of `kind`, in place. Unknown kinds are left alone.
pub fn apply(kind: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                pod_only(spec);
            }
            ensure_object(obj, "status");
        }
        "Deployment" => {
            let spec = ensure_object(obj, "spec");
            set(spec, "replicas", json!(1));
            let strategy = ensure_object_in(spec, "strategy");
            set(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = ensure_object_in(strategy, "rollingUpdate");
                set(ru, "maxUnavailable", json!("25%"));
                set(ru, "maxSurge", json!("25%"));
            }
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            template(spec);
            ensure_object(obj, "status");
        }
        "ReplicaSet" => {
            let spec = ensure_object(obj, "spec");
            set(spec, "replicas", json!(1));
            template(spec);
            ensure_object(obj, "status");
        }
        "ReplicationController" => replication_controller(obj),
        "Service" => service(obj),
        "Secret" => {
            if let Some(m) = obj.as_object_mut() {
                set(m, "type", json!("Opaque"));
            }
        }
        "Namespace" => namespace(obj),
        "Node" => node(obj),
        "Endpoints" => {
            for subset in array_mut(obj, "subsets") {
                for port in subset
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(port) = port.as_object_mut() {
                        set(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
        "EndpointSlice" => {
            for port in array_mut(obj, "ports") {
                set(port, "name", json!(""));
                set(port, "protocol", json!("TCP"));
            }
        }
        _ => {}
    }
}

/// The QoS class of a Pod with this spec (upstream's `ComputePodQOS`): `Guaranteed` when every container
/// has CPU and memory limits equal to its requests, `BestEffort` when no container asks for CPU or memory at
/// all, `Burstable` otherwise. Requests left out default to the limits, as Pod defaulting does.
pub fn pod_qos_class(spec: &Value) -> &'static str {
    use crate::validation::quantity::Quantity;
    use std::collections::BTreeMap;

    let mut requests: BTreeMap<String, i128> = BTreeMap::new();
    let mut limits: BTreeMap<String, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|k| spec.get(k).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]));
    for c in containers {
        let res = c.get("resources").unwrap_or(&Value::Null);
        let read = |key: &str| -> BTreeMap<String, i128> {
            res.get(key)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(name, _)| *name == "cpu" || *name == "memory")
                        .filter_map(|(name, q)| {
                            let text = q.as_str().map(str::to_string).unwrap_or_else(|| q.to_string());
                            Quantity::parse(&text).map(|q| (name.clone(), q.nanos))
                        })
                        .filter(|(_, n)| *n > 0)
                        .collect()
                })
                .unwrap_or_default()
        };
        let c_limits = read("limits");
        let mut c_requests = read("requests");
        for (k, v) in &c_limits {
            let explicit = res.get("requests").and_then(|r| r.get(k)).is_some();
            if !explicit {
                c_requests.insert(k.clone(), *v);
            }
        }
        for (k, v) in c_requests {
            *requests.entry(k).or_default() += v;
        }
        if !(c_limits.contains_key("cpu") && c_limits.contains_key("memory")) {
            guaranteed = false;
        }
        for (k, v) in c_limits {
            *limits.entry(k).or_default() += v;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) && requests.len() == limits.len() {
        return "Guaranteed";
    }
    "Burstable"
}

// ---- kinds ----

/// Pod-template defaults inside a workload's `spec.template.spec`. Templates get the type defaults only;
/// the admission-time Pod additions happen when the controller creates the Pods.
fn template(spec: &mut Map<String, Value>) {
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
}

fn replication_controller(obj: &mut Value) {
    // Upstream: a missing selector, and missing object labels, both default to the template's labels.
    let template_labels = obj
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels {
        let spec = ensure_object(obj, "spec");
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), labels.clone());
        }
        let meta = ensure_object(obj, "metadata");
        if meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty) {
            meta.insert("labels".into(), labels);
        }
    }
    let spec = ensure_object(obj, "spec");
    set(spec, "replicas", json!(1));
    template(spec);
    ensure_object(obj, "status");
}

fn service(obj: &mut Value) {
    let spec = ensure_object(obj, "spec");
    set(spec, "type", json!("ClusterIP"));
    set(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set(port, "protocol", json!("TCP"));
            let target_unset = match port.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                _ => false,
            };
            if target_unset {
                if let Some(p) = port.get("port").cloned() {
                    port.insert("targetPort".into(), p);
                }
            }
        }
    }
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = ty == "NodePort" || ty == "LoadBalancer" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
        // Upstream's IP allocator records the families it allocated from; berth is single-stack IPv4.
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
        set(spec, "ipFamilies", json!(["IPv4"]));
    }
    if ty == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    let status = ensure_object(obj, "status");
    if !status.contains_key("loadBalancer") {
        status.insert("loadBalancer".into(), json!({}));
    }
}

fn namespace(obj: &mut Value) {
    // Upstream labels every namespace with its own name so that namespace selectors can pick it by name.
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        let meta = ensure_object(obj, "metadata");
        let labels = ensure_object_in(meta, "labels");
        labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
    }
    let status = ensure_object(obj, "status");
    set(status, "phase", json!("Active"));
}

fn node(obj: &mut Value) {
    // Upstream: allocatable defaults to capacity when only capacity is reported.
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if !status.contains_key("allocatable") {
        if let Some(cap) = status.get("capacity").cloned() {
            status.insert("allocatable".into(), cap);
        }
    }
}

// ---- pod spec ----

/// Type-level defaults for any pod spec (Pods and templates alike).
fn pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else { return };
    set(s, "dnsPolicy", json!("ClusterFirst"));
    set(s, "restartPolicy", json!("Always"));
    set(s, "securityContext", json!({}));
    set(s, "terminationGracePeriodSeconds", json!(30));
    // Upstream (since 1.27) treats a negative grace period as one second when defaulting, and stores that.
    if s.get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g < 0)
    {
        s.insert("terminationGracePeriodSeconds".into(), json!(1));
    }
    set(s, "schedulerName", json!("default-scheduler"));
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(list)) = s.get_mut(key) {
            for c in list.iter_mut().filter_map(Value::as_object_mut) {
                container(c);
            }
        }
    }
    if let Some(Value::Array(vols)) = s.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            volume(v);
        }
    }
}

/// Defaults upstream applies to Pods only (not templates): `SetDefaults_Pod` and the ServiceAccount,
/// Priority and DefaultTolerationSeconds admission plugins.
fn pod_only(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else { return };
    // Requests default to limits, so a Pod that only sets limits is Guaranteed rather than unbounded.
    for key in ["containers", "initContainers"] {
        if let Some(Value::Array(list)) = s.get_mut(key) {
            for c in list.iter_mut().filter_map(Value::as_object_mut) {
                let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                    continue;
                };
                let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
                    continue;
                };
                let requests = ensure_object_in(res, "requests");
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        }
    }
    set(s, "enableServiceLinks", json!(true));
    let sa = s
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .or_else(|| {
            s.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    s.insert("serviceAccountName".into(), json!(sa));
    s.insert("serviceAccount".into(), json!(sa));
    if s.get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        set(s, "priority", json!(0));
    }
    set(s, "preemptionPolicy", json!("PreemptLowerPriority"));
    // Pods on a node that stops reporting are evicted after five minutes unless they say otherwise.
    let tolerations = match s.get_mut("tolerations") {
        Some(Value::Array(t)) => t,
        _ => {
            s.insert("tolerations".into(), json!([]));
            match s.get_mut("tolerations") {
                Some(Value::Array(t)) => t,
                _ => return,
            }
        }
    };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let tolerated = tolerations.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let exists_all = tkey.is_empty() && t.get("operator").and_then(Value::as_str) == Some("Exists");
            (effect.is_empty() || effect == "NoExecute") && (tkey == key || exists_all)
        });
        if !tolerated {
            tolerations.push(json!({
                "effect": "NoExecute",
                "key": key,
                "operator": "Exists",
                "tolerationSeconds": 300,
            }));
        }
    }
    if s.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        // With host networking the container port *is* the host port.
        for key in ["containers", "initContainers"] {
            for c in s.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
                for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(p) = p.as_object_mut() {
                        if p.get("hostPort").is_none_or(|h| h.as_i64() == Some(0)) {
                            if let Some(cp) = p.get("containerPort").cloned() {
                                p.insert("hostPort".into(), cp);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let policy = if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    };
    set(c, "imagePullPolicy", json!(policy));
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    let res = ensure_object_in(c, "resources");
    for key in ["limits", "requests"] {
        if let Some(Value::Object(m)) = res.get_mut(key) {
            // Quantities are strings on the wire; a YAML `cpu: 1` arrives as a number.
            for v in m.values_mut() {
                if let Value::Number(n) = v {
                    *v = Value::String(n.to_string());
                }
            }
        }
    }
    for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            set(p, "protocol", json!("TCP"));
        }
    }
    for e in c.get_mut("env").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(fr) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            set(fr, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set(h, "path", json!("/"));
                set(h, "scheme", json!("HTTP"));
            }
            if let Some(g) = p.get_mut("grpc").and_then(Value::as_object_mut) {
                set(g, "service", json!(""));
            }
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc
                .get_mut(hook)
                .and_then(|h| h.get_mut("httpGet"))
                .and_then(Value::as_object_mut)
            {
                set(h, "path", json!("/"));
                set(h, "scheme", json!("HTTP"));
            }
        }
    }
}

fn volume(v: &mut Map<String, Value>) {
    let has_source = v.iter().any(|(k, val)| k != "name" && !val.is_null());
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(key).and_then(Value::as_object_mut) {
            set(src, "defaultMode", json!(420));
        }
    }
    if let Some(hp) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        set(hp, "type", json!(""));
    }
}

/// The tag of an image reference, as upstream's `parsers.ParseImageName` finds it: `latest` when neither a
/// tag nor a digest is given, `""` when only a digest is.
fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => &name[last_slash + i + 1..],
        None if digest.is_some() => "",
        None => "latest",
    }
}

// ---- JSON helpers ----

/// Sets `key` to `value` when it is absent, `null`, or an empty string (Go's zero value).
fn set(m: &mut Map<String, Value>, key: &str, value: Value) {
    let absent = match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    if absent {
        m.insert(key.to_string(), value);
    }
}

/// The object at `obj[key]` (obj must be an object), created when absent or not an object.
fn ensure_object<'a>(obj: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    match obj {
        Value::Object(m) => ensure_object_in(m, key),
        _ => unreachable!("made an object above"),
    }
}

fn ensure_object_in<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.to_string(), Value::Object(Map::new()));
    }
    match m.get_mut(key) {
        Some(Value::Object(inner)) => inner,
        _ => unreachable!("inserted an object above"),
    }
}

/// The objects in the array at `obj[key]`, mutably (none when absent).
fn array_mut<'a>(obj: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

#[cfg(test)]
mod tests;
