//! Handler tests: the router over an in-memory store, driven with `oneshot` requests. They pin the object
//! lifecycle rules (server-owned metadata, generation, spec/status split, finalizers, graceful deletion,
//! address allocation, watch starts) that end-to-end tests only see indirectly.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{router, AppState};

struct Api {
    state: AppState,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Api {
    async fn new() -> Api {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let store: Arc<dyn berth_store::Store> = Arc::new(berth_store::MemoryStore::new());
        let state = AppState::new(store, "10.96.0.0/16", "127.0.0.1:6443".parse().unwrap(), rx).unwrap();
        crate::lifecycle::bootstrap(&state, 6443).await.unwrap();
        Api { state, _stop: stop }
    }

    async fn call(&self, method: Method, uri: &str, content_type: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self.call_raw(method, uri, content_type, body.to_string()).await;
        (status, body)
    }

    /// A request with a body sent as is (`"null"` for none); the answer with its `Warning` headers.
    async fn call_raw(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, Vec<String>, Value) {
        let body = if body == "null" {
            Body::empty()
        } else {
            Body::from(body)
        };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body)
            .unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let warnings = resp
            .headers()
            .get_all(http::header::WARNING)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, warnings, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, "application/json", body).await
    }

    async fn put(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, uri, "application/json", body).await
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, "application/json", Value::Null).await
    }

    async fn merge(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, uri, "application/merge-patch+json", body)
            .await
    }

    async fn delete(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, uri, "application/json", Value::Null).await
    }

    /// Reads watch events from a streaming GET until `n` arrived or a second passed.
    async fn watch(&self, uri: &str, n: usize) -> Vec<Value> {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut stream = resp.into_body().into_data_stream();
        let mut buf = Vec::new();
        let mut events = Vec::new();
        while events.len() < n {
            match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                _ => break,
            }
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                events.push(serde_json::from_slice(&line).unwrap());
            }
        }
        events
    }
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "img:1"}]}},
        },
    })
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn create_sets_server_owned_metadata_and_ignores_client_status() {
    let api = Api::new().await;
    let mut d = deployment("web", 2);
    d["status"] = json!({"replicas": 99});
    d["metadata"]["uid"] = json!("client-chosen");
    let (code, created) = api.post(DEPLOYMENTS, d).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_ne!(created["metadata"]["uid"], "client-chosen");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert!(created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert_eq!(created["status"], json!({}));
    assert_eq!(
        created["spec"]["strategy"]["type"], "RollingUpdate",
        "defaulted like upstream"
    );
}

#[tokio::test]
async fn generation_moves_on_spec_changes_only() {
    let api = Api::new().await;
    api.post(DEPLOYMENTS, deployment("web", 1)).await;
    let (_, labelled) = api
        .merge(
            &format!("{DEPLOYMENTS}/web"),
            json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    assert_eq!(labelled["metadata"]["generation"], 1);
    let (_, scaled) = api
        .merge(&format!("{DEPLOYMENTS}/web"), json!({"spec": {"replicas": 3}}))
        .await;
    assert_eq!(scaled["metadata"]["generation"], 2);
}

#[tokio::test]
async fn put_with_a_stale_resource_version_is_a_conflict_and_changes_nothing() {
    let api = Api::new().await;
    let (_, created) = api.post(DEPLOYMENTS, deployment("web", 1)).await;
    let (_, _) = api
        .merge(&format!("{DEPLOYMENTS}/web"), json!({"spec": {"replicas": 2}}))
        .await;
    let mut stale = created.clone();
    stale["spec"]["replicas"] = json!(5);
    let (code, status) = api.put(&format!("{DEPLOYMENTS}/web"), stale).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(status["reason"], "Conflict");
    let (_, now) = api.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(now["spec"]["replicas"], 2);
}

#[tokio::test]
async fn the_main_endpoint_ignores_status_and_the_status_endpoint_ignores_spec() {
    let api = Api::new().await;
    api.post(DEPLOYMENTS, deployment("web", 1)).await;
    let (_, a) = api
        .merge(&format!("{DEPLOYMENTS}/web"), json!({"status": {"replicas": 7}}))
        .await;
    assert_eq!(a["status"].get("replicas"), None);
    let (code, b) = api
        .merge(
            &format!("{DEPLOYMENTS}/web/status"),
            json!({"spec": {"replicas": 9}, "status": {"replicas": 7}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(b["status"]["replicas"], 7);
    assert_eq!(b["spec"]["replicas"], 1);
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_removed_and_none_can_be_added() {
    let api = Api::new().await;
    let cm = json!({"metadata": {"name": "held", "finalizers": ["example.com/wait"]}, "data": {"a": "b"}});
    api.post("/api/v1/namespaces/default/configmaps", cm).await;
    let uri = "/api/v1/namespaces/default/configmaps/held";
    let (code, pending) = api.delete(uri).await;
    assert_eq!(code, StatusCode::OK);
    assert!(pending["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        api.get(uri).await.0,
        StatusCode::OK,
        "still there while a finalizer remains"
    );
    let (code, _) = api
        .merge(
            uri,
            json!({"metadata": {"finalizers": ["example.com/wait", "example.com/more"]}}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, _) = api.merge(uri, json!({"metadata": {"finalizers": null}})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        api.get(uri).await.0,
        StatusCode::NOT_FOUND,
        "gone once the last finalizer is removed"
    );
}

#[tokio::test]
async fn deleting_a_pod_bound_to_a_node_is_graceful_and_an_unbound_one_is_immediate() {
    let api = Api::new().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "img:1"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    api.post(pods, pod("bound", Some("n1"))).await;
    api.post(pods, pod("loose", None)).await;
    let (_, b) = api.delete(&format!("{pods}/bound")).await;
    assert_eq!(b["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(
        api.get(&format!("{pods}/bound")).await.0,
        StatusCode::OK,
        "the agent finishes it"
    );
    api.delete(&format!("{pods}/loose")).await;
    assert_eq!(api.get(&format!("{pods}/loose")).await.0, StatusCode::NOT_FOUND);
    // A forced delete (grace 0) of the terminating pod removes it.
    api.call(
        Method::DELETE,
        &format!("{pods}/bound?gracePeriodSeconds=0"),
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(api.get(&format!("{pods}/bound")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn services_get_distinct_cluster_ips_and_a_deleted_service_releases_its_ip() {
    let api = Api::new().await;
    let svcs = "/api/v1/namespaces/default/services";
    let svc = |name: &str, ip: Option<&str>| {
        let mut s = json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], "selector": {"app": name}}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    };
    let (_, a) = api.post(svcs, svc("a", Some("10.96.5.5"))).await;
    assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.5.5"]));
    let (_, b) = api.post(svcs, svc("b", None)).await;
    assert_ne!(b["spec"]["clusterIP"], a["spec"]["clusterIP"]);
    let (code, _) = api.post(svcs, svc("c", Some("10.96.5.5"))).await;
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an allocated IP cannot be taken twice"
    );
    api.delete(&format!("{svcs}/a")).await;
    let (code, c) = api.post(svcs, svc("c", Some("10.96.5.5"))).await;
    assert_eq!(code, StatusCode::CREATED, "{c}");
}

#[tokio::test]
async fn watch_list_sends_initial_objects_then_the_initial_events_end_bookmark_then_changes() {
    let api = Api::new().await;
    api.post(DEPLOYMENTS, deployment("one", 1)).await;
    let uri = format!(
        "{DEPLOYMENTS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    );
    let state = api.state.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let api = Api {
            state,
            _stop: tokio::sync::watch::channel(false).0,
        };
        api.post(DEPLOYMENTS, deployment("two", 1)).await;
    });
    let events = api.watch(&uri, 3).await;
    writer.await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "BOOKMARK", "ADDED"]);
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(events[2]["object"]["metadata"]["name"], "two");
}

#[tokio::test]
async fn a_watch_from_a_revision_sees_later_changes_and_selector_exits_as_deletions() {
    let api = Api::new().await;
    let (_, created) = api.post(DEPLOYMENTS, deployment("web", 1)).await;
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    api.merge(
        &format!("{DEPLOYMENTS}/web"),
        json!({"metadata": {"labels": {"tier": "a"}}}),
    )
    .await;
    api.merge(
        &format!("{DEPLOYMENTS}/web"),
        json!({"metadata": {"labels": {"tier": "b"}}}),
    )
    .await;
    let events = api
        .watch(
            &format!("{DEPLOYMENTS}?watch=true&resourceVersion={rv}&labelSelector=tier%3Da"),
            2,
        )
        .await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED"], "entering then leaving the selection");
}

// ---- hostile writes: unknown fields, patch work and object size (issue 8, hole 3) ----

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// The attack as it was sent: add an unknown root field, then copy it into itself `copies` times, each copy
/// doubling it.
fn doubling_patch(copies: usize) -> Value {
    let mut ops = vec![json!({"op": "add", "path": "/foo", "value": {"a": "x".repeat(64 * 1024)}})];
    for i in 0..copies {
        ops.push(json!({"op": "copy", "from": "/foo", "path": format!("/foo/c{i}")}));
    }
    Value::Array(ops)
}

#[tokio::test]
async fn a_json_patch_of_doubling_copies_is_refused_and_stores_nothing() {
    let api = Api::new().await;
    let (_, created) = api
        .post(CONFIGMAPS, json!({"metadata": {"name": "c"}, "data": {"k": "v"}}))
        .await;
    let (code, status) = api
        .call(
            Method::PATCH,
            &format!("{CONFIGMAPS}/c"),
            "application/json-patch+json",
            doubling_patch(21),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .ends_with("exceeding the limit 3145728"),
        "{status}"
    );
    let (_, stored) = api.get(&format!("{CONFIGMAPS}/c")).await;
    assert_eq!(stored, created);
}

#[tokio::test]
async fn unknown_fields_are_dropped_with_a_warning_refused_when_strict_and_dropped_silently_when_ignored() {
    let api = Api::new().await;
    let body = json!({"metadata": {"name": "c"}, "data": {"k": "v"}, "foo": {"bar": 1}}).to_string();

    let (code, warnings, created) = api
        .call_raw(Method::POST, CONFIGMAPS, "application/json", body.clone())
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(warnings, [r#"299 - "unknown field \"foo\"""#]);
    assert!(created.get("foo").is_none(), "{created}");
    let (_, stored) = api.get(&format!("{CONFIGMAPS}/c")).await;
    assert!(stored.get("foo").is_none(), "{stored}");
    assert_eq!(stored["data"]["k"], "v");

    let strict = format!("{CONFIGMAPS}?fieldValidation=Strict");
    let renamed = body.replace("\"c\"", "\"d\"");
    let (code, _, status) = api
        .call_raw(Method::POST, &strict, "application/json", renamed.clone())
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        status["message"],
        r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "foo""#
    );

    let ignore = format!("{CONFIGMAPS}?fieldValidation=Ignore");
    let (code, warnings, created) = api.call_raw(Method::POST, &ignore, "application/json", renamed).await;
    assert_eq!((code, warnings.len()), (StatusCode::CREATED, 0));
    assert!(created.get("foo").is_none());

    let (code, _, _) = api
        .call_raw(
            Method::POST,
            &format!("{CONFIGMAPS}?fieldValidation=Loud"),
            "application/json",
            body,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // Every patch type goes through the same rule: the doubled field of the original attack (16 copies stay
    // under the copy limit only if the field is small) never reaches the store.
    let uri = format!("{CONFIGMAPS}/c");
    let (code, warnings, patched) = api
        .call_raw(
            Method::PATCH,
            &uri,
            "application/json-patch+json",
            json!([{"op": "add", "path": "/foo", "value": 1}, {"op": "copy", "from": "/foo", "path": "/bar"}])
                .to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        warnings,
        [r#"299 - "unknown field \"bar\"""#, r#"299 - "unknown field \"foo\"""#]
    );
    assert!(
        patched.get("foo").is_none() && patched.get("bar").is_none(),
        "{patched}"
    );
    for ct in ["application/merge-patch+json", "application/strategic-merge-patch+json"] {
        let (code, warnings, patched) = api
            .call_raw(Method::PATCH, &uri, ct, json!({"spec": {"x": 1}}).to_string())
            .await;
        assert_eq!(code, StatusCode::OK, "{ct}");
        assert_eq!(warnings, [r#"299 - "unknown field \"spec\"""#], "{ct}");
        assert!(patched.get("spec").is_none(), "{ct}: {patched}");
        let (code, _, _) = api
            .call_raw(
                Method::PATCH,
                &format!("{uri}?fieldValidation=Strict"),
                ct,
                json!({"spec": {"x": 1}}).to_string(),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{ct}");
    }
    let (code, warnings, applied) = api
        .call_raw(
            Method::PATCH,
            &format!("{CONFIGMAPS}/applied"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\nextra: 1\n".to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(warnings, [r#"299 - "unknown field \"extra\"""#]);
    assert!(applied.get("extra").is_none());
}

/// A Deployment whose container carries `args` of `bytes` bytes in total: a field nothing else bounds.
fn deployment_with_args(name: &str, bytes: usize) -> Value {
    let mut d = deployment(name, 1);
    let chunk = 256 * 1024;
    let args: Vec<String> = (0..bytes.div_ceil(chunk)).map(|_| "a".repeat(chunk)).collect();
    d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(args);
    d
}

#[tokio::test]
async fn no_write_path_stores_an_object_over_the_size_limit() {
    let api = Api::new().await;
    let too_big = crate::registry::MAX_OBJECT_BYTES + 1;

    // Create (and a dry run of it).
    for uri in [DEPLOYMENTS.to_string(), format!("{DEPLOYMENTS}?dryRun=All")] {
        let (code, status) = api.post(&uri, deployment_with_args("big", too_big)).await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {status}");
        assert_eq!(status["reason"], "RequestEntityTooLarge");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("Request entity too large: the Deployment \"big\" would be stored as "),
            "{status}"
        );
    }
    let (code, _) = api.post(DEPLOYMENTS, deployment_with_args("web", 1024 * 1024)).await;
    assert_eq!(code, StatusCode::CREATED, "a 1 MiB object is fine");
    let uri = format!("{DEPLOYMENTS}/web");
    let (_, before) = api.get(&uri).await;

    // Update, each patch type and apply: each adds 768 KiB to the 1 MiB object.
    let more = "b".repeat(768 * 1024);
    let mut put = before.clone();
    put["metadata"]["annotations"] = json!({"x": "y"});
    put["spec"]["template"]["spec"]["containers"][0]["command"] = json!([more]);
    let (code, _) = api.put(&uri, put).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "update");
    let add_command = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "command": [more]}]}}}});
    for (ct, doc) in [
        (
            "application/json-patch+json",
            json!([{"op": "add", "path": "/spec/template/spec/containers/0/command", "value": [more]}]),
        ),
        (
            "application/merge-patch+json",
            json!({"spec": {"template": {"metadata": {"annotations": {"x": more}}}}}),
        ),
        ("application/strategic-merge-patch+json", add_command.clone()),
    ] {
        let (code, status) = api.call(Method::PATCH, &uri, ct, doc).await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{ct}: {status}");
    }
    let mut apply = deployment("web", 1);
    apply["spec"]["template"]["spec"]["containers"][0]["command"] = json!([more]);
    let (code, _) = api
        .call(Method::PATCH, &uri, "application/apply-patch+yaml", apply)
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "apply");

    // Status: a condition message big enough to take the object over the limit.
    let mut status_put = before.clone();
    status_put["status"] = json!({"conditions": [{"type": "Available", "status": "True", "message": more}]});
    let (code, _) = api.put(&format!("{uri}/status"), status_put).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "status");

    // Nothing changed; scale, which adds nothing, still works on the 1 MiB object.
    let (_, after) = api.get(&uri).await;
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    let (code, _) = api
        .merge(&format!("{uri}/scale"), json!({"spec": {"replicas": 2}}))
        .await;
    assert_eq!(code, StatusCode::OK, "scale");
}

#[tokio::test]
async fn an_aliased_yaml_body_is_refused_quickly_on_create_and_apply() {
    let api = Api::new().await;
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a: &big {}\n  b: [",
        "x".repeat(1024 * 1024)
    );
    yaml.push_str(&vec!["*big"; 2000].join(","));
    yaml.push_str("]\n");
    for (method, uri, ct) in [
        (Method::POST, CONFIGMAPS.to_string(), "application/yaml"),
        (
            Method::PATCH,
            format!("{CONFIGMAPS}/bomb"),
            "application/apply-patch+yaml",
        ),
    ] {
        let (code, _, status) = api.call_raw(method, &uri, ct, yaml.clone()).await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{ct}: {status}");
    }
}

fn bound_pod(name: &str, grace: Option<i64>) -> Value {
    let mut p = json!({
        "metadata": {"name": name},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "img:1"}]},
    });
    if let Some(g) = grace {
        p["spec"]["terminationGracePeriodSeconds"] = json!(g);
    }
    p
}

#[tokio::test]
async fn huge_and_negative_grace_periods_are_clamped_not_panics() {
    let api = Api::new().await;
    let pods = "/api/v1/namespaces/default/pods";
    api.post(pods, bound_pod("huge", None)).await;
    // i64::MAX seconds from now overflowed the timestamp arithmetic: the connection was reset.
    let (code, marked) = api
        .call(
            Method::DELETE,
            &format!("{pods}/huge?gracePeriodSeconds=9223372036854775807"),
            "application/json",
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{marked}");
    assert_eq!(marked["metadata"]["deletionTimestamp"], "9999-12-30T00:00:00Z");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], i64::MAX);
    // Beyond int64 is not a number the API takes.
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{pods}/huge?gracePeriodSeconds=9223372036854775808"),
            "application/json",
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // Upstream treats a negative grace period as one second, requested or stored.
    let (_, created) = api.post(pods, bound_pod("negative", Some(-1))).await;
    assert_eq!(created["spec"]["terminationGracePeriodSeconds"], 1, "{created}");
    let (_, marked) = api.delete(&format!("{pods}/negative")).await;
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 1);
    api.post(pods, bound_pod("asked", None)).await;
    let (_, marked) = api
        .call(
            Method::DELETE,
            &format!("{pods}/asked?gracePeriodSeconds=-5"),
            "application/json",
            Value::Null,
        )
        .await;
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 1, "{marked}");
}

#[tokio::test]
async fn a_pod_with_a_huge_grace_period_does_not_stop_namespace_deletion() {
    let api = Api::new().await;
    for ns in ["huge", "plain"] {
        api.post("/api/v1/namespaces", json!({"metadata": {"name": ns}})).await;
    }
    let (code, _) = api
        .post("/api/v1/namespaces/huge/pods", bound_pod("p", Some(i64::MAX)))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    api.post(
        "/api/v1/namespaces/plain/configmaps",
        json!({"metadata": {"name": "cm"}}),
    )
    .await;
    api.delete("/api/v1/namespaces/huge").await;
    api.delete("/api/v1/namespaces/plain").await;

    // One pass: the huge-grace pod is marked (its agent finishes it), and the other namespace goes regardless.
    assert!(
        crate::lifecycle::finalize_namespaces(&api.state).await,
        "huge still waits for its pod"
    );
    assert_eq!(api.get("/api/v1/namespaces/plain").await.0, StatusCode::NOT_FOUND);
    let (_, pod) = api.get("/api/v1/namespaces/huge/pods/p").await;
    assert_eq!(pod["metadata"]["deletionTimestamp"], "9999-12-30T00:00:00Z", "{pod}");

    // The agent stopped the containers and deletes the pod with grace 0: the namespace finishes.
    api.call(
        Method::DELETE,
        "/api/v1/namespaces/huge/pods/p?gracePeriodSeconds=0",
        "application/json",
        Value::Null,
    )
    .await;
    assert!(!crate::lifecycle::finalize_namespaces(&api.state).await);
    assert_eq!(api.get("/api/v1/namespaces/huge").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn client_numbers_past_their_range_are_refused() {
    let api = Api::new().await;
    // An int32 field past its range is a decoding error (400), as in upstream's typed decoding.
    let mut p = bound_pod("i32", None);
    p["spec"]["containers"][0]["livenessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 9_999_999_999_i64});
    let (code, _) = api.post("/api/v1/namespaces/default/pods", p).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // activeDeadlineSeconds is an int64 that upstream bounds to int32's range.
    let mut p = bound_pod("ads", None);
    p["spec"]["activeDeadlineSeconds"] = json!(9_999_999_999_i64);
    let (code, body) = api.post("/api/v1/namespaces/default/pods", p).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("must be between 1 and 2147483647, inclusive"),
        "{body}"
    );
}
