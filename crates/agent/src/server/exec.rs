//! `GET /exec/{namespace}/{pod}/{container}`: runs a command in a running container over a WebSocket, speaking
//! upstream's channel protocol (`v5.channel.k8s.io` as kubectl 1.35 does, and `v4.channel.k8s.io` for the Python
//! client). `POST` is the SPDY transport, which berth does not implement; it gets a 400 `Status`.
//!
//! # The channel protocol
//! Every WebSocket message is one channel byte followed by payload. Python sends text frames where kubectl sends
//! binary ones; both are read alike.
//!
//! | channel | direction | content |
//! |---|---|---|
//! | 0 stdin | client → agent | bytes for the process's stdin |
//! | 1 stdout, 2 stderr | agent → client | the process's output (only stdout with a TTY) |
//! | 3 error | agent → client | one JSON `Status` when the command has ended |
//! | 4 resize | client → agent | `{"Width":W,"Height":H}` (TTY only) |
//! | 255 close (v5 only) | client → agent | `[255, 0]`: the client closed stdin |
//!
//! Like the kubelet, the agent first sends an empty message on the lowest channel it will write, so the client
//! knows the stream is established. When the process has exited it sends the final `Status` on channel 3
//! (`Success`, or `NonZeroExitCode` with the code as the `ExitCode` cause, which kubectl turns into its own exit
//! code) and closes with code 1000, which clients read as end of all streams.
//!
//! Stdin is written by a task of its own that also does all the reading, so a process that does not read its
//! stdin can never stall its output, and pings from the client are answered (tungstenite queues the pong while
//! reading; kubectl pings every 5 s and gives up after about a minute without traffic).
//!
//! This file does not decide which container is meant (the parent module's lookup does) and does not keep exec
//! processes alive beyond their WebSocket.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use berth_runtime::{ContainerState, ExecOptions, ExecSession, Output};
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
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

/// How long to wait for the runtime to report an exit code once the output has ended.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for the client to answer the closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The exec request's parameters, parsed and checked.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ExecQuery {
    pub(crate) options: ExecOptions,
}

impl ExecQuery {
    /// Parses `command` (repeated), `stdin`, `stdout`, `stderr` and `tty` with upstream's checks.
    pub(crate) fn parse(query: Option<&str>) -> Result<ExecQuery, StatusError> {
        let mut o = ExecOptions::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "stdin" => o.stdin = parse_bool("stdin", &v)?,
                "stdout" => o.stdout = parse_bool("stdout", &v)?,
                "stderr" => o.stderr = parse_bool("stderr", &v)?,
                "tty" => o.tty = parse_bool("tty", &v)?,
                _ => {}
            }
        }
        if o.command.is_empty() {
            return Err(StatusError::bad_request("you must specify at least 1 command"));
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(StatusError::bad_request(
                "you must specify at least one of stdin, stdout, stderr",
            ));
        }
        // With a TTY the terminal merges the streams; upstream ignores stderr then.
        if o.tty {
            o.stderr = false;
        }
        Ok(ExecQuery { options: o })
    }
}

/// Which dialect the client speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    V4,
    V5,
}

/// `POST /exec/...`: the SPDY transport, which berth does not speak. kubectl only tries it after the WebSocket
/// upgrade failed, and shows this message.
pub(crate) async fn exec_spdy() -> Response {
    StatusError::bad_request(format!(
        "SPDY is not supported: exec needs a WebSocket client speaking {V5_PROTOCOL} or {V4_PROTOCOL}"
    ))
    .into_response()
}

/// Upgrades to a WebSocket and runs the command.
pub(crate) async fn exec(
    State(state): State<AppState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match start(state, &namespace, &pod, &container, query.as_deref(), ws).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn start(
    state: AppState,
    namespace: &str,
    pod: &str,
    container: &str,
    query: Option<&str>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, StatusError> {
    let q = ExecQuery::parse(query)?;
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
    let found = find_container(&state, namespace, pod, container, false).await?;
    if !matches!(found.state, ContainerState::Running { .. }) {
        return Err(StatusError::bad_request(format!(
            "container \"{container}\" in pod \"{pod}\" is not running"
        )));
    }
    let session = state
        .runtime
        .exec(&found.id, &q.options)
        .await
        .map_err(|e| StatusError::runtime(&e))?;
    tracing::debug!(%namespace, %pod, %container, exec = %session.id, command = ?q.options.command, "exec started");
    Ok(ws.on_upgrade(move |socket| run(socket, state, session, q.options, protocol)))
}

/// How a session ended, from the agent's side.
enum End {
    /// The process's output ended; its exit code tells the rest.
    Exited,
    /// The client closed the WebSocket or the connection broke: nobody is left to tell.
    ClientGone,
    /// Something else ended it; the message goes to the client.
    Failed(String),
}

async fn run(socket: WebSocket, state: AppState, session: ExecSession, options: ExecOptions, protocol: Protocol) {
    let ExecSession { id, mut output, input } = session;
    let (mut sink, source) = socket.split();
    // The kubelet announces the stream with an empty message on the lowest channel it writes.
    let first = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    if send(&mut sink, first, &[]).await.is_err() {
        return;
    }
    let mut reader = tokio::spawn(read_client(
        source,
        input,
        state.clone(),
        id.clone(),
        options.clone(),
        protocol,
    ));
    let stopped = state.stopped();
    tokio::pin!(stopped);
    let end = loop {
        tokio::select! {
            out = output.next() => match out {
                Some(Ok(Output::Stdout(b))) if options.stdout => {
                    if send(&mut sink, STDOUT, &b).await.is_err() { break End::ClientGone }
                }
                Some(Ok(Output::Stderr(b))) if options.stderr || options.tty => {
                    let channel = if options.tty { STDOUT } else { STDERR };
                    if send(&mut sink, channel, &b).await.is_err() { break End::ClientGone }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break End::Failed(format!("reading the command's output: {e}")),
                None => break End::Exited,
            },
            _ = &mut reader => break End::ClientGone,
            _ = &mut stopped => break End::Failed("the node agent is shutting down".to_string()),
        }
    };
    let status = match end {
        End::ClientGone => {
            reader.abort();
            tracing::debug!(exec = %id, "exec client went away");
            return;
        }
        End::Failed(message) => json!({"metadata": {}, "status": "Failure", "message": message}),
        End::Exited => exit_status(&state, &id, &options.command).await,
    };
    tracing::debug!(exec = %id, status = %status, "exec ended");
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

/// The final `Status` for a process whose output has ended, in upstream's shape.
async fn exit_status(state: &AppState, exec_id: &str, command: &[String]) -> Value {
    // Docker may report the exec as running for a moment after its output closed.
    let deadline = tokio::time::Instant::now() + EXIT_CODE_WAIT;
    let code = loop {
        match state.runtime.exec_exit_code(exec_id).await {
            Ok(Some(code)) => break Ok(code),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(None) => break Err("the command's exit code is not known".to_string()),
            Err(e) => break Err(format!("reading the command's exit code: {e}")),
        }
    };
    match code {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: command '{}' exited with {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({"metadata": {}, "status": "Failure", "message": message}),
    }
}

/// Reads the client's messages until it closes: stdin, resizes and stdin's close. Returns when the client has
/// gone (close frame, end of stream or error).
async fn read_client(
    mut source: SplitStream<WebSocket>,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    state: AppState,
    exec_id: String,
    options: ExecOptions,
    protocol: Protocol,
) {
    let mut stdin_open = options.stdin;
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
            RESIZE if options.tty => {
                if let Some((width, height)) = parse_resize(payload) {
                    if let Err(e) = state.runtime.exec_resize(&exec_id, width, height).await {
                        tracing::debug!(exec = %exec_id, error = %e, "exec resize failed");
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
    // Dropping `input` closes the process's stdin if it is still open.
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
    fn exec_parameters_parse_like_upstream() {
        let q = ExecQuery::parse(Some(
            "command=ls&command=-l&command=%2F&stdout=true&stderr=true&container=c",
        ))
        .unwrap();
        assert_eq!(q.options.command, ["ls", "-l", "/"]);
        assert!(q.options.stdout && q.options.stderr && !q.options.stdin && !q.options.tty);
        let q = ExecQuery::parse(Some("command=sh&stdin=true&stdout=true&stderr=true&tty=true")).unwrap();
        assert!(q.options.tty && !q.options.stderr, "stderr is folded into the terminal");
    }

    #[test]
    fn exec_needs_a_command_and_a_stream() {
        let e = ExecQuery::parse(Some("stdout=true")).unwrap_err();
        assert_eq!(e.message, "you must specify at least 1 command");
        let e = ExecQuery::parse(Some("command=ls")).unwrap_err();
        assert_eq!(e.message, "you must specify at least one of stdin, stdout, stderr");
    }

    #[test]
    fn resize_messages_are_terminal_sizes() {
        assert_eq!(parse_resize(br#"{"Width":120,"Height":40}"#), Some((120, 40)));
        assert_eq!(parse_resize(b"{}"), None);
        assert_eq!(parse_resize(b"junk"), None);
    }
}
