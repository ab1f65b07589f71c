//! `/portForward/{namespace}/{pod}`: upstream's `pods/portforward`, what `kubectl port-forward` and the Python
//! client's `portforward` use. Every forwarded connection becomes a TCP connection from the agent (on the host) to
//! the pod's IP on the bridge network, spliced byte for byte. Nothing runs inside the pod, and the agent never
//! forwards to an address other than the pod's own.
//!
//! # Three transports
//! * **SPDY/3.1 inside a WebSocket** (`GET`, subprotocol `SPDY/3.1+portforward.k8s.io`): kubectl 1.30 and later.
//!   The WebSocket's binary messages carry a SPDY byte stream; message boundaries mean nothing.
//! * **SPDY/3.1 directly** (`POST` with `Upgrade: SPDY/3.1` and `X-Stream-Protocol-Version: portforward.k8s.io`):
//!   kubectl's fallback, and what older clients speak.
//! * **The channel protocol** (`GET`, subprotocol `v4.channel.k8s.io`, `?ports=8080,8443`): the Python client.
//!   Port *i* has data channel 2i and error channel 2i+1; the agent opens each channel with the port number
//!   (`[channel, port & 0xff, port >> 8]`), as the kubelet does, then data flows as `[channel, bytes…]`. There is
//!   one connection per port per WebSocket, made when the WebSocket opens, and the WebSocket closes once every
//!   port's connection has ended.
//!
//! # A SPDY session (the kubelet's, as spdystream clients expect it)
//! For each local connection the client opens two streams carrying `streamType: error|data`, `port` and
//! `requestID`; the agent answers each with SYN_REPLY at once (kubectl waits up to 30 s for it). When both streams
//! of a request are there, the agent dials the pod and copies: client DATA to the pod, the pod's bytes back as DATA.
//! The client's FIN half-closes the pod connection; the pod's end of stream is sent as FIN on the data stream and
//! then on the error stream, which kubectl waits for before it forgets the connection. A connection that cannot
//! be made is reported on the error stream in the kubelet's words (`error forwarding port 8080 to pod …, uid : …`)
//! and both streams are closed. RST_STREAM from the client drops the connection; PINGs are echoed; GOAWAY, the end
//! of the transport or the agent's shutdown end the session and every connection in it.
//!
//! # Back-pressure
//! SPDY's flow control is not used (see `spdy.rs`): kubectl's spdystream and the kubelet's both ignore it.
//! Instead each pod connection takes at most a few frames of the client's data ahead of the pod; past that the
//! session stops reading the transport until the pod catches up, which also holds up the session's other
//! connections, as a kubelet's spdystream session does. Output to the client waits for the transport likewise.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use berth_runtime::ContainerState;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::channel::{Upgrade, V4_PROTOCOL};
use super::spdy::{self, Frame, FrameReader, FrameWriter};
use super::{AppState, StatusError};
use crate::labels;

/// The WebSocket subprotocol of kubectl 1.30 and later: SPDY tunnelled in WebSocket binary messages.
pub const SPDY_WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The `X-Stream-Protocol-Version` of port-forward over plain SPDY.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// How long dialing the pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most pod bytes put in one DATA frame or WebSocket message.
const CHUNK: usize = 32 * 1024;
/// How many frames may wait for the transport before senders wait too.
const OUTGOING_QUEUE: usize = 64;
/// How many client DATA frames may wait for one pod connection before the session's reader waits.
const INCOMING_QUEUE: usize = 16;

/// The `{namespace}/{pod}` of a port-forward path.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct PodPath {
    pub(crate) namespace: String,
    pub(crate) pod: String,
}

/// The pod a session forwards to: its address and, for error messages, its sandbox (the infra container).
#[derive(Debug, Clone)]
pub(crate) struct PodTarget {
    ip: IpAddr,
    sandbox: String,
}

impl PodTarget {
    /// Dials `port` on the pod, with upstream's message on failure.
    async fn dial(&self, port: u16) -> Result<TcpStream, String> {
        let addr = SocketAddr::new(self.ip, port);
        let error = |e: &dyn std::fmt::Display| {
            // The kubelet's format; through CRI the "pod" is the sandbox id and the uid is empty.
            format!(
                "error forwarding port {port} to pod {}, uid : dial tcp {addr}: {e}",
                self.sandbox
            )
        };
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                Ok(tcp)
            }
            // Go's wording, which is what users of upstream see (`connect: connection refused`).
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(error(&"connect: connection refused"))
            }
            Ok(Err(e)) => Err(error(&e)),
            Err(_) => Err(error(&"i/o timeout")),
        }
    }
}

/// Finds the pod's running sandbox and its address on this node.
async fn pod_target(state: &AppState, at: &PodPath) -> Result<PodTarget, StatusError> {
    let selector = BTreeMap::from([
        (labels::NODE.to_string(), state.node_name.to_string()),
        (labels::POD_NAMESPACE.to_string(), at.namespace.clone()),
        (labels::POD_NAME.to_string(), at.pod.clone()),
        (
            labels::CONTAINER_KIND.to_string(),
            labels::Kind::Infra.as_str().to_string(),
        ),
    ]);
    let mut found = state
        .runtime
        .list_containers(&selector)
        .await
        .map_err(|e| StatusError::runtime(&e))?;
    found.retain(|c| matches!(c.state, ContainerState::Running { .. }));
    found.sort_by_key(|c| c.created_at);
    let not_running = || {
        StatusError::bad_request(format!(
            "pod \"{}\" in namespace \"{}\" is not running on this node",
            at.pod, at.namespace
        ))
    };
    let sandbox = found.pop().ok_or_else(not_running)?;
    let ip = sandbox
        .ip_address
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(not_running)?;
    Ok(PodTarget {
        ip,
        sandbox: sandbox.id,
    })
}

/// `GET /portForward/{namespace}/{pod}`: a WebSocket carrying SPDY (kubectl) or the channel protocol (Python).
pub(crate) async fn websocket(
    State(state): State<AppState>,
    Path(at): Path<PodPath>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Result<Response, StatusError> {
    let ws = ws.map_err(|e| StatusError::bad_request(format!("Upgrade request required: {e}")))?;
    let ws = ws.protocols([SPDY_WEBSOCKET_PROTOCOL, V4_PROTOCOL]);
    let spdy = match ws.selected_protocol().map(|p| p.as_bytes()) {
        Some(p) if p == SPDY_WEBSOCKET_PROTOCOL.as_bytes() => true,
        Some(_) => false,
        None => {
            return Err(StatusError::bad_request(format!(
            "no supported WebSocket subprotocol requested; berth supports {SPDY_WEBSOCKET_PROTOCOL} and {V4_PROTOCOL}"
        )))
        }
    };
    let ports = if spdy {
        Vec::new()
    } else {
        parse_ports(query.as_deref())?
    };
    let target = pod_target(&state, &at).await?;
    tracing::debug!(namespace = %at.namespace, pod = %at.pod, ip = %target.ip, spdy, "port-forward started");
    Ok(ws.on_upgrade(move |socket| async move {
        if spdy {
            let (sink, source) = socket.split();
            // Everything up to a close frame or an error is SPDY bytes; pings are tungstenite's business.
            let incoming = source
                .take_while(|m| std::future::ready(matches!(m, Ok(m) if !matches!(m, Message::Close(_)))))
                .filter_map(|m| {
                    std::future::ready(match m {
                        Ok(Message::Binary(b)) => Some(b),
                        Ok(Message::Text(t)) => Some(Bytes::copy_from_slice(t.as_str().as_bytes())),
                        _ => None,
                    })
                })
                .boxed();
            let outgoing = sink.with(|b: Bytes| async move { Ok::<_, axum::Error>(Message::Binary(b)) });
            run_spdy(state, target, incoming, outgoing).await;
        } else {
            run_channels(socket, state, target, ports).await;
        }
    }))
}

/// `POST /portForward/{namespace}/{pod}` with `Upgrade: SPDY/3.1`: SPDY directly on the upgraded connection.
pub(crate) async fn spdy_upgrade(
    State(state): State<AppState>,
    Path(at): Path<PodPath>,
    mut req: Request,
) -> Result<Response, StatusError> {
    let headers = req.headers();
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !upgrade {
        return Err(StatusError::bad_request("Upgrade request required"));
    }
    let offered = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PORT_FORWARD_PROTOCOL);
    if !offered {
        return Err(StatusError::bad_request(format!(
            "unable to upgrade: unable to negotiate protocol: client supports none of [{PORT_FORWARD_PROTOCOL}]"
        )));
    }
    let target = pod_target(&state, &at).await?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tracing::debug!(namespace = %at.namespace, pod = %at.pod, ip = %target.ip, "port-forward over SPDY started");
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "port-forward upgrade failed");
                return;
            }
        };
        let (read, write) = tokio::io::split(io);
        let incoming = futures::stream::unfold(read, |mut read| async move {
            let mut buf = vec![0u8; CHUNK];
            match read.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    buf.truncate(n);
                    Some((Bytes::from(buf), read))
                }
                _ => None,
            }
        })
        .boxed();
        let outgoing = futures::sink::unfold(write, |mut write, b: Bytes| async move {
            write.write_all(&b).await?;
            write.flush().await?;
            Ok::<_, std::io::Error>(write)
        });
        run_spdy(state, target, incoming, outgoing).await;
    });
    Ok((
        http::StatusCode::SWITCHING_PROTOCOLS,
        [
            (http::header::CONNECTION, "Upgrade"),
            (http::header::UPGRADE, "SPDY/3.1"),
            (
                http::HeaderName::from_static("x-stream-protocol-version"),
                PORT_FORWARD_PROTOCOL,
            ),
        ],
    )
        .into_response())
}

/// The Python client's `ports` parameter (comma-separated, or repeated), checked as the kubelet checks it.
fn parse_ports(query: Option<&str>) -> Result<Vec<u16>, StatusError> {
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "ports" {
            continue;
        }
        for p in v.split(',') {
            match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(StatusError::bad_request(format!("invalid port \"{p}\""))),
            }
        }
    }
    if ports.is_empty() {
        return Err(StatusError::bad_request("at least one port must be specified"));
    }
    Ok(ports)
}

// ---------------------------------------------------------------------------------------------------------------
// SPDY sessions

/// One forwarded connection's streams, until both have arrived.
#[derive(Default)]
struct Pending {
    error: Option<u32>,
    data: Option<(u32, mpsc::Receiver<Option<Bytes>>)>,
    port: Option<u16>,
}

/// What the session knows about a stream it has accepted.
struct Open {
    request: String,
    /// For a data stream: where the client's bytes go (`None` is its FIN).
    to_pod: Option<mpsc::Sender<Option<Bytes>>>,
}

/// Runs a SPDY session until the client leaves, sends GOAWAY, breaks the protocol, or the agent stops.
async fn run_spdy<O>(state: AppState, target: PodTarget, mut incoming: BoxStream<'static, Bytes>, outgoing: O)
where
    O: Sink<Bytes> + Send + 'static,
{
    let (frames, mut queued) = mpsc::channel::<Frame>(OUTGOING_QUEUE);
    // One writer owns the compression context, so header blocks go out in the order they were compressed.
    let writer = tokio::spawn(async move {
        let mut outgoing = std::pin::pin!(outgoing);
        let mut encoder = FrameWriter::default();
        while let Some(frame) = queued.recv().await {
            let mut buf = BytesMut::new();
            encoder.encode(&frame, &mut buf);
            if outgoing.send(buf.freeze()).await.is_err() {
                break;
            }
        }
        let _ = outgoing.close().await;
    });
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut reader = FrameReader::default();
    let mut streams: HashMap<u32, Open> = HashMap::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut forwards: HashMap<String, JoinHandle<()>> = HashMap::new();
    let stopped = state.stopped();
    tokio::pin!(stopped);
    'session: loop {
        let bytes = tokio::select! {
            b = incoming.next() => match b { Some(b) => b, None => break },
            Some(request) = done_rx.recv() => {
                forwards.remove(&request);
                streams.retain(|_, s| s.request != request);
                continue;
            }
            _ = &mut stopped => {
                let _ = frames.send(Frame::GoAway { last_good: 0, status: 0 }).await;
                break;
            }
        };
        reader.extend(&bytes);
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward client broke the SPDY protocol");
                    let _ = frames
                        .send(Frame::GoAway {
                            last_good: 0,
                            status: spdy::PROTOCOL_ERROR,
                        })
                        .await;
                    break 'session;
                }
            };
            match frame {
                Frame::SynStream { stream_id, headers, .. } => {
                    if stream_id % 2 == 0 || streams.contains_key(&stream_id) {
                        let _ = frames
                            .send(Frame::RstStream {
                                stream_id,
                                status: spdy::PROTOCOL_ERROR,
                            })
                            .await;
                        continue;
                    }
                    let kind = spdy::header(&headers, "streamType").unwrap_or_default().to_string();
                    let request = spdy::header(&headers, "requestID").map(str::to_string);
                    let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                    let (Some(request), Some(port), "error" | "data") = (request, port, kind.as_str()) else {
                        tracing::debug!(
                            stream_id,
                            ?headers,
                            "port-forward stream without a valid type, port or request id"
                        );
                        let _ = frames
                            .send(Frame::RstStream {
                                stream_id,
                                status: spdy::REFUSED_STREAM,
                            })
                            .await;
                        continue;
                    };
                    let _ = frames
                        .send(Frame::SynReply {
                            stream_id,
                            fin: false,
                            headers: Vec::new(),
                        })
                        .await;
                    let entry = pending.entry(request.clone()).or_default();
                    entry.port = Some(port);
                    let mut to_pod = None;
                    if kind == "data" {
                        let (tx, rx) = mpsc::channel(INCOMING_QUEUE);
                        to_pod = Some(tx);
                        entry.data = Some((stream_id, rx));
                    } else {
                        entry.error = Some(stream_id);
                    }
                    streams.insert(
                        stream_id,
                        Open {
                            request: request.clone(),
                            to_pod,
                        },
                    );
                    let paired = entry.error.is_some() && entry.data.is_some();
                    if let Some(Pending {
                        error: Some(error),
                        data: Some((data, rx)),
                        port: Some(port),
                    }) = paired.then(|| pending.remove(&request)).flatten()
                    {
                        let task = forward(target.clone(), port, error, data, rx, frames.clone());
                        let done = done_tx.clone();
                        let id = request.clone();
                        forwards.insert(
                            request,
                            tokio::spawn(async move {
                                task.await;
                                let _ = done.send(id);
                            }),
                        );
                    }
                }
                Frame::Data { stream_id, fin, data } => {
                    let Some(to_pod) = streams.get(&stream_id).and_then(|s| s.to_pod.as_ref()) else {
                        continue;
                    };
                    // A pod connection that has gone away takes no more input; that is not the session's problem.
                    if !data.is_empty() {
                        let _ = to_pod.send(Some(data)).await;
                    }
                    if fin {
                        let _ = to_pod.send(None).await;
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(open) = streams.remove(&stream_id) {
                        if let Some(task) = forwards.remove(&open.request) {
                            task.abort();
                        }
                        pending.remove(&open.request);
                        streams.retain(|_, s| s.request != open.request);
                    }
                }
                // Pings from the client have odd ids; echo them. The agent sends none of its own.
                Frame::Ping { id } if id % 2 == 1 => {
                    let _ = frames.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => break 'session,
                Frame::Ping { .. }
                | Frame::SynReply { .. }
                | Frame::Headers { .. }
                | Frame::Settings { .. }
                | Frame::WindowUpdate { .. }
                | Frame::Unknown { .. } => {}
            }
        }
    }
    for task in forwards.into_values() {
        task.abort();
    }
    drop(frames);
    // The writer ends once every forward's sender is gone; give it a moment to flush the last frames.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    tracing::debug!(pod = %target.sandbox, "port-forward session ended");
}

/// One forwarded connection: dials the pod and copies both ways, then closes both streams.
async fn forward(
    target: PodTarget,
    port: u16,
    error: u32,
    data: u32,
    from_client: mpsc::Receiver<Option<Bytes>>,
    frames: mpsc::Sender<Frame>,
) {
    let fin = |stream_id| Frame::Data {
        stream_id,
        fin: true,
        data: Bytes::new(),
    };
    let tcp = match target.dial(port).await {
        Ok(tcp) => tcp,
        Err(message) => {
            tracing::debug!(%message, "port-forward dial failed");
            let _ = frames
                .send(Frame::Data {
                    stream_id: error,
                    fin: false,
                    data: Bytes::from(message),
                })
                .await;
            let _ = frames.send(fin(error)).await;
            let _ = frames.send(fin(data)).await;
            return;
        }
    };
    splice(tcp, from_client, |bytes| {
        let frame = Frame::Data {
            stream_id: data,
            fin: false,
            data: Bytes::copy_from_slice(bytes),
        };
        let frames = frames.clone();
        async move { frames.send(frame).await.is_ok() }
    })
    .await;
    let _ = frames.send(fin(data)).await;
    let _ = frames.send(fin(error)).await;
}

// ---------------------------------------------------------------------------------------------------------------
// Channel-protocol sessions (the Python client)

/// Runs the v4 channel protocol: one pod connection per requested port.
async fn run_channels(socket: WebSocket, state: AppState, target: PodTarget, ports: Vec<u16>) {
    let (mut sink, mut source) = socket.split();
    let (messages, mut queued) = mpsc::channel::<Message>(OUTGOING_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = queued.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    });
    // The kubelet opens every channel with its port number, data channel first.
    for (i, port) in ports.iter().enumerate() {
        for channel in [2 * i, 2 * i + 1] {
            let [lo, hi] = port.to_le_bytes();
            let _ = messages.send(binary(channel, &[lo, hi])).await;
        }
    }
    let mut to_pods = Vec::new();
    let mut tasks = futures::stream::FuturesUnordered::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (tx, rx) = mpsc::channel::<Option<Bytes>>(INCOMING_QUEUE);
        to_pods.push(tx);
        tasks.push(forward_channel(target.clone(), port, 2 * i, rx, messages.clone()));
    }
    drop(messages);
    let stopped = state.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            m = source.next() => {
                let data = match m {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_str().as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    // The client closed: no more input for any port, and nobody is left to read the output.
                    _ => break,
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                let channel = usize::from(channel);
                if channel % 2 == 0 && !payload.is_empty() {
                    if let Some(tx) = to_pods.get(channel / 2) {
                        let _ = tx.send(Some(data.slice(1..))).await;
                    }
                }
            }
            ended = tasks.next() => if ended.is_none() { break },
            _ = &mut stopped => break,
        }
    }
    drop(tasks);
    drop(to_pods);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    tracing::debug!(pod = %target.sandbox, "port-forward session ended");
}

/// One port of a channel-protocol session: `channel` is its data channel, `channel + 1` its error channel.
async fn forward_channel(
    target: PodTarget,
    port: u16,
    channel: usize,
    from_client: mpsc::Receiver<Option<Bytes>>,
    messages: mpsc::Sender<Message>,
) {
    let tcp = match target.dial(port).await {
        Ok(tcp) => tcp,
        Err(message) => {
            let _ = messages.send(binary(channel + 1, message.as_bytes())).await;
            return;
        }
    };
    splice(tcp, from_client, |bytes| {
        let message = binary(channel, bytes);
        let messages = messages.clone();
        async move { messages.send(message).await.is_ok() }
    })
    .await;
}

/// Copies between one pod connection and one client stream until the pod's side ends (like the kubelet: the
/// client's end of input, `None` or a closed receiver, only half-closes the connection). `send` hands a chunk of
/// the pod's output to the client and says whether the client is still there.
async fn splice<F, Fut>(tcp: TcpStream, mut from_client: mpsc::Receiver<Option<Bytes>>, mut send: F)
where
    F: FnMut(&[u8]) -> Fut,
    Fut: Future<Output = bool>,
{
    let (mut pod_read, mut pod_write) = tcp.into_split();
    let to_pod = async move {
        while let Some(Some(bytes)) = from_client.recv().await {
            if pod_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = pod_write.shutdown().await;
        // The pod may still answer; the connection ends with its side.
        futures::future::pending::<()>().await;
    };
    let to_client = async {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = pod_read.read(&mut buf).await {
            if n == 0 || !send(&buf[..n]).await {
                return;
            }
        }
    };
    tokio::select! {
        _ = to_client => {}
        _ = to_pod => {}
    }
}

/// A channel-protocol message.
fn binary(channel: usize, payload: &[u8]) -> Message {
    let mut m = BytesMut::with_capacity(payload.len() + 1);
    m.extend_from_slice(&[channel as u8]);
    m.extend_from_slice(payload);
    Message::Binary(m.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_like_the_kubelet() {
        assert_eq!(parse_ports(Some("ports=8080,8443")).unwrap(), [8080, 8443]);
        assert_eq!(parse_ports(Some("ports=80&ports=81")).unwrap(), [80, 81]);
        assert_eq!(parse_ports(Some("ports=x")).unwrap_err().message, "invalid port \"x\"");
        assert_eq!(parse_ports(Some("ports=0")).unwrap_err().code, 400);
        assert_eq!(
            parse_ports(None).unwrap_err().message,
            "at least one port must be specified"
        );
    }
}
