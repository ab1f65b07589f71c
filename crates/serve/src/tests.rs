//! Serves a tiny router over real loopback sockets, with a certificate made for the test, and checks what a client
//! sees: HTTP/1.1, upgrades, HTTP/2 when enabled, the handshake, header-read and idle timeouts, the connection
//! cap, and the drain at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::*;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A server made for one test, with the certificate its clients trust.
struct Running {
    addr: SocketAddr,
    cert: rustls::pki_types::CertificateDer<'static>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
    /// One message each time `/slow` or `/hang` starts handling a request.
    started: mpsc::Receiver<()>,
    /// One message when the connection of a `/hold` WebSocket drops what it held.
    held: mpsc::UnboundedReceiver<()>,
}

/// Sends a message when dropped.
struct ReportsDrop(mpsc::UnboundedSender<()>);

impl Drop for ReportsDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config(tls: Option<Arc<ServerConfig>>) -> Config {
    Config {
        drain_grace: Duration::from_secs(5),
        max_connections: 64,
        ..Config::new("test", tls)
    }
}

impl Running {
    /// Starts a server; `adjust` changes the configuration (TLS is filled in unless it sets `tls` to `None`).
    async fn start(adjust: impl FnOnce(&mut Config)) -> Running {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap().der().clone();
        let mut tls = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], PrivatePkcs8KeyDer::from(key.serialize_der()).into())
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut config = config(Some(Arc::new(tls)));
        adjust(&mut config);

        let (started_tx, started) = mpsc::channel(8);
        let (held_tx, held) = mpsc::unbounded_channel::<()>();
        let (slow, hang) = (started_tx.clone(), started_tx);
        let app = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route(
                "/version",
                get(|req: axum::extract::Request| async move { format!("{:?}", req.version()) }),
            )
            .route(
                "/slow",
                get(move || async move {
                    let _ = slow.send(()).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow"
                }),
            )
            .route(
                "/hang",
                get(move || async move {
                    let _ = hang.send(()).await;
                    std::future::pending::<&str>().await
                }),
            )
            .route(
                "/hold",
                get(
                    move |axum::Extension(conn): axum::Extension<Connection>, ws: WebSocketUpgrade| async move {
                        // Held by the connection: reports when the connection drops it.
                        conn.hold_until_closed(ReportsDrop(held_tx));
                        ws.on_upgrade(|mut socket| async move { while let Some(Ok(_)) = socket.recv().await {} })
                    },
                ),
            )
            .route(
                "/echo",
                get(|ws: WebSocketUpgrade| async {
                    ws.on_upgrade(|mut socket| async move {
                        while let Some(Ok(WsMessage::Text(text))) = socket.recv().await {
                            if socket.send(WsMessage::Text(text)).await.is_err() {
                                break;
                            }
                        }
                    })
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let done = tokio::spawn(serve(listener, app, config, stop_rx));
        Running {
            addr,
            cert,
            stop,
            done,
            started,
            held,
        }
    }

    /// A TLS connection offering the given ALPN protocols, trusting only this server's certificate.
    async fn tls(&self, alpn: &[&[u8]]) -> Tls {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// An HTTP/1.1 client over TLS; the connection lives until the sender is dropped or the server closes it.
    async fn http1(&self) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(self.tls(&[b"http/1.1"]).await))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    /// Asks the server to stop and waits for `serve` to return; returns how long that took.
    async fn stop(self) -> Duration {
        let begun = tokio::time::Instant::now();
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.done)
            .await
            .expect("serve returns after the drain")
            .unwrap();
        begun.elapsed()
    }
}

fn get_request(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

async fn text(resp: http::Response<hyper::body::Incoming>) -> (u16, String) {
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn serves_http1_over_tls() {
    let server = Running::start(|_| {}).await;
    let mut client = server.http1().await;
    let resp = client.send_request(get_request("/hello")).await.unwrap();
    assert_eq!(text(resp).await, (200, "hello".to_string()));
    let resp = client.send_request(get_request("/version")).await.unwrap();
    assert_eq!(text(resp).await, (200, "HTTP/1.1".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn upgrades_to_a_websocket_with_and_without_http2() {
    for http2 in [false, true] {
        let server = Running::start(|c| c.http2 = http2).await;
        let req = "wss://localhost/echo".into_client_request().unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async(req, server.tls(&[b"http/1.1"]).await)
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 101, "http2: {http2}");
        ws.send(Message::text("ping")).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), "ping", "http2: {http2}");
        drop(ws);
        server.stop().await;
    }
}

/// `GET /version` over HTTP/2 (prior knowledge) on `tls`.
async fn http2_get_version(tls: Tls) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
    let (mut client, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/version")
        .body(Empty::<Bytes>::new())
        .unwrap();
    client.send_request(req).await
}

#[tokio::test]
async fn serves_http2_when_enabled() {
    let server = Running::start(|c| c.http2 = true).await;
    let tls = server.tls(&[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let resp = http2_get_version(tls).await.unwrap();
    assert_eq!(text(resp).await, (200, "HTTP/2.0".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn refuses_http2_unless_enabled() {
    let server = Running::start(|_| {}).await;
    // The client insists on HTTP/2 (prior knowledge over TLS); an HTTP/1.1-only server cannot answer it.
    let answered = http2_get_version(server.tls(&[b"http/1.1"]).await).await;
    assert!(answered.is_err(), "{answered:?}");
    server.stop().await;
}

#[tokio::test]
async fn serves_plain_http_without_tls() {
    let server = Running::start(|c| c.tls = None).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let resp = client.send_request(get_request("/hello")).await.unwrap();
    assert_eq!(text(resp).await, (200, "hello".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stalls_the_handshake_is_disconnected() {
    let server = Running::start(|c| c.handshake_timeout = Duration::from_millis(200)).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // Say nothing: the server must give up on the handshake and close the socket.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the server closes a silent connection after the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_refuses_connections() {
    let mut server = Running::start(|_| {}).await;
    let mut client = server.http1().await;
    let response = tokio::spawn(async move { client.send_request(get_request("/slow")).await });
    server.started.recv().await.unwrap();
    let addr = server.addr;
    let took = server.stop().await;
    let resp = response.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(text(resp).await, (200, "slow".to_string()));
    assert!(
        took < Duration::from_secs(5),
        "the drain ended when the request did, took {took:?}"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn idle_connections_close_at_once_on_shutdown() {
    let server = Running::start(|_| {}).await;
    let tls = server.tls(&[b"http/1.1"]).await;
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    let conn = tokio::spawn(conn);
    let resp = client.send_request(get_request("/hello")).await.unwrap();
    assert_eq!(text(resp).await.0, 200);
    // The kept-alive connection is idle; it must not hold up the drain for the whole grace period.
    let took = server.stop().await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    tokio::time::timeout(Duration::from_secs(2), conn)
        .await
        .expect("the server closed the connection")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_drain_is_bounded_by_the_grace_period() {
    let mut server = Running::start(|c| c.drain_grace = Duration::from_millis(300)).await;
    let mut client = server.http1().await;
    let response = tokio::spawn(async move { client.send_request(get_request("/hang")).await });
    server.started.recv().await.unwrap();
    let took = server.stop().await;
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let answered = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .unwrap()
        .unwrap();
    assert!(
        answered.is_err(),
        "the dropped connection answers nothing: {answered:?}"
    );
}

/// Waits until the server closes `tls` (a read sees EOF or an error); panics after `within`.
async fn closed_by_server(tls: &mut Tls, within: Duration) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(within, tls.read(&mut buf))
        .await
        .expect("the server closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_silent_connection_after_the_handshake_is_closed_by_the_header_read_timeout() {
    let server = Running::start(|c| c.header_read_timeout = Duration::from_millis(300)).await;
    let begun = tokio::time::Instant::now();
    let mut tls = server.tls(&[b"http/1.1"]).await;
    // The handshake completed; now say nothing at all.
    closed_by_server(&mut tls, Duration::from_secs(5)).await;
    assert!(begun.elapsed() >= Duration::from_millis(300), "{:?}", begun.elapsed());
    server.stop().await;
}

#[tokio::test]
async fn a_slow_first_request_is_closed_by_the_header_read_timeout() {
    let server = Running::start(|c| c.header_read_timeout = Duration::from_millis(300)).await;
    let mut tls = server.tls(&[b"http/1.1"]).await;
    // Slowloris: the headers start but never end.
    tls.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    closed_by_server(&mut tls, Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_idle_timeout() {
    for http2 in [false, true] {
        let server = Running::start(|c| {
            c.http2 = http2;
            c.header_read_timeout = Duration::from_secs(30);
            c.idle_timeout = Duration::from_millis(300);
        })
        .await;
        let conn = if http2 {
            let tls = server.tls(&[b"h2"]).await;
            let (mut client, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
            let conn = tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) });
            let req = http::Request::get("https://localhost/hello")
                .body(Empty::<Bytes>::new())
                .unwrap();
            assert_eq!(text(client.send_request(req).await.unwrap()).await.0, 200);
            conn
        } else {
            let tls = server.tls(&[b"http/1.1"]).await;
            let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            let conn = tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) });
            assert_eq!(
                text(client.send_request(get_request("/hello")).await.unwrap()).await.0,
                200
            );
            conn
        };
        // Kept alive with nothing in flight: the server closes it (HTTP/2 with GOAWAY), well before the
        // header-read timeout, which no longer applies.
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        assert!(ended.is_ok(), "http2: {http2}: the idle connection was closed");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_long_request_is_not_cut_by_the_timeouts() {
    let mut server = Running::start(|c| {
        c.header_read_timeout = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(100);
    })
    .await;
    let mut client = server.http1().await;
    // `/slow` takes 300 ms, three times both timeouts.
    let response = tokio::spawn(async move { client.send_request(get_request("/slow")).await });
    server.started.recv().await.unwrap();
    let resp = response.await.unwrap().expect("the slow request is answered");
    assert_eq!(text(resp).await, (200, "slow".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn at_the_cap_silent_connections_make_room_for_a_real_client() {
    let server = Running::start(|c| c.max_connections = 8).await;
    // Fill the cap with silent connections (handshake done, nothing sent), and then some.
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(server.tls(&[b"http/1.1"]).await);
    }
    let mut client = server.http1().await;
    let resp = client.send_request(get_request("/hello")).await.unwrap();
    assert_eq!(
        text(resp).await,
        (200, "hello".to_string()),
        "the real client is served"
    );
    // The oldest silent connections were closed to make room; the cap held.
    let mut open = 0;
    for tls in &mut silent {
        let mut buf = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(50), tls.read(&mut buf))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert!(
        open <= 7,
        "{open} silent connections still open next to the client, cap 8"
    );
    assert!(open >= 5, "only the idlest were closed: {open} still open");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_with_a_request_in_flight_is_never_the_victim() {
    let mut server = Running::start(|c| c.max_connections = 2).await;
    let mut busy = server.http1().await;
    let response = tokio::spawn(async move { busy.send_request(get_request("/slow")).await });
    server.started.recv().await.unwrap();
    // Two more connections at a cap of 2: each evicts the idlest, never the busy one.
    for _ in 0..2 {
        let mut client = server.http1().await;
        let resp = client.send_request(get_request("/hello")).await.unwrap();
        assert_eq!(text(resp).await.0, 200);
    }
    let resp = response.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(text(resp).await, (200, "slow".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn with_every_connection_busy_a_new_one_is_refused() {
    let mut server = Running::start(|c| c.max_connections = 1).await;
    let mut busy = server.http1().await;
    let _response = tokio::spawn(async move { busy.send_request(get_request("/hang")).await });
    server.started.recv().await.unwrap();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the server closes the connection it has no room for");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(server);
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let server = Running::start(|_| {}).await;
    let mut client = server.http1().await;
    let (code, peer) = text(client.send_request(get_request("/peer")).await.unwrap()).await;
    assert_eq!(code, 200);
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    server.stop().await;
}

#[tokio::test]
async fn a_value_held_by_an_upgraded_connection_lives_until_it_closes() {
    let mut server = Running::start(|c| c.idle_timeout = Duration::from_millis(100)).await;
    let req = "wss://localhost/hold".into_client_request().unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, server.tls(&[b"http/1.1"]).await)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    // Well past the idle timeout: the upgraded connection is busy, not idle, and keeps what it holds.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(server.held.try_recv(), Err(mpsc::error::TryRecvError::Empty)));
    ws.send(Message::text("still here")).await.unwrap();
    ws.close(None).await.unwrap();
    drop(ws);
    let closed = tokio::time::timeout(Duration::from_secs(5), server.held.recv()).await;
    assert_eq!(
        closed,
        Ok(Some(())),
        "the held value is dropped when the connection closes"
    );
    server.stop().await;
}
