//! Watch streams: `GET {collection}?watch=true`, one JSON event per line (the Python client splits on
//! newlines). Three ways to start, as upstream:
//!
//! | request                                   | first events                                     |
//! |-------------------------------------------|--------------------------------------------------|
//! | no resourceVersion, or `0`                | synthetic ADDED for every current object         |
//! | `resourceVersion=N`                       | every change after N (410 ERROR if N is gone)    |
//! | `sendInitialEvents=true` (WatchList)      | ADDED for each object, then a BOOKMARK annotated `k8s.io/initial-events-end` |
//!
//! Objects that start or stop matching the selectors arrive as ADDED or DELETED, so a filtered watch behaves
//! like a watch of the filtered collection. The stream ends after `timeoutSeconds` (default 30–60 minutes),
//! when the client goes away, or when the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use berth_api::{ApiError, ResourceInfo};
use berth_machinery::selector::{FieldSelector, LabelSelector};
use berth_store::{Event, EventKind, Revision, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::body::Output;
use crate::error::Result;
use crate::handlers::{selected, selectors};
use crate::query::Params;
use crate::registry::{decode, parse_rv};
use crate::render::{self, IncludeObject};
use crate::target::Target;
use crate::AppState;

/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK, so clients can resume without a 410.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

struct Filter {
    r: &'static ResourceInfo,
    ls: LabelSelector,
    fs: FieldSelector,
    output: Output,
    include: IncludeObject,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        selected(self.r, &self.ls, &self.fs, obj)
    }

    fn line(&self, ty: &str, obj: Value) -> Bytes {
        let object = match self.output {
            Output::Json => obj,
            Output::Table => render::table(self.r, std::slice::from_ref(&obj), obj_rv(&obj), self.include),
        };
        let mut out = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    /// Turns a store event into the watch event this client sees, if any.
    fn event(&self, ev: &Event) -> std::result::Result<Option<Bytes>, crate::error::Error> {
        let obj = decode(&ev.kv)?;
        let now = self.matches(&obj);
        let ty = match ev.kind {
            EventKind::Delete => now.then_some("DELETED"),
            EventKind::Put if ev.kv.create_revision == ev.kv.mod_revision => now.then_some("ADDED"),
            EventKind::Put => {
                let before = match &ev.prev {
                    Some(prev) => self.matches(&decode(prev)?),
                    None => false,
                };
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        };
        Ok(ty.map(|t| self.line(t, obj)))
    }

    fn bookmark(&self, rv: Revision, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.r.kind, "apiVersion": self.r.api_version(), "metadata": metadata});
        let mut out = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

fn obj_rv(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str)
}

fn error_line(e: &ApiError) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// Starts a watch and returns the streaming response.
pub async fn serve(state: AppState, target: Target, params: Params, output: Output) -> Result<Response> {
    let r = target.resource;
    let (ls, fs) = selectors(r, &params)?;
    let filter = Filter {
        r,
        ls,
        fs,
        output,
        include: IncludeObject::parse(params.include_object.as_deref()),
    };
    let store = state.registry.store().clone();
    let prefix = target.prefix();

    let send_initial = params.send_initial_events == Some(true);
    if send_initial && params.resource_version_match.as_deref() != Some("NotOlderThan") {
        return Err(ApiError::invalid_request(
            "sendInitialEvents is only supported with resourceVersionMatch=NotOlderThan",
        )
        .into());
    }
    let rv = params.resource_version.as_deref().unwrap_or("");
    let from_snapshot = send_initial || rv.is_empty() || rv == "0";

    // Everything before the live stream: synthetic ADDED events (and the WatchList bookmark).
    let mut initial: Vec<Bytes> = Vec::new();
    let start = if from_snapshot {
        let (kvs, rev) = store.list(&prefix, None).await?;
        if send_initial && !rv.is_empty() && rv != "0" {
            let want = parse_rv(rv)?.0;
            if want > rev.0 {
                return Err(ApiError::invalid_request(format!(
                    "Too large resource version: {want}, current: {}",
                    rev.0
                ))
                .into());
            }
        }
        for kv in &kvs {
            let obj = decode(kv)?;
            if filter.matches(&obj) {
                initial.push(filter.line("ADDED", obj));
            }
        }
        if send_initial {
            initial.push(filter.bookmark(rev, true));
        }
        rev
    } else {
        parse_rv(rv)?
    };

    let (tx, rx) = mpsc::channel::<std::result::Result<Bytes, Infallible>>(256);
    let stream = match store.watch(&prefix, start).await {
        Ok(s) => Some(s),
        Err(StoreError::Compacted { requested, compacted }) => {
            // Upstream reports an expired start inside a 200 stream, as an ERROR event; clients relist.
            initial.push(error_line(&ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ))));
            None
        }
        Err(StoreError::FutureRevision { requested, current }) => {
            return Err(ApiError::invalid_request(format!(
                "Too large resource version: {requested}, current: {current}"
            ))
            .into())
        }
        Err(e) => return Err(e.into()),
    };

    let timeout = match params.timeout_seconds {
        Some(s) => Duration::from_secs(s),
        None => Duration::from_secs(1800 + rand::thread_rng().gen_range(0..1800)),
    };
    let mut shutdown = state.shutdown.clone();
    let bookmarks = params.allow_bookmarks;
    tokio::spawn(async move {
        for line in initial {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let Some(mut stream) = stream else { return };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        let mut last = start;
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => {
                        last = ev.kv.mod_revision;
                        match filter.event(&ev) {
                            Ok(Some(line)) => if tx.send(Ok(line)).await.is_err() { return },
                            Ok(None) => {}
                            Err(e) => {
                                let _ = tx.send(Ok(error_line(&e.public()))).await;
                                return;
                            }
                        }
                    }
                    Some(Err(StoreError::Compacted { requested, compacted })) => {
                        let e = ApiError::expired(format!("too old resource version: {requested} ({compacted})"));
                        let _ = tx.send(Ok(error_line(&e))).await;
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watch stream failed");
                        return;
                    }
                    None => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(filter.bookmark(last, false))).await.is_err() { return }
                }
                _ = &mut deadline => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });

    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .map_err(|e| ApiError::internal(e).into())
}
