//! Serving an axum [`Router`] on an already bound [`TcpListener`] until a stop signal: the one accept loop behind
//! both of berth's HTTPS servers, the API server and the node agent's logs/exec endpoint. It also holds the
//! constant-time bearer-token check both of them use ([`bearer_token_matches`]).
//!
//! It deliberately does not bind sockets, build TLS configurations, route requests or answer an unauthenticated
//! request: each server decides its own routes and renders its own 401 `Status`.
//!
//! # One connection
//! 1. The accepted socket gets `TCP_NODELAY`, so small responses and watch events leave at once instead of
//!    waiting for Nagle's algorithm.
//! 2. With TLS, the handshake must complete within [`Config::handshake_timeout`]. A client that connects and then
//!    says nothing would otherwise hold a task and a socket for as long as it likes.
//! 3. hyper serves HTTP/1.1 with upgrades (exec and other WebSockets hand the raw connection over after a 101),
//!    and with [`Config::http2`] also HTTP/2, told apart by its connection preface (the client picks it by ALPN).
//!
//! # Shutdown
//! When the stop signal turns `true` (or its sender is dropped), the listener is closed so new connections are
//! refused, and every open connection is asked to finish: HTTP/1.1 closes after the response in flight, HTTP/2
//! sends GOAWAY and completes its open streams. Connections get [`Config::drain_grace`] to do so together; the
//! ones still open after that are dropped, with a warning. Responses that never end on their own (watches, log
//! streams) must watch the same signal, or they use up the whole grace. An upgraded connection (an exec session)
//! has left hyper and runs in its own task, so it too must end on the signal itself.

mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

pub use token::bearer_token_matches;

/// How a server accepts and serves its connections.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names the server in its log span (`serve{server=…}`), so two servers in one process can be told apart.
    pub name: &'static str,
    /// The TLS configuration connections are accepted with, or `None` for plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Whether to serve HTTP/2 as well as HTTP/1.1. The TLS configuration's ALPN list should then offer `h2`.
    pub http2: bool,
    /// How long a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long open connections may run after the stop signal before they are dropped.
    pub drain_grace: Duration,
}

/// Serves `app` on `listener` until `stop` turns `true`, then drains the open connections for at most
/// [`Config::drain_grace`] and returns. See the crate documentation for the whole lifecycle.
pub async fn serve(listener: TcpListener, app: Router, config: Config, stop: watch::Receiver<bool>) {
    let addr = listener.local_addr().ok();
    let span = tracing::info_span!("serve", server = config.name, addr = ?addr);
    accept_until_stopped(listener, app, config, stop).instrument(span).await
}

async fn accept_until_stopped(listener: TcpListener, app: Router, config: Config, stop: watch::Receiver<bool>) {
    let drain_grace = config.drain_grace;
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    let stopping = stopped(stop.clone());
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Running out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let connection = serve_connection(tcp, peer, app.clone(), config.clone(), stop.clone());
                connections.spawn(connection.in_current_span());
            }
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut stopping => break,
        }
    }
    // Refuse new connections from here on; the open ones saw the same signal and are finishing.
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain_grace, drained).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain grace period; dropping them"
        );
        connections.shutdown().await;
    }
}

/// Completes when the stop signal is `true`, or when its sender is gone (nobody can send it any more).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one accepted connection until it ends, or until it has finished gracefully after the stop signal.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    config: Arc<Config>,
    stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &config.tls else {
        return serve_http(TokioIo::new(tcp), app, config.http2, stop).await;
    };
    let acceptor = TlsAcceptor::from(tls.clone());
    let tls = match tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    serve_http(TokioIo::new(tls), app, config.http2, stop).await
}

/// Serves HTTP/1.1 with upgrades (and HTTP/2 if asked) on an established connection.
async fn serve_http<I>(io: I, app: Router, http2: bool, stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let result = if http2 {
        // `auto` reads the first bytes to tell an HTTP/2 preface from an HTTP/1.1 request.
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(io, service);
        until_stopped(conn, |c| c.graceful_shutdown(), stop).await
    } else {
        // HTTP/1.1 only, without `auto`'s sniffing: `auto` has no HTTP/1-only mode together with upgrades.
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades();
        until_stopped(conn, |c| c.graceful_shutdown(), stop)
            .await
            .map_err(Into::into)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Drives `conn` to its end; once the stop signal comes, asks it (through `graceful_shutdown`) to finish its
/// in-flight requests and close, and keeps driving it until it has.
async fn until_stopped<C, E>(
    conn: C,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
    stop: watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(stop) => {
            graceful_shutdown(conn.as_mut());
            conn.await
        }
    }
}

#[cfg(test)]
mod tests;
