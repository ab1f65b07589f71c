//! `GET /attach/{namespace}/{pod}/{container}`: connects a WebSocket to a running container's own main process
//! (upstream's `pods/attach`, what `kubectl attach` and `kubectl run -i` use), speaking the same channel protocol
//! as exec ([`super::channel`]). `POST` is the SPDY transport, refused as for exec.
//!
//! Upstream's semantics, which the runtime's attach provides:
//! * The client sees only what the process writes from now on; `kubectl logs` shows what came before.
//! * Input reaches the process only if its container was created with `stdin: true`; otherwise it is dropped, as
//!   the kubelet drops it (kubectl warns beforehand).
//! * The session ends with `Success` when the container stops, or when the client closes stdin: the process's
//!   stdin then stays open for the next attach (without `stdinOnce`), and the process keeps running.
//! * With a TTY the output is the terminal's, on stdout, and resizes go to the container's terminal.
//! * Leaving (closing the WebSocket) detaches; it never stops the container.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use berth_runtime::{AttachOptions, RuntimeError};

use super::channel::{self, Process, Streams, Target, Upgrade};
use super::{AppState, StatusError};

/// Upgrades to a WebSocket attached to the container.
pub(crate) async fn attach(
    State(state): State<AppState>,
    Path(at): Path<Target>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Result<Response, StatusError> {
    let streams = Streams::parse(query.as_deref())?;
    let (ws, protocol) = channel::negotiate(ws)?;
    let found = channel::running_container(&state, &at).await?;
    let options = AttachOptions {
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.stderr,
    };
    let session = match state.runtime.attach(&found.id, &options).await {
        Ok(session) => session,
        // It stopped between the lookup and the attach.
        Err(RuntimeError::Rejected { .. }) => return Err(channel::not_running(&at)),
        Err(e) => return Err(StatusError::runtime(&e)),
    };
    tracing::debug!(namespace = %at.namespace, pod = %at.pod, container = %at.container, id = %found.id, "attached");
    Ok(ws.on_upgrade(move |socket| channel::run(socket, state, session, streams, protocol, Process::Attach)))
}
