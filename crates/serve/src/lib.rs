//! Serving an axum [`Router`] on an already bound [`TcpListener`] until a stop signal: the one accept loop behind
//! both of berth's HTTPS servers, the API server and the node agent's logs/exec endpoint. It also holds the
//! constant-time bearer-token check both of them use ([`bearer_token_matches`]) and the open-file limit helpers
//! ([`raise_open_file_limit`], [`default_max_connections`]).
//!
//! It deliberately does not bind sockets, build TLS configurations, route requests or answer an unauthenticated
//! request: each server decides its own routes and renders its own 401 `Status`. Nor does it limit requests:
//! per-client and in-flight limits need to know which requests are long-running, which is the server's business.
//!
//! # One connection
//! 1. At the connection cap ([`Config::max_connections`]) the idlest open connection is closed to make room:
//!    one that never started a request (still in the TLS handshake or silent after it) first, then the one idle
//!    longest; never one with a request in flight or an upgraded one. If every connection is busy, the new one is
//!    closed at once. A flood of silent connections thus cannot lock real clients out, and the cap sits below the
//!    open-file limit, so accepting never fails for want of descriptors.
//! 2. The accepted socket gets `TCP_NODELAY`, so small responses and watch events leave at once instead of
//!    waiting for Nagle's algorithm, and TCP keep-alive probes (as Go servers do), so a peer that vanished
//!    without a FIN is noticed even while a watch is streaming to it.
//! 3. With TLS, the handshake must complete within [`Config::handshake_timeout`].
//! 4. hyper serves HTTP/1.1 with upgrades (exec and other WebSockets hand the raw connection over after a 101),
//!    and with [`Config::http2`] also HTTP/2, told apart by its connection preface (the client picks it by ALPN).
//!    HTTP/2 connections are pinged when quiet ([`H2_KEEP_ALIVE_INTERVAL`]) and dropped when a ping goes
//!    unanswered.
//! 5. The first request must start within [`Config::header_read_timeout`] of the handshake (upstream's
//!    `ReadHeaderTimeout`), and later ones within [`Config::idle_timeout`] of the previous one's end (upstream's
//!    `IdleTimeout`); otherwise the connection is closed (HTTP/2 gracefully, with GOAWAY). Both clocks stop while
//!    a request is in flight, however long it runs: a watch, `logs -f` or an exec session is never cut by them.
//!
//! Every request carries the peer's address as [`axum::extract::ConnectInfo`]`<SocketAddr>`, and its connection
//! as a [`Connection`] extension.
//!
//! # Accept errors
//! When `accept` fails (out of file descriptors: `EMFILE`, `ENFILE`), the loop closes the idlest connection to
//! free one and backs off, from 5 ms doubling to 1 s as Go's `net/http` does, instead of spinning. Such errors
//! and refused connections are logged at most once per [`LOG_EVERY`], with a count of the ones not logged.
//!
//! # Shutdown
//! When the stop signal turns `true` (or its sender is dropped), the listener is closed so new connections are
//! refused, and every open connection is asked to finish: HTTP/1.1 closes after the response in flight, HTTP/2
//! sends GOAWAY and completes its open streams. Connections get [`Config::drain_grace`] to do so together; the
//! ones still open after that are dropped, with a warning. Responses that never end on their own (watches, log
//! streams) must watch the same signal, or they use up the whole grace. An upgraded connection (an exec session)
//! has left hyper and runs in its own task, so it too must end on the signal itself.

mod conns;
mod files;
mod token;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::Instrument;

use conns::{Admitted, Conn, Expiry, Slot, Tracker};

pub use files::{
    default_max_connections, open_file_limit, raise_open_file_limit, OpenFiles, MAX_DEFAULT_CONNECTIONS, RESERVED_FILES,
};
pub use token::bearer_token_matches;

/// Upstream's `ReadHeaderTimeout` ("just shy of requestTimeoutUpperBound").
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);

/// Upstream's `IdleTimeout` for HTTP/1.1 and HTTP/2 ("matches http.DefaultTransport keep-alive timeout").
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long an HTTP/2 connection may be quiet before the server pings it (client-go pings its servers after
/// 30 s of silence too).
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long an HTTP/2 ping may go unanswered before the connection is dropped (client-go's figure).
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// TCP keep-alive: the first probe after this much silence, then one every this often (Go's default, 15 s);
/// the kernel drops the connection after 9 unanswered probes.
pub const TCP_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Accept errors and refused connections are logged at most once per this period.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

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
    /// How long a client may take, after the handshake, to send its first request's headers.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight after its last request ended.
    pub idle_timeout: Duration,
    /// At most this many connections are open at once (see the crate documentation for who makes room).
    pub max_connections: usize,
    /// How long open connections may run after the stop signal before they are dropped.
    pub drain_grace: Duration,
}

impl Config {
    /// A configuration with upstream's timeouts and a connection cap derived from the open-file limit, for a
    /// server named `name`.
    pub fn new(name: &'static str, tls: Option<Arc<ServerConfig>>) -> Config {
        Config {
            name,
            tls,
            http2: false,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(open_file_limit().soft, 1.0),
            drain_grace: Duration::from_secs(10),
        }
    }
}

/// A request extension naming the request's connection. A handler whose request upgrades the connection (a
/// 101) uses it to keep something, such as a concurrency permit, alive for as long as the upgraded connection
/// stays open.
#[derive(Clone)]
pub struct Connection(Arc<Conn>);

impl Connection {
    /// Keeps `value` alive until the connection's socket closes (after an upgrade, when the upgraded stream is
    /// dropped). A value held by a connection that has already closed is dropped at once.
    pub fn hold_until_closed(&self, value: impl Send + 'static) {
        self.0.hold_until_closed(Box::new(value));
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
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
    let tracker = Tracker::new(config.max_connections);
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    let stopping = stopped(stop.clone());
    tokio::pin!(stopping);
    let mut backoff = Backoff::default();
    let mut accept_errors = Throttle::default();
    let mut refusals = Throttle::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors (or a similar lasting condition): free one by closing the idlest
                        // connection, and back off instead of spinning.
                        let freed = out_of_files(&e) && tracker.evict_idlest();
                        if let Some(suppressed) = accept_errors.allow() {
                            tracing::warn!(error = %e, freed, suppressed, open = tracker.len(), "accept failed");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next()) => {}
                            _ = &mut stopping => break,
                        }
                        continue;
                    }
                };
                backoff = Backoff::default();
                let slot = match tracker.admit() {
                    Admitted::Yes(slot) => slot,
                    Admitted::Full => {
                        if let Some(suppressed) = refusals.allow() {
                            tracing::warn!(
                                %peer,
                                suppressed,
                                max = config.max_connections,
                                "connection limit reached and every connection is busy; refusing connections"
                            );
                        }
                        drop(tcp);
                        continue;
                    }
                };
                let connection = serve_connection(tcp, peer, slot, app.clone(), config.clone(), stop.clone());
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

/// Whether an accept error means the process or the system ran out of file descriptors.
fn out_of_files(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() || code == rustix::io::Errno::NFILE.raw_os_error()
    )
}

/// The accept loop's back-off after an error: 5 ms, doubling up to 1 s (Go's `net/http` figures).
#[derive(Default)]
struct Backoff(Option<Duration>);

impl Backoff {
    fn next(&mut self) -> Duration {
        let next = match self.0 {
            None => Duration::from_millis(5),
            Some(d) => (d * 2).min(Duration::from_secs(1)),
        };
        self.0 = Some(next);
        next
    }
}

/// Lets a repeated log line through at most once per [`LOG_EVERY`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(lines suppressed since the last one)` if this line may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
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
    slot: Slot,
    app: Router,
    config: Arc<Config>,
    stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    set_keep_alive(&tcp);
    let conn = slot.conn().clone();
    let Some(tls) = &config.tls else {
        let io = Held { io: tcp, _slot: slot };
        return serve_http(TokioIo::new(io), peer, conn, app, &config, stop).await;
    };
    let acceptor = TlsAcceptor::from(tls.clone());
    let handshake = tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = conn.evicted() => {
            tracing::debug!(%peer, "connection closed during the TLS handshake to make room for another");
            return;
        }
    };
    // The header-read timeout counts from the end of the handshake.
    conn.touch();
    let io = Held { io: tls, _slot: slot };
    serve_http(TokioIo::new(io), peer, conn, app, &config, stop).await
}

/// Turns on TCP keep-alive probes (see [`TCP_KEEP_ALIVE`]); a socket that refuses simply goes without.
fn set_keep_alive(tcp: &TcpStream) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(tcp, true)
        .and_then(|()| sockopt::set_tcp_keepidle(tcp, TCP_KEEP_ALIVE))
        .and_then(|()| sockopt::set_tcp_keepintvl(tcp, TCP_KEEP_ALIVE));
}

/// Serves HTTP/1.1 with upgrades (and HTTP/2 if asked) on an established connection.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    conn: Arc<Conn>,
    app: Router,
    config: &Config,
    stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let state = conn;
    let service = {
        let conn = state.clone();
        hyper::service::service_fn(move |req| track(req, peer, conn.clone(), app.clone()))
    };
    let result = if config.http2 {
        // `auto` reads the first bytes to tell an HTTP/2 preface from an HTTP/1.1 request.
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        let conn = builder.serve_connection_with_upgrades(io, service);
        until_closed(conn, |c| c.graceful_shutdown(), stop, &state, config).await
    } else {
        // HTTP/1.1 only, without `auto`'s sniffing: `auto` has no HTTP/1-only mode together with upgrades.
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades();
        until_closed(conn, |c| c.graceful_shutdown(), stop, &state, config)
            .await
            .map_err(Into::into)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Serves one request through `app`, counting it in flight on its connection until its response body has ended
/// (or, for a 101, until the upgraded connection closes), and tells the handler who the peer is.
async fn track(
    mut req: http::Request<Incoming>,
    peer: SocketAddr,
    conn: Arc<Conn>,
    mut app: Router,
) -> Result<http::Response<Body>, Infallible> {
    let guard = conn.begin();
    req.extensions_mut().insert(ConnectInfo(peer));
    req.extensions_mut().insert(Connection(conn));
    let response = app.call(req).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        guard.keep_busy();
        return Ok(response);
    }
    Ok(response.map(|body| Body::new(BodyWith::new(body, guard))))
}

/// A response body that holds `guard` until the body ends or is dropped: how a request stays counted in flight (or
/// keeps a permit) while its response streams, which for a watch is as long as the watch lasts.
pub struct BodyWith<G> {
    body: Body,
    _guard: G,
}

impl<G> BodyWith<G> {
    /// Wraps `body` so that `guard` lives exactly as long as it.
    pub fn new(body: Body, guard: G) -> BodyWith<G> {
        BodyWith { body, _guard: guard }
    }
}

impl<G: Unpin> hyper::body::Body for BodyWith<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket together with its place in the tracker, so the place is freed exactly when the socket
/// closes, also after an upgrade has taken the socket out of hyper.
struct Held<S> {
    io: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How long a connection closed gracefully for being idle may take to go (a request that raced the close is
/// still answered) before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Drives `conn` to its end. Once the stop signal comes or the connection has been idle too long, asks it
/// (through `graceful_shutdown`) to finish its in-flight requests and close, and keeps driving it until it has.
/// A connection that never started a request, or was evicted, is dropped at once: it has nothing in flight.
async fn until_closed<C, E>(
    conn: C,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
    stop: watch::Receiver<bool>,
    state: &Conn,
    config: &Config,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = stopped(stop) => {
            graceful_shutdown(conn.as_mut());
            return conn.await;
        }
        expiry = state.expired(config.header_read_timeout, config.idle_timeout) => match expiry {
            Expiry::Evicted => {
                tracing::debug!("connection closed to make room for another");
                return Ok(());
            }
            Expiry::Silent => {
                tracing::debug!("no request within the header-read timeout; closing the connection");
                return Ok(());
            }
            Expiry::Idle => tracing::debug!("connection idle too long; closing it"),
        },
    }
    // Idle after serving requests: close politely (HTTP/2 says GOAWAY), but not for longer than the grace while
    // nothing is in flight: a half-sent request header must not keep the connection.
    graceful_shutdown(conn.as_mut());
    state.touch();
    tokio::select! {
        r = conn.as_mut() => r,
        _ = state.expired(IDLE_CLOSE_GRACE, IDLE_CLOSE_GRACE) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
