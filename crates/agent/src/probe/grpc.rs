//! gRPC probes: one `grpc.health.v1.Health/Check` call to the pod IP over plaintext HTTP/2, passing when the answer
//! is `SERVING`, like the kubelet's gRPC prober (kubernetes/kubernetes `pkg/probe/grpc`). The two tiny protobuf
//! messages are encoded by hand; there is no gRPC library here, and no TLS (upstream's probes have none either).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::GRPCAction;
use tokio::net::TcpStream;

use super::{go_duration, go_quote, join_host_port, AbortOnDrop, ProbeOutcome, ProbeTarget, USER_AGENT};

/// The gRPC health checking protocol's method (grpc/grpc `doc/health-checking.md`).
const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

pub(super) async fn grpc_probe(action: &GRPCAction, target: &ProbeTarget<'_>, timeout: Duration) -> ProbeOutcome {
    let Ok(port) = u16::try_from(action.port) else {
        return ProbeOutcome::Unknown(format!("invalid port number: {}", action.port));
    };
    if port == 0 {
        return ProbeOutcome::Unknown("invalid port number: 0".to_string());
    }
    // gRPC probes have no host field: they always go to the pod IP.
    let Some(host) = target.pod_ip.filter(|ip| !ip.is_empty()) else {
        return ProbeOutcome::Unknown("pod has no IP address to probe".to_string());
    };
    let addr = join_host_port(host, port);
    let service = action.service.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;

    // grpc-go's blocking dial keeps retrying until the deadline, so a refused connection surfaces as a timeout.
    let connect = async {
        loop {
            match TcpStream::connect((host, port)).await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let Ok(stream) = tokio::time::timeout_at(deadline, connect).await else {
        return ProbeOutcome::Failure(format!(
            "timeout: failed to connect service {} within {}: context deadline exceeded",
            go_quote(&addr),
            go_duration(timeout)
        ));
    };
    match tokio::time::timeout_at(deadline, grpc_health_check(stream, &addr, &service)).await {
        Err(_) => ProbeOutcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        )),
        Ok(Err(GrpcError::Connect(message))) => ProbeOutcome::Failure(format!(
            "error: failed to connect service at {}: {message}",
            go_quote(&addr)
        )),
        Ok(Err(GrpcError::Status { code, message })) => match code {
            GRPC_UNIMPLEMENTED => ProbeOutcome::Failure(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
            )),
            GRPC_DEADLINE_EXCEEDED => ProbeOutcome::Failure(format!(
                "timeout: health rpc did not complete within {}",
                go_duration(timeout)
            )),
            _ => ProbeOutcome::Failure(format!(
                "error: health rpc probe failed: rpc error: code = {} desc = {message}",
                grpc_code_name(code)
            )),
        },
        Ok(Ok(1)) => ProbeOutcome::Success,
        Ok(Ok(status)) => ProbeOutcome::Failure(format!(
            "service unhealthy (responded with {})",
            go_quote(&serving_status_name(status))
        )),
    }
}

const GRPC_DEADLINE_EXCEEDED: u32 = 4;
const GRPC_UNIMPLEMENTED: u32 = 12;

enum GrpcError {
    /// The HTTP/2 connection could not be set up.
    Connect(String),
    /// The call ended with a non-OK gRPC status.
    Status { code: u32, message: String },
}

/// One `grpc.health.v1.Health/Check` call over HTTP/2 with prior knowledge (no TLS: upstream's gRPC probes are
/// plaintext). Returns the response's `status` enum value.
async fn grpc_health_check(stream: TcpStream, authority: &str, service: &str) -> Result<u64, GrpcError> {
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| GrpcError::Connect(e.to_string()))?;
    let driver = AbortOnDrop(tokio::spawn(conn));
    let request = Request::post(format!("http://{authority}{HEALTH_CHECK_PATH}"))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .body(Full::new(grpc_frame(&encode_health_check_request(service))))
        .map_err(|e| GrpcError::Connect(e.to_string()))?;
    let unavailable = |e: hyper::Error| GrpcError::Status {
        code: 14,
        message: e.to_string(),
    };
    let response = sender.send_request(request).await.map_err(unavailable)?;
    let http_status = response.status();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.map_err(unavailable)?;
    drop(driver);
    if http_status != StatusCode::OK {
        // grpc-go maps a non-200 answer to a gRPC code (404 is Unimplemented: no such service on this server).
        let code = match http_status.as_u16() {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => GRPC_UNIMPLEMENTED,
            429 | 502 | 503 | 504 => 14,
            _ => 2,
        };
        let reason = http_status.canonical_reason().unwrap_or("");
        let message = format!(
            "unexpected HTTP status code received from server: {} ({reason})",
            http_status.as_u16()
        );
        return Err(GrpcError::Status { code, message });
    }
    // A trailers-only response carries grpc-status in the headers; otherwise it is in the trailers.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
    };
    let code = match field("grpc-status") {
        Some(text) => text.trim().parse::<u32>().unwrap_or(2),
        None => {
            return Err(GrpcError::Status {
                code: 13,
                message: "server closed the stream without sending trailers".into(),
            })
        }
    };
    if code != 0 {
        let message = field("grpc-message").map(percent_decode).unwrap_or_default();
        return Err(GrpcError::Status { code, message });
    }
    let body = collected.to_bytes();
    let message = grpc_unframe(&body).ok_or_else(|| GrpcError::Status {
        code: 13,
        message: "grpc: failed to unmarshal the received message".to_string(),
    })?;
    decode_health_check_response(message).ok_or_else(|| GrpcError::Status {
        code: 13,
        message: "grpc: failed to unmarshal the received message".into(),
    })
}

/// `HealthCheckRequest { string service = 1; }` in protobuf wire format (an empty service encodes to nothing).
fn encode_health_check_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// Reads `HealthCheckResponse { ServingStatus status = 1; }`, skipping unknown fields. A missing status is 0
/// (`UNKNOWN`), as protobuf defaults say.
fn decode_health_check_response(mut buf: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !buf.is_empty() {
        let key = take_varint(&mut buf)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let value = take_varint(&mut buf)?;
                if field == 1 {
                    status = value;
                }
            }
            1 => buf = buf.get(8..)?,
            2 => {
                let len = usize::try_from(take_varint(&mut buf)?).ok()?;
                buf = buf.get(len..)?;
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A gRPC length-prefixed message: a zero compression flag, the length as a big-endian u32, the message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// The first message of a gRPC response body (uncompressed only: the probe never asks for compression).
fn grpc_unframe(body: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = body.split_first()?;
    if flag != 0 {
        return None;
    }
    let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    rest.get(4..4 + len)
}

fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        other => other.to_string(),
    }
}

/// grpc-go's names for status codes (`codes.Code.String()`).
fn grpc_code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("Code({code})"), |n| n.to_string())
}

/// Decodes the `%XX` escapes gRPC uses in `grpc-message`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    //! gRPC probes against a hand-rolled h2c health server, and the hand encoding of the health messages.

    use std::convert::Infallible;

    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use k8s_openapi::api::core::v1::Probe;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::super::tests::{closed_port, run_local};
    use super::*;

    type GrpcBody = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    /// An h2c server answering Health/Check with `status` (or a non-OK grpc-status when `grpc_status` is not 0),
    /// reporting the service name each request asked about.
    async fn grpc_server(status: u64, grpc_status: u32) -> (u16, mpsc::UnboundedReceiver<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let message = grpc_unframe(&body).unwrap();
                        let service = if message.is_empty() {
                            String::new()
                        } else {
                            String::from_utf8(message[2..].to_vec()).unwrap()
                        };
                        let _ = tx.send((path, service));
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", grpc_status.to_string().parse().unwrap());
                        let mut frames = Vec::new();
                        if grpc_status == 0 {
                            let mut msg = vec![0x08];
                            put_varint(&mut msg, status);
                            frames.push(Ok(Frame::data(grpc_frame(&msg))));
                        } else {
                            trailers.insert("grpc-message", "no%20such%20thing".parse().unwrap());
                        }
                        frames.push(Ok(Frame::trailers(trailers)));
                        let body: GrpcBody = StreamBody::new(futures::stream::iter(frames));
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (port, rx)
    }

    fn grpc(port: u16, service: Option<&str>) -> Probe {
        Probe {
            grpc: Some(GRPCAction {
                port: port.into(),
                service: service.map(str::to_string),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn grpc_succeeds_when_the_service_is_serving() {
        let (port, mut requests) = grpc_server(1, 0).await;
        assert_eq!(run_local(&grpc(port, Some("db"))).await, ProbeOutcome::Success);
        assert_eq!(
            requests.recv().await.unwrap(),
            ("/grpc.health.v1.Health/Check".into(), "db".into())
        );
        assert_eq!(run_local(&grpc(port, None)).await, ProbeOutcome::Success);
        assert_eq!(requests.recv().await.unwrap().1, "");
    }

    #[tokio::test]
    async fn grpc_fails_with_the_reported_status_name() {
        let (port, _requests) = grpc_server(2, 0).await;
        assert_eq!(
            run_local(&grpc(port, None)).await,
            ProbeOutcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
    }

    #[tokio::test]
    async fn grpc_without_the_health_service_says_so() {
        let (port, _requests) = grpc_server(0, GRPC_UNIMPLEMENTED).await;
        assert_eq!(
            run_local(&grpc(port, None)).await,
            ProbeOutcome::Failure(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): no such thing"
                    .into()
            )
        );
        let (port, _requests) = grpc_server(0, 14).await;
        assert_eq!(
            run_local(&grpc(port, None)).await,
            ProbeOutcome::Failure(
                "error: health rpc probe failed: rpc error: code = Unavailable desc = no such thing".into()
            )
        );
    }

    #[tokio::test]
    async fn grpc_to_a_closed_port_times_out_like_a_blocking_dial() {
        let port = closed_port();
        assert_eq!(
            run_local(&grpc(port, None)).await,
            ProbeOutcome::Failure(format!(
                "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"
            ))
        );
    }
    #[test]
    fn health_messages_round_trip_through_the_hand_encoding() {
        assert_eq!(encode_health_check_request(""), Vec::<u8>::new());
        assert_eq!(encode_health_check_request("ab"), vec![0x0a, 2, b'a', b'b']);
        assert_eq!(decode_health_check_response(&[0x08, 0x01]), Some(1));
        assert_eq!(decode_health_check_response(&[]), Some(0));
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(decode_health_check_response(&[0x12, 1, 0xff, 0x08, 0x02]), Some(2));
        assert_eq!(grpc_unframe(&grpc_frame(b"xyz")), Some(&b"xyz"[..]));
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
    }
}
