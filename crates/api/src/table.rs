//! Server-side printing: the `columnDefinitions` and row cells of a `meta.k8s.io/v1` Table for each served
//! kind, reproducing upstream's 1.35 printers (`pkg/printers/internalversion/printers.go`) so that
//! `kubectl get` output matches a real cluster column for column.
//!
//! Upstream's API server always prints the wide (`priority: 1`) columns and lets kubectl hide them, so
//! [`cells`] does too. This module does not build the Table envelope or the row objects; the server does.

mod pod;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::meta;

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although \
some resources may allow a client to request the generation of an appropriate name automatically. Name is \
primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: \
https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was \
created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set \
this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for \
lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

/// One column definition.
fn col(name: &str, ty: &str, desc: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": desc, "priority": priority})
}

/// The Table `columnDefinitions` for `kind`; unknown kinds get upstream's generic `Name`, `Age`.
pub fn columns(kind: &str) -> Vec<Value> {
    let name = || col("Name", "string", NAME_DESC, 0);
    let age = || col("Age", "string", AGE_DESC, 0);
    let s = |n: &str, d: &str| col(n, "string", d, 0);
    let i = |n: &str, d: &str| col(n, "integer", d, 0);
    let wide = |n: &str, d: &str| col(n, "string", d, 1);
    match kind {
        "Pod" => vec![
            name(),
            s("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            s("Status", "The aggregate status of the containers in this pod."),
            s(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container \
                 in this pod has restarted.",
            ),
            age(),
            wide("IP", "podIP address allocated to the pod. Routable at least within the cluster."),
            wide("Node", "NodeName indicates in which node this pod is scheduled."),
            wide("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node."),
            wide("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        "ReplicationController" | "ReplicaSet" => vec![
            name(),
            i("Desired", "Replicas is the number of desired replicas."),
            i("Current", "Replicas is the most recently observed number of replicas."),
            i("Ready", "The number of ready replicas for this controller."),
            age(),
            wide("Containers", CONTAINERS_DESC),
            wide("Images", IMAGES_DESC),
            wide("Selector", "Selector is a label query over pods that should match the replica count."),
        ],
        "Deployment" => vec![
            name(),
            s("Ready", "Number of the pod with ready state"),
            s("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            s("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            age(),
            wide("Containers", CONTAINERS_DESC),
            wide("Images", IMAGES_DESC),
            wide("Selector", "Label selector for pods."),
        ],
        "Service" => vec![
            name(),
            s("Type", "type determines how the Service is exposed."),
            s("Cluster-IP", "clusterIP is the IP address of the service."),
            s("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            s("Port(s)", "The list of ports that are exposed by this service."),
            age(),
            wide("Selector", "Route service traffic to pods with label keys and values matching this selector."),
        ],
        "Endpoints" => vec![
            name(),
            s("Endpoints", "The set of all endpoints is the union of all subsets."),
            age(),
        ],
        "EndpointSlice" => vec![
            name(),
            s("AddressType", "addressType specifies the type of address carried by this EndpointSlice."),
            s("Ports", "ports specifies the list of network ports exposed by each endpoint in this slice."),
            s("Endpoints", "endpoints is a list of unique endpoints in this slice."),
            age(),
        ],
        "ConfigMap" => vec![
            name(),
            s("Data", "Data contains the configuration data."),
            age(),
        ],
        "Secret" => vec![
            name(),
            s("Type", "Used to facilitate programmatic handling of secret data."),
            s("Data", "Data contains the secret data."),
            age(),
        ],
        "Node" => vec![
            name(),
            s("Status", "The status of the node"),
            s("Roles", "The roles of the node"),
            age(),
            s("Version", "Kubelet Version reported by the node."),
            wide("Internal-IP", "List of addresses reachable to the node."),
            wide("External-IP", "List of addresses reachable to the node."),
            wide("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            wide("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            wide("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "Namespace" => vec![name(), s("Status", "The status of the namespace"), age()],
        "Event" => vec![
            s("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
            s("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
            s("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            s("Object", "The object that this event is about."),
            wide("Subobject", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            wide("Source", "The component reporting this event."),
            s("Message", "A human-readable description of the status of this operation."),
            wide("First Seen", "The time at which the event was first recorded."),
            wide("Count", "The number of times this event has occurred."),
            col("Name", "string", NAME_DESC, 1),
        ],
        "Lease" => vec![
            name(),
            s("Holder", "holderIdentity contains the identity of the holder of a current lease."),
            age(),
        ],
        _ => vec![name(), age()],
    }
}

/// All cells of `obj`'s row (including the wide ones), in [`columns`] order. `now` is the server's clock,
/// passed in so that tests are deterministic.
pub fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(meta::name(obj));
    let age = json!(since(meta::str_field(obj, "creationTimestamp"), now));
    let status = obj.get("status").unwrap_or(&Value::Null);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let int = |v: Option<&Value>| json!(v.and_then(Value::as_i64).unwrap_or(0));
    match kind {
        "Pod" => pod::cells(obj, now),
        "ReplicationController" | "ReplicaSet" => {
            let template_spec = meta::path(spec, "template.spec").unwrap_or(&Value::Null);
            let (names, images) = containers(template_spec);
            let selector = if kind == "ReplicaSet" {
                format_label_selector(spec.get("selector"))
            } else {
                format_labels(spec.get("selector"))
            };
            vec![
                name,
                int(spec.get("replicas")),
                int(status.get("replicas")),
                int(status.get("readyReplicas")),
                age,
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        "Deployment" => {
            let (names, images) = containers(meta::path(spec, "template.spec").unwrap_or(&Value::Null));
            let selector = match spec.get("selector").filter(|s| !s.is_null()) {
                None => String::new(),
                Some(sel) => selector_string(sel).unwrap_or_else(|| "<invalid>".to_string()),
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    num(status.get("readyReplicas")),
                    num(spec.get("replicas"))
                )),
                int(status.get("updatedReplicas")),
                int(status.get("availableReplicas")),
                age,
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        "Service" => service_cells(obj, name, age),
        "Endpoints" => vec![name, json!(format_endpoints(obj)), age],
        "EndpointSlice" => {
            let ports: Vec<String> = arr(obj, "ports")
                .iter()
                .map(|p| {
                    match (
                        p.get("port").and_then(Value::as_i64),
                        p.get("name").and_then(Value::as_str),
                    ) {
                        (Some(n), _) => n.to_string(),
                        (None, Some(n)) => n.to_string(),
                        _ => "*".to_string(),
                    }
                })
                .collect();
            let addrs: Vec<String> = arr(obj, "endpoints")
                .iter()
                .flat_map(|e| arr(e, "addresses").iter().filter_map(Value::as_str).map(str::to_string))
                .collect();
            vec![
                name,
                json!(str_of(obj, "addressType")),
                json!(list_with_more(&ports)),
                json!(list_with_more(&addrs)),
                age,
            ]
        }
        "ConfigMap" => vec![name, json!(map_len(obj, "data") + map_len(obj, "binaryData")), age],
        "Secret" => vec![name, json!(str_of(obj, "type")), json!(map_len(obj, "data")), age],
        "Node" => node_cells(obj, name, age),
        "Namespace" => vec![name, json!(str_of(status, "phase")), age],
        "Event" => event_cells(obj, now),
        "Lease" => vec![name, json!(str_of(spec, "holderIdentity")), age],
        _ => vec![name, age],
    }
}

/// Row conditions upstream attaches: Succeeded and Failed Pods are marked `Completed`, which kubectl uses to
/// hide them with `--show-all=false` style filters. `None` for every other object.
pub fn row_conditions(kind: &str, obj: &Value) -> Option<Value> {
    if kind != "Pod" {
        return None;
    }
    let (reason, message) = match meta::path(obj, "status.phase").and_then(Value::as_str)? {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// Upstream's `duration.HumanDuration`: the compact age kubectl shows (`45s`, `5m30s`, `3h`, `2d4h`, `3y`).
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Upstream's `translateTimestampSince`: the age of an RFC 3339 timestamp, or `<unknown>` when unset.
pub(crate) fn since(ts: Option<&str>, now: DateTime<Utc>) -> String {
    match ts.and_then(parse_time) {
        None => "<unknown>".to_string(),
        Some(t) => human_duration(now - t),
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

// ---- per-kind helpers ----

fn service_cells(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ty = str_of(spec, "type");
    let cluster_ip = arr(spec, "clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or("<none>")
        .to_string();
    let external_ips: Vec<&str> = arr(spec, "externalIPs").iter().filter_map(Value::as_str).collect();
    let external = match ty {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb: Vec<String> = meta::path(obj, "status.loadBalancer.ingress")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter_map(|i| {
                    let ip = str_of(i, "ip");
                    let host = str_of(i, "hostname");
                    if !ip.is_empty() {
                        Some(ip.to_string())
                    } else if !host.is_empty() {
                        Some(host.to_string())
                    } else {
                        None
                    }
                })
                .collect();
            lb.sort();
            lb.dedup();
            lb.extend(external_ips.iter().map(|s| s.to_string()));
            if lb.is_empty() {
                "<pending>".to_string()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => str_of(spec, "externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(spec, "ports")
        .iter()
        .map(|p| {
            let port = num(p.get("port"));
            let proto = str_of(p, "protocol");
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name,
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(ports),
        age,
        json!(format_labels(spec.get("selector"))),
    ]
}

/// Upstream's `formatEndpoints`: `ip:port` pairs, at most three, then ` + N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addrs = arr(ss, "addresses");
        let ports = arr(ss, "ports");
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_of(a, "ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = str_of(a, "ip");
                let port = num(p.get("port"));
                // Go's net.JoinHostPort brackets IPv6 addresses.
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// Upstream's `listWithMoreString` for EndpointSlices: three items, then ` + N more...`; `<unset>` if none.
fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.is_empty() {
        return "<unset>".to_string();
    }
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

fn node_cells(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let status = obj.get("status").unwrap_or(&Value::Null);
    let mut states: Vec<String> = Vec::new();
    if let Some(ready) = arr(status, "conditions")
        .iter()
        .rev()
        .find(|c| str_of(c, "type") == "Ready")
    {
        states.push(if str_of(ready, "status") == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if states.is_empty() {
        states.push("Unknown".into());
    }
    if meta::path(obj, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        states.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = meta::labels(obj)
        .into_iter()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role.to_string()),
            Some(_) => None,
            None if k == "kubernetes.io/role" && !v.is_empty() => Some(v),
            None => None,
        })
        .collect();
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let info = status.get("nodeInfo").unwrap_or(&Value::Null);
    let address = |ty: &str| {
        arr(status, "addresses")
            .iter()
            .find(|a| str_of(a, "type") == ty)
            .map_or("<none>".to_string(), |a| str_of(a, "address").to_string())
    };
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        name,
        json!(states.join(",")),
        json!(roles),
        age,
        json!(str_of(info, "kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(str_of(info, "osImage"))),
        json!(or_unknown(str_of(info, "kernelVersion"))),
        json!(or_unknown(str_of(info, "containerRuntimeVersion"))),
    ]
}

fn event_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ts = |k: &str| obj.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let first = match ts("firstTimestamp") {
        Some(t) => since(Some(t), now),
        None => since(ts("eventTime"), now),
    };
    let mut last = match ts("lastTimestamp") {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = obj.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = obj.get("series").filter(|s| s.is_object()) {
        last = since(series.get("lastObservedTime").and_then(Value::as_str), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        // Singleton events from the events.k8s.io API carry no count.
        count = 1;
    }
    let involved = obj.get("involvedObject").unwrap_or(&Value::Null);
    let kind = str_of(involved, "kind").to_lowercase();
    let target = match str_of(involved, "name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let source = obj.get("source").unwrap_or(&Value::Null);
    let first_non_empty = |a: &str, b: &str| if a.is_empty() { b.to_string() } else { a.to_string() };
    let component = first_non_empty(str_of(source, "component"), str_of(obj, "reportingComponent"));
    let host = first_non_empty(str_of(source, "host"), str_of(obj, "reportingInstance"));
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(str_of(obj, "type")),
        json!(str_of(obj, "reason")),
        json!(target),
        json!(str_of(involved, "fieldPath")),
        json!(source),
        json!(str_of(obj, "message").trim()),
        json!(first),
        json!(count),
        json!(meta::name(obj)),
    ]
}

/// Upstream's `layoutContainerCells`: container names and images, comma-joined.
fn containers(pod_spec: &Value) -> (String, String) {
    let list = arr(pod_spec, "containers");
    let names: Vec<&str> = list.iter().map(|c| str_of(c, "name")).collect();
    let images: Vec<&str> = list.iter().map(|c| str_of(c, "image")).collect();
    (names.join(","), images.join(","))
}

/// Upstream's `labels.FormatLabels`: `k=v,...` sorted by key, or `<none>`.
fn format_labels(map: Option<&Value>) -> String {
    let m = meta::string_map(map);
    if m.is_empty() {
        return "<none>".to_string();
    }
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Upstream's `metav1.FormatLabelSelector`: the selector string, `<none>` when empty, `<error>` if invalid.
fn format_label_selector(sel: Option<&Value>) -> String {
    match sel.filter(|s| !s.is_null()) {
        None => "<none>".to_string(),
        Some(s) => match selector_string(s) {
            None => "<error>".to_string(),
            Some(s) if s.is_empty() => "<none>".to_string(),
            Some(s) => s,
        },
    }
}

/// The string form of a `LabelSelector` once converted to a `labels.Selector`: requirements sorted by key,
/// `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. `None` when an operator is invalid.
pub(crate) fn selector_string(sel: &Value) -> Option<String> {
    let mut reqs: Vec<(String, String)> = meta::string_map(sel.get("matchLabels"))
        .into_iter()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for e in arr(sel, "matchExpressions") {
        let key = str_of(e, "key");
        let mut values: Vec<&str> = arr(e, "values").iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let text = match str_of(e, "operator") {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(reqs.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(","))
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn map_len(v: &Value, key: &str) -> usize {
    v.get(key).and_then(Value::as_object).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests;
