//! An in-memory [`ContainerRuntime`] for unit tests of the agent.
//!
//! [`FakeRuntime`] keeps containers, images and networks in a map behind a mutex, records every call in order, and
//! lets a test script what the engine does: the next failure of an operation, images that cannot be pulled, exit
//! codes and OOM kills (which change state *and* emit the events a real engine would), log lines, exec results, and
//! containers that echo what is attached to their stdin (a stand-in for `cat`).
//! It is deterministic: ids come from a counter and nothing happens unless a call or a helper makes it happen. It does
//! not run processes, enforce resource limits or model time beyond stamping `Utc::now()` on state changes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncWrite;
use tokio::sync::{broadcast, watch};

use crate::{
    AttachOptions, ContainerConfig, ContainerInfo, ContainerRuntime, ContainerState, ExecOptions, ExecSession,
    ImageInfo, LogOptions, NetworkMode, Output, RuntimeError, RuntimeEvent, RuntimeEventKind, RuntimeVersion,
};

/// What a scripted exec prints and how it ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecScript {
    pub output: Vec<Output>,
    pub exit_code: i64,
}

/// Decides, for a container being started, whether it exits at once and with which code (`None`: keeps running).
type StartHook = Box<dyn Fn(&ContainerConfig) -> Option<i64> + Send + Sync>;
type StartRefusal = Box<dyn Fn(&ContainerConfig, &str) -> Option<RuntimeError> + Send + Sync>;

/// An in-memory container runtime that records calls and can be scripted. Cheap to share behind an `Arc`.
pub struct FakeRuntime {
    /// Shared with attach sessions' stdin, which writes into a container's stdin and (echoing) its log.
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<RuntimeEvent>,
    /// Log lines as they are added, and `None` once a container stops, for followers.
    log_feed: broadcast::Sender<(String, Option<LogLine>)>,
}

#[derive(Debug, Clone)]
struct LogLine {
    at: DateTime<Utc>,
    output: Output,
}

struct FakeContainer {
    config: ContainerConfig,
    info: ContainerInfo,
    logs: Vec<LogLine>,
    /// Everything attach sessions wrote to the container's stdin.
    stdin: Vec<u8>,
    /// Whether what reaches stdin is written to stdout, as `cat` would ([`FakeRuntime::echo_stdin`]).
    echo_stdin: bool,
}

struct FakeExec {
    container_id: String,
    command: Vec<String>,
    exit_code: i64,
    stdin: Arc<Mutex<Vec<u8>>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    containers: BTreeMap<String, FakeContainer>,
    images: BTreeMap<String, ImageInfo>,
    networks: BTreeMap<String, Option<String>>,
    calls: Vec<String>,
    failures: HashMap<String, VecDeque<RuntimeError>>,
    unpullable: BTreeMap<String, String>,
    exec_scripts: Vec<(Vec<String>, ExecScript)>,
    execs: BTreeMap<String, FakeExec>,
    start_hook: Option<StartHook>,
    start_refusal: Option<StartRefusal>,
    version: Option<RuntimeVersion>,
}

impl State {
    fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:064x}", self.next_id)
    }

    /// Records the call and returns the scripted failure for `op`, if any.
    fn call(&mut self, op: &str, detail: String) -> Result<(), RuntimeError> {
        self.calls.push(if detail.is_empty() {
            op.to_string()
        } else {
            format!("{op} {detail}")
        });
        match self.failures.get_mut(op).and_then(VecDeque::pop_front) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The id of a container that exists and runs: what exec and attach need.
    fn running(&self, reference: &str, operation: &'static str) -> Result<String, RuntimeError> {
        let id = self
            .resolve(reference)
            .ok_or_else(|| not_found("container", reference))?;
        if !matches!(self.containers[&id].info.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::Rejected {
                operation,
                message: format!("container {id} is not running"),
            });
        }
        Ok(id)
    }

    /// A container by full id, unique id prefix or name, as Docker resolves references.
    fn resolve(&self, reference: &str) -> Option<String> {
        if self.containers.contains_key(reference) {
            return Some(reference.to_string());
        }
        if let Some((id, _)) = self.containers.iter().find(|(_, c)| c.info.name == reference) {
            return Some(id.clone());
        }
        let mut matches = self
            .containers
            .keys()
            .filter(|id| !reference.is_empty() && id.starts_with(reference));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Some(id.clone()),
            _ => None,
        }
    }
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    /// An empty runtime: no images, no networks, no containers.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        let (log_feed, _) = broadcast::channel(1024);
        FakeRuntime {
            state: Arc::new(Mutex::new(State::default())),
            events,
            log_feed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the state is still usable for the rest of that test.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, container: &ContainerInfo, kind: RuntimeEventKind) {
        // No subscribers is fine: events are only for whoever listens.
        let _ = self.events.send(RuntimeEvent {
            container_id: container.id.clone(),
            labels: container.labels.clone(),
            kind,
        });
    }

    /// Every call so far, in order, as `"<operation> <arguments>"` (for example `"start_container <id>"`,
    /// `"stop_container <id> SIGTERM 30s"`).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The calls of one operation, in order.
    pub fn calls_of(&self, op: &str) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.split(' ').next() == Some(op))
            .cloned()
            .collect()
    }

    /// Makes the next call of `op` (the trait method's name, e.g. `"start_container"`) fail with `err`. Several
    /// failures queue up in order.
    pub fn fail_next(&self, op: &str, err: RuntimeError) {
        self.lock().failures.entry(op.to_string()).or_default().push_back(err);
    }

    /// Adds a local image with no entrypoint, cmd or stop signal.
    pub fn add_image(&self, reference: &str) {
        self.add_image_info(ImageInfo {
            id: String::new(),
            repo_tags: vec![reference.to_string()],
            repo_digests: Vec::new(),
            stop_signal: None,
            entrypoint: None,
            cmd: None,
        });
    }

    /// Adds a local image; it is found by each of its `repo_tags`. An empty `id` gets a generated one.
    pub fn add_image_info(&self, mut image: ImageInfo) {
        let mut state = self.lock();
        if image.id.is_empty() {
            state.next_id += 1;
            image.id = format!("sha256:{:064x}", state.next_id);
        }
        for tag in image.repo_tags.clone() {
            state.images.insert(tag, image.clone());
        }
    }

    /// Makes every pull of `image` fail with `message` (a pull of any other image succeeds and adds it).
    pub fn fail_pull(&self, image: &str, message: &str) {
        self.lock().unpullable.insert(image.to_string(), message.to_string());
    }

    /// Lets `image` be pulled again.
    pub fn allow_pull(&self, image: &str) {
        self.lock().unpullable.remove(image);
    }

    /// Whether a network of that name exists, and its subnet.
    pub fn network(&self, name: &str) -> Option<Option<String>> {
        self.lock().networks.get(name).cloned()
    }

    /// What `version()` reports.
    pub fn set_version(&self, version: RuntimeVersion) {
        self.lock().version = Some(version);
    }

    /// Decides for every container started from now on whether it exits at once (`Some(code)`) or keeps running
    /// (`None`): for init containers and crash loops. The hook sees the creation config.
    pub fn exit_on_start(&self, hook: impl Fn(&ContainerConfig) -> Option<i64> + Send + Sync + 'static) {
        self.lock().start_hook = Some(Box::new(hook));
    }

    /// Decides for every container started from now on whether the engine refuses to start it (`Some(error)`),
    /// the way Docker refuses a sandbox whose hostPort is taken. The hook sees the creation config and the id, so
    /// its message can name the attempt as Docker's does.
    pub fn refuse_start(&self, hook: impl Fn(&ContainerConfig, &str) -> Option<RuntimeError> + Send + Sync + 'static) {
        self.lock().start_refusal = Some(Box::new(hook));
    }

    /// The configuration a container was created with.
    pub fn container_config(&self, reference: &str) -> Option<ContainerConfig> {
        let state = self.lock();
        let id = state.resolve(reference)?;
        state.containers.get(&id).map(|c| c.config.clone())
    }

    /// All containers, in id (creation) order.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.lock().containers.values().map(|c| c.info.clone()).collect()
    }

    /// Ends a running container's main process with `code`, emitting `die`.
    pub fn exit(&self, reference: &str, code: i64) {
        self.finish(reference, code, false);
    }

    /// The kernel's OOM killer ends a running container: emits `oom` then `die` with 137, and marks it OOMKilled.
    pub fn oom(&self, reference: &str) {
        self.finish(reference, 137, true);
    }

    /// Docker's race (as in containerd/containerd#8180): the container's `die` (137) is recorded before the `oom`, and
    /// the engine's OOMKilled flag stays false; only the late `oom` event tells.
    pub fn oom_after_exit(&self, reference: &str) {
        self.finish(reference, 137, false);
        let info = {
            let state = self.lock();
            state
                .resolve(reference)
                .and_then(|id| state.containers.get(&id))
                .map(|c| c.info.clone())
        };
        if let Some(info) = info {
            self.emit(&info, RuntimeEventKind::Oom);
        }
    }

    fn finish(&self, reference: &str, code: i64, oom_killed: bool) {
        let info = {
            let mut state = self.lock();
            let Some(id) = state.resolve(reference) else { return };
            let Some(container) = state.containers.get_mut(&id) else {
                return;
            };
            let ContainerState::Running { started_at } = container.info.state else {
                return;
            };
            container.info.state = ContainerState::Exited {
                exit_code: code,
                started_at: Some(started_at),
                finished_at: Some(Utc::now()),
                oom_killed,
                error: None,
            };
            container.info.clone()
        };
        if oom_killed {
            self.emit(&info, RuntimeEventKind::Oom);
        }
        self.emit(&info, RuntimeEventKind::Die { exit_code: Some(code) });
        let _ = self.log_feed.send((info.id, None));
    }

    /// Appends a line to a container's log (stamped now) and hands it to followers.
    pub fn add_log(&self, reference: &str, output: Output) {
        let line = LogLine { at: Utc::now(), output };
        let mut state = self.lock();
        let Some(id) = state.resolve(reference) else { return };
        let Some(container) = state.containers.get_mut(&id) else {
            return;
        };
        container.logs.push(line.clone());
        // Sent under the lock: see `logs`.
        let _ = self.log_feed.send((id, Some(line)));
    }

    /// Scripts the result of exec'ing exactly `command` in any container (a later script for the same command
    /// replaces the earlier one). Unscripted commands print nothing and exit 0.
    pub fn script_exec(&self, command: &[&str], script: ExecScript) {
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let mut state = self.lock();
        state.exec_scripts.retain(|(c, _)| *c != command);
        state.exec_scripts.push((command, script));
    }

    /// What has been written to an exec's stdin so far.
    pub fn exec_stdin(&self, exec_id: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        let exec = state.execs.get(exec_id)?;
        let stdin = exec.stdin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(stdin)
    }

    /// The container and command of an exec.
    pub fn exec_command(&self, exec_id: &str) -> Option<(String, Vec<String>)> {
        self.lock()
            .execs
            .get(exec_id)
            .map(|e| (e.container_id.clone(), e.command.clone()))
    }

    /// Makes a container behave like `cat` on its stdin: what an attach writes there is written to its stdout (its
    /// log, followers and attached readers see it), as one chunk per write.
    pub fn echo_stdin(&self, reference: &str) {
        let mut state = self.lock();
        let Some(id) = state.resolve(reference) else { return };
        if let Some(container) = state.containers.get_mut(&id) {
            container.echo_stdin = true;
        }
    }

    /// What attach sessions have written to a container's stdin so far.
    pub fn attached_stdin(&self, reference: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.resolve(reference)?;
        state.containers.get(&id).map(|c| c.stdin.clone())
    }

    /// Moves a container to exited: shared by stop and remove.
    fn stop_now(&self, id: &str, signal: &str) -> Option<ContainerInfo> {
        let info = {
            let mut state = self.lock();
            let container = state.containers.get_mut(id)?;
            let ContainerState::Running { started_at } = container.info.state else {
                return None;
            };
            // A process killed by a signal exits with 128 + the signal's number, as a shell reports it.
            let code = 128 + signal_number(signal);
            container.info.state = ContainerState::Exited {
                exit_code: code,
                started_at: Some(started_at),
                finished_at: Some(Utc::now()),
                oom_killed: false,
                error: None,
            };
            container.info.clone()
        };
        let code = match &info.state {
            ContainerState::Exited { exit_code, .. } => Some(*exit_code),
            _ => None,
        };
        self.emit(&info, RuntimeEventKind::Die { exit_code: code });
        let _ = self.log_feed.send((info.id.clone(), None));
        Some(info)
    }
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeRuntime")
            .field("containers", &state.containers.len())
            .field("calls", &state.calls.len())
            .finish_non_exhaustive()
    }
}

fn signal_number(signal: &str) -> i64 {
    match signal.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        other => other.parse().unwrap_or(15),
    }
}

fn matches_labels(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// Applies tail, since and timestamps to a container's log lines.
fn render_logs(lines: &[LogLine], options: &LogOptions) -> Vec<Output> {
    let kept: Vec<&LogLine> = lines
        .iter()
        .filter(|l| options.since.is_none_or(|since| l.at >= since))
        .collect();
    let skip = options.tail_lines.map_or(0, |n| kept.len().saturating_sub(n as usize));
    kept.into_iter()
        .skip(skip)
        .map(|l| render_line(l, options.timestamps))
        .collect()
}

fn render_line(line: &LogLine, timestamps: bool) -> Output {
    if !timestamps {
        return line.output.clone();
    }
    let stamp = line.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let prefix = |b: &Bytes| Bytes::from([stamp.as_bytes(), b" ", b].concat());
    match &line.output {
        Output::Stdout(b) => Output::Stdout(prefix(b)),
        Output::Stderr(b) => Output::Stderr(prefix(b)),
    }
}

/// Stdin of a fake exec: everything written is kept for [`FakeRuntime::exec_stdin`].
struct RecordingWriter(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for RecordingWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Stdin of a fake attach: writes go to the container's stdin (echoed to its log when it echoes), and shutting it
/// down ends the session's output, as Docker ends an attach whose stdin closed. Writes to a container created
/// without `open_stdin`, or by an attach without `stdin`, go nowhere, as in Docker.
struct AttachWriter {
    state: Arc<Mutex<State>>,
    log_feed: broadcast::Sender<(String, Option<LogLine>)>,
    container_id: String,
    /// `None` when the input has nowhere to go.
    closed: Option<watch::Sender<bool>>,
}

impl AsyncWrite for AttachWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.closed.as_ref().is_none_or(|c| *c.borrow()) {
            return Poll::Ready(Ok(buf.len()));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(container) = state.containers.get_mut(&self.container_id) else {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        };
        if !matches!(container.info.state, ContainerState::Running { .. }) {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        container.stdin.extend_from_slice(buf);
        if container.echo_stdin {
            let line = LogLine {
                at: Utc::now(),
                output: Output::Stdout(Bytes::copy_from_slice(buf)),
            };
            container.logs.push(line.clone());
            // Sent under the lock, as `add_log` does.
            let _ = self.log_feed.send((self.container_id.clone(), Some(line)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(closed) = &self.closed {
            closed.send_replace(true);
        }
        Poll::Ready(Ok(()))
    }
}

fn not_found(what: &str, reference: &str) -> RuntimeError {
    RuntimeError::NotFound {
        what: format!("{what} {reference}"),
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let mut state = self.lock();
        state.call("version", String::new())?;
        Ok(state.version.clone().unwrap_or_else(|| RuntimeVersion {
            runtime_version: "fake://0.1.0".into(),
            kernel_version: "6.1.0-fake".into(),
            operating_system: "linux".into(),
            os_image: "Fake Linux".into(),
            architecture: "amd64".into(),
            cpus: 4,
            memory_bytes: 8 << 30,
        }))
    }

    async fn ensure_network(&self, name: &str, subnet: Option<&str>) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.call("ensure_network", format!("{name} {}", subnet.unwrap_or("-")))?;
        state
            .networks
            .entry(name.to_string())
            .or_insert_with(|| subnet.map(str::to_string));
        Ok(())
    }

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let mut state = self.lock();
        state.call("inspect_image", image.to_string())?;
        Ok(state.images.get(image).cloned())
    }

    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        {
            let mut state = self.lock();
            state.call("pull_image", image.to_string())?;
            if let Some(message) = state.unpullable.get(image) {
                return Err(RuntimeError::ImagePull {
                    image: image.to_string(),
                    message: message.clone(),
                });
            }
        }
        self.add_image(image);
        Ok(())
    }

    async fn import_image(&self, tarball: Bytes) -> Result<(), RuntimeError> {
        self.lock().call("import_image", format!("{} bytes", tarball.len()))
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let info = {
            let mut state = self.lock();
            state.call("create_container", config.name.clone())?;
            let Some(image) = state.images.get(&config.image).cloned() else {
                return Err(not_found("image", &config.image));
            };
            if config.name.is_empty() || state.containers.values().any(|c| c.info.name == config.name) {
                return Err(RuntimeError::Rejected {
                    operation: "create container",
                    message: format!("the container name {:?} is already in use or invalid", config.name),
                });
            }
            match &config.network {
                NetworkMode::Bridge { network, .. } if !state.networks.contains_key(network) => {
                    return Err(not_found("network", network));
                }
                NetworkMode::Container { id } if state.resolve(id).is_none() => {
                    return Err(not_found("container", id));
                }
                _ => {}
            }
            let id = state.next_id();
            let info = ContainerInfo {
                id: id.clone(),
                name: config.name.clone(),
                image: config.image.clone(),
                image_id: image.id,
                labels: config.labels.clone(),
                state: ContainerState::Created,
                created_at: Utc::now(),
                ip_address: None,
            };
            state.containers.insert(
                id,
                FakeContainer {
                    config: config.clone(),
                    info: info.clone(),
                    logs: Vec::new(),
                    stdin: Vec::new(),
                    echo_stdin: false,
                },
            );
            info
        };
        self.emit(&info, RuntimeEventKind::Create);
        Ok(info.id)
    }

    async fn start_container(&self, reference: &str) -> Result<(), RuntimeError> {
        let (info, exit_code) = {
            let mut state = self.lock();
            state.call("start_container", reference.to_string())?;
            let id = state
                .resolve(reference)
                .ok_or_else(|| not_found("container", reference))?;
            // Like Docker: a container joining another's namespaces starts only while that one runs.
            if let NetworkMode::Container { id: joined } = &state.containers[&id].config.network {
                let running = state
                    .resolve(joined)
                    .and_then(|j| state.containers.get(&j))
                    .is_some_and(|j| matches!(j.info.state, ContainerState::Running { .. }));
                if !running {
                    return Err(RuntimeError::Rejected {
                        operation: "start container",
                        message: format!("cannot join network of a non running container: {joined}"),
                    });
                }
            }
            if let Some(error) = state
                .start_refusal
                .as_ref()
                .and_then(|hook| hook(&state.containers[&id].config, &id))
            {
                return Err(error);
            }
            let exit_code = {
                let config = &state.containers[&id].config;
                state.start_hook.as_ref().and_then(|hook| hook(config))
            };
            // Addresses are handed out per container with its own namespace, in creation order.
            let ordinal = state.next_id;
            let container = state
                .containers
                .get_mut(&id)
                .ok_or_else(|| not_found("container", reference))?;
            if matches!(container.info.state, ContainerState::Running { .. }) {
                return Ok(());
            }
            if let NetworkMode::Bridge { .. } = container.config.network {
                container.info.ip_address = Some(format!("10.88.{}.{}", ordinal / 250, ordinal % 250 + 2));
            }
            container.info.state = ContainerState::Running { started_at: Utc::now() };
            (container.info.clone(), exit_code)
        };
        self.emit(&info, RuntimeEventKind::Start);
        if let Some(code) = exit_code {
            self.exit(&info.id, code);
        }
        Ok(())
    }

    async fn stop_container(&self, reference: &str, signal: Option<&str>, grace: Duration) -> Result<(), RuntimeError> {
        let id = {
            let mut state = self.lock();
            state.call(
                "stop_container",
                format!("{reference} {} {grace:?}", signal.unwrap_or("-")),
            )?;
            state.resolve(reference)
        };
        if let Some(id) = id {
            self.stop_now(&id, signal.unwrap_or("SIGTERM"));
        }
        Ok(())
    }

    async fn remove_container(&self, reference: &str) -> Result<(), RuntimeError> {
        let id = {
            let mut state = self.lock();
            state.call("remove_container", reference.to_string())?;
            state.resolve(reference)
        };
        let Some(id) = id else { return Ok(()) };
        self.stop_now(&id, "SIGKILL");
        let removed = self.lock().containers.remove(&id);
        if let Some(removed) = removed {
            self.emit(&removed.info, RuntimeEventKind::Destroy);
        }
        Ok(())
    }

    async fn inspect_container(&self, reference: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        let mut state = self.lock();
        state.call("inspect_container", reference.to_string())?;
        Ok(state
            .resolve(reference)
            .and_then(|id| state.containers.get(&id))
            .map(|c| c.info.clone()))
    }

    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut state = self.lock();
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        state.call("list_containers", selector.join(","))?;
        Ok(state
            .containers
            .values()
            .filter(|c| matches_labels(&c.info.labels, labels))
            .map(|c| c.info.clone())
            .collect())
    }

    fn events(&self, labels: &BTreeMap<String, String>) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        // Recorded without a scripted failure: a subscription itself cannot fail, only its stream.
        self.lock().calls.push("events".to_string());
        let labels = labels.clone();
        let receiver = self.events.subscribe();
        // The state is `None` once the stream has reported an error: it then ends.
        stream::unfold(Some(receiver), move |receiver| {
            let labels = labels.clone();
            async move {
                let mut receiver = receiver?;
                loop {
                    match receiver.recv().await {
                        Ok(event) if matches_labels(&event.labels, &labels) => {
                            return Some((Ok(event), Some(receiver)))
                        }
                        Ok(_) => continue,
                        // Like a broken engine connection: report it once and end, so the caller relists.
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let err = RuntimeError::Engine {
                                operation: "container events",
                                message: format!("subscriber lagged by {n} events"),
                            };
                            return Some((Err(err), None));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed()
    }

    async fn logs(
        &self,
        reference: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Output, RuntimeError>>, RuntimeError> {
        let (id, existing, running, feed) = {
            let mut state = self.lock();
            // Subscribing under the lock that `add_log` holds while it stores and sends a line means every line is
            // either among the stored ones or arrives through the feed, never both, never neither.
            let feed = self.log_feed.subscribe();
            state.call("logs", reference.to_string())?;
            let id = state
                .resolve(reference)
                .ok_or_else(|| not_found("container", reference))?;
            let container = &state.containers[&id];
            let running = matches!(container.info.state, ContainerState::Running { .. });
            (id, render_logs(&container.logs, options), running, feed)
        };
        let existing = stream::iter(existing.into_iter().map(Ok));
        if !options.follow || !running {
            return Ok(existing.boxed());
        }
        let timestamps = options.timestamps;
        let follow = stream::unfold(feed, move |mut feed: broadcast::Receiver<(String, Option<LogLine>)>| {
            let id = id.clone();
            async move {
                loop {
                    match feed.recv().await {
                        Ok((line_id, Some(line))) if line_id == id => {
                            return Some((Ok(render_line(&line, timestamps)), feed));
                        }
                        // The container stopped: a follower's stream ends, as Docker's does.
                        Ok((line_id, None)) if line_id == id => return None,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(existing.chain(follow).boxed())
    }

    async fn exec(&self, reference: &str, options: &ExecOptions) -> Result<ExecSession, RuntimeError> {
        let mut state = self.lock();
        state.call("exec", format!("{reference} {}", options.command.join(" ")))?;
        let id = state.running(reference, "create exec")?;
        let script = state
            .exec_scripts
            .iter()
            .find(|(command, _)| *command == options.command)
            .map(|(_, script)| script.clone())
            .unwrap_or_default();
        let exec_id = format!("exec-{}", state.next_id());
        let stdin = Arc::new(Mutex::new(Vec::new()));
        state.execs.insert(
            exec_id.clone(),
            FakeExec {
                container_id: id,
                command: options.command.clone(),
                exit_code: script.exit_code,
                stdin: stdin.clone(),
            },
        );
        let output = script
            .output
            .into_iter()
            .filter(|o| match o {
                Output::Stdout(_) => options.stdout,
                Output::Stderr(_) => options.stderr,
            })
            .map(Ok)
            .collect::<Vec<_>>();
        Ok(ExecSession {
            id: exec_id,
            output: stream::iter(output).boxed(),
            input: Box::pin(RecordingWriter(stdin)),
        })
    }

    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.call("exec_resize", format!("{exec_id} {width}x{height}"))?;
        if !state.execs.contains_key(exec_id) {
            return Err(not_found("exec", exec_id));
        }
        Ok(())
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        let mut state = self.lock();
        state.call("exec_exit_code", exec_id.to_string())?;
        // Scripted execs finish as soon as they start.
        state
            .execs
            .get(exec_id)
            .map(|e| Some(e.exit_code))
            .ok_or_else(|| not_found("exec", exec_id))
    }

    async fn attach(&self, reference: &str, options: &AttachOptions) -> Result<ExecSession, RuntimeError> {
        let (id, tty, feed, closed) = {
            let mut state = self.lock();
            // Subscribed under the lock, as in `logs`: nothing written after the attach is missed.
            let feed = self.log_feed.subscribe();
            let streams = [
                ("stdin", options.stdin),
                ("stdout", options.stdout),
                ("stderr", options.stderr),
            ];
            let streams: Vec<&str> = streams.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
            state.call("attach", format!("{reference} {}", streams.join(",")))?;
            let id = state.running(reference, "attach container")?;
            let container = &state.containers[&id];
            let closed = (options.stdin && container.config.open_stdin).then(|| watch::channel(false));
            (id, container.config.tty, feed, closed)
        };
        let (closed_tx, closed_rx) = closed.unzip();
        let (stdout, stderr) = (options.stdout, options.stderr);
        let container_id = id.clone();
        let output = stream::unfold((feed, closed_rx), move |(mut feed, mut closed)| {
            let id = container_id.clone();
            async move {
                loop {
                    // `Err` from the closed signal: the input was shut down (`Ok(true)`) or dropped unshut.
                    let next = match closed.as_mut() {
                        Some(rx) => tokio::select! {
                            line = feed.recv() => Ok(line),
                            ended = rx.wait_for(|c| *c) => Err(ended.is_ok()),
                        },
                        None => Ok(feed.recv().await),
                    };
                    let line = match next {
                        Ok(line) => line,
                        // Shut down: the attach ends, as Docker ends one whose stdin closed.
                        Err(true) => return None,
                        // Dropped unshut: the session is going away anyway; keep reading until it does.
                        Err(false) => {
                            closed = None;
                            continue;
                        }
                    };
                    match line {
                        Ok((line_id, Some(line))) if line_id == id => {
                            // A terminal has one stream.
                            let output = match line.output {
                                Output::Stderr(b) if tty => Output::Stdout(b),
                                other => other,
                            };
                            let wanted = match output {
                                Output::Stdout(_) => stdout,
                                Output::Stderr(_) => stderr,
                            };
                            if wanted {
                                return Some((Ok(output), (feed, closed)));
                            }
                        }
                        // The container stopped: its attached streams end.
                        Ok((line_id, None)) if line_id == id => return None,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(ExecSession {
            id: id.clone(),
            output: output.boxed(),
            input: Box::pin(AttachWriter {
                state: self.state.clone(),
                log_feed: self.log_feed.clone(),
                container_id: id,
                closed: closed_tx,
            }),
        })
    }

    async fn attach_resize(&self, reference: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.call("attach_resize", format!("{reference} {width}x{height}"))?;
        state.running(reference, "resize container").map(|_| ())
    }
}

#[cfg(test)]
mod tests;
