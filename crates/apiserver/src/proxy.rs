//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: upstream's checks on the Pod, then a proxy to the
//! node agent that runs it. The
//! API server holds no logs and runs no processes; it only decides whether a request makes sense, finds the
//! agent, and passes bytes through.
//!
//! # Reaching the agent
//! The agent publishes on its Node the SHA-256 fingerprint of its self-signed serving certificate (annotation
//! [`CERT_ANNOTATION`]), its port (`status.daemonEndpoints.kubeletEndpoint.Port`) and its address (the first
//! `InternalIP` in `status.addresses`). [`AgentClient`] dials that address over TLS, accepts exactly the
//! certificate with that fingerprint ([`PinnedCert`]: the name and the chain are not checked, the handshake
//! signature is), and presents the cluster token as a bearer token, which is the only credential the agent
//! accepts. Upstream's API server dials the kubelet the same way but by default does not verify the kubelet's
//! certificate at all; pinning closes that gap without a CA for agents. Per-node credentials come with RBAC.
//!
//! # Logs
//! The agent's `text/plain` body is streamed through as it arrives, so `kubectl logs -f` follows.
//!
//! # Exec and attach
//! Both are the same to the API server; only the agent's path and the parameters differ. A WebSocket upgrade is
//! forwarded to the agent with the client's `Sec-WebSocket-*` headers. If the agent
//! answers 101, the client gets 101 with the agent's `Sec-WebSocket-Accept` and `Sec-WebSocket-Protocol`, and the
//! two upgraded connections are spliced: the channel protocol is spoken end to end by kubectl and the agent. Any
//! other answer (a `Status`) is passed on, so kubectl reports the agent's reason. SPDY (`POST` with
//! `Upgrade: SPDY/3.1`) is not implemented; kubectl only falls back to it when the WebSocket upgrade fails, and
//! then shows the reason (after the same checks, so the message is the useful one).
//!
//! # Port-forward
//! `pods/portforward` goes to the agent's `/portForward/{namespace}/{pod}` the same way, with one difference:
//! the SPDY fallback is served. kubectl's `GET` WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`) and the
//! Python client's (`v4.channel.k8s.io`, with `?ports=`) are forwarded as above; a `POST` with
//! `Upgrade: SPDY/3.1` is forwarded as that upgrade, with its `X-Stream-Protocol-Version` headers, and the agent's
//! 101 (with the chosen version) is passed back before the connections are spliced. There is no container to
//! choose, so no container checks; kubectl itself refuses a pod that is not `Running`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use berth_api::{meta, resources, ApiError};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::{json_response, Error, Result};
use crate::AppState;

pub use berth_api::meta::AGENT_CERT_ANNOTATION as CERT_ANNOTATION;

/// How long dialing and the TLS handshake with an agent may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest error body read from an agent.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The log parameters passed on to the agent (upstream's `PodLogOptions`).
const LOG_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "timestamps",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// The exec parameters passed on to the agent (upstream's `PodExecOptions` minus `container`, which is in the path).
const EXEC_PARAMS: &[&str] = &["command", "stdin", "stdout", "stderr", "tty"];

/// The attach parameters passed on to the agent (upstream's `PodAttachOptions` minus `container`).
const ATTACH_PARAMS: &[&str] = &["stdin", "stdout", "stderr", "tty"];

/// The port-forward parameters passed on to the agent (upstream's `PodPortForwardOptions`).
const PORT_FORWARD_PARAMS: &[&str] = &["ports"];

/// The WebSocket handshake headers forwarded to the agent.
const WS_REQUEST_HEADERS: &[&str] = &["sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol"];

/// The SPDY upgrade's negotiation header, forwarded to the agent and back.
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Dials node agents with the cluster token. Cheap to clone.
#[derive(Clone)]
pub struct AgentClient {
    token: Option<Arc<str>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("configured", &self.token.is_some())
            .finish()
    }
}

impl AgentClient {
    /// A client presenting `token` (the cluster token agents accept).
    pub fn new(token: &str) -> AgentClient {
        AgentClient {
            token: Some(Arc::from(token)),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// A client without credentials: every proxied request fails with 503. Handler tests that never reach an
    /// agent use it.
    pub fn disabled() -> AgentClient {
        AgentClient {
            token: None,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// Opens an HTTP/1.1 connection (with upgrades) to the agent and returns its request sender.
    async fn connect(&self, agent: &AgentEndpoint) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::unavailable(format!(
                "unable to reach the node agent of node \"{}\" at {}: {e}",
                agent.node, agent.addr
            ))
        };
        if self.token.is_none() {
            return Err(ApiError::unavailable("the API server has no credentials for node agents").into());
        }
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ApiError::internal)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert {
                sha256: agent.sha256.clone(),
                provider: self.provider.clone(),
            }))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(agent.addr)
                .await
                .map_err(|e| unreachable(&e))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::IpAddress(agent.addr.ip().into());
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(&e))
        };
        let tls = tokio::time::timeout(DIAL_TIMEOUT, dial)
            .await
            .map_err(|_| unreachable(&"timed out"))??;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "node agent connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `req` to the agent.
    async fn send(
        &self,
        agent: &AgentEndpoint,
        mut req: http::Request<Empty<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>> {
        let mut sender = self.connect(agent).await?;
        let token = self.token.as_deref().unwrap_or_default();
        let headers = req.headers_mut();
        headers.insert(http::header::HOST, header(&agent.addr.to_string())?);
        headers.insert(http::header::AUTHORIZATION, header(&format!("Bearer {token}"))?);
        sender.send_request(req).await.map_err(|e| {
            ApiError::unavailable(format!(
                "the node agent of node \"{}\" failed the request: {e}",
                agent.node
            ))
            .into()
        })
    }
}

fn header(v: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(v).map_err(|e| ApiError::internal(e).into())
}

/// Where a node's agent listens and which certificate it serves, read from the Node object.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEndpoint {
    /// The Node's name.
    pub node: String,
    /// The first `InternalIP` and the kubelet endpoint port.
    pub addr: SocketAddr,
    /// The SHA-256 of the agent's certificate (DER).
    pub sha256: Vec<u8>,
}

impl AgentEndpoint {
    /// Reads the annotation, port and address the agent publishes on its Node.
    pub fn from_node(node: &Value) -> Result<AgentEndpoint, ApiError> {
        let name = meta::name(node).to_string();
        let missing = |what: &str| {
            ApiError::unavailable(format!(
                "node \"{name}\" does not publish its agent's {what}; is its agent running?"
            ))
        };
        let sha256 = node
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CERT_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(decode_hex)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| missing("certificate fingerprint"))?;
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| missing("port"))?;
        let ip = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
            .find_map(|a| a.get("address").and_then(Value::as_str)?.parse::<IpAddr>().ok())
            .ok_or_else(|| missing("InternalIP address"))?;
        Ok(AgentEndpoint {
            node: name,
            addr: SocketAddr::new(ip, port),
            sha256,
        })
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// Accepts exactly one certificate, by its SHA-256, and verifies the handshake signature with it. Names, chains
/// and validity dates are deliberately not checked: the pin is the whole trust decision.
#[derive(Debug)]
pub struct PinnedCert {
    sha256: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        // The fingerprint is public, so an ordinary comparison is fine.
        if got.as_ref() == self.sha256.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the node agent's certificate does not match the fingerprint on its Node".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The Pod checks, as upstream's pod registry (`LogLocation`, `ExecLocation`) and kubelet make them.

/// Every container name of a pod in upstream's visiting order: init containers, containers, ephemeral ones.
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect()
}

/// The container a request means: the requested one if the pod has it, else the only app container.
fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = meta::name(pod);
    if let Some(c) = requested.filter(|c| !c.is_empty()) {
        if container_names(pod).contains(&c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    let apps = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    match apps {
        1 => Ok(pod
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()),
        0 => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// The node a pod runs on; upstream refuses to proxy for a pod not yet scheduled.
fn node_name(pod: &Value) -> Result<&str, ApiError> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {} does not have a host assigned", meta::name(pod))))
}

/// The kubelet's check before reading current logs: a container that never ran has none. A container without a
/// status yet is left to the agent, which knows better than a status not yet written.
fn check_log_status(pod: &Value, container: &str) -> Result<(), ApiError> {
    let status = [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| pod.pointer(&format!("/status/{k}")).and_then(Value::as_array))
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(status) = status else { return Ok(()) };
    let ran = status.pointer("/state/running").is_some()
        || status.pointer("/state/terminated").is_some()
        || status.pointer("/lastState/terminated").is_some();
    let Some(waiting) = status.pointer("/state/waiting").filter(|_| !ran) else {
        return Ok(());
    };
    let pod_name = meta::name(pod);
    let why = match waiting.get("reason").and_then(Value::as_str).unwrap_or_default() {
        "ErrImagePull" => "image can't be pulled".to_string(),
        "ImagePullBackOff" => "trying and failing to pull image".to_string(),
        other => other.to_string(),
    };
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {why}"
    )))
}

/// Picks the parameters in `keep` from a raw query string, re-encoded.
fn forward_query(query: Option<&str>, keep: &[&str]) -> (String, Option<String>) {
    let mut container = None;
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "container" {
            container = Some(v.into_owned());
        } else if keep.contains(&k.as_ref()) {
            out.append_pair(&k, &v);
        }
    }
    (out.finish(), container)
}

fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The pod and the container a request means, checked as upstream checks them.
async fn pod_and_container(
    state: &AppState,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
) -> Result<(Value, String)> {
    let pods = resources::by_plural("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = state.registry.get(pods, Some(namespace), pod_name).await?;
    let container = choose_container(&pod, container)?;
    node_name(&pod)?;
    Ok((pod, container))
}

/// The agent of the node a (scheduled) pod runs on.
async fn agent_for(state: &AppState, pod: &Value) -> Result<AgentEndpoint> {
    let nodes = resources::by_plural("", "v1", "nodes").ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let node = node_name(pod)?;
    match state.registry.get(nodes, None, node).await {
        Ok(n) => Ok(AgentEndpoint::from_node(&n)?),
        Err(Error(e)) if e.code == 404 => {
            Err(ApiError::unavailable(format!("node \"{node}\" of pod {} does not exist", meta::name(pod))).into())
        }
        Err(e) => Err(e),
    }
}

/// Turns an agent's non-success answer into ours: its `Status` when it sent one. An agent refusing our token is
/// our problem, not the client's, so it is not passed on as a 401 (kubectl would ask the user to log in).
async fn agent_error(agent: &AgentEndpoint, resp: Response<hyper::body::Incoming>) -> Result<Response> {
    let code = resp.status();
    if code == StatusCode::UNAUTHORIZED || code == StatusCode::FORBIDDEN {
        return Err(ApiError::unavailable(format!(
            "the node agent of node \"{}\" rejected the API server's credentials",
            agent.node
        ))
        .into());
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY)
        .collect()
        .await;
    let status: Option<Value> = body
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b.to_bytes()).ok())
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("Status"));
    match status {
        Some(s) => Ok(json_response(code, &s)),
        None => Err(ApiError::unavailable(format!("the node agent of node \"{}\" answered {code}", agent.node)).into()),
    }
}

/// `GET pods/{name}/log`.
pub async fn log(state: &AppState, namespace: &str, name: &str, query: Option<&str>) -> Result<Response> {
    let (params, container) = forward_query(query, LOG_PARAMS);
    let (pod, container) = pod_and_container(state, namespace, name, container.as_deref()).await?;
    let previous = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "previous" && crate::query::parse_bool("previous", &v).unwrap_or(false));
    if !previous {
        check_log_status(&pod, &container)?;
    }
    let agent = agent_for(state, &pod).await?;
    let path = format!(
        "/containerLogs/{}/{}/{}?{params}",
        segment(namespace),
        segment(name),
        segment(&container)
    );
    let req = http::Request::get(path)
        .body(Empty::new())
        .map_err(ApiError::internal)?;
    let resp = state.agents.send(&agent, req).await?;
    if resp.status() != StatusCode::OK {
        return agent_error(&agent, resp).await;
    }
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/plain"));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::new(resp.into_body()))
        .map_err(|e| ApiError::internal(e).into())
}

/// A streaming session the API server proxies to an agent as a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Session {
    /// `pods/exec`: a new process in the container.
    Exec,
    /// `pods/attach`: the container's own main process.
    Attach,
}

impl Session {
    /// The agent's path segment, which is also the subresource's name.
    fn verb(self) -> &'static str {
        match self {
            Session::Exec => "exec",
            Session::Attach => "attach",
        }
    }

    fn params(self) -> &'static [&'static str] {
        match self {
            Session::Exec => EXEC_PARAMS,
            Session::Attach => ATTACH_PARAMS,
        }
    }

    /// kubectl's refusal for a pod whose containers have all finished, in its words.
    fn completed(self, phase: &str) -> String {
        match self {
            Session::Exec => format!("cannot exec into a container in a completed pod; current phase is {phase}"),
            Session::Attach => format!("cannot attach a container in a completed pod; current phase is {phase}"),
        }
    }
}

/// `GET` (WebSocket) or `POST` (SPDY) `pods/{name}/exec` or `pods/{name}/attach`.
#[allow(clippy::too_many_arguments)]
pub async fn stream(
    state: &AppState,
    session: Session,
    namespace: &str,
    name: &str,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response> {
    let (params, container) = forward_query(query, session.params());
    let (pod, container) = pod_and_container(state, namespace, name, container.as_deref()).await?;
    // kubectl refuses this itself; the Python client does not, so the server says it too, in kubectl's words.
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(session.completed(phase)).into());
    }
    let agent = agent_for(state, &pod).await?;
    if method != Method::GET {
        return Err(ApiError::bad_request(
            "SPDY is not supported by berth: use a client that speaks WebSocket (v5.channel.k8s.io or v4.channel.k8s.io), such as kubectl 1.30 or later",
        )
        .into());
    }
    let path = format!(
        "/{}/{}/{}/{}?{params}",
        session.verb(),
        segment(namespace),
        segment(name),
        segment(&container)
    );
    upgrade_to_agent(state, &agent, &path, method, headers, client_upgrade).await
}

/// `GET` (WebSocket) or `POST` (SPDY) `pods/{name}/portforward`.
pub async fn port_forward(
    state: &AppState,
    namespace: &str,
    name: &str,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response> {
    let (params, _) = forward_query(query, PORT_FORWARD_PARAMS);
    let pods = resources::by_plural("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = state.registry.get(pods, Some(namespace), name).await?;
    node_name(&pod)?;
    let agent = agent_for(state, &pod).await?;
    let path = format!("/portForward/{}/{}?{params}", segment(namespace), segment(name));
    upgrade_to_agent(state, &agent, &path, method, headers, client_upgrade).await
}

/// Forwards the client's upgrade request (a WebSocket `GET`, or a SPDY `POST` where the caller allows it) to the
/// agent, answers the client with the agent's 101, and splices the two upgraded connections.
async fn upgrade_to_agent(
    state: &AppState,
    agent: &AgentEndpoint,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response> {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (websocket, spdy) = (
        upgrade.eq_ignore_ascii_case("websocket") && method == Method::GET,
        upgrade.eq_ignore_ascii_case("SPDY/3.1") && method == Method::POST,
    );
    let Some(client_upgrade) = client_upgrade.filter(|_| websocket || spdy) else {
        return Err(ApiError::bad_request("Upgrade request required").into());
    };
    let mut req = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, if websocket { "websocket" } else { "SPDY/3.1" })
        .body(Empty::new())
        .map_err(ApiError::internal)?;
    let forwarded: &[&str] = if websocket {
        WS_REQUEST_HEADERS
    } else {
        &[STREAM_PROTOCOL_HEADER]
    };
    for h in forwarded {
        for v in headers.get_all(*h) {
            req.headers_mut().append(*h, v.clone());
        }
    }
    let resp = state.agents.send(agent, req).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return agent_error(agent, resp).await;
    }
    let mut answer = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade");
    for h in [
        http::header::UPGRADE,
        http::header::SEC_WEBSOCKET_ACCEPT,
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderName::from_static(STREAM_PROTOCOL_HEADER),
    ] {
        if let Some(v) = resp.headers().get(&h) {
            answer = answer.header(h, v.clone());
        }
    }
    let agent_upgrade = hyper::upgrade::on(resp);
    let node = agent.node.clone();
    tokio::spawn(async move {
        let (client, agent) = match tokio::join!(client_upgrade, agent_upgrade) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::debug!(%node, client = ?c.err(), agent = ?a.err(), "upgrade to the node agent failed");
                return;
            }
        };
        splice(TokioIo::new(client), TokioIo::new(agent)).await;
    });
    answer.body(Body::empty()).map_err(|e| ApiError::internal(e).into())
}

/// Copies bytes both ways until both sides are done, then flushes and shuts both down. A side that ends with
/// an error (an agent dropping TLS without `close_notify`, say) still gets everything read before it delivered:
/// the flush after the copy pushes out what the copy wrote but had not flushed.
async fn splice<A, B>(mut client: A, mut agent: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
        tracing::debug!(error = %e, "exec or attach stream ended with an error");
    }
    let _ = client.flush().await;
    let _ = client.shutdown().await;
    let _ = agent.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(init: &[&str], apps: &[&str]) -> Value {
        let names = |n: &[&str]| n.iter().map(|c| json!({"name": c, "image": "i"})).collect::<Vec<_>>();
        json!({"metadata": {"name": "p"}, "spec": {"initContainers": names(init), "containers": names(apps)}})
    }

    #[test]
    fn containers_are_chosen_like_upstream() {
        assert_eq!(choose_container(&pod(&[], &["a"]), None).unwrap(), "a");
        assert_eq!(choose_container(&pod(&["i"], &["a", "b"]), Some("i")).unwrap(), "i");
        assert_eq!(
            choose_container(&pod(&["i"], &["a", "b"]), None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [i a b]"
        );
        assert_eq!(
            choose_container(&pod(&[], &["a"]), Some("x")).unwrap_err().message,
            "container x is not valid for pod p"
        );
    }

    #[test]
    fn waiting_containers_have_no_logs() {
        let mut p = pod(&[], &["a"]);
        p["status"] =
            json!({"containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]});
        assert_eq!(
            check_log_status(&p, "a").unwrap_err().message,
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = json!("ImagePullBackOff");
        assert!(check_log_status(&p, "a")
            .unwrap_err()
            .message
            .ends_with("trying and failing to pull image"));
        // A crash-looping container waits too, but its last run has logs.
        p["status"]["containerStatuses"][0]["lastState"] = json!({"terminated": {"exitCode": 1}});
        assert!(check_log_status(&p, "a").is_ok());
        assert!(check_log_status(&pod(&[], &["a"]), "a").is_ok());
    }

    #[test]
    fn agent_endpoints_come_from_the_node() {
        let sha = "ab".repeat(32);
        let node = json!({
            "metadata": {"name": "n1", "annotations": {CERT_ANNOTATION: sha}},
            "status": {
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.7"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            },
        });
        let ep = AgentEndpoint::from_node(&node).unwrap();
        assert_eq!(ep.addr, "10.0.0.7:10250".parse().unwrap());
        assert_eq!(ep.sha256, vec![0xab; 32]);
        let mut bare = node.clone();
        bare["metadata"]["annotations"] = json!({});
        assert_eq!(AgentEndpoint::from_node(&bare).unwrap_err().code, 503);
        let mut portless = node;
        portless["status"]["daemonEndpoints"] = json!({});
        assert_eq!(AgentEndpoint::from_node(&portless).unwrap_err().code, 503);
    }

    #[test]
    fn only_known_parameters_are_forwarded() {
        let (q, c) = forward_query(
            Some("command=ls&command=-l&container=c&stdout=true&pretty=1"),
            EXEC_PARAMS,
        );
        assert_eq!(q, "command=ls&command=-l&stdout=true");
        assert_eq!(c.as_deref(), Some("c"));
        let (q, c) = forward_query(
            Some("stdin=true&command=ls&stdout=1&tty=true&container=c"),
            ATTACH_PARAMS,
        );
        assert_eq!(q, "stdin=true&stdout=1&tty=true");
        assert_eq!(c.as_deref(), Some("c"));
    }
}

#[cfg(test)]
mod handler_tests;
