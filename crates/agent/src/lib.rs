//! The node agent, berth's kubelet: it registers its Node, keeps the Node's Lease fresh, turns the Pods bound to the
//! Node into containers through a [`berth_runtime::ContainerRuntime`], and writes back what really happens to them.
//!
//! It talks to the cluster only through the Kubernetes API (kube-rs), exactly as a remote agent would, and to
//! containers only through the runtime trait. It never touches the store. The API server reaches the agent for logs
//! and exec through the agent's own HTTPS endpoint ([`server`]).

pub mod config;
pub mod events;
pub mod images;
pub mod labels;
pub mod node;
pub mod pods;
pub mod probe;
pub mod prober;
pub mod server;
mod time;
pub mod volume;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use berth_runtime::{ContainerRuntime, RuntimeError};
use tokio::sync::watch;

pub use config::AgentConfig;

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{step}: {source}")]
    Api {
        step: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{step}: {source}")]
    Runtime {
        step: &'static str,
        #[source]
        source: RuntimeError,
    },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {message}")]
    Config { message: String },
    #[error("agent endpoint: {0}")]
    Server(#[from] server::ServerError),
}

/// A kube-rs client for the API server at `url`, trusting the cluster CA `ca_pem` and presenting `token`.
pub fn api_client(url: &str, ca_pem: &str, token: &str) -> Result<kube::Client, AgentError> {
    let invalid = |message: String| AgentError::Config { message };
    let uri = url.parse().map_err(|e| invalid(format!("server URL {url:?}: {e}")))?;
    let mut config = kube::Config::new(uri);
    let certs = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("reading the CA certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("the CA file holds no certificate".to_string()));
    }
    config.root_cert = Some(certs);
    config.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(config).map_err(|source| AgentError::Api {
        step: "building the API client",
        source,
    })
}

/// Runs the agent until `shutdown` resolves: registers the Node, serves logs and exec, and runs pods. `token` is
/// the credential the API server presents when it calls the agent. Containers keep running when the agent stops.
pub async fn run(
    config: AgentConfig,
    client: kube::Client,
    runtime: Arc<dyn ContainerRuntime>,
    token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let version = runtime.version().await.map_err(|source| AgentError::Runtime {
        step: "reaching the container runtime",
        source,
    })?;
    runtime
        .ensure_network(&config.network, config.pod_subnet.as_deref())
        .await
        .map_err(|source| AgentError::Runtime {
            step: "creating the pod network",
            source,
        })?;
    images::ensure_builtin(runtime.as_ref()).await?;
    if let Some(dir) = &config.image_import_dir {
        images::import_dir(runtime.as_ref(), dir).await?;
    }
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .map_err(|source| AgentError::Io {
            step: "creating the agent data directory",
            source,
        })?;
    // Pod volumes beneath it hold Secret files: only the agent's user may look in (containers get them through
    // bind mounts, which do not need the parents to be searchable).
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(|source| AgentError::Io {
                step: "making the agent data directory private",
                source,
            })?;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let cert = server::serving_cert(&config.node_name, &[config.node_ip])?;
    // Only the address the Node advertises, which is where the API server dials: not every interface of the
    // host (a Docker bridge, a VPN, a public address).
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.node_ip, config.port))
        .await
        .map_err(|source| AgentError::Io {
            step: "binding the agent endpoint to the node address (is --node-ip an address of this host?)",
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| AgentError::Io {
            step: "binding the agent endpoint",
            source,
        })?
        .port();
    let facts = node::NodeFacts {
        runtime: version,
        port,
        cert_sha256: cert.sha256_hex.clone(),
    };
    let server = tokio::spawn(server::serve(
        listener,
        cert,
        token,
        config.node_name.clone(),
        runtime.clone(),
        config.max_connections,
        stopped(stop_rx.clone()),
    ));

    node::register(&client, &config, &facts).await?;
    node::renew_lease(&client, &config.node_name).await?;
    tokio::spawn(node::heartbeat(client.clone(), config.clone(), facts, stop_rx.clone()));

    let recorder = events::Recorder::spawn(client.clone(), config.node_name.clone());
    let ctx = Arc::new(pods::Context {
        client,
        runtime,
        start_slots: Arc::new(tokio::sync::Semaphore::new(config.parallel_starts.max(1))),
        config,
        recorder,
    });
    tracing::info!(node = %ctx.config.node_name, port, "agent running");
    pods::supervise(ctx, stop_rx).await;
    match server.await {
        Ok(result) => result?,
        Err(error) => tracing::warn!(%error, "agent endpoint task failed"),
    }
    Ok(())
}
