//! The Pod row, upstream's `printPod`: the READY count, the STATUS word kubectl users read first
//! (`Init:1/2`, `CrashLoopBackOff`, `Completed`, `Terminating`...), RESTARTS with the age of the last restart,
//! and the wide IP/Node/Nominated Node/Readiness Gates cells.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{arr, since, str_of};
use crate::meta;

/// Upstream's reason for Pods on a node that stopped responding (`NodeUnreachablePodReason`).
const NODE_LOST: &str = "NodeLost";

fn is_restartable_init(spec: &Value, name: &str) -> bool {
    arr(spec, "initContainers")
        .iter()
        .any(|c| str_of(c, "name") == name && str_of(c, "restartPolicy") == "Always")
}

fn condition_true(status: &Value, ty: &str) -> Option<bool> {
    arr(status, "conditions")
        .iter()
        .find(|c| str_of(c, "type") == ty)
        .map(|c| str_of(c, "status") == "True")
}

/// The later of two optional RFC 3339 timestamps (parsed, since offsets make text comparison unreliable).
fn later<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok();
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => match (parse(x), parse(y)) {
            (Some(px), Some(py)) if py > px => Some(y),
            (None, Some(_)) => Some(y),
            _ => Some(x),
        },
    }
}

fn last_terminated(c: &Value) -> Option<&str> {
    meta::path(c, "lastState.terminated.finishedAt").and_then(Value::as_str)
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    let reason = str_of(t, "reason");
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = t.get("signal").and_then(Value::as_i64).unwrap_or(0);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!(
            "{prefix}ExitCode:{}",
            t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
        )
    }
}

/// The nine Pod cells.
pub(super) fn cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let status = pod.get("status").unwrap_or(&Value::Null);
    let init_specs = arr(spec, "initContainers");
    let total = arr(spec, "containers").len()
        + init_specs
            .iter()
            .filter(|c| str_of(c, "restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<&str> = None;
    let mut last_sidecar_restart: Option<&str> = None;

    let phase = str_of(status, "phase");
    let mut reason = match str_of(status, "reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr(status, "conditions")
        .iter()
        .any(|c| str_of(c, "type") == "PodScheduled" && str_of(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    let init_statuses = arr(status, "initContainerStatuses");
    for (i, c) in init_statuses.iter().enumerate() {
        let cname = str_of(c, "name");
        let count = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        restarts += count;
        last_restart = later(last_restart, last_terminated(c));
        let restartable = is_restartable_init(spec, cname);
        if restartable {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, last_terminated(c));
        }
        let state = c.get("state").unwrap_or(&Value::Null);
        let terminated = state.get("terminated").filter(|t| t.is_object());
        let waiting = state.get("waiting").filter(|w| w.is_object());
        if terminated.is_some_and(|t| t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) == 0) {
            continue;
        }
        if restartable && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = terminated_reason(t, "Init:");
        } else if let Some(w) = waiting.filter(|w| !matches!(str_of(w, "reason"), "" | "PodInitializing")) {
            reason = format!("Init:{}", str_of(w, "reason"));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(status, "Initialized") == Some(true) {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr(status, "containerStatuses").iter().rev() {
            restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            last_restart = later(last_restart, last_terminated(c));
            let state = c.get("state").unwrap_or(&Value::Null);
            let waiting = state.get("waiting").filter(|w| w.is_object());
            let terminated = state.get("terminated").filter(|t| t.is_object());
            if let Some(w) = waiting.filter(|w| !str_of(w, "reason").is_empty()) {
                reason = str_of(w, "reason").to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && state.get("running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A Pod whose last container completed but another still runs is not "Completed".
        if reason == "Completed" && has_running {
            reason = if condition_true(status, "Ready") == Some(true) {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = meta::str_field(pod, "deletionTimestamp").is_some();
    if deleting && str_of(status, "reason") == NODE_LOST {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let pod_ip = arr(status, "podIPs").first().map_or("", |p| str_of(p, "ip"));
    let gates = arr(spec, "readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates
            .iter()
            .filter(|g| condition_true(status, str_of(g, "conditionType")) == Some(true))
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        json!(meta::name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(since(meta::str_field(pod, "creationTimestamp"), now)),
        json!(or_none(pod_ip)),
        json!(or_none(str_of(spec, "nodeName"))),
        json!(or_none(str_of(status, "nominatedNodeName"))),
        json!(readiness_gates),
    ]
}
