//! Running the API server: opening the store, loading credentials, bootstrapping built-in objects, binding the
//! HTTPS listener (and an optional plain-HTTP loopback listener for development), writing the admin
//! kubeconfig and serving until shutdown.
//!
//! Shutdown: when the `shutdown` future completes, the listeners stop accepting, open watches are ended, and
//! in-flight requests get up to [`DRAIN_GRACE`] to finish. Every acknowledged write is already on disk.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::pki::{write_kubeconfig, Pki};
use crate::AppState;

/// How long in-flight requests may run after shutdown begins.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of the API server role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store, credentials and kubeconfig live.
    pub data_dir: PathBuf,
    /// The HTTPS listen address.
    pub listen: SocketAddr,
    /// The address clients should use, when the listen address is a wildcard.
    pub advertise_address: Option<IpAddr>,
    /// An optional plain-HTTP listener without authentication; must be a loopback address.
    pub insecure_listen: Option<SocketAddr>,
    /// The range cluster IPs are allocated from.
    pub service_cidr: String,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    /// How long Events are kept.
    pub event_ttl: Duration,
    /// At most this many connections are open on the HTTPS listener at once; at the cap the idlest is closed to
    /// admit a new one (`berth_serve`). Default: derived from the open-file limit by
    /// [`berth_serve::default_max_connections`].
    pub max_connections: usize,
    /// How long a client may take after the TLS handshake to send its first request's headers (upstream's
    /// `ReadHeaderTimeout`, 32 s).
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight (upstream's `IdleTimeout`, 90 s).
    pub idle_timeout: Duration,
    /// Requests and watches in flight, in total and per client.
    pub inflight: crate::inflight::Limits,
    /// The store's bounds: how much history it retains (events and bytes) and its cache.
    pub store: berth_store::StoreConfig,
}

impl Config {
    /// Defaults for a data directory and listen address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        Config {
            data_dir,
            listen,
            advertise_address: None,
            insecure_listen: None,
            service_cidr: "10.96.0.0/16".to_string(),
            tls_sans: Vec::new(),
            event_ttl: Duration::from_secs(3600),
            max_connections: berth_serve::default_max_connections(berth_serve::open_file_limit().soft, 1.0),
            header_read_timeout: berth_serve::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: berth_serve::DEFAULT_IDLE_TIMEOUT,
            inflight: crate::inflight::Limits::default(),
            store: berth_store::StoreConfig::default(),
        }
    }
}

/// How to reach the running API server; what an in-process client (the local agent) needs.
#[derive(Debug, Clone)]
pub struct Ready {
    /// `https://<advertise address>:<port>`.
    pub url: String,
    /// The cluster CA certificate, PEM.
    pub ca_pem: String,
    /// The admin bearer token.
    pub token: String,
}

/// Runs the API server until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    run_notify(config, None, shutdown).await
}

/// Runs the API server until `shutdown` completes, sending [`Ready`] on `ready` once it accepts connections.
pub async fn run_notify(
    config: Config,
    ready: Option<tokio::sync::oneshot::Sender<Ready>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    if let Some(addr) = config.insecure_listen {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "the insecure listener must be on a loopback address, not {addr}"
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = berth_store::SledStore::open_with_config(config.data_dir.join("db"), config.store.clone())
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let store: Arc<dyn berth_store::Store> = Arc::new(store);

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr()?;
    let advertise_ip = config.advertise_address.unwrap_or_else(|| {
        if local.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            local.ip()
        }
    });
    let mut hosts: Vec<String> = config.tls_sans.clone();
    hosts.push(advertise_ip.to_string());
    if !local.ip().is_unspecified() {
        hosts.push(local.ip().to_string());
    }
    let pki = Pki::load_or_create(&config.data_dir, &hosts)?;
    let advertise = SocketAddr::new(advertise_ip, local.port());

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut state = AppState::new(store, &config.service_cidr, advertise, stop_rx.clone())?;
    // The API server calls node agents with the cluster token, the one credential they accept.
    state.agents = crate::proxy::AgentClient::new(&pki.token);
    crate::lifecycle::bootstrap(&state, local.port())
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {}", e.0))?;

    let url = format!("https://{advertise}");
    let kubeconfig = config.data_dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &pki.kubeconfig(&url))?;
    tracing::info!(
        %url,
        kubeconfig = %kubeconfig.display(),
        max_connections = config.max_connections,
        "berth API server listening"
    );
    if let Some(ready) = ready {
        let _ = ready.send(Ready {
            url: url.clone(),
            ca_pem: pki.ca_pem.clone(),
            token: pki.token.clone(),
        });
    }

    let token: Arc<str> = Arc::from(pki.token.as_str());
    let traced = |r: Router| {
        r.layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
    };
    // Authentication runs first, then the in-flight limits (the last layer added is the outermost), as
    // upstream orders its filters: an unauthenticated request never takes a place in the budget.
    let inflight = crate::inflight::InFlight::new(config.inflight);
    let limited = |r: Router| {
        r.layer(axum::middleware::from_fn_with_state(
            inflight.clone(),
            crate::inflight::limit,
        ))
    };
    let secure_app = traced(
        limited(crate::router(state.clone()))
            .layer(axum::middleware::from_fn_with_state(token, crate::auth::require_token)),
    );
    let housekeeping = tokio::spawn(crate::lifecycle::run(state.clone(), config.event_ttl, stop_rx.clone()));

    let serving = |name, tls| berth_serve::Config {
        // kubectl and client-go speak HTTP/2 when ALPN offers it (`pki` offers h2 and http/1.1); exec arrives
        // as an HTTP/1.1 upgrade.
        http2: true,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
        drain_grace: DRAIN_GRACE,
        ..berth_serve::Config::new(name, tls)
    };
    let insecure = match config.insecure_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tracing::warn!(addr = %l.local_addr()?, "plain-HTTP listener without authentication (development only)");
            Some(tokio::spawn(berth_serve::serve(
                l,
                traced(limited(crate::router(state.clone()))),
                serving("apiserver-insecure", None),
                stop_rx.clone(),
            )))
        }
        None => None,
    };

    // The stop signal ends both listeners and their connections, every watch and the housekeeping loop; each
    // listener then drains its connections for at most DRAIN_GRACE, both at the same time.
    let secure = berth_serve::serve(
        listener,
        secure_app,
        serving("apiserver", Some(pki.tls.clone())),
        stop_rx,
    );
    let stopping = async {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    tokio::join!(secure, stopping);
    if let Some(h) = insecure {
        let _ = h.await;
    }
    let _ = housekeeping.await;
    Ok(())
}
