//! Per-kind server behaviour that is not validation or defaulting: which kinds track `metadata.generation`,
//! what status a new object starts with, and which objects are deleted gracefully. These mirror the "strategy"
//! objects of upstream's registry (`pkg/registry/*/strategy.go`).

use berth_api::ResourceInfo;
use serde_json::{json, Value};

/// Whether `metadata.generation` starts at 1 and is bumped on every spec change (upstream does this for
/// workload kinds so controllers can report `status.observedGeneration`).
pub fn tracks_generation(r: &ResourceInfo) -> bool {
    matches!(
        r.kind,
        "Pod" | "Deployment" | "ReplicaSet" | "ReplicationController" | "EndpointSlice"
    )
}

/// The part of an object whose change bumps the generation.
pub fn generation_source(r: &ResourceInfo, obj: &Value) -> Value {
    match r.kind {
        // EndpointSlices have no spec; upstream bumps on any change to their endpoints or ports.
        "EndpointSlice" => {
            json!([obj.get("endpoints"), obj.get("ports"), obj.get("addressType")])
        }
        _ => obj.get("spec").cloned().unwrap_or(Value::Null),
    }
}

/// The status a new object starts with (upstream's `PrepareForCreate` discards any status the client sent,
/// except for Nodes, whose agent creates them with status). `None` keeps the client's status.
pub fn initial_status(r: &ResourceInfo, obj: &Value) -> Option<Value> {
    match r.kind {
        "Pod" => {
            let qos = obj
                .get("spec")
                .map(berth_api::defaults::pod_qos_class)
                .unwrap_or("BestEffort");
            Some(json!({"phase": "Pending", "qosClass": qos}))
        }
        // `replicas` has no omitempty upstream and the Python client requires it.
        "ReplicaSet" | "ReplicationController" => Some(json!({"replicas": 0})),
        "Deployment" => Some(json!({})),
        "Service" => Some(json!({"loadBalancer": {}})),
        "Namespace" => Some(json!({"phase": "Active"})),
        _ => None,
    }
}

/// The grace period for deleting an object, when the kind is deleted gracefully: a Pod bound to a node keeps
/// running until its agent has stopped the containers, for `terminationGracePeriodSeconds` at most.
/// `None` means the object is removed at once.
pub fn graceful_period(r: &ResourceInfo, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if r.kind != "Pod" {
        return None;
    }
    let spec = obj.get("spec")?;
    // Upstream: an unscheduled pod, or one that already finished, has nothing to stop.
    let bound = spec
        .get("nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = obj
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return Some(0);
    }
    let default = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    // Upstream's podStrategy.CheckGracefulDelete: a negative period (requested or stored) means one second.
    match requested.unwrap_or(default) {
        p if p < 0 => Some(1),
        p => Some(p),
    }
}

/// The latest `deletionTimestamp` the server writes, a day before the end of year 9999 (RFC 3339's last): clients
/// must still parse it, and Rust's `jiff` (k8s-openapi's time type, so the agent's pod watch) stops at
/// 9999-12-30T22:00Z: 9999-12-31T23:59:59Z broke the watch of every pod on the node. A grace period too long to be
/// added to the current time ends here instead.
pub const LATEST_DELETION: &str = "9999-12-30T00:00:00Z";

/// When an object deleted at `now` with a grace period of `grace` seconds is due, as `deletionTimestamp` text.
/// Saturates at [`LATEST_DELETION`]: `gracePeriodSeconds` is any int64 a client sends, and adding it unchecked
/// panicked the request (and the namespace finalizer) for values near `i64::MAX`.
pub fn deletion_deadline(now: chrono::DateTime<chrono::Utc>, grace: i64) -> String {
    let latest = chrono::DateTime::parse_from_rfc3339(LATEST_DELETION)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    chrono::TimeDelta::try_seconds(grace)
        .and_then(|d| now.checked_add_signed(d))
        .filter(|t| *t < latest)
        .unwrap_or(latest)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether a deleting object still waits on a kind-specific finalizer outside `metadata.finalizers`: a
/// Namespace's `spec.finalizers`, which the namespace controller clears once the namespace is empty.
pub fn waits_on_spec_finalizers(r: &ResourceInfo, obj: &Value) -> bool {
    r.kind == "Namespace"
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// Kind-specific changes to an object being marked for deletion: a Namespace shows `Terminating` (and is always
/// marked, so the namespace controller sees it and removes its contents).
pub fn mark_deleting(r: &ResourceInfo, obj: &mut Value) -> bool {
    if r.kind != "Namespace" {
        return false;
    }
    obj["status"]["phase"] = json!("Terminating");
    true
}

/// Kind-specific changes to a new object before defaulting (upstream's `PrepareForCreate`). A Namespace always
/// gets the `kubernetes` finalizer: it keeps the namespace in `Terminating` until its contents are deleted.
pub fn prepare_create(r: &ResourceInfo, obj: &mut Value) {
    if r.kind == "Namespace" {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
}
