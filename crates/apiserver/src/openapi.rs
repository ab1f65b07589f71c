//! OpenAPI v3, reduced to what clients use: kubectl's `--validate=strict` (its default for `apply`, `create`
//! and `replace`) only checks that each kind's PATCH operation declares a `fieldValidation` query parameter;
//! without these documents those commands fail outright. The documents are generated from the resource table,
//! and the same output is checked into `proto/openapi/` as berth's published contract (a test keeps them equal).
//! `/openapi/v2` is deliberately 404: clients then use v3.

use axum::extract::Path;
use axum::response::Response;
use berth_api::resources::{group_versions, RESOURCES};
use berth_api::ApiError;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::error::{json_response, Result};

/// The key of a group version in the v3 index: `api/v1` or `apis/{group}/{version}`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A short stable hash of a document, so clients may cache it (`?hash=`).
fn hash(doc: &Value) -> String {
    // FNV-1a over the serialized document: stable across runs and platforms, no dependency needed.
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// The v3 document of one group version.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = json!({
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"200": {"description": "OK"}},
        });
        let prefix = format!("/{}", gv_path(group, version));
        let collection = if r.namespaced() {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        paths.insert(collection.clone(), json!({"post": op}));
        paths.insert(format!("{collection}/{{name}}"), json!({"put": op, "patch": op}));
        let schema_name = format!(
            "io.berth.{}.{}.{}",
            if r.group.is_empty() { "core" } else { r.group },
            r.version,
            r.kind
        );
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk]}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::KUBE_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The v3 index listing every group version's document.
pub fn index() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        if let Some(doc) = document(g, v) {
            let p = gv_path(g, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3`.
pub async fn v3_index() -> Response {
    json_response(StatusCode::OK, &index())
}

/// `GET /openapi/v3/api/{version}` and `/openapi/v3/apis/{group}/{version}`.
pub async fn v3_core(Path(version): Path<String>) -> Result<Response> {
    let doc = document("", &version).ok_or_else(ApiError::path_not_found)?;
    Ok(json_response(StatusCode::OK, &doc))
}

/// `GET /openapi/v3/apis/{group}/{version}`.
pub async fn v3_group(Path((group, version)): Path<(String, String)>) -> Result<Response> {
    let doc = document(&group, &version).ok_or_else(ApiError::path_not_found)?;
    Ok(json_response(StatusCode::OK, &doc))
}

/// Every published document with its file name under `proto/openapi/`.
pub fn published() -> Vec<(String, Value)> {
    let mut out = vec![("index.json".to_string(), index())];
    for (g, v) in group_versions() {
        if let Some(doc) = document(g, v) {
            out.push((format!("{}.json", gv_path(g, v).replace('/', "__")), doc));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `proto/openapi/` is the contract berth publishes; it must be what the server serves. Regenerate with
    /// `BERTH_UPDATE_OPENAPI=1 cargo test -p berth-apiserver openapi`.
    #[test]
    fn checked_in_openapi_documents_match_the_code() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/openapi");
        let update = std::env::var_os("BERTH_UPDATE_OPENAPI").is_some();
        for (file, doc) in published() {
            let path = dir.join(&file);
            let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let on_disk = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} is missing; run with BERTH_UPDATE_OPENAPI=1", path.display()));
            assert_eq!(
                on_disk,
                text,
                "{} drifted from the code; run with BERTH_UPDATE_OPENAPI=1",
                path.display()
            );
        }
    }

    #[test]
    fn every_kind_has_a_patch_operation_with_field_validation() {
        for r in RESOURCES {
            let doc = document(r.group, r.version).unwrap();
            let found = doc["paths"].as_object().unwrap().values().any(|p| {
                p.get("patch").is_some_and(|op| {
                    op["x-kubernetes-group-version-kind"]["kind"] == r.kind
                        && op["parameters"][0]["name"] == "fieldValidation"
                })
            });
            assert!(found, "{} has no PATCH operation", r.kind);
        }
    }
}
