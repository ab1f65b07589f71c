//! berth's Kubernetes-compatible API server: discovery, OpenAPI, CRUD, PATCH, watch and Table output for every
//! kind in `berth_api::resources`, over any `berth_store::Store`, behind HTTPS with bearer-token
//! authentication. It owns all access to the store; controllers and agents go through its HTTP API.
//!
//! Request flow: `server` accepts TLS connections → `auth` checks the token → the router sends fixed paths to
//! `discovery`/`openapi` and everything else to `handlers::resource`, which resolves a `target::Target` and
//! calls the `registry` (object lifecycle) or `watch`. Errors are `error::Error`, rendered as `Status`.

// Handlers return `Result<_, Error>` where the error carries a whole Kubernetes Status (~150 bytes). Errors are
// the cold path and boxing them would only add noise to every constructor, so the lint is allowed here.
#![allow(clippy::result_large_err)]

pub mod allocator;
pub mod auth;
pub mod body;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod inflight;
pub mod lifecycle;
pub mod openapi;
pub mod pki;
pub mod proxy;
pub mod query;
pub mod registry;
pub mod render;
pub mod scale;
pub mod server;
pub mod strategy;
pub mod target;
pub mod watch;
mod yaml;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use berth_store::Store;
use tokio::sync::watch as signal;

/// The store's bounds, re-exported so that the binary can set them without touching the store itself (only the
/// API server does).
pub use berth_store::{StoreConfig, DEFAULT_HISTORY_BYTES};
pub use server::{run, run_notify, Config, Ready};

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    /// Object access.
    pub registry: registry::Registry,
    /// Service address allocation.
    pub allocator: allocator::Allocator,
    /// Flips to `true` when the server begins shutting down; watches end on it.
    pub shutdown: signal::Receiver<bool>,
    /// The address clients should use (reported in `/api` discovery and the `kubernetes` Endpoints).
    pub advertise: std::net::SocketAddr,
    /// Dials node agents for `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`;
    /// [`proxy::AgentClient::disabled`] until the server sets the cluster token.
    pub agents: proxy::AgentClient,
}

impl AppState {
    /// State over `store`, allocating service IPs from `service_cidr`.
    pub fn new(
        store: Arc<dyn Store>,
        service_cidr: &str,
        advertise: std::net::SocketAddr,
        shutdown: signal::Receiver<bool>,
    ) -> anyhow::Result<AppState> {
        let allocator = allocator::Allocator::new(store.clone(), service_cidr)?;
        Ok(AppState {
            registry: registry::Registry::new(store, allocator.clone()),
            allocator,
            shutdown,
            advertise,
            agents: proxy::AgentClient::disabled(),
        })
    }
}

async fn ok() -> &'static str {
    "ok"
}

/// The API router without authentication (the loopback development listener and handler tests use it).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::core_versions))
        .route("/api/v1", get(discovery::core_resources))
        .route("/apis", get(discovery::groups))
        .route("/apis/{group}", get(discovery::group))
        .route("/apis/{group}/{version}", get(discovery::group_resources))
        .route("/openapi/v3", get(openapi::v3_index))
        .route("/openapi/v3/api/{version}", get(openapi::v3_core))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi::v3_group))
        .fallback(handlers::resource)
        .with_state(state)
}
