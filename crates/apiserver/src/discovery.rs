//! API discovery and version: `/api`, `/apis`, `/apis/{group}`, `/api/v1`, `/apis/{group}/{version}` and
//! `/version`, all derived from the resource table. Only the legacy (non-aggregated) form is served: clients
//! fall back to it whenever the response type is plain `application/json`, which is simplest and always correct.

use axum::extract::{Path, State};
use axum::response::Response;
use berth_api::resources::{group_versions, RESOURCES};
use berth_api::ApiError;
use http::StatusCode;
use serde_json::{json, Value};

use crate::error::{json_response, Result};
use crate::AppState;

/// The Kubernetes version berth reports: kubectl warns when its minor version differs by more than one.
pub const KUBE_VERSION: &str = "v1.35.0";

/// `GET /version`.
pub async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "35",
            "gitVersion": format!("{KUBE_VERSION}+berth-{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "berth",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
        }),
    )
}

/// The architecture in Go's spelling, as Kubernetes reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET /api`.
pub async fn core_versions(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.advertise.to_string()}],
        }),
    )
}

fn group_json(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(json!({}));
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

fn named_groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

/// `GET /apis`.
pub async fn groups() -> Response {
    let groups: Vec<Value> = named_groups().into_iter().map(group_json).collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

/// `GET /apis/{group}`.
pub async fn group(Path(group): Path<String>) -> Result<Response> {
    if !named_groups().contains(&group.as_str()) {
        return Err(ApiError::path_not_found().into());
    }
    let mut g = group_json(&group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Ok(json_response(StatusCode::OK, &g))
}

/// The APIResourceList of one group version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if let Some(g) = s.group {
                sub["group"] = json!(g);
            }
            if let Some(v) = s.version {
                sub["version"] = json!(v);
            }
            resources.push(sub);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `GET /api/v1`.
pub async fn core_resources() -> Result<Response> {
    let list = resource_list("", "v1").ok_or_else(ApiError::path_not_found)?;
    Ok(json_response(StatusCode::OK, &list))
}

/// `GET /apis/{group}/{version}`.
pub async fn group_resources(Path((group, version)): Path<(String, String)>) -> Result<Response> {
    let list = resource_list(&group, &version).ok_or_else(ApiError::path_not_found)?;
    Ok(json_response(StatusCode::OK, &list))
}
