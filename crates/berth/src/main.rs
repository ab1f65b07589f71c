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
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
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
            let mut config = berth_apiserver::Config::new(args.data_dir, args.listen);
            config.advertise_address = args.advertise_address;
            config.insecure_listen = args.insecure_listen;
            config.service_cidr = args.service_cidr;
            config.tls_sans = args.tls_sans;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(berth_apiserver::run(config, shutdown_signal()))
        }
    }
}
