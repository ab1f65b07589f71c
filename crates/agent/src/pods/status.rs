//! The Pod status the agent writes: phase, conditions and one status per container, computed from what the
//! runtime reports plus what only the agent knows (why a container is waiting, what the probes say).
//!
//! Pure functions of their inputs; the worker decides when to write. Phase and condition rules follow the kubelet's
//! `getPhase` and `status.GeneratePodReadyCondition`, so `kubectl get pods` reads as it does upstream.

use berth_runtime::{ContainerInfo, ContainerState};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, PodStatus};
use serde_json::{json, Value};

/// Everything known about one container of the spec when the status is computed.
#[derive(Debug, Clone)]
pub struct ContainerView<'a> {
    pub spec: &'a Container,
    /// The newest instance of the container, if one was ever created.
    pub current: Option<&'a ContainerInfo>,
    /// The instance before it, for `lastState` (and `kubectl logs --previous`).
    pub previous: Option<&'a ContainerInfo>,
    /// Why the container is waiting, when the agent knows better than the runtime (`CrashLoopBackOff`,
    /// `ErrImagePull`, `CreateContainerConfigError`, `PodInitializing` …).
    pub waiting: Option<(String, String)>,
    pub ready: bool,
    pub started: bool,
}

/// Inputs of [`pod_status`] that are not per container.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    pub restart_policy: &'a str,
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    /// Whether the infra container runs with an address (upstream's PodReadyToStartContainers).
    pub sandbox_ready: bool,
    /// Set when the pod failed for a reason of its own (for example an init container failed with restartPolicy
    /// Never); forces phase Failed.
    pub failed: bool,
    pub start_time: DateTime<Utc>,
}

/// The pod's `status` as JSON, ready for a merge patch of `/status`. Conditions keep their previous
/// `lastTransitionTime` while their status is unchanged.
pub fn pod_status(
    facts: &PodFacts<'_>,
    init: &[ContainerView<'_>],
    app: &[ContainerView<'_>],
    previous: Option<&PodStatus>,
    now: DateTime<Utc>,
) -> Value {
    let init_done = init.iter().all(|v| completed(v.current));
    let phase = phase(facts, app, init_done);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<&str> = app.iter().filter(|v| !v.ready).map(|v| v.spec.name.as_str()).collect();
    let uninitialized: Vec<&str> = init
        .iter()
        .filter(|v| !completed(v.current))
        .map(|v| v.spec.name.as_str())
        .collect();
    let ready_condition = |type_: &str| {
        if terminal {
            condition(type_, false, Some("PodCompleted"), None)
        } else if !uninitialized.is_empty() {
            condition(
                type_,
                false,
                Some("ContainersNotInitialized"),
                Some(list("containers with incomplete status", &uninitialized)),
            )
        } else if !unready.is_empty() {
            condition(
                type_,
                false,
                Some("ContainersNotReady"),
                Some(list("containers with unready status", &unready)),
            )
        } else {
            condition(type_, true, None, None)
        }
    };
    let initialized = if uninitialized.is_empty() {
        condition("Initialized", true, terminal.then_some("PodCompleted"), None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(list("containers with incomplete status", &uninitialized)),
        )
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            facts.sandbox_ready && !terminal,
            None,
            None,
        ),
        initialized,
        ready_condition("Ready"),
        ready_condition("ContainersReady"),
        condition("PodScheduled", true, None, None),
    ];
    for c in &mut conditions {
        let type_ = c["type"].as_str().unwrap_or_default().to_string();
        let status = c["status"].as_str().unwrap_or_default().to_string();
        let since = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|pc| pc.type_ == type_ && pc.status == status))
            .and_then(|pc| pc.last_transition_time.as_ref())
            .map(|t| crate::time::chrono(t.0))
            .unwrap_or(now);
        c["lastTransitionTime"] = json!(rfc3339(since));
        c["lastProbeTime"] = Value::Null;
    }
    let pod_ips: Vec<Value> = facts.pod_ip.iter().map(|ip| json!({"ip": ip})).collect();
    json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": facts.host_ip,
        "hostIPs": [{"ip": facts.host_ip}],
        "podIP": facts.pod_ip,
        "podIPs": if pod_ips.is_empty() { Value::Null } else { Value::Array(pod_ips) },
        "startTime": rfc3339(facts.start_time),
        "initContainerStatuses": if init.is_empty() { Value::Null } else { Value::Array(init.iter().map(container_status).collect()) },
        "containerStatuses": app.iter().map(container_status).collect::<Vec<_>>(),
    })
}

/// The kubelet's phase rules: Pending until every container has started once, Running while any runs or will be
/// restarted, Succeeded when all ended with 0 and none will restart, Failed when all ended and one failed.
fn phase(facts: &PodFacts<'_>, app: &[ContainerView<'_>], init_done: bool) -> &'static str {
    if facts.failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for v in app {
        match (v.current.map(|c| &c.state), &v.waiting) {
            (Some(ContainerState::Running { .. }), None) => running += 1,
            (Some(ContainerState::Exited { exit_code, .. }), waiting_reason) => {
                // A container waiting to be restarted has run before: it counts as stopped, not waiting.
                stopped += 1;
                if *exit_code == 0 && waiting_reason.is_none() {
                    succeeded += 1;
                }
            }
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if facts.restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if facts.restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn completed(c: Option<&ContainerInfo>) -> bool {
    matches!(c.map(|c| &c.state), Some(ContainerState::Exited { exit_code: 0, .. }))
}

fn condition(type_: &str, status: bool, reason: Option<&str>, message: Option<String>) -> Value {
    let mut c = json!({"type": type_, "status": if status { "True" } else { "False" }});
    if let Some(reason) = reason {
        c["reason"] = json!(reason);
    }
    if let Some(message) = message {
        c["message"] = json!(message);
    }
    c
}

fn list(prefix: &str, names: &[&str]) -> String {
    format!("{prefix}: [{}]", names.join(" "))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn container_status(v: &ContainerView<'_>) -> Value {
    let current = v.current;
    let restart_count = current.map(|c| crate::labels::attempt(&c.labels)).unwrap_or(0);
    let state = match (&v.waiting, current.map(|c| &c.state)) {
        (Some((reason, message)), _) => waiting(reason, message),
        (None, Some(ContainerState::Running { started_at })) => json!({"running": {"startedAt": rfc3339(*started_at)}}),
        (None, Some(ContainerState::Exited { .. })) => json!({"terminated": terminated(current)}),
        (None, _) => waiting("ContainerCreating", ""),
    };
    // lastState: the instance that ended before the one now shown.
    let last = if v.waiting.is_some() && matches!(current.map(|c| &c.state), Some(ContainerState::Exited { .. })) {
        current
    } else {
        v.previous.filter(|p| matches!(p.state, ContainerState::Exited { .. }))
    };
    let last_state = match last {
        Some(_) => json!({"terminated": terminated(last)}),
        None => json!({}),
    };
    let running = matches!(current.map(|c| &c.state), Some(ContainerState::Running { .. })) && v.waiting.is_none();
    json!({
        "name": v.spec.name,
        "image": v.spec.image.clone().unwrap_or_default(),
        "imageID": current.map(|c| format!("docker://{}", c.image_id)).unwrap_or_default(),
        "containerID": current.map(|c| format!("docker://{}", c.id)),
        "ready": v.ready && running,
        "started": v.started && running,
        "restartCount": restart_count,
        "state": state,
        "lastState": last_state,
    })
}

fn waiting(reason: &str, message: &str) -> Value {
    let mut w = json!({"reason": reason});
    if !message.is_empty() {
        w["message"] = json!(message);
    }
    json!({ "waiting": w })
}

fn terminated(c: Option<&ContainerInfo>) -> Value {
    let Some(c) = c else { return json!({}) };
    let ContainerState::Exited {
        exit_code,
        started_at,
        finished_at,
        oom_killed,
        error,
    } = &c.state
    else {
        return json!({});
    };
    let (reason, message) = match (oom_killed, exit_code, error.as_deref().filter(|e| !e.is_empty())) {
        (true, _, _) => ("OOMKilled", None),
        (_, _, Some(error)) => ("StartError", Some(error.to_string())),
        (_, 0, _) => ("Completed", None),
        _ => ("Error", None),
    };
    let mut t = json!({
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at.map(rfc3339),
        "finishedAt": finished_at.map(rfc3339),
        "containerID": format!("docker://{}", c.id),
    });
    if let Some(message) = message {
        t["message"] = json!(message);
    }
    t
}
