//! Connection and request exhaustion against a real `berth server`: a flood of silent TLS connections under the
//! common open-file limit of 1,024 must not lock kubectl out, requests and watches over their bounds get
//! upstream's 429, and the bearer scheme is accepted in any case.
//!
//! These tests do not look at how the server keeps its bounds (`berth_serve` and `apiserver::inflight` have
//! unit tests for that); they check what a client and an operator reading the log would see.

// End-to-end tests are synchronous programs driving real processes in real time; the workspace ban on
// blocking sleeps and std Instant is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

mod support;

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use support::{eventually, text, Server};

/// As many silent connections as the attack that locked clients out: more than the open-file limit allows.
const SILENT: usize = 1_100;

/// The open-file limit a systemd unit gets by default, set as both soft and hard so the server cannot raise it.
const OPEN_FILES: u64 = 1_024;

/// A TLS client configuration trusting only the server's CA.
fn tls_config(server: &Server) -> Arc<rustls::ClientConfig> {
    let pem = fs::read_to_string(server.credentials().ca_path).expect("read CA");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("CA PEM body is base64");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).expect("CA certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects and completes the TLS handshake, then says nothing; `None` if the server closed it first.
fn silent_connection(server: &Server, config: &Arc<rustls::ClientConfig>) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = rustls::ClientConnection::new(config.clone(), name).expect("TLS client");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).ok()?;
    }
    Some(tcp)
}

/// Whether the server still holds `tcp` open: reading (past any TLS session tickets the server sent after the
/// handshake) neither sees the end nor an error within a moment.
fn still_open(tcp: &mut TcpStream) -> bool {
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) => return matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

#[test]
fn silent_tls_connections_beyond_the_open_file_limit_do_not_lock_kubectl_out() {
    // This process holds the attacker's side of every connection, so it needs more than 1,024 itself.
    berth_serve::raise_open_file_limit().expect("raise this test's open-file limit");
    let server = Server::start_api_with(&[], Some(OPEN_FILES));
    let config = tls_config(&server);
    let idle_rss = rss_kib(&server);

    let mut silent: Vec<TcpStream> = (0..SILENT)
        .filter_map(|_| silent_connection(&server, &config))
        .collect();
    assert!(
        silent.len() > 900,
        "the attack could open only {} connections",
        silent.len()
    );

    // While the flood is held, kubectl still gets in: the server closes the idlest silent connections to make
    // room, and its cap keeps it clear of the open-file limit.
    server.kubectl_ok(&["get", "namespaces"]);
    server.kubectl_ok(&["create", "namespace", "after-the-flood"]);
    server.kubectl_ok(&["get", "namespace", "after-the-flood"]);

    let held = silent.iter_mut().map(still_open).filter(|open| *open).count();
    eprintln!(
        "berth held {held} of {SILENT} silent TLS connections at an open-file limit of {OPEN_FILES} (defaults, no \
         agent); RSS {} KiB idle, {} KiB during the flood",
        idle_rss,
        rss_kib(&server)
    );
    assert!(held < 1_000, "the server held {held} silent connections: no cap");
    assert!(held > 0, "the cap closed every silent connection");

    // The accept loop never ran out of descriptors, and logged nothing in a loop.
    let log = server.log();
    let accept_errors = log.matches("accept failed").count();
    assert!(accept_errors <= 1, "{accept_errors} accept errors logged:\n{log}");
    assert!(log.lines().count() < 50, "the log grew during the attack:\n{log}");
    drop(silent);
}

/// The server's resident memory in KiB (0 if it cannot be read), for the report.
fn rss_kib(server: &Server) -> u64 {
    let Some(pid) = server.pid() else { return 0 };
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A `curl` watch of namespaces running in the background, its output in a file.
struct CurlWatch {
    child: Child,
    out: std::path::PathBuf,
}

impl CurlWatch {
    fn start(server: &Server, name: &str) -> CurlWatch {
        let creds = server.credentials();
        let out = server.scratch(&format!("{name}.out"));
        let child = Command::new("curl")
            .args(["-sS", "--no-buffer", "--http1.1", "--cacert"])
            .arg(&creds.ca_path)
            .args(["--header", &format!("Authorization: Bearer {}", creds.token)])
            .arg(format!("{}/api/v1/namespaces?watch=true", creds.server))
            .stdout(fs::File::create(&out).expect("watch output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("run curl");
        CurlWatch { child, out }
    }

    /// Waits until the watch has delivered its first event, so it is surely open.
    fn wait_open(&self) {
        let open = eventually(Duration::from_secs(20), || {
            fs::read_to_string(&self.out)
                .ok()
                .filter(|s| s.contains("ADDED"))
                .map(|_| ())
        });
        assert!(open.is_some(), "the watch never started");
    }
}

impl Drop for CurlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` with curl, returning the status line's code, the headers and the body.
fn curl_get(server: &Server, path: &str, authorization: &str) -> (u16, String, String) {
    let creds = server.credentials();
    let headers = server.scratch("headers.txt");
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(&creds.ca_path)
        .args(["--header", &format!("Authorization: {authorization} {}", creds.token)])
        .arg("--dump-header")
        .arg(&headers)
        .args(["--write-out", "\n%{http_code}"])
        .arg(format!("{}{path}", creds.server))
        .output()
        .expect("run curl");
    let stdout = text(&out.stdout);
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", ""));
    (
        code.trim().parse().unwrap_or(0),
        fs::read_to_string(headers).unwrap_or_default().to_lowercase(),
        body.to_string(),
    )
}

#[test]
fn watches_over_the_per_client_bound_get_429_with_retry_after() {
    let server = Server::start_api_with(&["--max-long-running-requests-per-client", "2"], None);
    let first = CurlWatch::start(&server, "w1");
    let second = CurlWatch::start(&server, "w2");
    first.wait_open();
    second.wait_open();

    let (code, headers, body) = curl_get(&server, "/api/v1/namespaces?watch=true", "Bearer");
    assert_eq!(code, 429, "{headers}{body}");
    assert!(headers.contains("retry-after: 1"), "{headers}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("a Status body");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["message"], "Too many requests, please try again later.");
    assert_eq!(status["details"]["retryAfterSeconds"], 1);

    // Short requests have a budget of their own, and a closed watch gives its place back.
    server.kubectl_ok(&["get", "namespaces"]);
    drop(first);
    let reopened = eventually(Duration::from_secs(10), || {
        let watch = CurlWatch::start(&server, "w3");
        let open = eventually(Duration::from_secs(2), || {
            fs::read_to_string(&watch.out)
                .ok()
                .filter(|s| s.contains("ADDED"))
                .map(|_| ())
        });
        open.map(|_| watch)
    });
    assert!(reopened.is_some(), "a new watch is admitted once one ended");
}

#[test]
fn the_bearer_scheme_is_accepted_in_any_case() {
    let server = Server::start();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (code, _, body) = curl_get(&server, "/api/v1/namespaces/default", scheme);
        assert_eq!(code, 200, "{scheme}: {body}");
    }
    let (code, _, _) = curl_get(&server, "/api/v1/namespaces/default", "Basic");
    assert_eq!(code, 401);
}
