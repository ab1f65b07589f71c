//! Field selectors: which field labels each kind supports (`?fieldSelector=spec.nodeName=node1`) and the
//! value of such a field on an object, as upstream's `<Kind>ToSelectableFields` functions compute them.
//! Parsing the selector and matching are elsewhere; an unsupported label is a 400 the server words as
//! `field label not supported: <label>`.

use serde_json::Value;

use crate::meta;

/// The kind-specific field labels (every kind also supports `metadata.name` and `metadata.namespace`).
fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Secret" => &["type"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Service" => &["spec.clusterIP", "spec.type"],
        _ => &[],
    }
}

/// Whether `label` may be used in a field selector on `kind`.
pub fn supported(kind: &str, label: &str) -> bool {
    label == "metadata.name" || label == "metadata.namespace" || kind_fields(kind).contains(&label)
}

/// The value of field `label` on `obj`, as the string a field selector compares against (booleans are
/// `"true"`/`"false"`, counts are decimal, absent strings are `""`). `None` if the label is not supported.
pub fn value(kind: &str, obj: &Value, label: &str) -> Option<String> {
    if !supported(kind, label) {
        return None;
    }
    let text = |path: &str| meta::path(obj, path).and_then(Value::as_str).unwrap_or("").to_string();
    let v = match (kind, label) {
        (_, "metadata.name") => meta::name(obj).to_string(),
        (_, "metadata.namespace") => meta::namespace(obj).to_string(),
        ("Pod", "spec.hostNetwork") => bool_at(obj, "spec.hostNetwork"),
        ("Pod", "status.podIP" | "status.podIPs") => {
            // Upstream takes the first of podIPs (podIP mirrors it).
            let first = meta::path(obj, "status.podIPs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|p| p.get("ip"))
                .and_then(Value::as_str);
            match first {
                Some(ip) => ip.to_string(),
                None => text("status.podIP"),
            }
        }
        ("Node", "spec.unschedulable") => bool_at(obj, "spec.unschedulable"),
        ("ReplicaSet" | "ReplicationController", "status.replicas") => meta::path(obj, "status.replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
        ("Event", "reportingComponent") => text("reportingComponent"),
        ("Event", "source") => {
            // The legacy `source.component`, or the newer reporting controller when that is empty.
            let component = text("source.component");
            if component.is_empty() {
                text("reportingComponent")
            } else {
                component
            }
        }
        (_, path) => text(path),
    };
    Some(v)
}

fn bool_at(obj: &Value, path: &str) -> String {
    meta::path(obj, path)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(kind: &str, obj: &Value, label: &str, expected: Option<&str>) {
        assert_eq!(value(kind, obj, label).as_deref(), expected, "{kind} {label}");
    }

    #[test]
    fn pod_fields_render_like_upstream() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node1", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}
        });
        check("Pod", &pod, "metadata.name", Some("web-1"));
        check("Pod", &pod, "metadata.namespace", Some("default"));
        check("Pod", &pod, "spec.nodeName", Some("node1"));
        check("Pod", &pod, "spec.hostNetwork", Some("true"));
        check("Pod", &pod, "status.phase", Some("Running"));
        check("Pod", &pod, "status.podIP", Some("10.0.0.5"));
        check("Pod", &pod, "status.nominatedNodeName", Some(""));
        check("Pod", &pod, "spec.schedulerName", Some(""));
        check("Pod", &pod, "spec.containers", None);
    }

    #[test]
    fn absent_booleans_are_false() {
        let node = json!({"metadata": {"name": "n"}, "spec": {}});
        check("Node", &node, "spec.unschedulable", Some("false"));
        check("Pod", &json!({}), "spec.hostNetwork", Some("false"));
    }

    #[test]
    fn replica_counts_are_decimal_strings() {
        let rs = json!({"status": {"replicas": 3}});
        check("ReplicaSet", &rs, "status.replicas", Some("3"));
        check("ReplicationController", &json!({}), "status.replicas", Some("0"));
        check("Deployment", &rs, "status.replicas", None);
    }

    #[test]
    fn event_source_falls_back_to_reporting_component() {
        let ev = json!({
            "involvedObject": {"kind": "Pod", "name": "runner", "uid": "u1"},
            "reportingComponent": "kubelet", "reason": "Started", "type": "Normal"
        });
        check("Event", &ev, "source", Some("kubelet"));
        check("Event", &ev, "involvedObject.uid", Some("u1"));
        check("Event", &ev, "involvedObject.namespace", Some(""));
        let ev2 = json!({"source": {"component": "default-scheduler"}, "reportingComponent": "x"});
        check("Event", &ev2, "source", Some("default-scheduler"));
    }

    #[test]
    fn each_kind_supports_exactly_its_labels() {
        let cases = [
            ("Secret", "type", true),
            ("Namespace", "status.phase", true),
            ("Service", "spec.clusterIP", true),
            ("Service", "spec.type", true),
            ("Deployment", "metadata.name", true),
            ("Deployment", "spec.replicas", false),
            ("ConfigMap", "data", false),
            ("Lease", "metadata.namespace", true),
        ];
        for (kind, label, want) in cases {
            assert_eq!(supported(kind, label), want, "{kind} {label}");
        }
    }
}
