//! The container runtime seam of the node agent: everything berth does to containers goes through
//! [`ContainerRuntime`].
//!
//! Two implementations live here: [`docker::DockerRuntime`] drives a real Docker engine through bollard (engines as
//! old as API 1.41), and [`fake::FakeRuntime`] keeps containers in memory, records every call and can script failures,
//! for the agent's unit tests. The trait speaks in containers, images and networks; it knows nothing about Pods —
//! turning a Pod into containers is the agent's job, not the runtime's.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

pub mod docker;
pub mod fake;

/// A container as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    /// The runtime's full container id (64 hex characters for Docker).
    pub id: String,
    /// The container's name, without Docker's leading `/`.
    pub name: String,
    /// The image reference the container was created from, as given at creation.
    pub image: String,
    /// The id of the image (`sha256:…`).
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// When the container was created.
    pub created_at: DateTime<Utc>,
    /// The container's address on its network, when it has its own network namespace (the pod's infra container).
    pub ip_address: Option<String>,
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// Created but never started.
    Created,
    /// Running since `started_at`.
    Running { started_at: DateTime<Utc> },
    /// Ran and stopped. `oom_killed` is true when the kernel's OOM killer ended it.
    Exited {
        exit_code: i64,
        started_at: Option<DateTime<Utc>>,
        finished_at: Option<DateTime<Utc>>,
        oom_killed: bool,
        /// The runtime's own error text when the container could not run at all (for example a missing executable).
        error: Option<String>,
    },
}

/// What to create. The agent fills this from a Pod's container spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    /// The container name; must be unique on the engine.
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint when set (Kubernetes `command`).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's cmd when set (Kubernetes `args`).
    pub cmd: Option<Vec<String>>,
    /// Environment variables, in order; later entries win.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub network: NetworkMode,
    pub mounts: Vec<Mount>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// CPU limit in billionths of a CPU (Docker's NanoCpus).
    pub nano_cpus: Option<i64>,
    /// Relative CPU weight (Docker's CpuShares), from the CPU request.
    pub cpu_shares: Option<i64>,
    /// `uid` or `uid:gid`.
    pub user: Option<String>,
    pub read_only_root_fs: bool,
    pub privileged: bool,
    /// Linux capabilities to drop from the runtime's default set (`ALL` or names such as `NET_RAW`): Kubernetes
    /// `securityContext.capabilities.drop`.
    pub cap_drop: Vec<String>,
    /// Set the `no_new_privs` bit, so setuid binaries and file capabilities cannot raise privilege (Docker's
    /// `no-new-privileges` security option): Kubernetes `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    pub tty: bool,
    /// Keep stdin open (Kubernetes `stdin: true`).
    pub open_stdin: bool,
    /// Close stdin after the first attached client detaches (Kubernetes `stdinOnce: true`), so the process sees
    /// end of input.
    pub stdin_once: bool,
    /// Host ports to publish (only meaningful on a container with its own network namespace).
    pub port_bindings: Vec<PortBinding>,
}

/// The network namespace a container gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum NetworkMode {
    /// Its own namespace on a named bridge network, with this hostname. Pod infra containers use this.
    Bridge { network: String, hostname: String },
    /// Join another container's network (and IPC) namespace. Pod app and init containers join their infra container.
    Container { id: String },
    /// The runtime's default.
    #[default]
    Default,
}

/// A host directory bind-mounted into a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

/// A published port: `host_port` on the host forwards to `container_port`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortBinding {
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub host_port: u16,
    pub host_ip: Option<String>,
}

/// An image present on the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// `sha256:…`
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// The image's configured stop signal (`STOPSIGNAL`), if any.
    pub stop_signal: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
}

/// A change to a container, from the runtime's event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub labels: BTreeMap<String, String>,
    pub kind: RuntimeEventKind,
}

/// The container events the agent acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEventKind {
    Create,
    Start,
    /// The main process ended (exit code when the runtime reports one).
    Die {
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer hit the container.
    Oom,
    /// The container was removed.
    Destroy,
}

/// Which logs to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming until the container stops or the reader goes away.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Prefix each line with its RFC 3339 timestamp (nanoseconds) and a space.
    pub timestamps: bool,
    /// Only lines written at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// What an exec runs and which streams it attaches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Which of a running container's own streams an attach connects to (upstream's `PodAttachOptions`). Whether the
/// output is split into stdout and stderr is not the caller's choice: a container created with a TTY has one raw
/// stream, reported as stdout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttachOptions {
    /// Forward input to the container's stdin. Only a container created with `open_stdin` has one to forward to.
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Output of an exec, an attach or a log read, split by stream where the runtime keeps them apart (not with a TTY).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A running exec or attach: its output, its stdin, and the id its resize (and, for an exec, its exit code) is asked
/// by.
pub struct ExecSession {
    /// For an exec, the runtime's exec id, for [`ContainerRuntime::exec_resize`] and
    /// [`ContainerRuntime::exec_exit_code`]. For an attach, the container's id, for
    /// [`ContainerRuntime::attach_resize`].
    pub id: String,
    /// An exec's ends when the process has exited and its output is drained; an attach's see
    /// [`ContainerRuntime::attach`].
    pub output: BoxStream<'static, Result<Output, RuntimeError>>,
    /// The process's stdin; shutting it down closes the process's stdin.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Engine facts for the Node's `nodeInfo` and capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeVersion {
    /// `docker://20.10.24` style, as Kubernetes shows `containerRuntimeVersion`.
    pub runtime_version: String,
    pub kernel_version: String,
    pub operating_system: String,
    pub os_image: String,
    pub architecture: String,
    pub cpus: u64,
    pub memory_bytes: u64,
}

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container, exec or image does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The image is not present and could not be pulled.
    #[error("pulling image {image}: {message}")]
    ImagePull { image: String, message: String },
    /// The runtime refused the request as invalid (bad config, name in use, …).
    #[error("{operation}: {message}")]
    Rejected { operation: &'static str, message: String },
    /// The engine could not be reached or failed internally.
    #[error("{operation}: {message}")]
    Engine { operation: &'static str, message: String },
}

/// Everything the agent does to containers. Implementations are cheap to share (`Arc<dyn ContainerRuntime>`).
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Engine and host facts.
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError>;

    /// Creates the bridge network pods attach to, if it does not exist. `subnet` is a CIDR, or the engine's choice.
    async fn ensure_network(&self, name: &str, subnet: Option<&str>) -> Result<(), RuntimeError>;

    /// The image if it is present locally, `None` if not.
    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError>;
    /// Pulls an image. Fails with [`RuntimeError::ImagePull`] rather than hanging when no registry is reachable.
    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError>;
    /// Loads a `docker save`-format tarball (what `docker load` reads).
    async fn import_image(&self, tarball: Bytes) -> Result<(), RuntimeError>;

    /// Creates a container; returns its id.
    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError>;
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends `signal` (or the container's stop signal when `None`), waits up to `grace`, then SIGKILLs. Returns once
    /// the container has stopped. Stopping a stopped container succeeds.
    async fn stop_container(&self, id: &str, signal: Option<&str>, grace: Duration) -> Result<(), RuntimeError>;
    /// Removes a container (forcibly: a running one is killed first). Removing a missing one succeeds.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// The container, or `None` if it does not exist.
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError>;
    /// All containers, running or not, carrying every one of `labels` (key = value).
    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>, RuntimeError>;

    /// Container events for containers carrying every one of `labels`, from now on. The stream ends or yields an
    /// error when the engine connection breaks; the caller resubscribes and relists.
    fn events(&self, labels: &BTreeMap<String, String>) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;

    /// Like [`Self::events`], but starting at `since`: an engine that keeps recent events replays those after it,
    /// so a subscription renewed after a broken one misses nothing in between (an `oom` lost there is lost for
    /// good: it is the only place some engines report it). The default cannot replay and starts now.
    fn events_since(
        &self,
        labels: &BTreeMap<String, String>,
        since: DateTime<Utc>,
    ) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        let _ = since;
        self.events(labels)
    }

    /// A container's logs (stdout and stderr interleaved as written).
    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Output, RuntimeError>>, RuntimeError>;

    /// Starts a process in a running container.
    async fn exec(&self, id: &str, options: &ExecOptions) -> Result<ExecSession, RuntimeError>;
    /// Resizes an exec's TTY.
    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), RuntimeError>;
    /// The exec's exit code, `None` while it still runs.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError>;

    /// Connects to a running container's main process (`docker attach`, upstream's `pods/attach`). The output is
    /// what the process writes from now on, nothing from before. It ends when the container stops, or when the
    /// session's input is shut down while `options.stdin` is set: the container then keeps running with its stdin
    /// still open for the next attach (Docker's and containerd's behaviour without `StdinOnce`). Fails with
    /// [`RuntimeError::Rejected`] if the container is not running. The session's id is the container's id.
    ///
    /// The default refuses, for runtimes and test doubles that cannot attach.
    async fn attach(&self, id: &str, options: &AttachOptions) -> Result<ExecSession, RuntimeError> {
        let _ = options;
        Err(RuntimeError::Rejected {
            operation: "attach container",
            message: format!("this runtime cannot attach to container {id}"),
        })
    }
    /// Resizes a container's TTY (the one attach sessions share).
    ///
    /// The default refuses, like [`ContainerRuntime::attach`]'s.
    async fn attach_resize(&self, id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        Err(RuntimeError::Rejected {
            operation: "resize container",
            message: format!("this runtime cannot resize container {id} to {width}x{height}"),
        })
    }
}
