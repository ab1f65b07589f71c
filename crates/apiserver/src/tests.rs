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
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body)
            .unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
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
