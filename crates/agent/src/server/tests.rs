//! Checks the agent server end to end over a real TLS loopback connection, against the fake runtime: token
//! checks, the container lookup (current and previous attempts), log options, following, and exec in both
//! WebSocket dialects with stdin, resize, the v5 close channel and exit codes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime::fake::{ExecScript, FakeRuntime};
use berth_runtime::{
    ContainerConfig, ContainerInfo, ContainerRuntime, ExecOptions, ExecSession, ImageInfo, LogOptions, Output,
    RuntimeError, RuntimeEvent, RuntimeVersion,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::*;

const TOKEN: &str = "cluster-token";
const NODE: &str = "node-a";
const IMAGE: &str = "localhost/berth/workload:0.1.0";

/// Accepts exactly the certificate with the fingerprint the agent published (what the API server does).
#[derive(Debug)]
struct Pinned(String);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.0 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate does not match the pinned fingerprint".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(m, c, d, &algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, &algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A running agent server over a fake runtime.
struct Agent {
    addr: SocketAddr,
    sha256: String,
    fake: Arc<FakeRuntime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Agent {
    async fn start() -> Agent {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image(IMAGE);
        let runtime = Arc::new(Interactive {
            fake: fake.clone(),
            execs: Mutex::new(HashMap::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cert = serving_cert(NODE, &[addr.ip()]).unwrap();
        let sha256 = cert.sha256_hex.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(serve(listener, cert, TOKEN.into(), NODE.into(), runtime, async {
            let _ = stopped.await;
        }));
        Agent {
            addr,
            sha256,
            fake,
            stop: Some(stop),
            done,
        }
    }

    async fn tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(self.sha256.clone())))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::IpAddress(self.addr.ip().into());
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    /// A plain GET; returns the status and a stream of the body.
    async fn get(&self, path: &str, token: &str) -> (u16, hyper::body::Incoming) {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(self.tls().await))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", "agent")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        (resp.status().as_u16(), resp.into_body())
    }

    async fn get_text(&self, path: &str) -> (u16, String) {
        let (code, body) = self.get(path, TOKEN).await;
        let bytes = body.collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Opens an exec WebSocket with the given subprotocol.
    async fn exec(&self, query: &str, protocol: &str) -> Ws {
        let mut req = format!("wss://agent/exec/default/web/app?{query}")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        req.headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::client_async(req, self.tls().await).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
        ws
    }

    /// Creates and starts a pod container with the agent's labels; returns its id.
    async fn container(&self, pod: &str, name: &str, attempt: u32) -> String {
        let labels = BTreeMap::from([
            (labels::NODE.to_string(), NODE.to_string()),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            (labels::POD_NAME.to_string(), pod.to_string()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
            (labels::CONTAINER_KIND.to_string(), "app".to_string()),
            (labels::ATTEMPT.to_string(), attempt.to_string()),
        ]);
        let config = ContainerConfig {
            name: format!("{pod}-{name}-{attempt}"),
            image: IMAGE.into(),
            labels,
            ..Default::default()
        };
        let id = self.fake.create_container(&config).await.unwrap();
        self.fake.start_container(&id).await.unwrap();
        id
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The next piece of a streamed body, `None` at its end.
async fn next(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    frame.map(|f| f.unwrap().into_data().unwrap())
}

/// Reads an exec session to its end: output by channel, the final Status and the close code.
async fn finish(ws: &mut Ws) -> (HashMap<u8, Vec<u8>>, Value, Option<u16>) {
    let mut channels: HashMap<u8, Vec<u8>> = HashMap::new();
    let mut status = Value::Null;
    let mut close = None;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap() {
        // After the close handshake the agent drops the connection; rustls reports the missing close_notify.
        let Ok(msg) = msg else {
            assert!(close.is_some(), "{msg:?}");
            break;
        };
        match msg {
            Message::Binary(b) => {
                let (ch, payload) = b.split_first().unwrap();
                if *ch == 3 {
                    status = serde_json::from_slice(payload).unwrap();
                } else {
                    channels.entry(*ch).or_default().extend_from_slice(payload);
                }
            }
            Message::Close(frame) => close = frame.map(|f| u16::from(f.code)),
            _ => {}
        }
    }
    (channels, status, close)
}

#[tokio::test]
async fn requests_without_the_cluster_token_are_unauthorized() {
    let agent = Agent::start().await;
    for token in ["wrong", ""] {
        let (code, body) = agent.get("/containerLogs/default/web/app", token).await;
        assert_eq!(code, 401);
        let status: Value = serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(status["reason"], "Unauthorized");
    }
    agent.stop().await;
}

#[tokio::test]
async fn logs_honour_tail_timestamps_and_limit() {
    let agent = Agent::start().await;
    let id = agent.container("web", "app", 0).await;
    for line in ["one\n", "two\n", "three\n"] {
        agent.fake.add_log(&id, Output::Stdout(Bytes::from(line)));
    }
    agent.fake.add_log(&id, Output::Stderr(Bytes::from("oops\n")));
    assert_eq!(
        agent.get_text("/containerLogs/default/web/app").await,
        (200, "one\ntwo\nthree\noops\n".into())
    );
    assert_eq!(
        agent.get_text("/containerLogs/default/web/app?tailLines=2").await.1,
        "three\noops\n"
    );
    assert_eq!(
        agent.get_text("/containerLogs/default/web/app?limitBytes=6").await.1,
        "one\ntw"
    );
    let (_, stamped) = agent
        .get_text("/containerLogs/default/web/app?timestamps=true&tailLines=1")
        .await;
    let (stamp, rest) = stamped.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamped}");
    assert_eq!(rest, "oops\n");
    let (code, body) = agent.get_text("/containerLogs/default/web/app?tailLines=-1").await;
    assert_eq!(code, 400, "{body}");
    agent.stop().await;
}

#[tokio::test]
async fn following_logs_streams_until_the_container_exits() {
    let agent = Agent::start().await;
    let id = agent.container("web", "app", 0).await;
    agent.fake.add_log(&id, Output::Stdout(Bytes::from("before\n")));
    let (code, mut body) = agent.get("/containerLogs/default/web/app?follow=true", TOKEN).await;
    assert_eq!(code, 200);
    assert_eq!(next(&mut body).await.unwrap(), "before\n");
    agent.fake.add_log(&id, Output::Stdout(Bytes::from("after\n")));
    assert_eq!(next(&mut body).await.unwrap(), "after\n");
    agent.fake.exit(&id, 0);
    assert!(next(&mut body).await.is_none(), "the stream ends with the container");
    agent.stop().await;
}

#[tokio::test]
async fn previous_reads_the_attempt_before_the_current_one() {
    let agent = Agent::start().await;
    let (code, body) = agent.get_text("/containerLogs/default/web/app").await;
    assert_eq!(code, 400);
    assert!(
        body.contains(r#"container \"app\" in pod \"web\" is not available"#),
        "{body}"
    );

    let first = agent.container("web", "app", 0).await;
    agent.fake.add_log(&first, Output::Stdout(Bytes::from("first\n")));
    let (code, body) = agent.get_text("/containerLogs/default/web/app?previous=true").await;
    assert_eq!(code, 400);
    assert!(
        body.contains(r#"previous terminated container \"app\" in pod \"web\" not found"#),
        "{body}"
    );

    agent.fake.exit(&first, 1);
    let second = agent.container("web", "app", 1).await;
    agent.fake.add_log(&second, Output::Stdout(Bytes::from("second\n")));
    // Another pod's and another container's logs are never picked.
    let other = agent.container("other", "app", 5).await;
    agent.fake.add_log(&other, Output::Stdout(Bytes::from("other\n")));
    assert_eq!(agent.get_text("/containerLogs/default/web/app").await.1, "second\n");
    assert_eq!(
        agent.get_text("/containerLogs/default/web/app?previous=true").await.1,
        "first\n"
    );
    agent.stop().await;
}

#[tokio::test]
async fn exec_v5_reports_output_and_a_non_zero_exit_code() {
    let agent = Agent::start().await;
    agent.container("web", "app", 0).await;
    agent.fake.script_exec(
        &["sh", "-c", "exit 3"],
        ExecScript {
            output: vec![Output::Stdout(Bytes::from("out")), Output::Stderr(Bytes::from("err"))],
            exit_code: 3,
        },
    );
    let mut ws = agent
        .exec(
            "command=sh&command=-c&command=exit%203&stdout=true&stderr=true",
            exec::V5_PROTOCOL,
        )
        .await;
    let (channels, status, close) = finish(&mut ws).await;
    assert_eq!(channels[&1], b"out");
    assert_eq!(channels[&2], b"err");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(close, Some(1000));
    agent.stop().await;
}

#[tokio::test]
async fn exec_v4_accepts_text_frames_and_reports_success() {
    let agent = Agent::start().await;
    agent.container("web", "app", 0).await;
    let mut ws = agent
        .exec("command=cat&stdin=true&stdout=true&stderr=true", exec::V4_PROTOCOL)
        .await;
    // The Python client sends str data as text frames, the channel as the first character.
    ws.send(Message::Text("\u{0}hello ".into())).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\x00world")))
        .await
        .unwrap();
    // v4 has no close channel; the client ends stdin by closing the socket... the echo ends on our marker.
    ws.send(Message::Binary(Bytes::from_static(b"\x00\x04"))).await.unwrap();
    let (channels, status, close) = finish(&mut ws).await;
    assert_eq!(channels[&1], b"hello world");
    assert_eq!(status, serde_json::json!({"metadata": {}, "status": "Success"}));
    assert_eq!(close, Some(1000));
    agent.stop().await;
}

#[tokio::test]
async fn exec_v5_close_channel_ends_stdin_and_resizes_reach_the_runtime() {
    let agent = Agent::start().await;
    agent.container("web", "app", 0).await;
    let mut ws = agent
        .exec("command=cat&stdin=true&stdout=true&tty=true", exec::V5_PROTOCOL)
        .await;
    ws.send(Message::Binary(Bytes::from_static(
        b"\x04{\"Width\":100,\"Height\":30}",
    )))
    .await
    .unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\x00typed")))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[255, 0]))).await.unwrap();
    let (channels, status, close) = finish(&mut ws).await;
    assert_eq!(channels[&1], b"typed");
    assert_eq!(status["status"], "Success");
    assert_eq!(close, Some(1000));
    let resizes = agent.fake.calls_of("exec_resize");
    assert!(resizes.iter().any(|c| c.ends_with("100x30")), "{resizes:?}");
    agent.stop().await;
}

#[tokio::test]
async fn exec_errors_before_the_upgrade_are_statuses() {
    let agent = Agent::start().await;
    // No container at all.
    let (code, body) = agent.get_text("/exec/default/web/app?command=ls&stdout=true").await;
    assert_eq!(code, 400, "{body}");
    // A stopped container.
    let id = agent.container("web", "app", 0).await;
    agent.fake.exit(&id, 0);
    let mut req = "wss://agent/exec/default/web/app?command=ls&stdout=true"
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", exec::V5_PROTOCOL.parse().unwrap());
    let err = tokio_tungstenite::client_async(req, agent.tls().await)
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("{err:?}")
    };
    assert_eq!(resp.status(), 400);
    let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains(r#"container \"app\" in pod \"web\" is not running"#),
        "{body}"
    );
    // SPDY is refused with a message kubectl can show.
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(agent.tls().await))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/exec/default/web/app?command=ls&stdout=true")
        .header("host", "agent")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 400);
    agent.stop().await;
}

#[tokio::test]
async fn shutdown_ends_following_streams() {
    let agent = Agent::start().await;
    agent.container("web", "app", 0).await;
    let (code, body) = agent.get("/containerLogs/default/web/app?follow=true", TOKEN).await;
    assert_eq!(code, 200);
    let collected = tokio::spawn(body.collect());
    agent.stop().await;
    tokio::time::timeout(Duration::from_secs(5), collected)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The fake runtime, plus an interactive `cat` exec: it echoes stdin to stdout until stdin closes (or a `\x04`
/// arrives, standing in for a terminal's end-of-file, since v4 clients cannot close stdin alone).
struct Interactive {
    fake: Arc<FakeRuntime>,
    execs: Mutex<HashMap<String, Arc<Mutex<Option<i64>>>>>,
}

#[async_trait::async_trait]
impl ContainerRuntime for Interactive {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        self.fake.version().await
    }
    async fn ensure_network(&self, name: &str, subnet: Option<&str>) -> Result<(), RuntimeError> {
        self.fake.ensure_network(name, subnet).await
    }
    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.fake.inspect_image(image).await
    }
    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        self.fake.pull_image(image).await
    }
    async fn import_image(&self, tarball: Bytes) -> Result<(), RuntimeError> {
        self.fake.import_image(tarball).await
    }
    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        self.fake.create_container(config).await
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.fake.start_container(id).await
    }
    async fn stop_container(&self, id: &str, signal: Option<&str>, grace: Duration) -> Result<(), RuntimeError> {
        self.fake.stop_container(id, signal, grace).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.fake.remove_container(id).await
    }
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        self.fake.inspect_container(id).await
    }
    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.fake.list_containers(labels).await
    }
    fn events(&self, labels: &BTreeMap<String, String>) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        self.fake.events(labels)
    }
    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Output, RuntimeError>>, RuntimeError> {
        self.fake.logs(id, options).await
    }
    async fn exec(&self, id: &str, options: &ExecOptions) -> Result<ExecSession, RuntimeError> {
        let session = self.fake.exec(id, options).await?;
        if options.command != ["cat"] {
            return Ok(session);
        }
        let (ours, theirs) = tokio::io::duplex(1024);
        let exit = Arc::new(Mutex::new(None));
        self.execs.lock().unwrap().insert(session.id.clone(), exit.clone());
        let (read, _) = tokio::io::split(ours);
        let output = futures::stream::unfold((read, exit, false), |(mut read, exit, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; 1024];
            match read.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    buf.truncate(n);
                    let eof = buf.last() == Some(&4);
                    if eof {
                        buf.pop();
                        *exit.lock().unwrap() = Some(0);
                    }
                    Some((Ok(Output::Stdout(Bytes::from(buf))), (read, exit, eof)))
                }
                _ => {
                    *exit.lock().unwrap() = Some(0);
                    None
                }
            }
        });
        Ok(ExecSession {
            id: session.id,
            output: output.boxed(),
            input: Box::pin(theirs),
        })
    }
    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        self.fake.exec_resize(exec_id, width, height).await
    }
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        if let Some(exit) = self.execs.lock().unwrap().get(exec_id) {
            return Ok(*exit.lock().unwrap());
        }
        self.fake.exec_exit_code(exec_id).await
    }
}
