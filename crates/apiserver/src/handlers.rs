//! The resource handler: every request under `/api/v1` and `/apis/{group}/{version}` that names a served
//! resource comes here, is resolved to a [`Target`] and dispatched by method and subresource to the
//! registry. Watches are handed to [`crate::watch`].

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use berth_api::{meta, ApiError, ResourceInfo};
use berth_machinery::patch;
use berth_machinery::selector::{FieldSelector, LabelSelector};
use http::{HeaderMap, Method, StatusCode, Uri};
use hyper::upgrade::OnUpgrade;
use serde_json::{json, Value};

use crate::body::{self, Output};
use crate::error::{json_response, Error, Result};
use crate::query::Params;
use crate::registry::{DeleteOptions, Deleted, FieldValidation, WriteOptions, Written};
use crate::render::{self, IncludeObject};
use crate::target::Target;
use crate::AppState;

/// Entry point for resource requests.
pub async fn resource(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Option<Extension<OnUpgrade>>,
    body: Body,
) -> Result<Response> {
    let target = Target::parse(uri.path())?;
    let params = Params::parse(uri.query())?;
    // Refuse an announced oversized body before reading any of it (and before any `100 Continue`).
    let announced = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > body::MAX_BODY_BYTES as u64) {
        return Err(ApiError::too_large(body::MAX_BODY_BYTES).into());
    }
    let ns = target.namespace.clone();
    let r = target.resource;
    match (&method, target.name.as_deref(), target.subresource.as_deref()) {
        (&Method::GET, None, None) => {
            let output = body::negotiate(&headers)?;
            if params.watch {
                crate::watch::serve(state, target, params, output).await
            } else {
                list(&state, &target, &params, output).await
            }
        }
        (&Method::POST, None, None) => {
            let opts = write_opts(&params)?;
            let obj = read_object(&headers, body, r).await?;
            let created = state.registry.create(r, ns.as_deref(), obj, &opts).await?;
            Ok(written_response(StatusCode::CREATED, created))
        }
        (&Method::DELETE, None, None) => delete_collection(&state, &target, &params, &headers, body).await,
        (&Method::GET, Some(name), None | Some("status")) => {
            let output = body::negotiate(&headers)?;
            let obj = state.registry.get(r, ns.as_deref(), name).await?;
            Ok(respond_one(r, obj, output, &params))
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status") | Some("finalize"))) => {
            let opts = write_opts(&params)?;
            let obj = read_object(&headers, body, r).await?;
            let sub = if sub == Some("finalize") { None } else { sub };
            let updated = state.registry.update(r, ns.as_deref(), name, obj, sub, &opts).await?;
            Ok(written_response(StatusCode::OK, updated))
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let opts = write_opts(&params)?;
            let (ct, patch_doc) = read_patch(&headers, body).await?;
            if ct == "application/apply-patch+yaml" {
                return apply_patch(&state, r, ns.as_deref(), name, patch_doc, &opts).await;
            }
            let kind = r.kind;
            let updated = state
                .registry
                .write_loop(
                    r,
                    ns.as_deref(),
                    name,
                    None,
                    &opts,
                    |old| apply_patch_doc(r, kind, &ct, old, &patch_doc),
                    sub,
                )
                .await?;
            Ok(written_response(StatusCode::OK, updated))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(&headers, body, &params).await?;
            match state.registry.delete(r, ns.as_deref(), name, &opts).await? {
                Deleted::Gone(obj) => Ok(json_response(StatusCode::OK, &obj)),
                // Upstream answers 202 Accepted when deletion is left to finalizers or a grace period... for
                // most kinds it answers 200 with the object; kubectl treats both alike.
                Deleted::Pending(obj) => Ok(json_response(StatusCode::OK, &obj)),
            }
        }
        (_, Some(name), Some("scale")) => {
            crate::scale::handle(&state, r, ns.as_deref(), name, &method, &headers, body, &params).await
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let binding = read_any(&headers, body, ("v1", "Binding")).await?;
            bind(&state, r, ns.as_deref(), name, &binding).await
        }
        (&Method::GET, Some(name), Some("log")) => {
            crate::proxy::log(&state, ns.as_deref().unwrap_or_default(), name, uri.query()).await
        }
        (&Method::GET | &Method::POST, Some(name), Some(sub @ ("exec" | "attach"))) => {
            let session = if sub == "exec" {
                crate::proxy::Session::Exec
            } else {
                crate::proxy::Session::Attach
            };
            let upgrade = upgrade.map(|Extension(u)| u);
            let ns = ns.as_deref().unwrap_or_default();
            crate::proxy::stream(&state, session, ns, name, &method, uri.query(), &headers, upgrade).await
        }
        (&Method::GET | &Method::POST, Some(name), Some("portforward")) => {
            let upgrade = upgrade.map(|Extension(u)| u);
            let ns = ns.as_deref().unwrap_or_default();
            crate::proxy::port_forward(&state, ns, name, &method, uri.query(), &headers, upgrade).await
        }
        _ => Err(ApiError::method_not_allowed().into()),
    }
}

fn write_opts(p: &Params) -> Result<WriteOptions> {
    Ok(WriteOptions {
        dry_run: p.dry_run,
        field_validation: FieldValidation::parse(p.field_validation.as_deref())?,
    })
}

/// The JSON answer to a write, with one `Warning: 299 - "…"` header per warning (RFC 7234's form, which
/// client-go, kubectl and the Python client print as `Warning: …`).
fn written_response(code: StatusCode, written: Written) -> Response {
    let mut response = json_response(code, &written.object);
    for warning in &written.warnings {
        let quoted = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = http::HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
    response
}

async fn read_any(headers: &HeaderMap, b: Body, fallback: (&str, &str)) -> Result<Value> {
    let bytes = body::read_limited(b).await?;
    Ok(body::decode_object(headers, &bytes, fallback)?)
}

async fn read_object(headers: &HeaderMap, b: Body, r: &ResourceInfo) -> Result<Value> {
    let av = r.api_version();
    read_any(headers, b, (&av, r.kind)).await
}

async fn read_patch(headers: &HeaderMap, b: Body) -> Result<(String, Value)> {
    let ct = body::media_type(headers, http::header::CONTENT_TYPE);
    let bytes = body::read_limited(b).await?;
    let doc = match ct.as_str() {
        "application/json-patch+json" | "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            body::parse_json(&bytes)?
        }
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            let v = body::parse_yaml(&bytes).map_err(|mut e| {
                // Upstream's wording for an apply body that is not YAML.
                if let Some(detail) = e.message.strip_prefix("error decoding YAML body: ") {
                    e.message = format!("error decoding YAML: {detail}");
                }
                e
            })?;
            return Ok(("application/apply-patch+yaml".into(), v));
        }
        other => return Err(ApiError::unsupported_patch_type(other).into()),
    };
    Ok((ct, doc))
}

/// Applies a PATCH document of content type `ct` to `old`, for an object of `kind` (strategic merge patch needs
/// the kind's list semantics). Shared by every endpoint that takes patches.
pub fn apply_patch_type(kind: &str, ct: &str, old: &Value, doc: &Value) -> Result<Value> {
    Ok(match ct {
        "application/json-patch+json" => patch::json_patch(old, doc)?,
        "application/merge-patch+json" => {
            if !doc.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object").into());
            }
            patch::merge_patch(old, doc)
        }
        "application/strategic-merge-patch+json" => {
            if !doc.is_object() {
                return Err(ApiError::bad_request("a strategic merge patch must be a JSON object").into());
            }
            patch::strategic_merge_patch(kind, old, doc)?
        }
        other => return Err(ApiError::unsupported_patch_type(other).into()),
    })
}

/// Applies one PATCH document to the current object. A patch that carries a resourceVersion makes it a
/// precondition (409 when stale), as upstream does.
fn apply_patch_doc(r: &ResourceInfo, kind: &str, ct: &str, old: &Value, doc: &Value) -> Result<Value> {
    let patched = apply_patch_type(kind, ct, old, doc)?;
    let old_rv = meta::str_field(old, "resourceVersion");
    let new_rv = meta::str_field(&patched, "resourceVersion");
    if new_rv.is_some_and(|v| !v.is_empty()) && new_rv != old_rv {
        return Err(ApiError::conflict(r, meta::name(old)).into());
    }
    if meta::str_field(&patched, "uid").is_some() && meta::str_field(&patched, "uid") != meta::str_field(old, "uid") {
        return Err(ApiError::conflict_because(
            r,
            meta::name(old),
            "Precondition failed: UID in precondition does not match",
        )
        .into());
    }
    if meta::name(&patched) != meta::name(old) {
        return Err(ApiError::bad_request("metadata.name cannot be changed by a patch").into());
    }
    Ok(patched)
}

/// Server-side apply, simplified: creates the object when absent, otherwise merges the applied configuration
/// into it with strategic-merge semantics. Field ownership (managedFields, conflicts between managers) is not
/// tracked; see docs/api.md.
async fn apply_patch(
    state: &AppState,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    doc: Value,
    opts: &WriteOptions,
) -> Result<Response> {
    if !doc.is_object() {
        return Err(ApiError::bad_request("an apply patch must be an object").into());
    }
    match state.registry.get(r, ns, name).await {
        Err(Error(e)) if e.code == 404 && e.reason == "NotFound" => {
            let mut obj = doc;
            meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
            let created = state.registry.create(r, ns, obj, opts).await?;
            Ok(written_response(StatusCode::CREATED, created))
        }
        Err(e) => Err(e),
        Ok(_) => {
            let kind = r.kind;
            let updated = state
                .registry
                .write_loop(
                    r,
                    ns,
                    name,
                    None,
                    opts,
                    |old| {
                        let mut d = doc.clone();
                        meta::metadata_mut(&mut d).remove("resourceVersion");
                        Ok(patch::strategic_merge_patch(kind, old, &d)?)
                    },
                    None,
                )
                .await?;
            Ok(written_response(StatusCode::OK, updated))
        }
    }
}

/// Parses the label and field selectors of a request, rejecting field labels the kind does not support.
pub fn selectors(r: &ResourceInfo, params: &Params) -> Result<(LabelSelector, FieldSelector)> {
    let ls = LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))?;
    let fs = FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""))?;
    for f in fs.fields() {
        if !berth_api::fields::supported(r.kind, f) {
            return Err(ApiError::bad_request(format!("field label not supported: {f}")).into());
        }
    }
    Ok((ls, fs))
}

/// Whether an object passes both selectors.
pub fn selected(r: &ResourceInfo, ls: &LabelSelector, fs: &FieldSelector, obj: &Value) -> bool {
    ls.matches(&meta::labels(obj)) && fs.matches(|f| berth_api::fields::value(r.kind, obj, f))
}

async fn list(state: &AppState, target: &Target, params: &Params, output: Output) -> Result<Response> {
    let r = target.resource;
    let (ls, fs) = selectors(r, params)?;
    let (items, rev) = state.registry.list(r, target.namespace.as_deref()).await?;
    let items: Vec<Value> = items.into_iter().filter(|o| selected(r, &ls, &fs, o)).collect();
    let rv = rev.to_string();
    let body = match output {
        Output::Json => render::list(r, items, &rv),
        Output::Table => render::table(
            r,
            &items,
            Some(&rv),
            IncludeObject::parse(params.include_object.as_deref()),
        ),
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn respond_one(r: &ResourceInfo, obj: Value, output: Output, params: &Params) -> Response {
    match output {
        Output::Json => json_response(StatusCode::OK, &obj),
        Output::Table => json_response(
            StatusCode::OK,
            &render::table(
                r,
                std::slice::from_ref(&obj),
                None,
                IncludeObject::parse(params.include_object.as_deref()),
            ),
        ),
    }
}

/// Reads DeleteOptions from the body (JSON or protobuf, often absent) and the query string.
async fn delete_options(headers: &HeaderMap, b: Body, params: &Params) -> Result<DeleteOptions> {
    let bytes = body::read_limited(b).await?;
    let mut opts = DeleteOptions {
        grace_period: params.grace_period_seconds,
        dry_run: params.dry_run,
        ..Default::default()
    };
    if !bytes.is_empty() {
        let v = body::decode_object(headers, &bytes, ("meta.k8s.io/v1", "DeleteOptions"))?;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period = Some(g);
        }
        if let Some(p) = v.get("preconditions") {
            opts.uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
            opts.resource_version = p.get("resourceVersion").and_then(Value::as_str).map(str::to_string);
        }
        if v.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            opts.dry_run = true;
        }
    }
    // A negative period is the kind's business: a Pod's strategy takes it as one second, as upstream's does.
    Ok(opts)
}

async fn delete_collection(
    state: &AppState,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    b: Body,
) -> Result<Response> {
    let r = target.resource;
    if !r.verbs.contains(&"deletecollection") {
        return Err(ApiError::method_not_allowed().into());
    }
    let opts = delete_options(headers, b, params).await?;
    let (ls, fs) = selectors(r, params)?;
    let (items, _) = state.registry.list(r, target.namespace.as_deref()).await?;
    let mut deleted = Vec::new();
    for obj in items.into_iter().filter(|o| selected(r, &ls, &fs, o)) {
        let ns = (!meta::namespace(&obj).is_empty()).then(|| meta::namespace(&obj).to_string());
        match state.registry.delete(r, ns.as_deref(), meta::name(&obj), &opts).await {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => deleted.push(o),
            Err(Error(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = state.registry.store().current_revision().to_string();
    Ok(json_response(StatusCode::OK, &render::list(r, deleted, &rv)))
}

/// `POST pods/{name}/binding`: assigns a pod to a node, once (upstream's scheduler binding).
async fn bind(
    state: &AppState,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
) -> Result<Response> {
    if r.kind != "Pod" {
        return Err(ApiError::method_not_allowed().into());
    }
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request("binding target name is required").into());
    }
    state
        .registry
        .write_loop(
            r,
            ns,
            name,
            None,
            &WriteOptions::default(),
            |old| {
                let current = old.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
                if !current.is_empty() {
                    return Err(ApiError::conflict_because(
                        r,
                        name,
                        &format!("pod {name} is already assigned to node \"{current}\""),
                    )
                    .into());
                }
                if meta::str_field(old, "deletionTimestamp").is_some() {
                    return Err(ApiError::conflict_because(
                        r,
                        name,
                        "pod is being deleted, cannot be assigned to a host",
                    )
                    .into());
                }
                let mut next = old.clone();
                next["spec"]["nodeName"] = json!(node);
                Ok(next)
            },
            None,
        )
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &berth_api::status::success_status(None),
    ))
}
