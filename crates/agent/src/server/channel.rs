//! The channel protocol that exec and attach sessions speak over their WebSocket: upstream's
//! `v5.channel.k8s.io` (kubectl 1.30 and later) and `v4.channel.k8s.io` (the Python client). The handlers in
//! [`super::exec`] and [`super::attach`] decide what the session is connected to; this module negotiates the
//! subprotocol and moves bytes between the client and the runtime's [`ExecSession`] until one side ends.
//!
//! # Messages
//! Every WebSocket message is one channel byte followed by payload. Python sends text frames where kubectl sends
//! binary ones; both are read alike.
//!
//! | channel | direction | content |
//! |---|---|---|
//! | 0 stdin | client → agent | bytes for the process's stdin |
//! | 1 stdout, 2 stderr | agent → client | the process's output (only stdout with a TTY) |
//! | 3 error | agent → client | one JSON `Status` when the session has ended |
//! | 4 resize | client → agent | `{"Width":W,"Height":H}` (TTY only) |
//! | 255 close (v5 only) | client → agent | `[255, 0]`: the client closed stdin |
//!
//! Like the kubelet, the agent first sends an empty message on the lowest channel it will write, so the client
//! knows the stream is established. When the output has ended it sends the final `Status` on channel 3 (for an
//! exec, `Success` or `NonZeroExitCode` with the code as the `ExitCode` cause, which kubectl turns into its own
//! exit code; for an attach, `Success`) and closes with code 1000, which clients read as end of all streams.
//!
//! Stdin is written by a task of its own that also does all the reading, so a process that does not read its
//! stdin can never stall its output, and pings from the client are answered (tungstenite queues the pong while
//! reading; kubectl pings every 5 s and gives up after about a minute without traffic).
//!
//! This module does not decide which container is meant (the parent module's lookup does) and keeps nothing
//! alive beyond the WebSocket: an exec'd process or an attach ends with it, a container's main process does not.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use berth_runtime::{ContainerInfo, ContainerState, ExecSession, Output};
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use super::{find_container, parse_bool, AppState, StatusError};

/// The WebSocket subprotocol of kubectl 1.30 and later: v4 plus the stream-close channel 255.
pub const V5_PROTOCOL: &str = "v5.channel.k8s.io";
/// The WebSocket subprotocol of the Python client (and kubectl before 1.30 over WebSocket).
pub const V4_PROTOCOL: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long to wait for the client to answer the closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The `{namespace}/{pod}/{container}` of an exec or attach path.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Target {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) container: String,
}

/// The WebSocket upgrade axum hands a handler, or why the request was not one.
pub(crate) type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// Which streams a session carries: the `stdin`, `stdout`, `stderr` and `tty` query parameters that exec and
/// attach share.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Streams {
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

impl Streams {
    /// Parses the stream parameters with upstream's checks; other parameters are the caller's.
    pub(crate) fn parse(query: Option<&str>) -> Result<Streams, StatusError> {
        let mut s = Streams::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "stdin" => s.stdin = parse_bool("stdin", &v)?,
                "stdout" => s.stdout = parse_bool("stdout", &v)?,
                "stderr" => s.stderr = parse_bool("stderr", &v)?,
                "tty" => s.tty = parse_bool("tty", &v)?,
                _ => {}
            }
        }
        if !(s.stdin || s.stdout || s.stderr) {
            return Err(StatusError::bad_request(
                "you must specify at least one of stdin, stdout, stderr",
            ));
        }
        // With a TTY the terminal merges the streams; upstream ignores stderr then.
        if s.tty {
            s.stderr = false;
        }
        Ok(s)
    }
}

/// What a session is connected to, which decides how a resize is applied and what the final `Status` says.
pub(crate) enum Process {
    /// A command started by exec: its exit code decides the final `Status`.
    Exec { command: Vec<String> },
    /// A container's main process: the session ends with `Success` when its output ends (the container stopped,
    /// or the client closed stdin), as the kubelet's attach does.
    Attach,
}

/// Which dialect the client speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Protocol {
    V4,
    V5,
}

/// Agrees on a subprotocol: v5 if the client offers it, else v4, else a 400.
pub(crate) fn negotiate(ws: Upgrade) -> Result<(WebSocketUpgrade, Protocol), StatusError> {
    let ws = ws.map_err(|e| StatusError::bad_request(format!("Upgrade request required: {e}")))?;
    let ws = ws.protocols([V5_PROTOCOL, V4_PROTOCOL]);
    let protocol = match ws.selected_protocol().map(|p| p.as_bytes()) {
        Some(p) if p == V5_PROTOCOL.as_bytes() => Protocol::V5,
        Some(_) => Protocol::V4,
        None => {
            return Err(StatusError::bad_request(format!(
                "no supported WebSocket subprotocol requested; berth supports {V5_PROTOCOL} and {V4_PROTOCOL}"
            )))
        }
    };
    Ok((ws, protocol))
}

/// The current container of that name, which must be running: exec and attach both need a live process.
pub(crate) async fn running_container(state: &AppState, at: &Target) -> Result<ContainerInfo, StatusError> {
    let found = find_container(state, &at.namespace, &at.pod, &at.container, false).await?;
    if !matches!(found.state, ContainerState::Running { .. }) {
        return Err(not_running(at));
    }
    Ok(found)
}

/// The kubelet's refusal for a container without a live process.
pub(crate) fn not_running(at: &Target) -> StatusError {
    let Target { pod, container, .. } = at;
    StatusError::bad_request(format!("container \"{container}\" in pod \"{pod}\" is not running"))
}

/// `POST /exec/...` and `POST /attach/...`: the SPDY transport, which berth does not speak. kubectl only tries it
/// after the WebSocket upgrade failed, and shows this message.
pub(crate) async fn spdy_refused() -> Response {
    StatusError::bad_request(format!(
        "SPDY is not supported: exec and attach need a WebSocket client speaking {V5_PROTOCOL} or {V4_PROTOCOL}"
    ))
    .into_response()
}

/// How a session ended, from the agent's side.
enum End {
    /// The output ended; the process tells the rest.
    Exited,
    /// The client closed the WebSocket or the connection broke: nobody is left to tell.
    ClientGone,
    /// Something else ended it; the message goes to the client.
    Failed(String),
}

/// Runs a session on an upgraded WebSocket until its output ends, the client leaves or the agent stops.
pub(crate) async fn run(
    socket: WebSocket,
    state: AppState,
    session: ExecSession,
    streams: Streams,
    protocol: Protocol,
    process: Process,
) {
    let ExecSession { id, mut output, input } = session;
    let (mut sink, source) = socket.split();
    // The kubelet announces the stream with an empty message on the lowest channel it writes.
    let first = if streams.stdout {
        STDOUT
    } else if streams.stderr {
        STDERR
    } else {
        ERROR
    };
    if send(&mut sink, first, &[]).await.is_err() {
        return;
    }
    let attach = matches!(process, Process::Attach);
    let mut reader = tokio::spawn(read_client(
        source,
        input,
        state.clone(),
        id.clone(),
        streams.clone(),
        protocol,
        attach,
    ));
    let stopped = state.stopped();
    tokio::pin!(stopped);
    let end = loop {
        tokio::select! {
            out = output.next() => match out {
                Some(Ok(Output::Stdout(b))) if streams.stdout => {
                    if send(&mut sink, STDOUT, &b).await.is_err() { break End::ClientGone }
                }
                Some(Ok(Output::Stderr(b))) if streams.stderr || streams.tty => {
                    let channel = if streams.tty { STDOUT } else { STDERR };
                    if send(&mut sink, channel, &b).await.is_err() { break End::ClientGone }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break End::Failed(format!("reading the output: {e}")),
                None => break End::Exited,
            },
            _ = &mut reader => break End::ClientGone,
            _ = &mut stopped => break End::Failed("the node agent is shutting down".to_string()),
        }
    };
    let status = match end {
        End::ClientGone => {
            reader.abort();
            tracing::debug!(session = %id, "exec or attach client went away");
            return;
        }
        End::Failed(message) => json!({"metadata": {}, "status": "Failure", "message": message}),
        End::Exited => match &process {
            Process::Exec { command } => super::exec::exit_status(&state, &id, command).await,
            Process::Attach => json!({"metadata": {}, "status": "Success"}),
        },
    };
    tracing::debug!(session = %id, status = %status, "exec or attach ended");
    let _ = send(&mut sink, ERROR, status.to_string().as_bytes()).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    // Let the reader see the client's answering close frame, so the closing handshake completes cleanly.
    if tokio::time::timeout(CLOSE_WAIT, &mut reader).await.is_err() {
        reader.abort();
    }
}

/// Reads the client's messages until it closes: stdin, resizes and stdin's close. Returns when the client has
/// gone (close frame, end of stream or error).
async fn read_client(
    mut source: SplitStream<WebSocket>,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    state: AppState,
    id: String,
    streams: Streams,
    protocol: Protocol,
    attach: bool,
) {
    let mut stdin_open = streams.stdin;
    while let Some(Ok(message)) = source.next().await {
        let data: Bytes = match message {
            Message::Binary(b) => b,
            // Python's client sends str data as text frames; the channel is the first character.
            Message::Text(t) => Bytes::copy_from_slice(t.as_str().as_bytes()),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            STDIN if stdin_open => {
                // A failed write means the process closed its stdin; later input has nowhere to go.
                stdin_open = input.write_all(payload).await.is_ok() && input.flush().await.is_ok();
            }
            RESIZE if streams.tty => {
                if let Some((width, height)) = parse_resize(payload) {
                    let resized = if attach {
                        state.runtime.attach_resize(&id, width, height).await
                    } else {
                        state.runtime.exec_resize(&id, width, height).await
                    };
                    if let Err(e) = resized {
                        tracing::debug!(session = %id, error = %e, "resize failed");
                    }
                }
            }
            CLOSE if protocol == Protocol::V5 && payload.first() == Some(&STDIN) && stdin_open => {
                let _ = input.shutdown().await;
                stdin_open = false;
            }
            _ => {}
        }
    }
    // Dropping `input` closes the process's stdin if it is still open (an attach's: only this attach's).
}

/// Upstream's `TerminalSize` JSON: `{"Width":W,"Height":H}`.
fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let dim = |k: &str| v.get(k).and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
    Some((dim("Width")?, dim("Height")?))
}

/// Sends one channel message.
async fn send(sink: &mut SplitSink<WebSocket, Message>, channel: u8, payload: &[u8]) -> Result<(), axum::Error> {
    let mut frame = BytesMut::with_capacity(payload.len() + 1);
    frame.put_u8(channel);
    frame.put_slice(payload);
    sink.send(Message::Binary(frame.freeze())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_parameters_parse_like_upstream() {
        let s = Streams::parse(Some("stdout=true&stderr=1&container=c&command=ls")).unwrap();
        assert_eq!(
            s,
            Streams {
                stdout: true,
                stderr: true,
                ..Default::default()
            }
        );
        let s = Streams::parse(Some("stdin=True&stdout=true&stderr=true&tty=true")).unwrap();
        assert!(s.tty && s.stdin && !s.stderr, "stderr is folded into the terminal");
        let e = Streams::parse(Some("tty=true")).unwrap_err();
        assert_eq!(e.message, "you must specify at least one of stdin, stdout, stderr");
        assert_eq!(Streams::parse(Some("stdin=yes")).unwrap_err().code, 400);
    }

    #[test]
    fn resize_messages_are_terminal_sizes() {
        assert_eq!(parse_resize(br#"{"Width":120,"Height":40}"#), Some((120, 40)));
        assert_eq!(parse_resize(b"{}"), None);
        assert_eq!(parse_resize(b"junk"), None);
    }
}
