//! Checks the agent server end to end over a real TLS loopback connection, against the fake runtime: token
//! checks, the container lookup (current and previous attempts), log options, following, and exec in both
//! WebSocket dialects with stdin, resize, the v5 close channel and exit codes, and attach to a container's own
//! process (echoed stdin, the container's exit, TTY resizes, refusals).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime::fake::{ExecScript, FakeRuntime};
use berth_runtime::{
    AttachOptions, ContainerConfig, ContainerInfo, ContainerRuntime, ExecOptions, ExecSession, ImageInfo, LogOptions,
    Output, RuntimeError, RuntimeEvent, RuntimeVersion,
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
        let done = tokio::spawn(serve(listener, cert, TOKEN.into(), NODE.into(), runtime, 64, async {
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
        self.request(http::Method::GET, path, token).await
    }

    /// A request without a body; returns the status and a stream of the body.
    async fn request(&self, method: http::Method, path: &str, token: &str) -> (u16, hyper::body::Incoming) {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(self.tls().await))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "agent")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        (resp.status().as_u16(), resp.into_body())
    }

    /// A POST without a body (what kubectl's SPDY fallback sends); returns the status and the body.
    async fn post_text(&self, path: &str) -> (u16, String) {
        let (code, body) = self.request(http::Method::POST, path, TOKEN).await;
        let bytes = body.collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn get_text(&self, path: &str) -> (u16, String) {
        let (code, body) = self.get(path, TOKEN).await;
        let bytes = body.collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Opens an exec WebSocket with the given subprotocol.
    async fn exec(&self, query: &str, protocol: &str) -> Ws {
        self.websocket("exec", query, protocol).await
    }

    /// Opens an attach WebSocket with the given subprotocol.
    async fn attach(&self, query: &str, protocol: &str) -> Ws {
        self.websocket("attach", query, protocol).await
    }

    /// Opens a WebSocket on `/{verb}/default/web/app`.
    async fn websocket(&self, verb: &str, query: &str, protocol: &str) -> Ws {
        let mut req = format!("wss://agent/{verb}/default/web/app?{query}")
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
        self.container_with(pod, name, attempt, |_| {}).await
    }

    /// Like `container`, with `edit` applied to the creation config first.
    async fn container_with(
        &self,
        pod: &str,
        name: &str,
        attempt: u32,
        edit: impl FnOnce(&mut ContainerConfig),
    ) -> String {
        let labels = BTreeMap::from([
            (labels::NODE.to_string(), NODE.to_string()),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            (labels::POD_NAME.to_string(), pod.to_string()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
            (labels::CONTAINER_KIND.to_string(), "app".to_string()),
            (labels::ATTEMPT.to_string(), attempt.to_string()),
        ]);
        let mut config = ContainerConfig {
            name: format!("{pod}-{name}-{attempt}"),
            image: IMAGE.into(),
            labels,
            ..Default::default()
        };
        edit(&mut config);
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

/// Sends one binary message: a channel byte and its payload.
async fn put(ws: &mut Ws, frame: &'static [u8]) {
    ws.send(Message::Binary(Bytes::from_static(frame))).await.unwrap();
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
            channel::V5_PROTOCOL,
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
        .exec("command=cat&stdin=true&stdout=true&stderr=true", channel::V4_PROTOCOL)
        .await;
    // The Python client sends str data as text frames, the channel as the first character.
    ws.send(Message::Text("\u{0}hello ".into())).await.unwrap();
    put(&mut ws, b"\x00world").await;
    // v4 has no close channel; the client ends stdin by closing the socket... the echo ends on our marker.
    put(&mut ws, b"\x00\x04").await;
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
        .exec("command=cat&stdin=true&stdout=true&tty=true", channel::V5_PROTOCOL)
        .await;
    put(&mut ws, b"\x04{\"Width\":100,\"Height\":30}").await;
    put(&mut ws, b"\x00typed").await;
    put(&mut ws, &[255, 0]).await;
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
    let (code, body) = refused(&agent, "/exec/default/web/app?command=ls&stdout=true").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(r#"container \"app\" in pod \"web\" is not running"#),
        "{body}"
    );
    // SPDY is refused with a message kubectl can show.
    let (code, body) = agent.post_text("/exec/default/web/app?command=ls&stdout=true").await;
    assert_eq!(code, 400);
    assert!(body.contains("SPDY is not supported"), "{body}");
    agent.stop().await;
}

/// The next message on a channel other than the opening empty one, within five seconds.
async fn next_data(ws: &mut Ws) -> (u8, Vec<u8>) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Binary(b) = msg {
            let (ch, payload) = b.split_first().unwrap();
            if !payload.is_empty() {
                return (*ch, payload.to_vec());
            }
        }
    }
}

/// A running container created with `stdin: true` that echoes its stdin, as `cat` does.
async fn cat_container(agent: &Agent, tty: bool) -> String {
    let id = agent
        .container_with("web", "app", 0, |c| {
            c.open_stdin = true;
            c.tty = tty;
        })
        .await;
    agent.fake.echo_stdin(&id);
    id
}

#[tokio::test]
async fn attach_v5_echoes_stdin_and_closing_stdin_ends_only_the_session() {
    let agent = Agent::start().await;
    let id = cat_container(&agent, false).await;
    agent.fake.add_log(&id, Output::Stdout(Bytes::from("written before\n")));
    let mut ws = agent
        .attach("stdin=true&stdout=true&stderr=true", channel::V5_PROTOCOL)
        .await;
    put(&mut ws, b"\x00hello\n").await;
    // Only what the process writes from now on: the echo, not the earlier log line.
    assert_eq!(next_data(&mut ws).await, (1, b"hello\n".to_vec()));
    agent.fake.add_log(&id, Output::Stderr(Bytes::from("warning\n")));
    assert_eq!(next_data(&mut ws).await, (2, b"warning\n".to_vec()));
    // kubectl's end of input: the session ends with Success, the container keeps running.
    put(&mut ws, &[255, 0]).await;
    let (_, status, close) = finish(&mut ws).await;
    assert_eq!(status, serde_json::json!({"metadata": {}, "status": "Success"}));
    assert_eq!(close, Some(1000));
    assert_eq!(agent.fake.attached_stdin(&id).unwrap(), b"hello\n");
    let state = agent.fake.inspect_container(&id).await.unwrap().unwrap().state;
    assert!(
        matches!(state, berth_runtime::ContainerState::Running { .. }),
        "{state:?}"
    );
    assert!(agent.fake.calls_of("attach")[0].ends_with(" stdin,stdout,stderr"));
    agent.stop().await;
}

#[tokio::test]
async fn attach_v4_reads_text_frames_and_ends_when_the_container_stops() {
    let agent = Agent::start().await;
    let id = cat_container(&agent, false).await;
    let mut ws = agent
        .attach("stdin=true&stdout=true&stderr=true", channel::V4_PROTOCOL)
        .await;
    ws.send(Message::Text("\u{0}from python\n".into())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, (1, b"from python\n".to_vec()));
    agent.fake.exit(&id, 0);
    let (_, status, close) = finish(&mut ws).await;
    assert_eq!(status["status"], "Success");
    assert_eq!(close, Some(1000));
    agent.stop().await;
}

#[tokio::test]
async fn attach_with_a_tty_resizes_the_container_terminal_and_leaving_keeps_it_running() {
    let agent = Agent::start().await;
    let id = cat_container(&agent, true).await;
    let mut ws = agent
        .attach("stdin=true&stdout=true&tty=true", channel::V5_PROTOCOL)
        .await;
    put(&mut ws, b"\x04{\"Width\":100,\"Height\":30}").await;
    put(&mut ws, b"\x00typed").await;
    // Messages are handled in order, so the resize reached the runtime before the echo came back.
    assert_eq!(next_data(&mut ws).await, (1, b"typed".to_vec()));
    assert_eq!(
        agent.fake.calls_of("attach_resize"),
        [format!("attach_resize {id} 100x30")]
    );
    assert!(agent.fake.calls_of("exec_resize").is_empty());
    // The client leaving detaches; the container runs on.
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = agent.fake.inspect_container(&id).await.unwrap().unwrap().state;
    assert!(
        matches!(state, berth_runtime::ContainerState::Running { .. }),
        "{state:?}"
    );
    agent.stop().await;
}

/// Asks for a WebSocket that the agent refuses; returns the refusal's status code and body.
async fn refused(agent: &Agent, path: &str) -> (u16, String) {
    let mut req = format!("wss://agent{path}").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", channel::V5_PROTOCOL.parse().unwrap());
    let err = tokio_tungstenite::client_async(req, agent.tls().await)
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("{err:?}")
    };
    let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
    (resp.status().as_u16(), body)
}

#[tokio::test]
async fn attach_errors_before_the_upgrade_are_statuses() {
    let agent = Agent::start().await;
    let (code, body) = refused(&agent, "/attach/default/web/app?stdout=true").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(r#"container \"app\" in pod \"web\" is not available"#),
        "{body}"
    );
    let id = cat_container(&agent, false).await;
    let (code, body) = refused(&agent, "/attach/default/web/app?tty=true").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("you must specify at least one of stdin, stdout, stderr"),
        "{body}"
    );
    // A plain GET, not an upgrade.
    let (code, body) = agent.get_text("/attach/default/web/app?stdout=true").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Upgrade request required"), "{body}");

    agent.fake.exit(&id, 0);
    let (code, body) = refused(&agent, "/attach/default/web/app?stdin=true&stdout=true").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(r#"container \"app\" in pod \"web\" is not running"#),
        "{body}"
    );
    assert!(
        agent.fake.calls_of("attach").is_empty(),
        "no attach to a stopped container"
    );

    // The SPDY transport is refused with a reason kubectl can show.
    let (code, body) = agent.post_text("/attach/default/web/app?stdout=true").await;
    assert_eq!(code, 400);
    assert!(body.contains("SPDY is not supported"), "{body}");
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
    async fn attach(&self, id: &str, options: &AttachOptions) -> Result<ExecSession, RuntimeError> {
        self.fake.attach(id, options).await
    }
    async fn attach_resize(&self, id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        self.fake.attach_resize(id, width, height).await
    }
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        if let Some(exit) = self.execs.lock().unwrap().get(exec_id) {
            return Ok(*exit.lock().unwrap());
        }
        self.fake.exec_exit_code(exec_id).await
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Port-forward. The agent dials the address the runtime reports for the pod's infra container; here the runtime
// reports loopback for every container with an address of its own, so a listener on 127.0.0.1 stands in for the
// pod.

/// A runtime that reports every container address as 127.0.0.1, as if each pod's network were the test's own.
struct Loopback(Interactive);

#[async_trait::async_trait]
impl ContainerRuntime for Loopback {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        self.0.version().await
    }
    async fn ensure_network(&self, name: &str, subnet: Option<&str>) -> Result<(), RuntimeError> {
        self.0.ensure_network(name, subnet).await
    }
    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.0.inspect_image(image).await
    }
    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        self.0.pull_image(image).await
    }
    async fn import_image(&self, tarball: Bytes) -> Result<(), RuntimeError> {
        self.0.import_image(tarball).await
    }
    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        self.0.create_container(config).await
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.start_container(id).await
    }
    async fn stop_container(&self, id: &str, signal: Option<&str>, grace: Duration) -> Result<(), RuntimeError> {
        self.0.stop_container(id, signal, grace).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.remove_container(id).await
    }
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        Ok(self.0.inspect_container(id).await?.map(loopback))
    }
    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(self
            .0
            .list_containers(labels)
            .await?
            .into_iter()
            .map(loopback)
            .collect())
    }
    fn events(&self, labels: &BTreeMap<String, String>) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        self.0.events(labels)
    }
    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Output, RuntimeError>>, RuntimeError> {
        self.0.logs(id, options).await
    }
    async fn exec(&self, id: &str, options: &ExecOptions) -> Result<ExecSession, RuntimeError> {
        self.0.exec(id, options).await
    }
    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        self.0.exec_resize(exec_id, width, height).await
    }
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        self.0.exec_exit_code(exec_id).await
    }
}

fn loopback(mut c: ContainerInfo) -> ContainerInfo {
    if c.ip_address.is_some() {
        c.ip_address = Some("127.0.0.1".into());
    }
    c
}

impl Agent {
    /// An agent whose pods live on loopback ([`Loopback`]).
    async fn start_loopback() -> Agent {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image(IMAGE);
        fake.ensure_network("berth", None).await.unwrap();
        let runtime = Arc::new(Loopback(Interactive {
            fake: fake.clone(),
            execs: Mutex::new(HashMap::new()),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cert = serving_cert(NODE, &[addr.ip()]).unwrap();
        let sha256 = cert.sha256_hex.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(serve(listener, cert, TOKEN.into(), NODE.into(), runtime, 64, async {
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

    /// Starts the infra container of pod `web`, with its own network namespace (and so an address).
    async fn sandbox(&self) -> String {
        self.container_with("web", labels::INFRA_NAME, 0, |c| {
            c.labels
                .insert(labels::CONTAINER_KIND.into(), labels::Kind::Infra.as_str().into());
            c.network = berth_runtime::NetworkMode::Bridge {
                network: "berth".into(),
                hostname: "web".into(),
            };
        })
        .await
    }

    /// Opens a port-forward WebSocket on `/portForward/default/web`.
    async fn port_forward(&self, query: &str, protocol: &str) -> Ws {
        let mut req = format!("wss://agent/portForward/default/web?{query}")
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
}

/// A stand-in for a server in the pod: for each connection it reads one line (or to the end of input) and
/// answers `pod got: <it>`, then closes.
async fn pod_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    got.extend_from_slice(&buf[..n]);
                    if n == 0 || got.ends_with(b"\n") {
                        break;
                    }
                }
                let mut answer = b"pod got: ".to_vec();
                answer.extend_from_slice(&got);
                let _ = conn.write_all(&answer).await;
            });
        }
    });
    port
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// kubectl's side of a SPDY session over the WebSocket.
struct SpdyClient {
    ws: Ws,
    writer: super::spdy::FrameWriter,
    reader: super::spdy::FrameReader,
}

impl SpdyClient {
    fn new(ws: Ws) -> SpdyClient {
        SpdyClient {
            ws,
            writer: Default::default(),
            reader: Default::default(),
        }
    }

    async fn send(&mut self, frame: super::spdy::Frame) {
        let mut buf = bytes::BytesMut::new();
        self.writer.encode(&frame, &mut buf);
        self.ws.send(Message::Binary(buf.freeze())).await.unwrap();
    }

    /// Opens a stream the way kubectl does; the error stream is half-closed at once.
    async fn open(&mut self, stream_id: u32, kind: &str, port: u16, request: u32) {
        let headers = vec![
            ("streamtype".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestid".to_string(), request.to_string()),
        ];
        self.send(super::spdy::Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers,
        })
        .await;
        if kind == "error" {
            self.send(data(stream_id, b"", true)).await;
        }
    }

    /// The next frame from the agent.
    async fn next(&mut self) -> super::spdy::Frame {
        loop {
            if let Some(f) = self.reader.next_frame().unwrap() {
                return f;
            }
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a frame within 5s")
                .unwrap()
                .unwrap();
            if let Message::Binary(b) = msg {
                self.reader.extend(&b);
            }
        }
    }

    /// Collects frames until both streams of a request are finished: (replies, data by stream).
    async fn until_finished(&mut self, streams: &[u32]) -> (Vec<u32>, HashMap<u32, Vec<u8>>) {
        let mut replies = Vec::new();
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut open: Vec<u32> = streams.to_vec();
        while !open.is_empty() {
            match self.next().await {
                super::spdy::Frame::SynReply { stream_id, .. } => replies.push(stream_id),
                super::spdy::Frame::Data { stream_id, fin, data } => {
                    got.entry(stream_id).or_default().extend_from_slice(&data);
                    if fin {
                        open.retain(|s| *s != stream_id);
                    }
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        (replies, got)
    }
}

fn data(stream_id: u32, bytes: &'static [u8], fin: bool) -> super::spdy::Frame {
    super::spdy::Frame::Data {
        stream_id,
        fin,
        data: Bytes::from_static(bytes),
    }
}

#[tokio::test]
async fn port_forward_over_spdy_splices_each_connection_to_the_pod() {
    let agent = Agent::start_loopback().await;
    agent.sandbox().await;
    let port = pod_server().await;
    let mut client = SpdyClient::new(agent.port_forward("", "SPDY/3.1+portforward.k8s.io").await);

    // Two connections at once, interleaved, as kubectl multiplexes them.
    client.open(1, "error", port, 0).await;
    client.open(3, "data", port, 0).await;
    client.open(5, "error", port, 1).await;
    client.open(7, "data", port, 1).await;
    client.send(data(3, b"first", true)).await;
    client.send(data(7, b"second\n", false)).await;
    let (mut replies, got) = client.until_finished(&[1, 3, 5, 7]).await;
    replies.sort();
    assert_eq!(replies, [1, 3, 5, 7], "every stream is accepted");
    assert_eq!(got[&3], b"pod got: first");
    assert_eq!(got[&7], b"pod got: second\n");
    assert!(got[&1].is_empty() && got[&5].is_empty(), "no errors: {got:?}");

    // Pings are echoed; the session outlives its connections.
    client.send(super::spdy::Frame::Ping { id: 1 }).await;
    assert_eq!(client.next().await, super::spdy::Frame::Ping { id: 1 });
    client.open(9, "error", port, 2).await;
    client.open(11, "data", port, 2).await;
    client.send(data(11, b"third", true)).await;
    let (_, got) = client.until_finished(&[9, 11]).await;
    assert_eq!(got[&11], b"pod got: third");
    agent.stop().await;
}

#[tokio::test]
async fn port_forward_reports_a_refused_connection_on_the_error_stream() {
    let agent = Agent::start_loopback().await;
    let sandbox = agent.sandbox().await;
    let port = closed_port().await;
    let mut client = SpdyClient::new(agent.port_forward("", "SPDY/3.1+portforward.k8s.io").await);
    client.open(1, "error", port, 0).await;
    client.open(3, "data", port, 0).await;
    let (_, got) = client.until_finished(&[1, 3]).await;
    assert_eq!(
        String::from_utf8_lossy(&got[&1]),
        format!("error forwarding port {port} to pod {sandbox}, uid : dial tcp 127.0.0.1:{port}: connect: connection refused")
    );
    assert!(got.get(&3).is_none_or(Vec::is_empty));
    agent.stop().await;
}

#[tokio::test]
async fn port_forward_in_the_channel_protocol_opens_each_port_with_its_number() {
    let agent = Agent::start_loopback().await;
    agent.sandbox().await;
    let port = pod_server().await;
    let closed = closed_port().await;
    let mut ws = agent
        .port_forward(&format!("ports={port},{closed}"), "v4.channel.k8s.io")
        .await;
    let mut send = vec![0u8];
    send.extend_from_slice(b"hello\n");
    ws.send(Message::Binary(Bytes::from(send))).await.unwrap();
    let mut channels: HashMap<u8, Vec<Vec<u8>>> = HashMap::new();
    while let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
        match msg {
            Message::Binary(b) => channels.entry(b[0]).or_default().push(b[1..].to_vec()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    // Every channel opens with its port, little-endian, as the Python client checks.
    for (channel, p) in [(0u8, port), (1, port), (2, closed), (3, closed)] {
        assert_eq!(channels[&channel][0], p.to_le_bytes(), "channel {channel}");
    }
    assert_eq!(channels[&0][1..].concat(), b"pod got: hello\n");
    assert_eq!(channels[&1].len(), 1, "no error for the open port");
    let error = String::from_utf8_lossy(&channels[&3][1]).into_owned();
    assert!(
        error.contains(&format!("error forwarding port {closed} to pod")),
        "{error}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn port_forward_needs_a_running_pod_and_a_known_protocol() {
    let agent = Agent::start_loopback().await;
    // No sandbox yet.
    let mut req = "wss://agent/portForward/default/web".into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io".parse().unwrap());
    let err = tokio_tungstenite::client_async(req, agent.tls().await)
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("{err:?}")
    };
    assert_eq!(resp.status(), 400);
    let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains("pod \\\"web\\\" in namespace \\\"default\\\" is not running"),
        "{body}"
    );

    agent.sandbox().await;
    let (code, body) = agent.post_text("/portForward/default/web").await;
    assert_eq!(code, 400, "a POST must be a SPDY upgrade: {body}");
    let (code, body) = agent.get_text("/portForward/default/web").await;
    assert_eq!(code, 400, "a GET must be a WebSocket: {body}");
    agent.stop().await;
}

#[tokio::test]
async fn port_forward_moves_a_megabyte_each_way_without_window_updates() {
    // kubectl's SPDY library sends no WINDOW_UPDATE, so neither side may wait for one: far more than SPDY's initial
    // 64 KiB window must pass in both directions.
    let agent = Agent::start_loopback().await;
    agent.sandbox().await;
    let port = pod_server().await;
    let mut client = SpdyClient::new(agent.port_forward("", "SPDY/3.1+portforward.k8s.io").await);
    client.open(1, "error", port, 0).await;
    client.open(3, "data", port, 0).await;
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let payload: &'static [u8] = Box::leak(payload.into_boxed_slice());
    for (i, chunk) in payload.chunks(32 * 1024).enumerate() {
        let last = (i + 1) * 32 * 1024 >= payload.len();
        client.send(data(3, chunk, last)).await;
    }
    let (_, got) = client.until_finished(&[1, 3]).await;
    assert_eq!(got[&3].len(), b"pod got: ".len() + payload.len());
    assert!(got[&3].ends_with(payload));
    agent.stop().await;
}
