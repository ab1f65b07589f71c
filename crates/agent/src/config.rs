//! The agent's settings: who the node is, where it keeps its files, and how pods are networked. Parsed from flags
//! by the `berth` binary; nothing here reads the environment or the disk.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything [`crate::run`] needs besides its API client and container runtime.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name; also the value of the `berth.node` label on every container this agent owns, so several
    /// agents can share one Docker engine without touching each other's containers.
    pub node_name: String,
    /// The address the API server dials for logs and exec, reported as the Node's InternalIP and the pods' hostIP.
    pub node_ip: IpAddr,
    /// Port of the agent's HTTPS endpoint (logs, exec); 0 picks a free one, which is reported in the Node status.
    pub port: u16,
    /// Where the agent keeps its serving certificate and pod volumes (one directory per agent).
    pub data_dir: PathBuf,
    /// Docker bridge network pods attach to; shared by all agents of one engine.
    pub network: String,
    /// The pod network's CIDR when the agent has to create it; `None` lets Docker choose.
    pub pod_subnet: Option<String>,
    /// Extra labels for the Node (zone, region, and `--node-label`s).
    pub node_labels: BTreeMap<String, String>,
    /// Directory of `docker save` tarballs imported at start (air-gapped images, like k3s's `agent/images`).
    pub image_import_dir: Option<PathBuf>,
    /// Whether `securityContext.privileged: true` containers may run. Off by default: a privileged container owns
    /// the host.
    pub allow_privileged: bool,
    /// How often the Node's Lease is renewed (upstream: 10 s, a quarter of its 40 s duration).
    pub lease_renew_interval: Duration,
    /// How often the Node status is re-posted even when nothing changed (upstream's nodeStatusUpdateFrequency).
    pub node_status_interval: Duration,
    /// How often each pod is synced without any event: the safety net behind Docker's event stream, and how
    /// configMap/secret volume updates are noticed.
    pub pod_resync_interval: Duration,
    /// How many pods may be creating and starting containers at the same time. The engine does that work on the
    /// CPU: when a burst of pods all start at once they share it and all finish late, together; with a bound they
    /// finish in the order they came, most of them much sooner, in the same total time.
    pub parallel_starts: usize,
    /// At most this many connections are open on the agent's endpoint at once; at the cap the idlest is closed
    /// to admit a new one. Its only legitimate client is the API server, one connection per log stream or exec
    /// session. Default: a quarter of what the open-file limit allows one listener, as the agent usually shares
    /// its process with an API server.
    pub max_connections: usize,
}

impl AgentConfig {
    /// Defaults for a node called `node_name` at `node_ip`, keeping its files in `data_dir`.
    pub fn new(node_name: impl Into<String>, node_ip: IpAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_name: node_name.into(),
            node_ip,
            port: 10250,
            data_dir: data_dir.into(),
            network: "berth".to_string(),
            pod_subnet: None,
            node_labels: BTreeMap::new(),
            image_import_dir: None,
            allow_privileged: false,
            lease_renew_interval: Duration::from_secs(10),
            node_status_interval: Duration::from_secs(10),
            pod_resync_interval: Duration::from_secs(5),
            parallel_starts: std::thread::available_parallelism().map_or(2, |n| n.get()).max(2),
            max_connections: berth_serve::default_max_connections(berth_serve::open_file_limit().soft, 0.25),
        }
    }
}
