//! Rendering objects for responses: lists, and the `meta.k8s.io/v1` Table that kubectl asks for whenever it
//! prints for humans (without it, `kubectl get` shows only NAME and AGE).

use berth_api::ResourceInfo;
use chrono::Utc;
use serde_json::{json, Value};

/// A list response: `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":..},"items":[..]}`.
/// `items` is always an array (the Python client requires it even when empty).
pub fn list(r: &ResourceInfo, items: Vec<Value>, rv: &str) -> Value {
    json!({
        "kind": format!("{}List", r.kind),
        "apiVersion": r.api_version(),
        "metadata": {"resourceVersion": rv},
        "items": items,
    })
}

/// What each Table row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` (the default; kubectl needs it for `-A`, `--show-labels` and `-L`).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` parameter (default Metadata).
    pub fn parse(v: Option<&str>) -> IncludeObject {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

fn row(r: &ResourceInfo, obj: &Value, include: IncludeObject, now: chrono::DateTime<Utc>) -> Value {
    let cells = berth_api::table::cells(r.kind, obj, now);
    let mut row = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            });
        }
        IncludeObject::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of `objs`. `rv` is the list's resourceVersion (kubectl's `get -w` watches from it); single-object
/// tables carry none.
pub fn table(r: &ResourceInfo, objs: &[Value], rv: Option<&str>, include: IncludeObject) -> Value {
    let now = Utc::now();
    let rows: Vec<Value> = objs.iter().map(|o| row(r, o, include, now)).collect();
    let mut metadata = json!({});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": berth_api::table::columns(r.kind),
        "rows": rows,
    })
}
