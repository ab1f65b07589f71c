//! Checks `pods/log`, `pods/exec` and `pods/attach` through the router: upstream's refusals before any agent is dialed, and the
//! proxy itself against a stand-in agent on a TLS loopback listener (pinned certificate, token, streaming logs,
//! a spliced WebSocket).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use futures::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{router, AppState};

const TOKEN: &str = "cluster-token";

async fn state() -> (AppState, tokio::sync::watch::Sender<bool>) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let store: Arc<dyn berth_store::Store> = Arc::new(berth_store::MemoryStore::new());
    let state = AppState::new(store, "10.96.0.0/16", "127.0.0.1:6443".parse().unwrap(), rx).unwrap();
    crate::lifecycle::bootstrap(&state, 6443).await.unwrap();
    (state, stop)
}

async fn call(state: &AppState, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes))),
    )
}

async fn create_pod(state: &AppState, name: &str, containers: &[&str], node: Option<&str>) {
    let cs: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "img:1"}))
        .collect();
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": cs}});
    if let Some(n) = node {
        pod["spec"]["nodeName"] = json!(n);
    }
    let (code, body) = call(state, "POST", "/api/v1/namespaces/default/pods", pod).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

async fn set_status(state: &AppState, name: &str, status: Value) {
    let uri = format!("/api/v1/namespaces/default/pods/{name}/status");
    let (code, mut pod) = call(state, "GET", &uri, Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    pod["status"] = status;
    let (code, body) = call(state, "PUT", &uri, pod).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn discovery_lists_pods_exec_and_attach() {
    let (state, _stop) = state().await;
    let (_, list) = call(&state, "GET", "/api/v1", Value::Null).await;
    for (name, kind) in [("pods/exec", "PodExecOptions"), ("pods/attach", "PodAttachOptions")] {
        let sub = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from discovery"));
        assert_eq!(sub["kind"], kind);
        assert_eq!(sub["verbs"], json!(["create", "get"]));
    }
}

#[tokio::test]
async fn logs_exec_and_attach_refuse_what_upstream_refuses() {
    let (state, _stop) = state().await;
    let log = |pod: &str, q: &str| format!("/api/v1/namespaces/default/pods/{pod}/log{q}");
    let exec = |pod: &str, q: &str| format!("/api/v1/namespaces/default/pods/{pod}/exec?command=ls&stdout=true{q}");
    let attach = |pod: &str, q: &str| format!("/api/v1/namespaces/default/pods/{pod}/attach?stdout=true{q}");

    let (code, body) = call(&state, "GET", &log("ghost", ""), Value::Null).await;
    assert_eq!(
        (code, message(&body)),
        (StatusCode::NOT_FOUND, "pods \"ghost\" not found")
    );
    let (code, _) = call(&state, "GET", &exec("ghost", ""), Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    create_pod(&state, "two", &["a", "b"], None).await;
    let (code, body) = call(&state, "GET", &log("two", ""), Value::Null).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let (_, body) = call(&state, "GET", &log("two", "?container=x"), Value::Null).await;
    assert_eq!(message(&body), "container x is not valid for pod two");
    let (_, body) = call(&state, "GET", &exec("two", "&container=x"), Value::Null).await;
    assert_eq!(message(&body), "container x is not valid for pod two");
    let (_, body) = call(&state, "GET", &attach("two", ""), Value::Null).await;
    assert_eq!(
        message(&body),
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let (_, body) = call(&state, "GET", &attach("two", "&container=a"), Value::Null).await;
    assert_eq!(message(&body), "pod two does not have a host assigned");
    let (code, body) = call(&state, "GET", &log("two", "?container=a"), Value::Null).await;
    assert_eq!(
        (code, message(&body)),
        (StatusCode::BAD_REQUEST, "pod two does not have a host assigned")
    );
    let (_, body) = call(&state, "GET", &exec("two", "&container=a"), Value::Null).await;
    assert_eq!(message(&body), "pod two does not have a host assigned");

    create_pod(&state, "web", &["app"], Some("n1")).await;
    set_status(
        &state,
        "web",
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "img:1", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    )
    .await;
    let (code, body) = call(&state, "GET", &log("web", ""), Value::Null).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "container \"app\" in pod \"web\" is waiting to start: ContainerCreating"
    );

    // Past the pod checks, a node without an agent is unavailable rather than a client error.
    let (code, body) = call(&state, "GET", &exec("web", ""), Value::Null).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let (code, body) = call(&state, "GET", &attach("web", ""), Value::Null).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    set_status(&state, "web", json!({"phase": "Succeeded"})).await;
    let (code, body) = call(&state, "GET", &exec("web", ""), Value::Null).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "cannot exec into a container in a completed pod; current phase is Succeeded"
    );
    let (code, body) = call(&state, "POST", &attach("web", ""), Value::Null).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "cannot attach a container in a completed pod; current phase is Succeeded"
    );
}

/// A stand-in agent: TLS with a self-signed certificate, the token check, a log stream and an echoing exec.
async fn fake_agent() -> (std::net::SocketAddr, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["agent".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let sha: String = ring::digest::digest(&ring::digest::SHA256, cert.der())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let app = axum::Router::new()
        .route(
            "/containerLogs/default/web/app",
            axum::routing::get(|headers: http::HeaderMap, q: axum::extract::RawQuery| async move {
                assert_eq!(headers["authorization"], format!("Bearer {TOKEN}"));
                let lines =
                    futures::stream::iter([format!("query {}\n", q.0.unwrap_or_default()), "line\n".to_string()])
                        .map(Ok::<_, std::io::Error>);
                Body::from_stream(lines)
            }),
        )
        .route("/exec/default/web/app", axum::routing::get(echo))
        // Says which path and query it was reached by, then echoes like exec.
        .route(
            "/attach/default/web/app",
            axum::routing::get(|uri: http::Uri, ws: WebSocketUpgrade| async move {
                let heard = format!("\x01{uri}");
                ws.protocols(["v5.channel.k8s.io"]).on_upgrade(|mut socket| async move {
                    socket.send(Message::Binary(heard.into())).await.unwrap();
                    echo_on(socket).await;
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, sha)
}

/// The stand-in agent's exec: echoes each stdin message back on stdout.
async fn echo(ws: WebSocketUpgrade) -> axum::response::Response {
    ws.protocols(["v5.channel.k8s.io"]).on_upgrade(echo_on)
}

async fn echo_on(mut socket: axum::extract::ws::WebSocket) {
    while let Some(Ok(Message::Binary(b))) = socket.recv().await {
        let mut out = b.to_vec();
        out[0] = 1;
        socket.send(Message::Binary(out.into())).await.unwrap();
    }
}

async fn node_for(state: &AppState, addr: std::net::SocketAddr, sha: &str) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "annotations": {crate::proxy::CERT_ANNOTATION: sha}}});
    let (code, body) = call(state, "POST", "/api/v1/nodes", node).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (_, mut node) = call(state, "GET", "/api/v1/nodes/n1", Value::Null).await;
    node["status"] = json!({
        "addresses": [{"type": "InternalIP", "address": addr.ip().to_string()}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}},
    });
    let (code, body) = call(state, "PUT", "/api/v1/nodes/n1/status", node).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn logs_stream_from_the_pinned_agent() {
    let (mut state, _stop) = state().await;
    state.agents = crate::proxy::AgentClient::new(TOKEN);
    let (addr, sha) = fake_agent().await;
    node_for(&state, addr, &sha).await;
    create_pod(&state, "web", &["app"], Some("n1")).await;
    let (code, body) = call(
        &state,
        "GET",
        "/api/v1/namespaces/default/pods/web/log?follow=true&tailLines=2&pretty=1",
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body, json!("query follow=true&tailLines=2\nline\n"));

    // A Node advertising another certificate is not trusted.
    let (_, mut node) = call(&state, "GET", "/api/v1/nodes/n1", Value::Null).await;
    node["metadata"]["annotations"][crate::proxy::CERT_ANNOTATION] = json!("00".repeat(32));
    call(&state, "PUT", "/api/v1/nodes/n1", node).await;
    let (code, body) = call(&state, "GET", "/api/v1/namespaces/default/pods/web/log", Value::Null).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a v5 WebSocket on the API server at `path`.
async fn websocket(api: std::net::SocketAddr, path: &str) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{api}{path}").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "v5.channel.k8s.io".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(api).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    ws
}

/// The next message's bytes, within five seconds.
async fn next_message(ws: &mut Client) -> Vec<u8> {
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    msg.into_data().to_vec()
}

#[tokio::test]
async fn exec_and_attach_upgrades_are_spliced_to_the_agent() {
    let (mut state, _stop) = state().await;
    state.agents = crate::proxy::AgentClient::new(TOKEN);
    let (addr, sha) = fake_agent().await;
    node_for(&state, addr, &sha).await;
    create_pod(&state, "web", &["app"], Some("n1")).await;

    // Serve the router on a plain loopback listener, as the insecure development listener does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let app = router(state.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                    .into_owned(),
            );
        }
    });
    let ping = || tokio_tungstenite::tungstenite::Message::Binary(bytes::Bytes::from_static(b"\x00ping"));

    let mut ws = websocket(
        api,
        "/api/v1/namespaces/default/pods/web/exec?command=cat&stdin=true&stdout=true",
    )
    .await;
    ws.send(ping()).await.unwrap();
    assert_eq!(next_message(&mut ws).await, b"\x01ping");

    // Attach reaches the agent's attach path with only the attach parameters, and is spliced the same way.
    let mut ws = websocket(
        api,
        "/api/v1/namespaces/default/pods/web/attach?container=app&stdin=true&stdout=true&tty=true&command=x",
    )
    .await;
    assert_eq!(
        next_message(&mut ws).await,
        b"\x01/attach/default/web/app?stdin=true&stdout=true&tty=true"
    );
    ws.send(ping()).await.unwrap();
    assert_eq!(next_message(&mut ws).await, b"\x01ping");
}
