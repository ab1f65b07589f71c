//! The Docker implementation of [`ContainerRuntime`], through bollard.
//!
//! [`DockerRuntime`] translates each trait call into Docker Engine API requests and Docker's answers back into the
//! runtime's own types. It speaks API 1.41 and later (`negotiate_version` picks the engine's version when it is older
//! than bollard's), and it maps every bollard error to a [`RuntimeError`] named after the operation. It knows nothing
//! about Pods and never retries: deciding what to do after a failure is the agent's job.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::container::AttachContainerResults;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EventMessage, HostConfig,
    HostConfigLogConfig, Ipam, IpamConfig, NetworkCreateRequest, PortBinding as DockerPortBinding,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ImportImageOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, ResizeContainerTTYOptions, StopContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};

use crate::{
    AttachOptions, ContainerConfig, ContainerInfo, ContainerRuntime, ContainerState, ExecOptions, ExecSession,
    ImageInfo, LogOptions, NetworkMode, Output, RuntimeError, RuntimeEvent, RuntimeEventKind, RuntimeVersion,
};

/// How long a pull may take before it counts as failed. Kubernetes has no pull deadline of its own, but berth
/// nodes have no registry: a pull that cannot finish quickly will not finish at all, and a hung pull would keep a
/// Pod out of `ErrImagePull`/`ImagePullBackOff` forever.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for a container to disappear after SIGKILL before reporting the engine as broken.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// Slack added to bollard's per-request timeout for `stop`, whose answer only comes after the grace period.
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(30);

/// Container logs are kept by the `json-file` driver, the one whose logs Docker can read back, rotated at the
/// kubelet's defaults (`containerLogMaxSize` 10Mi, `containerLogMaxFiles` 5) so a chatty container cannot fill the
/// disk.
const LOG_MAX_SIZE: &str = "10m";
const LOG_MAX_FILES: &str = "5";

/// Event attributes Docker adds beside a container's labels; everything else in `Actor.Attributes` is a label.
const NON_LABEL_ATTRIBUTES: [&str; 4] = ["image", "name", "exitCode", "signal"];

/// A [`ContainerRuntime`] backed by a Docker engine.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST`, or the default socket) and agrees on an API version with it.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| RuntimeError::Engine {
            operation: "connect",
            message: e.to_string(),
        })?;
        Self::from_client(docker).await
    }

    /// Wraps an already configured bollard client, negotiating the API version with the engine.
    pub async fn from_client(docker: Docker) -> Result<Self, RuntimeError> {
        let docker = docker.negotiate_version().await.map_err(|e| RuntimeError::Engine {
            operation: "negotiate API version",
            message: e.to_string(),
        })?;
        Ok(DockerRuntime { docker })
    }

    /// The underlying bollard client, for callers that must measure raw engine calls (the pod benchmark compares
    /// against plain create+start).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Waits until the container is not running, up to `limit`. Returns whether it stopped in time. A container
    /// that does not exist counts as stopped.
    async fn wait_stopped(&self, id: &str, limit: Duration) -> Result<bool, RuntimeError> {
        let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
        let mut wait = self.docker.wait_container(id, Some(options));
        match tokio::time::timeout(limit, wait.next()).await {
            Err(_) => Ok(false),
            Ok(None) | Ok(Some(Ok(_))) => Ok(true),
            // bollard reports a non-zero exit code as an error; for us it is just a stopped container.
            Ok(Some(Err(BollardError::DockerContainerWaitError { .. }))) => Ok(true),
            Ok(Some(Err(e))) => match map_err("wait container", || format!("container {id}"), e) {
                RuntimeError::NotFound { .. } => Ok(true),
                other => Err(other),
            },
        }
    }

    /// Sends `signal`; a container that is missing or not running is already where we want it.
    async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let options = KillContainerOptionsBuilder::default().signal(signal).build();
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match map_err("kill container", || format!("container {id}"), e) {
                // 409: "is not running".
                RuntimeError::NotFound { .. } | RuntimeError::Rejected { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Sends `signal`, waits `grace`, then SIGKILLs and waits for the end.
    async fn signal_then_kill(&self, id: &str, signal: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.kill(id, signal).await?;
        if self.wait_stopped(id, grace).await? {
            return Ok(());
        }
        self.kill(id, "SIGKILL").await?;
        if self.wait_stopped(id, KILL_WAIT).await? {
            Ok(())
        } else {
            Err(RuntimeError::Engine {
                operation: "stop container",
                message: format!("container {id} still running {KILL_WAIT:?} after SIGKILL"),
            })
        }
    }

    /// Fills a [`ContainerInfo`] for each id, inspecting up to a few at once. Containers that vanish meanwhile are
    /// left out.
    async fn inspect_all(&self, ids: Vec<String>) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let found: Vec<Option<ContainerInfo>> = futures::stream::iter(ids)
            .map(|id| async move { self.inspect_container(&id).await })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// After creating a network, removes duplicates a concurrent creator may have made. Engines before API 1.44 allow
    /// two networks with one name unless the request sets `CheckDuplicate`, which bollard's current models no longer
    /// carry; every racer keeps the oldest (then lowest id) and removes the rest, so they all agree.
    async fn dedupe_network(&self, name: &str) -> Result<(), RuntimeError> {
        let filters = HashMap::from([("name", vec![name])]);
        let options = ListNetworksOptionsBuilder::default().filters(&filters).build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| map_err("list networks", || name.into(), e))?;
        // The name filter matches substrings; keep exact matches only.
        let mut same: Vec<(Option<DateTime<Utc>>, String)> = networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| Some((n.created.as_deref().and_then(parse_docker_time), n.id?)))
            .collect();
        if same.len() < 2 {
            return Ok(());
        }
        same.sort();
        for (_, id) in same.into_iter().skip(1) {
            tracing::debug!(network = name, id = %id, "removing duplicate network");
            // Best effort: another racer may have removed it already.
            let _ = self.docker.remove_network(&id).await;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| map_err("engine info", || "engine".into(), e))?;
        Ok(RuntimeVersion {
            runtime_version: format!("docker://{}", info.server_version.unwrap_or_default()),
            kernel_version: info.kernel_version.unwrap_or_default(),
            operating_system: info.os_type.unwrap_or_else(|| "linux".into()),
            os_image: info.operating_system.unwrap_or_default(),
            architecture: kubernetes_arch(&info.architecture.unwrap_or_default()),
            cpus: info.ncpu.unwrap_or(0).max(0) as u64,
            memory_bytes: info.mem_total.unwrap_or(0).max(0) as u64,
        })
    }

    async fn ensure_network(&self, name: &str, subnet: Option<&str>) -> Result<(), RuntimeError> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) => match map_err("inspect network", || format!("network {name}"), e) {
                RuntimeError::NotFound { .. } => {}
                other => return Err(other),
            },
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: subnet.map(|subnet| Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            ..Default::default()
        };
        let err = match self.docker.create_network(request).await {
            Ok(_) => return self.dedupe_network(name).await,
            Err(e) => map_err("create network", || format!("network {name}"), e),
        };
        // A concurrent creator (another agent on this engine) wins the race: the engine then refuses ours as a
        // duplicate or, with a subnet, as an overlapping address pool. If the network appears shortly, that is
        // success; the winner's create may still be finishing, so look a few times.
        for _ in 0..10 {
            if self.docker.inspect_network(name, None).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(err)
    }

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let inspect = match self.docker.inspect_image(image).await {
            Ok(inspect) => inspect,
            Err(e) => {
                return match map_err("inspect image", || format!("image {image}"), e) {
                    RuntimeError::NotFound { .. } => Ok(None),
                    other => Err(other),
                }
            }
        };
        let config = inspect.config.unwrap_or_default();
        Ok(Some(ImageInfo {
            id: inspect.id.unwrap_or_default(),
            repo_tags: inspect.repo_tags.unwrap_or_default(),
            repo_digests: inspect.repo_digests.unwrap_or_default(),
            stop_signal: config.stop_signal.filter(|s| !s.is_empty()),
            entrypoint: config.entrypoint,
            cmd: config.cmd,
        }))
    }

    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        let (name, tag) = split_reference(image);
        let mut options = CreateImageOptionsBuilder::default().from_image(name);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        let pull = self
            .docker
            .create_image(Some(options.build()), None, None)
            .try_for_each(|_progress| async { Ok(()) });
        let pull_error = |message: String| RuntimeError::ImagePull {
            image: image.to_string(),
            message,
        };
        match tokio::time::timeout(PULL_TIMEOUT, pull).await {
            Err(_) => Err(pull_error(format!("no progress within {PULL_TIMEOUT:?}"))),
            Ok(Err(e)) => Err(pull_error(docker_message(e))),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn import_image(&self, tarball: Bytes) -> Result<(), RuntimeError> {
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        self.docker
            .import_image(options, bollard::body_full(tarball), None)
            .try_for_each(|_progress| async { Ok(()) })
            .await
            .map_err(|e| map_err("import image", || "image tarball".into(), e))
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let options = CreateContainerOptionsBuilder::default().name(&config.name).build();
        let body = create_body(config);
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => {
                for warning in &created.warnings {
                    tracing::debug!(container = %config.name, %warning, "docker create warning");
                }
                Ok(created.id)
            }
            // A 404 from create names what the container needs (its image or network), not the container.
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => {
                if message.contains("image") {
                    Err(RuntimeError::NotFound {
                        what: format!("image {}", config.image),
                    })
                } else {
                    Err(RuntimeError::NotFound {
                        what: message.trim_end_matches(" not found").to_string(),
                    })
                }
            }
            Err(e) => Err(map_err("create container", || format!("container {}", config.name), e)),
        }
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        // Starting a running container answers 304, which bollard treats as success: start is idempotent.
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| map_err("start container", || format!("container {id}"), e))
    }

    async fn stop_container(&self, id: &str, signal: Option<&str>, grace: Duration) -> Result<(), RuntimeError> {
        if let Some(signal) = signal {
            return self.signal_then_kill(id, signal, grace).await;
        }
        // Docker's own stop sends the container's configured StopSignal (the image's STOPSIGNAL, SIGTERM by default),
        // waits `t` seconds and then SIGKILLs, answering only once the container is gone; the request therefore needs
        // a client timeout longer than the grace period.
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let t = i32::try_from(seconds).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(t).build();
        let client = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(seconds) + STOP_REQUEST_SLACK);
        match client.stop_container(id, Some(options)).await {
            // 304 (already stopped) is success to bollard.
            Ok(()) => Ok(()),
            Err(e) => match map_err("stop container", || format!("container {id}"), e) {
                RuntimeError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match map_err("remove container", || format!("container {id}"), e) {
                RuntimeError::NotFound { .. } => Ok(()),
                // Another caller is removing it already; the outcome is the one asked for.
                RuntimeError::Rejected { message, .. } if message.contains("already in progress") => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        match self.docker.inspect_container(id, None).await {
            Ok(inspect) => Ok(Some(container_info(inspect))),
            Err(e) => match map_err("inspect container", || format!("container {id}"), e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = label_filters(labels);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| map_err("list containers", || "containers".into(), e))?;
        // The list lacks start/finish times, exit codes and addresses, which the agent needs for every container it
        // finds, so each one is inspected (a few at a time).
        let ids = summaries.into_iter().filter_map(|s| s.id).collect();
        self.inspect_all(ids).await
    }

    fn events(&self, labels: &BTreeMap<String, String>) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        // bollard sends the request only when the stream is first polled; `since` = the moment of this call makes
        // the engine replay whatever happened in between, so "from now on" means from this call, not from the
        // first poll.
        self.events_since(labels, Utc::now())
    }

    fn events_since(
        &self,
        labels: &BTreeMap<String, String>,
        since: DateTime<Utc>,
    ) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        let mut filters = label_filters(labels);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            ["create", "start", "die", "oom", "destroy"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        let since = format!("{}.{:09}", since.timestamp(), since.timestamp_subsec_nanos());
        let options = EventsOptionsBuilder::default().since(&since).filters(&filters).build();
        self.docker
            .events(Some(options))
            .map_err(|e| map_err("container events", || "event stream".into(), e))
            .try_filter_map(|message| async move { Ok(runtime_event(message)) })
            .boxed()
    }

    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Output, RuntimeError>>, RuntimeError> {
        // The logs endpoint only fails once its stream is read; look first so a missing container is an error of
        // this call, as the trait promises.
        if self.inspect_container(id).await?.is_none() {
            return Err(RuntimeError::NotFound {
                what: format!("container {id}"),
            });
        }
        // Docker's `since` takes whole seconds through bollard; ask for timestamps and drop the earlier lines of that
        // second ourselves.
        let since = options.since;
        let with_timestamps = options.timestamps || since.is_some();
        let mut builder = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .timestamps(with_timestamps)
            .tail(&options.tail_lines.map_or_else(|| "all".to_string(), |n| n.to_string()));
        if let Some(since) = since {
            let seconds = i32::try_from(since.timestamp()).unwrap_or(i32::MAX);
            if seconds > 0 {
                builder = builder.since(seconds);
            }
        }
        let keep_timestamps = options.timestamps;
        let id_owned = id.to_string();
        let stream = self
            .docker
            .logs(id, Some(builder.build()))
            .map_err(move |e| map_err("read logs", || format!("container {id_owned}"), e))
            .try_filter_map(move |chunk| async move {
                let Some(output) = output_of(chunk) else {
                    return Ok(None);
                };
                Ok(filter_log_line(output, since, keep_timestamps))
            });
        Ok(stream.boxed())
    }

    async fn exec(&self, id: &str, options: &ExecOptions) -> Result<ExecSession, RuntimeError> {
        let create = CreateExecOptions {
            cmd: Some(options.command.clone()),
            attach_stdin: Some(options.stdin),
            attach_stdout: Some(options.stdout),
            attach_stderr: Some(options.stderr),
            tty: Some(options.tty),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(id, create)
            .await
            .map_err(|e| map_err("create exec", || format!("container {id}"), e))?;
        let start = StartExecOptions {
            detach: false,
            tty: options.tty,
            output_capacity: None,
        };
        let started = self
            .docker
            .start_exec(&exec.id, Some(start))
            .await
            .map_err(|e| map_err("start exec", || format!("exec {}", exec.id), e))?;
        match started {
            StartExecResults::Attached { output, input } => {
                let exec_id = exec.id.clone();
                let output = output
                    .map_err(move |e| map_err("read exec output", || format!("exec {exec_id}"), e))
                    .try_filter_map(|chunk| async move { Ok(output_of(chunk)) })
                    .boxed();
                Ok(ExecSession {
                    id: exec.id,
                    output,
                    input,
                })
            }
            StartExecResults::Detached => Err(RuntimeError::Engine {
                operation: "start exec",
                message: format!("exec {} started detached although attached was asked", exec.id),
            }),
        }
    }

    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        self.docker
            .resize_exec(exec_id, ResizeExecOptions { width, height })
            .await
            .map_err(|e| map_err("resize exec", || format!("exec {exec_id}"), e))
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        let inspect = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| map_err("inspect exec", || format!("exec {exec_id}"), e))?;
        if inspect.running.unwrap_or(false) {
            return Ok(None);
        }
        Ok(inspect.exit_code)
    }

    async fn attach(&self, id: &str, options: &AttachOptions) -> Result<ExecSession, RuntimeError> {
        let request = AttachContainerOptions {
            // Only what is written from now on: upstream's attach does not replay the log (`kubectl logs` does).
            logs: false,
            stream: true,
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr,
            detach_keys: None,
        };
        let AttachContainerResults { output, input } = self
            .docker
            .attach_container(id, Some(request))
            .await
            .map_err(|e| map_err("attach container", || format!("container {id}"), e))?;
        // Docker accepts an attach to a stopped container and then never ends its stream. The attach registers its
        // streams before the engine answers, so a container still running now was running when they were
        // registered, and its exit will end them; one that is not running now may have stopped before.
        match self.inspect_container(id).await? {
            Some(ContainerInfo {
                state: ContainerState::Running { .. },
                ..
            }) => {}
            Some(_) => {
                return Err(RuntimeError::Rejected {
                    operation: "attach container",
                    message: format!("container {id} is not running"),
                })
            }
            None => {
                return Err(RuntimeError::NotFound {
                    what: format!("container {id}"),
                })
            }
        }
        let id_owned = id.to_string();
        let output = output
            .map_err(move |e| map_err("read attach output", || format!("container {id_owned}"), e))
            .try_filter_map(|chunk| async move { Ok(output_of(chunk)) })
            .boxed();
        Ok(ExecSession {
            id: id.to_string(),
            output,
            input,
        })
    }

    async fn attach_resize(&self, id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        let size = ResizeContainerTTYOptions {
            w: i32::from(width),
            h: i32::from(height),
        };
        self.docker
            .resize_container_tty(id, size)
            .await
            .map_err(|e| map_err("resize container", || format!("container {id}"), e))
    }
}

/// The create request for a [`ContainerConfig`].
fn create_body(config: &ContainerConfig) -> ContainerCreateBody {
    let mut host = HostConfig {
        binds: Some(
            config
                .mounts
                .iter()
                .map(|m| {
                    let mode = if m.read_only { ":ro" } else { "" };
                    format!("{}:{}{mode}", m.host_path, m.container_path)
                })
                .collect(),
        ),
        memory: config.memory_limit,
        // Docker's default lets a container swap as much again as its limit; the kubelet allows no swap, so a
        // container over its memory limit is OOM-killed instead of slowing the node down.
        memory_swap: config.memory_limit,
        nano_cpus: config.nano_cpus,
        cpu_shares: config.cpu_shares,
        readonly_rootfs: Some(config.read_only_root_fs),
        privileged: Some(config.privileged),
        cap_drop: (!config.cap_drop.is_empty()).then(|| config.cap_drop.clone()),
        security_opt: config
            .no_new_privileges
            .then(|| vec!["no-new-privileges:true".to_string()]),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
                ("max-file".to_string(), LOG_MAX_FILES.to_string()),
            ])),
        }),
        ..Default::default()
    };
    let mut hostname = None;
    match &config.network {
        NetworkMode::Bridge {
            network,
            hostname: name,
        } => {
            host.network_mode = Some(network.clone());
            // The pod's other containers join this one's IPC namespace too; Docker only lets them when the donor is
            // "shareable" (its default, since 20.10, is "private"). dockershim set the same on the sandbox.
            host.ipc_mode = Some("shareable".into());
            hostname = Some(name.clone());
        }
        // A pod's containers share the infra container's network and IPC namespaces, as upstream's sandbox does.
        // Docker refuses a hostname with a joined network namespace, so none is set: the infra container's applies.
        NetworkMode::Container { id } => {
            host.network_mode = Some(format!("container:{id}"));
            host.ipc_mode = Some(format!("container:{id}"));
        }
        NetworkMode::Default => {}
    }
    let mut exposed = Vec::new();
    if !config.port_bindings.is_empty() {
        let mut bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
        for port in &config.port_bindings {
            let key = format!("{}/{}", port.container_port, port.protocol.to_ascii_lowercase());
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(DockerPortBinding {
                    host_ip: port.host_ip.clone(),
                    host_port: Some(port.host_port.to_string()),
                });
        }
        host.port_bindings = Some(bindings);
    }
    ContainerCreateBody {
        image: Some(config.image.clone()),
        hostname,
        entrypoint: config.entrypoint.clone(),
        cmd: config.cmd.clone(),
        env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: config.working_dir.clone(),
        labels: Some(config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        user: config.user.clone(),
        tty: Some(config.tty),
        open_stdin: Some(config.open_stdin),
        // Kubernetes `stdin` keeps stdin open across attaches; `stdinOnce` is not modelled.
        attach_stdin: Some(config.open_stdin),
        stdin_once: Some(config.stdin_once),
        exposed_ports: if exposed.is_empty() { None } else { Some(exposed) },
        host_config: Some(host),
        ..Default::default()
    }
}

/// Turns Docker's inspect answer into a [`ContainerInfo`].
fn container_info(inspect: ContainerInspectResponse) -> ContainerInfo {
    let config = inspect.config.unwrap_or_default();
    let created_at = inspect
        .created
        .as_deref()
        .and_then(parse_docker_time)
        .unwrap_or(DateTime::UNIX_EPOCH);
    let state = inspect.state.unwrap_or_default();
    let started_at = state.started_at.as_deref().and_then(parse_docker_time);
    let finished_at = state.finished_at.as_deref().and_then(parse_docker_time);
    let error = state.error.clone().filter(|e| !e.is_empty());
    let exited = |exit_code: Option<i64>| ContainerState::Exited {
        exit_code: exit_code.unwrap_or(0),
        started_at,
        finished_at,
        oom_killed: state.oom_killed.unwrap_or(false),
        error: error.clone(),
    };
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    let state = match status {
        ContainerStateStatusEnum::RUNNING
        | ContainerStateStatusEnum::PAUSED
        | ContainerStateStatusEnum::RESTARTING
        | ContainerStateStatusEnum::STOPPING => ContainerState::Running {
            started_at: started_at.unwrap_or(created_at),
        },
        // A start that failed (for example a missing executable) leaves Docker's container "created" with the error
        // and an exit code; it did end, so it is reported as exited, like containerd's StartError.
        ContainerStateStatusEnum::CREATED if error.is_some() => {
            exited(state.exit_code.filter(|c| *c != 0).or(Some(128)))
        }
        ContainerStateStatusEnum::CREATED => ContainerState::Created,
        ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD | ContainerStateStatusEnum::REMOVING => {
            exited(state.exit_code)
        }
        ContainerStateStatusEnum::EMPTY if state.running.unwrap_or(false) => ContainerState::Running {
            started_at: started_at.unwrap_or(created_at),
        },
        ContainerStateStatusEnum::EMPTY if started_at.is_some() => exited(state.exit_code),
        ContainerStateStatusEnum::EMPTY => ContainerState::Created,
    };
    // Map iteration order is random; take the first network by name so the answer is stable.
    let ip_address = inspect.network_settings.and_then(|settings| {
        let networks: BTreeMap<String, _> = settings.networks.unwrap_or_default().into_iter().collect();
        networks
            .into_values()
            .filter_map(|n| n.ip_address)
            .find(|ip| !ip.is_empty())
    });
    ContainerInfo {
        id: inspect.id.unwrap_or_default(),
        name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
        image: config.image.unwrap_or_default(),
        image_id: inspect.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state,
        created_at,
        ip_address,
    }
}

/// The runtime event for one Docker event message, if it is one the agent acts on.
fn runtime_event(message: EventMessage) -> Option<RuntimeEvent> {
    let actor = message.actor?;
    let container_id = actor.id?;
    let attributes = actor.attributes.unwrap_or_default();
    let kind = match message.action.as_deref()? {
        "create" => RuntimeEventKind::Create,
        "start" => RuntimeEventKind::Start,
        "die" => RuntimeEventKind::Die {
            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => RuntimeEventKind::Oom,
        "destroy" => RuntimeEventKind::Destroy,
        _ => return None,
    };
    // Docker puts the container's labels into the actor's attributes next to a few facts of its own; a label that
    // shares a name with one of those facts is lost here, which berth's `berth.`-prefixed labels never do.
    let labels = attributes
        .into_iter()
        .filter(|(k, _)| !NON_LABEL_ATTRIBUTES.contains(&k.as_str()))
        .collect();
    Some(RuntimeEvent {
        container_id,
        labels,
        kind,
    })
}

/// Docker's `label` filter: each entry must match.
fn label_filters(labels: &BTreeMap<String, String>) -> HashMap<String, Vec<String>> {
    let mut filters = HashMap::new();
    if !labels.is_empty() {
        filters.insert(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        );
    }
    filters
}

/// Maps a bollard stream chunk to an [`Output`]; a TTY's single stream counts as stdout, and echoed stdin is dropped.
fn output_of(chunk: bollard::container::LogOutput) -> Option<Output> {
    use bollard::container::LogOutput;
    match chunk {
        LogOutput::StdOut { message } | LogOutput::Console { message } => Some(Output::Stdout(message)),
        LogOutput::StdErr { message } => Some(Output::Stderr(message)),
        LogOutput::StdIn { .. } => None,
    }
}

/// Drops a timestamped log line written before `since`, and strips the timestamp if the caller did not ask for it.
fn filter_log_line(output: Output, since: Option<DateTime<Utc>>, keep_timestamps: bool) -> Option<Output> {
    if since.is_none() && keep_timestamps {
        return Some(output);
    }
    let (bytes, rebuild): (&Bytes, fn(Bytes) -> Output) = match &output {
        Output::Stdout(b) => (b, Output::Stdout),
        Output::Stderr(b) => (b, Output::Stderr),
    };
    let Some(space) = bytes.iter().position(|b| *b == b' ') else {
        return Some(output);
    };
    let stamp = std::str::from_utf8(&bytes[..space]).ok().and_then(parse_docker_time);
    if let (Some(since), Some(stamp)) = (since, stamp) {
        if stamp < since {
            return None;
        }
    }
    if keep_timestamps || stamp.is_none() {
        return Some(output);
    }
    Some(rebuild(bytes.slice(space + 1..)))
}

/// Parses Docker's RFC 3339 times; Docker's zero time (`0001-01-01T00:00:00Z`) means "never".
fn parse_docker_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.year() > 1)
}

/// Splits `name[:tag]` so a pull asks for exactly one tag: Docker pulls *every* tag of a repository when the tag is
/// empty. An untagged reference means `latest`, as Kubernetes reads it; a digest reference is passed whole.
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => (&image[..last_slash + colon], Some(&image[last_slash + colon + 1..])),
        None => (image, Some("latest")),
    }
}

/// Kubernetes names architectures as Go does (`amd64`, `arm64`); Docker reports the kernel's (`x86_64`, `aarch64`).
fn kubernetes_arch(docker: &str) -> String {
    match docker {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" | "armv6l" => "arm",
        "i386" | "i686" => "386",
        other => other,
    }
    .to_string()
}

/// The engine's own message for an error, without bollard's wrapping.
fn docker_message(err: BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => message,
        BollardError::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

/// Maps a bollard error: 404 is [`RuntimeError::NotFound`] (named by `subject`), 400 and 409 are
/// [`RuntimeError::Rejected`], anything else (500s, broken connections, timeouts) is [`RuntimeError::Engine`].
fn map_err(operation: &'static str, subject: impl FnOnce() -> String, err: BollardError) -> RuntimeError {
    match err {
        BollardError::DockerResponseServerError { status_code: 404, .. } => RuntimeError::NotFound { what: subject() },
        BollardError::DockerResponseServerError {
            status_code: 400 | 409,
            message,
        } => RuntimeError::Rejected { operation, message },
        other => RuntimeError::Engine {
            operation,
            message: docker_message(other),
        },
    }
}

#[cfg(test)]
mod tests {
    //! Pure translations of the Docker runtime: references, architectures, times, log filtering, create requests.

    use super::*;
    use crate::{Mount, PortBinding};

    #[test]
    fn references_are_split_so_one_tag_is_pulled() {
        let check =
            |image: &str, expected: (&str, Option<&str>)| assert_eq!(split_reference(image), expected, "{image}");
        check("nginx", ("nginx", Some("latest")));
        check("nginx:1.27", ("nginx", Some("1.27")));
        check("localhost:1/nope:v1", ("localhost:1/nope", Some("v1")));
        check("localhost:1/nope", ("localhost:1/nope", Some("latest")));
        check("repo/app@sha256:abc", ("repo/app@sha256:abc", None));
    }

    #[test]
    fn architectures_use_kubernetes_names() {
        assert_eq!(kubernetes_arch("x86_64"), "amd64");
        assert_eq!(kubernetes_arch("aarch64"), "arm64");
        assert_eq!(kubernetes_arch("riscv64"), "riscv64");
    }

    #[test]
    fn docker_zero_time_means_never() {
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        let t = parse_docker_time("2024-05-01T10:00:00.123456789Z").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn log_lines_before_since_are_dropped_and_timestamps_stripped_when_not_asked() {
        let line = |s: &str| Output::Stdout(Bytes::from(s.to_string()));
        let since = parse_docker_time("2024-05-01T10:00:00.5Z");
        assert_eq!(
            filter_log_line(line("2024-05-01T10:00:00.4Z early\n"), since, false),
            None
        );
        assert_eq!(
            filter_log_line(line("2024-05-01T10:00:00.6Z late\n"), since, false),
            Some(line("late\n"))
        );
        assert_eq!(
            filter_log_line(line("2024-05-01T10:00:00.6Z late\n"), since, true),
            Some(line("2024-05-01T10:00:00.6Z late\n"))
        );
        assert_eq!(filter_log_line(line("plain\n"), None, false), Some(line("plain\n")));
    }

    #[test]
    fn joined_containers_share_network_and_ipc_without_hostname() {
        let config = ContainerConfig {
            name: "c".into(),
            image: "img:1".into(),
            network: NetworkMode::Container { id: "infra".into() },
            ..Default::default()
        };
        let body = create_body(&config);
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:infra"));
        assert_eq!(host.ipc_mode.as_deref(), Some("container:infra"));
        assert_eq!(body.hostname, None);
    }

    #[test]
    fn create_request_carries_binds_ports_env_and_log_rotation() {
        let config = ContainerConfig {
            name: "c".into(),
            image: "img:1".into(),
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            network: NetworkMode::Bridge {
                network: "berth".into(),
                hostname: "pod-a".into(),
            },
            mounts: vec![Mount {
                host_path: "/h".into(),
                container_path: "/c".into(),
                read_only: true,
            }],
            port_bindings: vec![PortBinding {
                container_port: 80,
                protocol: "TCP".into(),
                host_port: 8080,
                host_ip: None,
            }],
            ..Default::default()
        };
        let body = create_body(&config);
        assert_eq!(body.env, Some(vec!["A=1".to_string(), "B=x=y".to_string()]));
        assert_eq!(body.hostname.as_deref(), Some("pod-a"));
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("berth"));
        assert_eq!(host.binds, Some(vec!["/h:/c:ro".to_string()]));
        let ports = host.port_bindings.unwrap();
        assert_eq!(ports["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some("8080"));
        let log = host.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.unwrap()["max-size"], "10m");
    }

    #[test]
    fn a_memory_limit_allows_no_swap() {
        let config = ContainerConfig {
            name: "c".into(),
            image: "img:1".into(),
            memory_limit: Some(32 << 20),
            ..Default::default()
        };
        let host = create_body(&config).host_config.unwrap();
        assert_eq!(host.memory, Some(32 << 20));
        assert_eq!(host.memory_swap, Some(32 << 20));
    }
}
