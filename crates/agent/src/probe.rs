//! One probe attempt: runs a container's `httpGet`, `tcpSocket`, `exec` or `grpc` check once and says whether it
//! passed, with the message the kubelet would put into an `Unhealthy` event.
//!
//! This file reproduces the kubelet's probers (kubernetes/kubernetes `pkg/probe/{http,tcp,exec,grpc}` and the
//! runners in `pkg/kubelet/prober`): the same success rules, the same defaults, and the same failure texts, so
//! `kubectl describe pod` reads as it does on a real cluster. It does not schedule probes, count thresholds or
//! decide restarts — that is [`crate::prober`]'s job — and it keeps no state between attempts. The mechanisms live
//! in submodules (`exec`, `http`, `grpc`); TCP and what they share are here.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use berth_runtime::ContainerRuntime;

mod exec;
mod grpc;
mod http;

/// The `User-Agent` the kubelet sends with HTTP and gRPC probes (`kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.35";

/// The kubelet reads at most this much of an HTTP probe's body or an exec probe's output (10 KiB).
pub const MAX_READ_LENGTH: usize = 10 * 1024;

/// The upstream default `timeoutSeconds` (used when the field is missing or not positive).
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;

/// What one probe attempt found, with the kubelet's own wording in the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The check passed.
    Success,
    /// The check ran and failed; the message is what follows "Liveness probe failed: " in the `Unhealthy` event
    /// (for example `HTTP probe failed with statuscode: 500`).
    Failure(String),
    /// The check could not be run (an unresolvable port, a runtime error). Upstream throws such results away: they
    /// neither pass nor fail the probe. The message follows "Liveness probe errored and resulted in unknown state: ".
    Unknown(String),
}

/// The container a probe is aimed at.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    /// The pod's IP: the default host of HTTP and TCP probes, and the only host of gRPC probes.
    pub pod_ip: Option<&'a str>,
    /// The runtime's id of the running container (exec probes run in it).
    pub container_id: &'a str,
    /// The container's spec: named ports and static env values are resolved against it.
    pub container: &'a Container,
}

/// Runs one attempt of `probe` against `target`, bounded by the probe's `timeoutSeconds`.
pub async fn run(probe: &Probe, target: &ProbeTarget<'_>, runtime: &dyn ContainerRuntime) -> ProbeOutcome {
    let timeout = probe_timeout(probe);
    if let Some(action) = &probe.exec {
        exec::exec_probe(action, target, runtime, timeout).await
    } else if let Some(action) = &probe.http_get {
        http::http_probe(action, target, timeout).await
    } else if let Some(action) = &probe.tcp_socket {
        tcp_probe(action, target, timeout).await
    } else if let Some(action) = &probe.grpc {
        grpc::grpc_probe(action, target, timeout).await
    } else {
        // Validation requires exactly one handler; upstream's fallback runner reports an unknown result.
        ProbeOutcome::Unknown("missing probe handler".to_string())
    }
}

/// The probe's `timeoutSeconds`, or upstream's default of one second when missing or not positive.
pub fn probe_timeout(probe: &Probe) -> Duration {
    let seconds = probe
        .timeout_seconds
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(1))
}

// ---------------------------------------------------------------------------------------------------------------
// tcpSocket

async fn tcp_probe(action: &TCPSocketAction, target: &ProbeTarget<'_>, timeout: Duration) -> ProbeOutcome {
    let port = match resolve_port(&action.port, target.container) {
        Ok(port) => port,
        Err(message) => return ProbeOutcome::Unknown(message),
    };
    let Some(host) = probe_host(action.host.as_deref(), target) else {
        return ProbeOutcome::Unknown("pod has no IP address to probe".to_string());
    };
    let addr = join_host_port(host, port);
    // A connection that opens is a success even if the server closes it straight away (upstream only dials).
    match dial(host, port, timeout).await {
        Ok(_stream) => ProbeOutcome::Success,
        Err(message) => ProbeOutcome::Failure(format!("dial tcp {addr}: {message}")),
    }
}

/// Opens a TCP connection within `timeout`; the error reads like Go's `net.Dial` error after `dial tcp <addr>: `.
async fn dial(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(format!("connect: {}", errno_text(&err))),
        Err(_) => Err("i/o timeout".to_string()),
    }
}

/// An OS error as Go prints it: the lowercase `strerror` text without Rust's ` (os error N)` suffix.
fn errno_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// shared by the mechanisms

/// Resolves a probe port like upstream's `ResolveContainerPort`: a number is used as is; a name is looked up in the
/// container's ports, and failing that parsed as a number ("maybe it was an int stored as a string"). Errors use
/// Go's texts, since they end up in events (`strconv.Atoi: parsing "http": invalid syntax`).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()));
            match named {
                Some(p) => i64::from(p.container_port),
                None => name
                    .parse::<i64>()
                    .map_err(|_| format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(name)))?,
            }
        }
    };
    match u16::try_from(number) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port number: {number}")),
    }
}

/// The probe's explicit host, or the pod IP.
fn probe_host<'a>(host: Option<&'a str>, target: &ProbeTarget<'a>) -> Option<&'a str> {
    host.filter(|h| !h.is_empty())
        .or(target.pod_ip)
        .filter(|h| !h.is_empty())
}

/// `host:port`, with IPv6 literals in brackets (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A string quoted the way Go's `%q` prints plain text.
fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A whole-second duration as Go prints it (`1s`, `2m0s`, `1h0m5s`).
fn go_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Aborts a spawned connection driver when the probe is done with it (or is dropped by its timeout).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
#[cfg(test)]
mod tests {
    //! TCP probes and port resolution against local listeners; helpers the mechanisms' tests share.

    use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, HTTPGetAction};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use berth_runtime::fake::FakeRuntime;

    use super::*;

    pub(super) fn container() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            env: Some(vec![EnvVar {
                name: "FILE".into(),
                value: Some("/tmp/healthy".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    pub(super) fn http_get(port: IntOrString, path: &str) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                port,
                path: Some(path.into()),
                ..Default::default()
            }),
            timeout_seconds: Some(1),
            ..Default::default()
        }
    }

    pub(super) async fn run_local(probe: &Probe) -> ProbeOutcome {
        let c = container();
        let target = ProbeTarget {
            pod_ip: Some("127.0.0.1"),
            container_id: "none",
            container: &c,
        };
        run(probe, &target, &FakeRuntime::new()).await
    }

    /// A one-response-per-connection HTTP server that reports each request head it reads.
    pub(super) async fn http_server(response: &'static str) -> (u16, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let head = read_head(&mut stream).await;
                let _ = tx.send(head);
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (port, rx)
    }

    pub(super) async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            buf.push(byte[0]);
        }
        String::from_utf8(buf).unwrap()
    }

    pub(super) fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn named_ports_resolve_against_the_container_and_unknown_names_are_errors() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::String("9090".into()), &c), Ok(9090));
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &c),
            Err("invalid port number: 0".into())
        );
        let outcome = run_local(&http_get(IntOrString::String("nope".into()), "/")).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Unknown("strconv.Atoi: parsing \"nope\": invalid syntax".into())
        );
    }

    #[tokio::test]
    async fn tcp_socket_succeeds_when_the_port_accepts_and_fails_when_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let tcp = |port: u16| Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port.into()),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(run_local(&tcp(open)).await, ProbeOutcome::Success);
        let closed = closed_port();
        assert_eq!(
            run_local(&tcp(closed)).await,
            ProbeOutcome::Failure(format!("dial tcp 127.0.0.1:{closed}: connect: connection refused"))
        );
    }

    #[test]
    fn go_formatting_helpers_match_go() {
        assert_eq!(go_duration(Duration::from_secs(65)), "1m5s");
        assert_eq!(go_duration(Duration::from_secs(3605)), "1h0m5s");
        assert_eq!(go_quote("a \"b\""), "\"a \\\"b\\\"\"");
    }
}
