//! The `berth` binary: parses flags, installs the TLS crypto provider and the tracing subscriber, and starts
//! the roles. It holds no logic of its own; each role lives in its crate and exposes `run`.
//!
//! | signal   | effect                                                                         |
//! |----------|--------------------------------------------------------------------------------|
//! | SIGTERM  | graceful stop: stop accepting, end watches, let requests finish (≤ 10 s)       |
//! | SIGINT   | same as SIGTERM                                                                |
//! | SIGKILL  | immediate; nothing acknowledged is lost (every 2xx write is already on disk)   |

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The process's allocator: jemalloc, with background threads that return freed pages to the system within
/// seconds (`dirty_decay_ms`, 10 s by default).
///
/// Why not glibc's malloc: it raises its mmap threshold each time it frees a large mapped block, so after the first
/// 1 MB request every later one is served from its arenas, which it hardly ever shrinks. Measured with
/// `bench-attacks` (debug build): after 400 PUTs of a 1 MB ConfigMap the server held 244 MiB for good, of which
/// only ~144 MiB was live (the same run with glibc's mmap threshold pinned). With jemalloc (release build) it
/// holds 242 MiB right after the burst and 142 MiB a minute later. A server on a 512 MB
/// board cannot afford to keep the high-water mark of every burst. Only the binary chooses an allocator; the
/// libraries stay allocator-agnostic.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// berth: a small Kubernetes-compatible container orchestrator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the all-in-one server: the Kubernetes API on HTTPS with an embedded store.
    Server(ServerArgs),
    /// Run a node agent that joins a cluster: it registers a Node and runs the Pods bound to it in Docker.
    Agent(AgentArgs),
    /// Bring images to this node without a registry.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the admin kubeconfig written by the server.
    Kubeconfig {
        /// The server's data directory.
        #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// HTTPS listen address.
    #[arg(long, default_value = "0.0.0.0:6443")]
    listen: SocketAddr,
    /// The address clients should use (defaults to the listen address, or 127.0.0.1 for a wildcard).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Also serve plain HTTP without authentication on this loopback address (development only).
    #[arg(long)]
    insecure_listen: Option<SocketAddr>,
    /// The range Service cluster IPs come from.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: String,
    /// Extra DNS names or IP addresses for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// The most bytes of change history the store retains for watches to resume from (default 64 MiB); older
    /// history is compacted, and no more than this is loaded at start.
    #[arg(long, default_value_t = berth_apiserver::DEFAULT_HISTORY_BYTES)]
    history_bytes: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Do not run a node agent in the server process (a control-plane-only server).
    #[arg(long)]
    disable_agent: bool,
    /// At most this many connections open on the HTTPS listener; at the cap the idlest is closed to admit a new
    /// one (default: from the open-file limit, leaving a quarter of it, at least 256, for everything else, and
    /// a quarter of the rest for the agent when it runs in this process).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Read-only requests in flight at once, not counting watches and other long-running requests (0: no limit).
    #[arg(long, default_value_t = berth_apiserver::inflight::Limits::default().max_requests_inflight)]
    max_requests_inflight: usize,
    /// Mutating requests in flight at once (0: no limit).
    #[arg(long, default_value_t = berth_apiserver::inflight::Limits::default().max_mutating_requests_inflight)]
    max_mutating_requests_inflight: usize,
    /// Watches, log streams, exec, attach and port-forward sessions open at once (0: no limit).
    #[arg(long, default_value_t = berth_apiserver::inflight::Limits::default().max_long_running)]
    max_long_running_requests: usize,
    /// Requests in flight at once from one client address, read-only and mutating together (0: no limit).
    #[arg(long, default_value_t = berth_apiserver::inflight::Limits::default().max_requests_inflight_per_client)]
    max_requests_inflight_per_client: usize,
    /// Long-running requests open at once from one client address (0: no limit).
    #[arg(long, default_value_t = berth_apiserver::inflight::Limits::default().max_long_running_per_client)]
    max_long_running_requests_per_client: usize,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The API server's URL, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "BERTH_SERVER")]
    server: String,
    /// The cluster token (the server's data-dir/token).
    #[arg(long, env = "BERTH_TOKEN")]
    token: String,
    /// The cluster CA certificate (the server's data-dir/ca.crt).
    #[arg(long, env = "BERTH_CA_FILE")]
    ca_file: PathBuf,
    /// Where the agent keeps its certificate and pod volumes.
    #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = default_data_dir().join("agent"))]
    data_dir: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    #[command(flatten)]
    node: NodeArgs,
}

/// How a node presents itself; shared by `server` (its local agent) and `agent`.
#[derive(clap::Args)]
struct NodeArgs {
    /// The Node's name (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// The address the API server uses to reach this node (default: the address of the interface that routes
    /// to the API server, or this host's primary address for the all-in-one server).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Port of the agent's HTTPS endpoint for logs and exec (0 picks a free port).
    #[arg(long, default_value_t = 10250)]
    agent_port: u16,
    /// Extra Node labels, KEY=VALUE (repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// The Node's zone (label topology.kubernetes.io/zone).
    #[arg(long)]
    zone: Option<String>,
    /// The Node's region (label topology.kubernetes.io/region).
    #[arg(long)]
    region: Option<String>,
    /// The Docker bridge network pods attach to (shared by all agents on one engine).
    #[arg(long, default_value = "berth")]
    pod_network: String,
    /// The pod network's subnet when berth creates it (default: Docker's choice).
    #[arg(long)]
    pod_subnet: Option<String>,
    /// Directory of `docker save` tarballs loaded at start (default: <data-dir>/images).
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Allow containers with securityContext.privileged: true.
    #[arg(long)]
    allow_privileged: bool,
    /// How many pods may be creating and starting containers at once (default: the number of CPUs, at least 2).
    /// A burst of pods then comes up in order of arrival instead of all together at the end.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    parallel_starts: Option<u16>,
    /// At most this many connections open on the agent's endpoint (default: a quarter of what the open-file
    /// limit allows one listener).
    #[arg(long)]
    agent_max_connections: Option<usize>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Load `docker save` tarballs into the local Docker engine.
    Load {
        /// Tarballs to load.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the built-in workload image (the demo and test image) as a `docker save` tarball.
    Save {
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

impl NodeArgs {
    /// The agent's configuration. `towards` is the address used to pick the node IP when none is given.
    fn agent_config(&self, data_dir: PathBuf, towards: IpAddr) -> berth_agent::AgentConfig {
        let node_name = self.node_name.clone().unwrap_or_else(host_name);
        let node_ip = self.node_ip.unwrap_or_else(|| route_source(towards));
        let mut config = berth_agent::AgentConfig::new(node_name, node_ip, data_dir.clone());
        config.port = self.agent_port;
        config.network = self.pod_network.clone();
        config.pod_subnet = self.pod_subnet.clone();
        config.allow_privileged = self.allow_privileged;
        if let Some(n) = self.parallel_starts {
            config.parallel_starts = usize::from(n);
        }
        if let Some(n) = self.agent_max_connections {
            config.max_connections = n;
        }
        config.image_import_dir = Some(self.image_dir.clone().unwrap_or_else(|| data_dir.join("images")));
        config.node_labels.extend(self.node_labels.iter().cloned());
        if let Some(zone) = &self.zone {
            config
                .node_labels
                .insert("topology.kubernetes.io/zone".to_string(), zone.clone());
        }
        if let Some(region) = &self.region {
            config
                .node_labels
                .insert("topology.kubernetes.io/region".to_string(), region.clone());
        }
        config
    }
}

/// This host's name, lowercased as Node names must be.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The local address the kernel would use to reach `target` (a route lookup: connecting a UDP socket sends
/// nothing). Falls back to 127.0.0.1.
fn route_source(target: IpAddr) -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
        socket.connect((target, 9))?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn kube_client(url: &str, ca_pem: &str, token: &str) -> Result<kube::Client> {
    berth_agent::api_client(url, ca_pem, token).context("building the API client")
}

async fn docker() -> Result<std::sync::Arc<dyn berth_runtime::ContainerRuntime>> {
    let docker = berth_runtime::docker::DockerRuntime::connect()
        .await
        .context("connecting to Docker (is the engine running and is DOCKER_HOST right?)")?;
    Ok(std::sync::Arc::new(docker))
}

/// The all-in-one server: the API server, and (unless disabled) an agent for this host talking to it over HTTPS
/// like any other agent.
async fn run_server(config: berth_apiserver::Config, args: ServerArgs) -> Result<()> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let data_dir = config.data_dir.clone();
    let api = tokio::spawn(berth_apiserver::run_notify(
        config,
        Some(ready_tx),
        stopped(stop_rx.clone()),
    ));
    let ready = match ready_rx.await {
        Ok(ready) => ready,
        // The API server failed before it was ready: its own error says why.
        Err(_) => return api.await.context("API server task")?,
    };
    // Again now that the store has created its files (with the process umask).
    secure_data_dir(&data_dir, Some("agent"))?;
    let agent = if args.disable_agent {
        None
    } else {
        let client = kube_client(&ready.url, &ready.ca_pem, &ready.token)?;
        let runtime = docker().await?;
        // A documentation address (TEST-NET-1) stands for "anywhere off this host": only the route is looked up.
        let config = args
            .node
            .agent_config(data_dir.join("agent"), IpAddr::from([192, 0, 2, 1]));
        Some(tokio::spawn(berth_agent::run(
            config,
            client,
            runtime,
            ready.token,
            stopped(stop_rx.clone()),
        )))
    };
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Some(agent) = agent {
        agent.await.context("agent task")?.context("agent")?;
    }
    api.await.context("API server task")?
}

async fn run_agent(args: AgentArgs) -> Result<()> {
    let ca_pem = std::fs::read_to_string(&args.ca_file)
        .with_context(|| format!("reading the CA file {}", args.ca_file.display()))?;
    let client = kube_client(&args.server, &ca_pem, &args.token)?;
    let server_ip = server_ip(&args.server).await;
    let config = args.node.agent_config(args.data_dir.clone(), server_ip);
    let runtime = docker().await?;
    berth_agent::run(config, client, runtime, args.token, shutdown_signal())
        .await
        .context("agent")
}

/// The API server's address from its URL (resolving a host name), to find the route towards it.
async fn server_ip(url: &str) -> IpAddr {
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority
    } else {
        format!("{authority}:443")
    };
    match tokio::net::lookup_host(with_port).await {
        Ok(mut addrs) => addrs.next().map(|a| a.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1])),
        Err(_) => IpAddr::from([127, 0, 0, 1]),
    }
}

async fn run_image(command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Load { files } => {
            let runtime = docker().await?;
            for file in files {
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                runtime
                    .import_image(bytes.into())
                    .await
                    .with_context(|| format!("loading {}", file.display()))?;
                println!("loaded {}", file.display());
            }
            Ok(())
        }
        ImageCommand::Save { output } => {
            let image = berth_image::workload_image();
            std::fs::write(&output, &image.bytes).with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} ({}) to {}", image.reference, image.id, output.display());
            Ok(())
        }
    }
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".berth"),
        None => PathBuf::from("/var/lib/berth"),
    }
}

fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Raises the soft open-file limit to the hard one, as Go programs do: a systemd unit gets 1,024 by default,
/// which a thousand idle connections would use up. The connection caps are derived from the result.
fn raise_open_file_limit() {
    match berth_serve::raise_open_file_limit() {
        Ok(limits) => tracing::info!(soft = ?limits.soft, hard = ?limits.hard, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Makes the data directory private to the user berth runs as: the store in it holds every Secret. The directory
/// is created (or repaired, for installs from before this rule) with mode 0700, every directory beneath it 0700 and
/// every file 0600, symlinks untouched. It runs before the server starts and again once it is ready (the store has
/// created its files by then). Files the store creates later get the process umask, but nobody else can reach them
/// through a 0700 directory. (A process umask of 0077 would cover those too, but the agent in the same process
/// writes files and directories that containers running as other users must read.)
///
/// `agent` names a subdirectory that is only made 0700 itself: it holds pod volumes, whose own modes (an emptyDir
/// is 0777, projected files have their `defaultMode`) are what containers see and must stay as the agent set them.
fn secure_data_dir(dir: &std::path::Path, agent: Option<&str>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    let private = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} private", path.display()))
    };
    private(dir, 0o700)?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", current.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("reading {}", path.display()))?;
            if kind.is_dir() {
                private(&path, 0o700)?;
                let volumes = current == dir && agent.is_some_and(|a| entry.file_name() == a);
                if !volumes {
                    pending.push(path);
                }
            } else if kind.is_file() {
                private(&path, 0o600)?;
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    // One crypto provider for every rustls user in the process; without this, crates that enable a second
    // provider make rustls panic at the first handshake.
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let cli = Cli::parse();
    match cli.command {
        Command::Kubeconfig { data_dir } => {
            let path = data_dir.join("kubeconfig");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (has `berth server` run with this data dir?)",
                    path.display()
                )
            })?;
            print!("{text}");
            Ok(())
        }
        Command::Server(args) => {
            init_tracing(args.log_json);
            raise_open_file_limit();
            let mut config = berth_apiserver::Config::new(args.data_dir.clone(), args.listen);
            config.advertise_address = args.advertise_address;
            config.insecure_listen = args.insecure_listen;
            config.service_cidr = args.service_cidr.clone();
            config.tls_sans = args.tls_sans.clone();
            config.store.history_bytes = args.history_bytes;
            secure_data_dir(&config.data_dir, Some("agent"))?;
            // The agent's endpoint takes a quarter of the descriptors left for connections when it shares the
            // process, so the API server gets the other three.
            let share = if args.disable_agent { 1.0 } else { 0.75 };
            config.max_connections = args
                .max_connections
                .unwrap_or_else(|| berth_serve::default_max_connections(berth_serve::open_file_limit().soft, share));
            config.inflight = berth_apiserver::inflight::Limits {
                max_requests_inflight: args.max_requests_inflight,
                max_mutating_requests_inflight: args.max_mutating_requests_inflight,
                max_long_running: args.max_long_running_requests,
                max_requests_inflight_per_client: args.max_requests_inflight_per_client,
                max_long_running_per_client: args.max_long_running_requests_per_client,
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run_server(config, args))
        }
        Command::Agent(args) => {
            init_tracing(args.log_json);
            secure_data_dir(&args.data_dir, None)?;
            raise_open_file_limit();
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run_agent(args))
        }
        Command::Image(command) => {
            init_tracing(false);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run_image(command))
        }
    }
}
