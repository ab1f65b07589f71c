//! `GET /exec/{namespace}/{pod}/{container}`: runs a command in a running container over a WebSocket speaking
//! upstream's channel protocol ([`super::channel`]). `POST` is the SPDY transport, which berth does not implement;
//! it gets a 400 `Status`.
//!
//! What is exec's own: the `command` parameter, starting the process through the runtime, and the final `Status`
//! from its exit code (`NonZeroExitCode` with the code as the `ExitCode` cause, which kubectl turns into its own
//! exit code). The process ends with its WebSocket; exec never keeps anything running after the client leaves.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use berth_runtime::ExecOptions;
use serde_json::{json, Value};

use super::channel::{self, Process, Streams, Target, Upgrade};
use super::{AppState, StatusError};

/// How long to wait for the runtime to report an exit code once the output has ended.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(2);

/// The exec request's parameters, parsed and checked.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ExecQuery {
    pub(crate) command: Vec<String>,
    pub(crate) streams: Streams,
}

impl ExecQuery {
    /// Parses `command` (repeated) and the stream parameters with upstream's checks.
    pub(crate) fn parse(query: Option<&str>) -> Result<ExecQuery, StatusError> {
        let command: Vec<String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.into_owned())
            .collect();
        if command.is_empty() {
            return Err(StatusError::bad_request("you must specify at least 1 command"));
        }
        Ok(ExecQuery {
            command,
            streams: Streams::parse(query)?,
        })
    }

    fn options(&self) -> ExecOptions {
        ExecOptions {
            command: self.command.clone(),
            stdin: self.streams.stdin,
            stdout: self.streams.stdout,
            stderr: self.streams.stderr,
            tty: self.streams.tty,
        }
    }
}

/// Upgrades to a WebSocket and runs the command.
pub(crate) async fn exec(
    State(state): State<AppState>,
    Path(at): Path<Target>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Result<Response, StatusError> {
    let q = ExecQuery::parse(query.as_deref())?;
    let (ws, protocol) = channel::negotiate(ws)?;
    let found = channel::running_container(&state, &at).await?;
    let session = state
        .runtime
        .exec(&found.id, &q.options())
        .await
        .map_err(|e| StatusError::runtime(&e))?;
    tracing::debug!(namespace = %at.namespace, pod = %at.pod, container = %at.container, exec = %session.id,
        command = ?q.command, "exec started");
    let process = Process::Exec { command: q.command };
    Ok(ws.on_upgrade(move |socket| channel::run(socket, state, session, q.streams, protocol, process)))
}

/// The final `Status` for a process whose output has ended, in upstream's shape.
pub(crate) async fn exit_status(state: &AppState, exec_id: &str, command: &[String]) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_parameters_parse_like_upstream() {
        let q = ExecQuery::parse(Some(
            "command=ls&command=-l&command=%2F&stdout=true&stderr=true&container=c",
        ))
        .unwrap();
        assert_eq!(q.command, ["ls", "-l", "/"]);
        let o = q.options();
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        let q = ExecQuery::parse(Some("command=sh&stdin=true&stdout=true&stderr=true&tty=true")).unwrap();
        assert!(
            q.options().tty && !q.options().stderr,
            "stderr is folded into the terminal"
        );
    }

    #[test]
    fn exec_needs_a_command_and_a_stream() {
        let e = ExecQuery::parse(Some("stdout=true")).unwrap_err();
        assert_eq!(e.message, "you must specify at least 1 command");
        let e = ExecQuery::parse(Some("command=ls")).unwrap_err();
        assert_eq!(e.message, "you must specify at least one of stdin, stdout, stderr");
    }
}
