//! The `/scale` subresource of Deployments, ReplicaSets and ReplicationControllers: an `autoscaling/v1 Scale`
//! view of the parent's `spec.replicas`, `status.replicas` and selector. `kubectl scale` PATCHes it; the HPA
//! will read and write it.

use axum::body::Body;
use axum::response::Response;
use berth_api::{meta, ApiError, ResourceInfo};
use berth_machinery::selector::LabelSelector;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::body;
use crate::error::{json_response, Result};
use crate::query::Params;
use crate::registry::{FieldValidation, WriteOptions};
use crate::AppState;

/// The selector of a scalable object as a label-selector string (`app=web`).
fn selector_string(r: &ResourceInfo, obj: &Value) -> String {
    let sel = obj.pointer("/spec/selector");
    if r.kind == "ReplicationController" {
        // RCs use a plain map selector.
        let m = meta::string_map(sel);
        return m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    }
    sel.and_then(|s| LabelSelector::from_json(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The Scale view of a parent object.
pub fn scale_of(r: &ResourceInfo, obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut metadata = json!({});
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = m.get(k) {
            metadata[k] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(r, obj),
        },
    })
}

fn replicas_of(scale: &Value) -> Result<i64> {
    match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 && n <= i32::MAX as i64 => Ok(n),
            _ => Err(ApiError::invalid_request(format!("Scale.autoscaling \"\" is invalid: spec.replicas: Invalid value: {v}: must be greater than or equal to 0")).into()),
        },
    }
}

/// Serves GET, PUT and PATCH on `{parent}/{name}/scale`.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    state: &AppState,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    b: Body,
    params: &Params,
) -> Result<Response> {
    let opts = WriteOptions {
        dry_run: params.dry_run,
        // The parent object is written from the stored one plus a replica count: nothing of the client's body
        // reaches it, so there are no unknown fields to report.
        field_validation: FieldValidation::Ignore,
    };
    match *method {
        Method::GET => {
            let obj = state.registry.get(r, ns, name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(r, &obj)))
        }
        Method::PUT => {
            let bytes = body::read_limited(b).await?;
            let scale = body::decode_object(headers, &bytes, ("autoscaling/v1", "Scale"))?;
            let replicas = replicas_of(&scale)?;
            let precondition = match meta::str_field(&scale, "resourceVersion") {
                Some(rv) if !rv.is_empty() => Some(crate::registry::parse_rv(rv)?),
                _ => None,
            };
            let updated = state
                .registry
                .write_loop(
                    r,
                    ns,
                    name,
                    precondition,
                    &opts,
                    |old| {
                        let mut next = old.clone();
                        next["spec"]["replicas"] = json!(replicas);
                        Ok(next)
                    },
                    None,
                )
                .await?;
            Ok(json_response(StatusCode::OK, &scale_of(r, &updated.object)))
        }
        Method::PATCH => {
            let ct = body::media_type(headers, http::header::CONTENT_TYPE);
            let bytes = body::read_limited(b).await?;
            let doc = body::parse_json(&bytes)?;
            let updated = state
                .registry
                .write_loop(
                    r,
                    ns,
                    name,
                    None,
                    &opts,
                    |old| {
                        let current = scale_of(r, old);
                        let patched = crate::handlers::apply_patch_type("Scale", &ct, &current, &doc)?;
                        if meta::str_field(&patched, "resourceVersion") != meta::str_field(&current, "resourceVersion")
                        {
                            return Err(ApiError::conflict(r, name).into());
                        }
                        let mut next = old.clone();
                        next["spec"]["replicas"] = json!(replicas_of(&patched)?);
                        Ok(next)
                    },
                    None,
                )
                .await?;
            Ok(json_response(StatusCode::OK, &scale_of(r, &updated.object)))
        }
        _ => Err(ApiError::method_not_allowed().into()),
    }
}
