//! The agent's own HTTPS server, the counterpart of the kubelet's port 10250: it serves container logs, exec and
//! attach sessions to the API server, which proxies `pods/log`, `pods/exec` and `pods/attach` here. It never talks
//! to the API server and never changes a container's lifecycle; it only reads logs, starts exec processes and
//! attaches to containers through the [`ContainerRuntime`].
//!
//! # How the API server reaches the agent, and why it can trust it
//!
//! Both ends are authenticated:
//! * **The agent to the API server.** At every start the agent generates a self-signed certificate
//!   ([`serving_cert`]) and publishes three facts on its Node: the certificate's SHA-256 fingerprint in the
//!   annotation [`CERT_ANNOTATION`], its port in `status.daemonEndpoints.kubeletEndpoint.Port`, and its address as
//!   the first `InternalIP` in `status.addresses`. The API server dials that address and accepts exactly the
//!   certificate with that fingerprint (a pinned verifier that still checks the handshake signature). Only a
//!   client allowed to write the Node can redirect the API server, the same trust upstream places in the Node
//!   object's addresses — upstream then skips verifying the kubelet's self-signed certificate entirely.
//! * **The API server to the agent.** Every request must carry `Authorization: Bearer <cluster token>`, compared
//!   in constant time; anything else gets a 401 `Status`. Per-node credentials and Node authorization (upstream's
//!   `system:node:<name>` identities and the NodeRestriction admission) come with RBAC; until then the one
//!   cluster token authenticates both directions.
//!
//! # Endpoints (the kubelet's paths)
//! * `GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=&sinceSeconds=&sinceTime=&limitBytes=`
//!   streams `text/plain` ([`logs`]).
//! * `GET /exec/{namespace}/{pod}/{container}?command=…&command=…&stdin=&stdout=&stderr=&tty=` upgrades to a
//!   WebSocket speaking `v5.channel.k8s.io` or `v4.channel.k8s.io` ([`exec`], over [`channel`]). `POST` (SPDY) is
//!   refused with a 400 `Status`.
//! * `GET /attach/{namespace}/{pod}/{container}?stdin=&stdout=&stderr=&tty=` upgrades the same way and connects to
//!   the container's main process ([`attach`]).
//! * `GET /portForward/{namespace}/{pod}` (WebSocket: SPDY/3.1 tunnelled for kubectl, or `v4.channel.k8s.io`
//!   with `?ports=` for Python) and `POST` (SPDY/3.1 upgrade) forward connections to the pod's IP
//!   ([`portforward`], over `spdy.rs`).
//! * `GET /healthz`.
//!
//! Errors are Kubernetes `Status` objects, so the API server can hand them to kubectl unchanged.
//!
//! # Finding the container
//! Containers are found by the labels the agent puts on them (`berth.node`, `berth.pod.namespace`,
//! `berth.pod.name`, `berth.container.name`; infra containers are skipped). The current container is the one with
//! the highest `berth.container.attempt`; `previous=true` picks the next lower attempt that still exists, which
//! is upstream's "last terminated container".
//!
//! # Shutdown
//! When the shutdown future completes the listener closes, following log streams end, exec and attach sessions
//! are closed with a final `Status`, and connections get [`DRAIN_GRACE`] to finish before they are dropped. Stopping the
//! agent never stops a container or an exec'd process's container.

pub mod attach;
pub mod channel;
pub mod exec;
pub mod logs;
pub mod portforward;
mod spdy;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_runtime::{ContainerInfo, ContainerRuntime};

use crate::labels;
use http::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use tls::{fingerprint, serving_cert, ServingCert};

pub use berth_api::meta::AGENT_CERT_ANNOTATION as CERT_ANNOTATION;

/// How long open connections may run after shutdown begins.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the agent server could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Generating the self-signed certificate failed.
    #[error("generating the serving certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The TLS configuration was rejected.
    #[error("building the TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// The listener failed.
    #[error("serving on the agent listener: {0}")]
    Io(#[source] std::io::Error),
}

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    pub(crate) node_name: Arc<str>,
    /// Flips to `true` at shutdown; streams and exec sessions end on it.
    pub(crate) stop: watch::Receiver<bool>,
}

impl AppState {
    /// Completes when shutdown begins.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }
}

/// Serves logs, exec and attach over TLS on `listener` until `shutdown` completes, with at most
/// `max_connections` open at once and `berth_serve`'s header-read and idle timeouts. Requests must carry
/// `Authorization: Bearer <token>`.
pub async fn serve(
    listener: TcpListener,
    cert: ServingCert,
    token: String,
    node_name: String,
    runtime: Arc<dyn ContainerRuntime>,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState {
        runtime,
        node_name: Arc::from(node_name),
        stop: stop_rx.clone(),
    };
    let config = berth_serve::Config {
        // HTTP/1.1 only: exec and attach are HTTP/1.1 upgrades, and the certificate offers only `http/1.1` by ALPN.
        http2: false,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        drain_grace: DRAIN_GRACE,
        max_connections,
        ..berth_serve::Config::new("agent", Some(cert.config))
    };
    let serving = berth_serve::serve(listener, router(state, Arc::from(token)), config, stop_rx);
    // One signal ends the listener, the connections, log streams and exec sessions.
    let stopping = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(serving, stopping);
    Ok(())
}

/// The agent's routes behind the token check.
fn router(state: AppState, token: Arc<str>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(exec::exec).post(channel::spdy_refused),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach::attach).post(channel::spdy_refused),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(portforward::websocket).post(portforward::spdy_upgrade),
        )
        .fallback(|| async { StatusError::not_found("the server could not find the requested resource") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(token, require_token))
}

/// Lets a request through only with the cluster token.
async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    if berth_serve::bearer_token_matches(req.headers(), &token) {
        next.run(req).await
    } else {
        StatusError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized").into_response()
    }
}

/// A request failure, answered as a Kubernetes `Status` (the API server passes it on to the client).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusError {
    pub(crate) code: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl StatusError {
    pub(crate) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        StatusError {
            code,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// A runtime failure: the message is the runtime's (kubelet passes its runtime's errors on too).
    pub(crate) fn runtime(e: &berth_runtime::RuntimeError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("Internal error occurred: {e}"),
        )
    }
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        (
            self.code,
            [(http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The pod's containers of one name, newest attempt last.
async fn attempts(
    state: &AppState,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<(u64, ContainerInfo)>, StatusError> {
    let labels = BTreeMap::from([
        (labels::NODE.to_string(), state.node_name.to_string()),
        (labels::POD_NAMESPACE.to_string(), namespace.to_string()),
        (labels::POD_NAME.to_string(), pod.to_string()),
        (labels::CONTAINER_NAME.to_string(), container.to_string()),
    ]);
    let found = state
        .runtime
        .list_containers(&labels)
        .await
        .map_err(|e| StatusError::runtime(&e))?;
    let mut attempts: Vec<(u64, ContainerInfo)> = found
        .into_iter()
        .filter(|c| c.labels.get(labels::CONTAINER_KIND).map(String::as_str) != Some(labels::Kind::Infra.as_str()))
        .map(|c| {
            let attempt = c.labels.get(labels::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0);
            (attempt, c)
        })
        .collect();
    // Creation time breaks ties, should a replaced container with the same attempt linger.
    attempts.sort_by(|(a, x), (b, y)| a.cmp(b).then(x.created_at.cmp(&y.created_at)));
    Ok(attempts)
}

/// The container a log, exec or attach request addresses: the newest attempt, or with `previous` the one before it.
pub(crate) async fn find_container(
    state: &AppState,
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<ContainerInfo, StatusError> {
    let mut attempts = attempts(state, namespace, pod, container).await?;
    let current = attempts.pop();
    if previous {
        // Upstream's kubelet answers from lastState.terminated; the next lower attempt still on the engine is
        // that container.
        return match (current, attempts.pop()) {
            (Some(_), Some((_, prev))) => Ok(prev),
            _ => Err(StatusError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ))),
        };
    }
    current
        .map(|(_, c)| c)
        .ok_or_else(|| StatusError::bad_request(format!("container \"{container}\" in pod \"{pod}\" is not available")))
}

/// Go's `strconv.ParseBool`, as upstream parses query booleans (so Python's `True` works).
pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, StatusError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(StatusError::bad_request(format!(
            "invalid value {value:?} for boolean parameter {name:?}"
        ))),
    }
}

/// Parses an integer query parameter.
pub(crate) fn parse_int(name: &str, value: &str) -> Result<i64, StatusError> {
    value
        .parse()
        .map_err(|_| StatusError::bad_request(format!("invalid value {value:?} for integer parameter {name:?}")))
}

#[cfg(test)]
mod tests;
