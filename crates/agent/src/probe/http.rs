//! HTTP(S) GET probes: one request to the probe's host (the pod IP by default), passing on a 2xx or 3xx status, like
//! the kubelet's HTTP prober (kubernetes/kubernetes `pkg/probe/http`). HTTPS skips certificate verification as the
//! kubelet does. It opens one connection per attempt and keeps none.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use tokio::net::TcpStream;

use super::{
    dial, go_quote, join_host_port, probe_host, resolve_port, AbortOnDrop, ProbeOutcome, ProbeTarget, MAX_READ_LENGTH,
    USER_AGENT,
};

pub(super) async fn http_probe(action: &HTTPGetAction, target: &ProbeTarget<'_>, timeout: Duration) -> ProbeOutcome {
    let port = match resolve_port(&action.port, target.container) {
        Ok(port) => port,
        Err(message) => return ProbeOutcome::Unknown(message),
    };
    let Some(host) = probe_host(action.host.as_deref(), target) else {
        return ProbeOutcome::Unknown("pod has no IP address to probe".to_string());
    };
    let https = match action.scheme.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("http") => false,
        Some("https") => true,
        Some(other) => return ProbeOutcome::Unknown(format!("unsupported protocol scheme {}", go_quote(other))),
    };
    // Upstream defaults the path to "/" and, building a URL, puts a "/" before a relative one.
    let path = match action.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    let host_port = join_host_port(host, port);
    let url = format!("{}://{host_port}{path}", if https { "https" } else { "http" });

    let request = match build_http_request(action, &host_port, &path) {
        Ok(request) => request,
        Err(message) => return ProbeOutcome::Failure(format!("Get {}: {message}", go_quote(&url))),
    };
    let exchange = async {
        let stream = dial(host, port, timeout)
            .await
            .map_err(|m| format!("dial tcp {host_port}: {m}"))?;
        if https {
            let stream = tls_connect(host, stream).await?;
            send_http1(stream, request).await
        } else {
            send_http1(stream, request).await
        }
    };
    // Go's http.Client timeout covers the whole exchange.
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => ProbeOutcome::Failure(format!(
            "Get {}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            go_quote(&url)
        )),
        Ok(Err(message)) => ProbeOutcome::Failure(format!("Get {}: {message}", go_quote(&url))),
        Ok(Ok(status)) => {
            // 2xx and 3xx pass. Upstream follows redirects to the same host and treats a redirect elsewhere as a
            // success with a warning; berth does not follow redirects at all and counts every 3xx as a success.
            if (200..400).contains(&status.as_u16()) {
                ProbeOutcome::Success
            } else {
                ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {}", status.as_u16()))
            }
        }
    }
}

/// The GET request with upstream's headers: the probe's `httpHeaders` (a `Host` header overrides the authority),
/// `User-Agent: kube-probe/1.35` and `Accept: */*` unless given (an empty `Accept` removes it), and
/// `Connection: close` because the kubelet's transport disables keep-alives.
fn build_http_request(action: &HTTPGetAction, host_port: &str, path: &str) -> Result<Request<Empty<Bytes>>, String> {
    let mut headers = hyper::HeaderMap::new();
    for header in action.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(&header.value).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    if !headers.contains_key(hyper::header::USER_AGENT) {
        headers.insert(hyper::header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    match headers.get(hyper::header::ACCEPT) {
        None => {
            headers.insert(hyper::header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        Some(v) if v.is_empty() => {
            headers.remove(hyper::header::ACCEPT);
        }
        Some(_) => {}
    }
    if !headers.contains_key(hyper::header::HOST) {
        let value = HeaderValue::from_str(host_port).map_err(|e| e.to_string())?;
        headers.insert(hyper::header::HOST, value);
    }
    headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    let mut request = Request::get(path)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Sends one HTTP/1.1 request on `io` and returns the status once at most [`MAX_READ_LENGTH`] bytes of the body
/// were read (the kubelet reads no more; the status alone decides the outcome).
async fn send_http1<T>(io: T, request: Request<Empty<Bytes>>) -> Result<StatusCode, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = AbortOnDrop(tokio::spawn(conn));
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut read = 0usize;
    while read < MAX_READ_LENGTH {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            // Upstream treats a broken body as a probe error rather than a failure, but the status has arrived and
            // is what decides; a body cut short by the server does not change it here.
            Some(Err(_)) => break,
        }
    }
    drop(driver);
    Ok(status)
}

/// Wraps `stream` in TLS without verifying the server's certificate, as the kubelet's HTTPS probes do
/// (`InsecureSkipVerify`): probes check liveness, not identity, and pods rarely have certificates for their IPs.
async fn tls_connect(host: &str, stream: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?,
    };
    let connector = tokio_rustls::TlsConnector::from(insecure_tls_config()?);
    connector.connect(server_name, stream).await.map_err(|e| e.to_string())
}

fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyServerCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate but still checks the handshake signatures (what Go's `InsecureSkipVerify` does).
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    //! HTTP and HTTPS probes against tiny local servers: status rules, headers, message texts, timeouts.

    use std::sync::Arc;

    use k8s_openapi::api::core::v1::HTTPHeader;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::super::tests::{closed_port, http_get, http_server, read_head, run_local};
    use super::super::ProbeOutcome;

    #[tokio::test]
    async fn http_get_succeeds_on_2xx_and_sends_upstream_headers() {
        let (port, mut heads) = http_server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let mut probe = http_get(IntOrString::Int(port.into()), "/healthz?x=1");
        probe.http_get.as_mut().unwrap().http_headers = Some(vec![HTTPHeader {
            name: "X-Custom".into(),
            value: "v".into(),
        }]);
        assert_eq!(run_local(&probe).await, ProbeOutcome::Success);
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /healthz?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("user-agent: kube-probe/1.35\r\n"), "{head}");
        assert!(head.contains("accept: */*\r\n"), "{head}");
        assert!(head.contains("x-custom: v\r\n"), "{head}");
        assert!(head.contains(&format!("host: 127.0.0.1:{port}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn http_get_fails_on_500_with_upstreams_message() {
        let (port, _heads) = http_server("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
        let outcome = run_local(&http_get(IntOrString::Int(port.into()), "/")).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[tokio::test]
    async fn http_get_counts_a_redirect_as_success() {
        let (port, _heads) =
            http_server("HTTP/1.1 302 Found\r\nlocation: http://elsewhere/\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(
            run_local(&http_get(IntOrString::Int(port.into()), "/")).await,
            ProbeOutcome::Success
        );
    }

    #[tokio::test]
    async fn http_get_reads_only_the_first_10_kib_of_a_large_body() {
        let body = "x".repeat(1 << 20);
        let response: &'static str =
            Box::leak(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_boxed_str());
        let (port, _heads) = http_server(response).await;
        assert_eq!(
            run_local(&http_get(IntOrString::Int(port.into()), "/")).await,
            ProbeOutcome::Success
        );
    }

    #[tokio::test]
    async fn http_get_to_a_closed_port_fails_like_gos_dialer() {
        let port = closed_port();
        let outcome = run_local(&http_get(IntOrString::Int(port.into()), "")).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn http_get_times_out_when_the_server_never_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                open.push(listener.accept().await.unwrap());
            }
        });
        let outcome = run_local(&http_get(IntOrString::Int(port.into()), "/h")).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/h\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        );
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_verification() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                read_head(&mut tls).await;
                let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                let _ = tls.shutdown().await;
            }
        });
        let mut probe = http_get(IntOrString::Int(port.into()), "/");
        probe.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
        assert_eq!(run_local(&probe).await, ProbeOutcome::Success);
    }
}
