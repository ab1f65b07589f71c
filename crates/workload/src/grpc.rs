//! The gRPC health server behind `serve --grpc-port N`: it answers `grpc.health.v1.Health/Check` over cleartext
//! HTTP/2 with prior knowledge ("h2c"), so pods running the workload can use Kubernetes' `grpc` probes. Whether it
//! answers `SERVING` or `NOT_SERVING` is one switch that `serve` flips (`/control/grpc-not-serving`,
//! `/control/grpc-serving`, `--grpc-not-serving-after`).
//!
//! It is HTTP/2 written by hand on std only (RFC 9113 framing, RFC 7541 header encoding), just enough for unary
//! health checks, and deliberately no more:
//! - Every request is answered as `Health/Check`. Request headers are HPACK-compressed, usually with Huffman
//!   coding and a dynamic table, and reading `:path` would need a full HPACK decoder; the request *body* (the
//!   protobuf `HealthCheckRequest`) is decoded, and the service it names is logged. Every service name gets the
//!   same answer: this program has one health switch, not one per service.
//! - Responses use HPACK "literal without indexing" with plain (not Huffman) strings, which needs no state.
//! - Flow control: the connection-level window is credited back for every DATA frame received; its own
//!   answers (a few dozen bytes) never come close to a peer's window, so it does not track the peer's windows.
//! - No TLS, no server push, no compression, no `Watch` streaming, no priorities.
//!
//! Each connection is served on its own thread, one frame at a time: a request is answered as soon as its stream
//! ends (END_STREAM), in the order the streams end.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `HealthCheckResponse.ServingStatus.SERVING`.
pub const SERVING: u64 = 1;
/// `HealthCheckResponse.ServingStatus.NOT_SERVING`.
pub const NOT_SERVING: u64 = 2;

/// What every HTTP/2 client sends first when it knows the server speaks HTTP/2 (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The default SETTINGS_MAX_FRAME_SIZE, which this server never raises: a peer must not send larger frames.
const MAX_FRAME_SIZE: usize = 16_384;
/// A health check request is a few bytes; refuse streams whose body grows past this.
const MAX_REQUEST_BODY: usize = 16 * 1024;
/// Streams open at once on one connection; more are refused (the peer may retry them).
const MAX_OPEN_STREAMS: usize = 100;
/// A connection with no frame for this long is closed. gRPC clients keep connections open between calls, but a
/// half-open connection must not keep a thread forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

// Frame types (RFC 9113 section 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Frame flags. ACK shares its bit with END_STREAM; which one it means depends on the frame type.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

// Error codes (RFC 9113 section 7).
const PROTOCOL_ERROR: u32 = 0x1;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// gRPC's `INTERNAL` status, which servers answer when a request message cannot be parsed.
const GRPC_INTERNAL: u32 = 13;

/// Serves one client connection until it closes, says GOAWAY, breaks the protocol or stays idle too long.
/// `serving` is read for every request.
pub fn handle_connection(stream: TcpStream, serving: &AtomicBool) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let mut conn = Connection {
        stream,
        peer,
        streams: HashMap::new(),
        last_stream: 0,
        goaway_received: false,
    };
    // Read the preface only as far as it matches, so that a short HTTP/1 request is not left waiting for more.
    let mut preface = [0u8; 24];
    let mut got = 0;
    while got < preface.len() && preface[..got] == PREFACE[..got] {
        let n = conn.stream.read(&mut preface[got..])?;
        if n == 0 {
            // Connected and closed without a word, as a tcpSocket probe does: nothing to answer.
            return Ok(());
        }
        got += n;
    }
    if preface[..got] != PREFACE[..] {
        // Most likely HTTP/1.1 (curl without --http2-prior-knowledge): say what is wrong in the client's protocol.
        let body = "this port speaks gRPC (HTTP/2 with prior knowledge) only\n";
        let answer = format!(
            "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        conn.stream.write_all(answer.as_bytes())?;
        // Closing with the rest of the request unread would send a reset that can destroy the answer before the
        // client reads it (as in serve.rs): half-close, then drain briefly.
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        let _ = conn.stream.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = io::copy(&mut (&conn.stream).take(1 << 16), &mut io::sink());
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 client preface",
        ));
    }
    // The server's connection preface is a SETTINGS frame; the defaults suit this server, so it is empty.
    conn.send(&encode_frame(SETTINGS, 0, 0, &[]))?;
    match conn.serve(serving) {
        Ok(()) => Ok(()),
        Err(ConnError::Io(err)) => Err(err),
        Err(ConnError::Protocol { code, reason }) => {
            // A connection error: tell the peer why before closing (RFC 9113 section 5.4.1).
            let mut payload = conn.last_stream.to_be_bytes().to_vec();
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
            let _ = conn.send(&encode_frame(GOAWAY, 0, 0, &payload));
            Err(io::Error::new(io::ErrorKind::InvalidData, reason))
        }
    }
}

/// One HTTP/2 frame as read off the wire.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Why a connection ended abnormally.
#[derive(Debug)]
enum ConnError {
    Io(io::Error),
    /// The peer broke the protocol; the connection ends with GOAWAY carrying `code`.
    Protocol {
        code: u32,
        reason: &'static str,
    },
}

impl From<io::Error> for ConnError {
    fn from(err: io::Error) -> ConnError {
        ConnError::Io(err)
    }
}

fn protocol_error(reason: &'static str) -> ConnError {
    ConnError::Protocol {
        code: PROTOCOL_ERROR,
        reason,
    }
}

/// The state of one client connection.
struct Connection {
    stream: TcpStream,
    peer: String,
    /// Open streams (the client may still send) and the request bytes received on each.
    streams: HashMap<u32, Vec<u8>>,
    /// The highest stream id the client opened. Stream ids only grow, so a lower new one is an error.
    last_stream: u32,
    /// The client said GOAWAY: finish the open streams, then close.
    goaway_received: bool,
}

impl Connection {
    fn serve(&mut self, serving: &AtomicBool) -> Result<(), ConnError> {
        loop {
            if self.goaway_received && self.streams.is_empty() {
                return Ok(());
            }
            let Some(frame) = read_frame(&mut self.stream)? else {
                return Ok(());
            };
            match frame.kind {
                DATA => self.on_data(frame, serving)?,
                HEADERS => self.on_headers(frame, serving)?,
                RST_STREAM => {
                    // The client gave up on the stream: forget it, and answer nothing.
                    self.streams.remove(&frame.stream);
                }
                SETTINGS => {
                    if frame.stream != 0 {
                        return Err(protocol_error("SETTINGS frame on a stream"));
                    }
                    if frame.flags & ACK == 0 {
                        if frame.payload.len() % 6 != 0 {
                            return Err(ConnError::Protocol {
                                code: FRAME_SIZE_ERROR,
                                reason: "SETTINGS payload is not a multiple of 6 bytes",
                            });
                        }
                        // None of the client's settings matter to answers this small; acknowledge them.
                        self.send(&encode_frame(SETTINGS, ACK, 0, &[]))?;
                    }
                }
                PING => {
                    if frame.payload.len() != 8 {
                        return Err(ConnError::Protocol {
                            code: FRAME_SIZE_ERROR,
                            reason: "PING payload is not 8 bytes",
                        });
                    }
                    if frame.flags & ACK == 0 {
                        self.send(&encode_frame(PING, ACK, 0, &frame.payload))?;
                    }
                }
                GOAWAY => self.goaway_received = true,
                PUSH_PROMISE => return Err(protocol_error("a client must not send PUSH_PROMISE")),
                CONTINUATION => return Err(protocol_error("CONTINUATION without HEADERS")),
                // WINDOW_UPDATE: this server's answers are far smaller than any window, so credit is not tracked.
                // PRIORITY: one request at a time needs no scheduling. Unknown types must be ignored (section 4.1).
                _ => {}
            }
        }
    }

    /// HEADERS opens a stream (or carries a request's trailers). The header block itself is not decoded: every
    /// request is a health check. A block too big for one frame continues in CONTINUATION frames, which must
    /// follow at once.
    fn on_headers(&mut self, frame: Frame, serving: &AtomicBool) -> Result<(), ConnError> {
        let id = frame.stream;
        if id & 1 == 0 {
            // Client-initiated streams have odd ids; 0 is the connection itself.
            return Err(protocol_error("HEADERS on stream 0 or on a server-initiated stream id"));
        }
        // Checked for its padding rules only: the fields themselves are not needed.
        let _header_block = unpad(&frame)?;
        let mut end_headers = frame.flags & END_HEADERS != 0;
        while !end_headers {
            let next = read_frame(&mut self.stream)?.ok_or_else(|| protocol_error("EOF inside a header block"))?;
            if next.kind != CONTINUATION || next.stream != id {
                return Err(protocol_error("header block interrupted before END_HEADERS"));
            }
            end_headers = next.flags & END_HEADERS != 0;
        }
        if !self.streams.contains_key(&id) {
            if id <= self.last_stream {
                // A closed stream (already answered or reset) cannot be reopened.
                return Err(protocol_error("HEADERS for a closed stream"));
            }
            self.last_stream = id;
            if self.goaway_received {
                return Ok(());
            }
            if self.streams.len() >= MAX_OPEN_STREAMS {
                return self.reset(id, REFUSED_STREAM);
            }
            self.streams.insert(id, Vec::new());
        }
        if frame.flags & END_STREAM != 0 {
            self.respond(id, serving)?;
        }
        Ok(())
    }

    /// DATA carries the request message, possibly split over several frames.
    fn on_data(&mut self, frame: Frame, serving: &AtomicBool) -> Result<(), ConnError> {
        if frame.stream == 0 {
            return Err(protocol_error("DATA on stream 0"));
        }
        // Padding counts against flow control too. Give the whole frame's credit back at once, on the connection:
        // the bytes are consumed right here, and a client reusing the connection for many checks would otherwise
        // run out of window after 64 KiB. The stream's own window outlasts any one request this server accepts.
        if let Ok(credit) = u32::try_from(frame.payload.len()) {
            if credit > 0 {
                self.send(&encode_frame(WINDOW_UPDATE, 0, 0, &credit.to_be_bytes()))?;
            }
        }
        let data = unpad(&frame)?;
        let id = frame.stream;
        // Data for a stream that is closed or was reset is dropped (it may have been in flight).
        let Some(body) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if body.len() + data.len() > MAX_REQUEST_BODY {
            self.streams.remove(&id);
            return self.reset(id, ENHANCE_YOUR_CALM);
        }
        body.extend_from_slice(data);
        if frame.flags & END_STREAM != 0 {
            self.respond(id, serving)?;
        }
        Ok(())
    }

    /// Answers the request on stream `id`, which the client has finished, and closes the stream.
    fn respond(&mut self, id: u32, serving: &AtomicBool) -> Result<(), ConnError> {
        let body = self.streams.remove(&id).unwrap_or_default();
        let mut out = Vec::new();
        match parse_health_check_request(&body) {
            Ok(service) => {
                let status = if serving.load(Ordering::SeqCst) {
                    SERVING
                } else {
                    NOT_SERVING
                };
                // A gRPC response: headers, one length-prefixed message, then trailers that end the stream.
                let headers = encode_headers(&[(":status", "200"), ("content-type", "application/grpc")]);
                out.extend(encode_frame(HEADERS, END_HEADERS, id, &headers));
                out.extend(encode_frame(DATA, 0, id, &grpc_message(&[0x08, status as u8])));
                out.extend(encode_frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    id,
                    &encode_headers(&[("grpc-status", "0")]),
                ));
                println!(
                    "{} grpc Health/Check service={service:?} {}",
                    self.peer,
                    status_name(status)
                );
            }
            Err(message) => {
                // A "trailers-only" response: the status goes in the one and only HEADERS frame.
                let code = GRPC_INTERNAL.to_string();
                let headers = encode_headers(&[
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-status", &code),
                    ("grpc-message", message),
                ]);
                out.extend(encode_frame(HEADERS, END_HEADERS | END_STREAM, id, &headers));
                println!("{} grpc Health/Check: {message}", self.peer);
            }
        }
        self.send(&out)?;
        Ok(())
    }

    fn reset(&mut self, id: u32, code: u32) -> Result<(), ConnError> {
        Ok(self.send(&encode_frame(RST_STREAM, 0, id, &code.to_be_bytes()))?)
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

/// Reads one frame. `None` when the connection ended (closed by the peer, or idle past the read timeout).
fn read_frame(stream: &mut impl Read) -> Result<Option<Frame>, ConnError> {
    let mut header = [0u8; 9];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None)
        }
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    if len > MAX_FRAME_SIZE {
        return Err(ConnError::Protocol {
            code: FRAME_SIZE_ERROR,
            reason: "frame larger than SETTINGS_MAX_FRAME_SIZE",
        });
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok(Some(Frame {
        kind: header[3],
        flags: header[4],
        // The top bit is reserved and must be ignored.
        stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
        payload,
    }))
}

/// The content of a DATA or HEADERS frame without its padding (and, for HEADERS, without the priority fields).
fn unpad(frame: &Frame) -> Result<&[u8], ConnError> {
    let mut content = &frame.payload[..];
    if frame.flags & PADDED != 0 {
        let (&pad, rest) = content
            .split_first()
            .ok_or_else(|| protocol_error("PADDED frame without a pad length"))?;
        let pad = usize::from(pad);
        if pad > rest.len() {
            return Err(protocol_error("padding longer than the frame"));
        }
        content = &rest[..rest.len() - pad];
    }
    if frame.kind == HEADERS && frame.flags & PRIORITY != 0 {
        // Stream dependency (4 bytes) and weight (1 byte).
        content = content
            .get(5..)
            .ok_or_else(|| protocol_error("HEADERS too short for its priority fields"))?;
    }
    Ok(content)
}

/// A frame's wire bytes: 24-bit length, type, flags, 31-bit stream id, payload.
fn encode_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX).min(0x00ff_ffff);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK header block in which every field is a "literal header field without indexing — new name" with
/// plain strings (RFC 7541 section 6.2.2): the most verbose form, but one that needs no table on either side.
fn encode_headers(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        for text in [name, value] {
            // A string literal: H bit 0 (not Huffman), then its length as a 7-bit-prefix integer.
            hpack_integer(&mut out, 0x00, 7, text.len());
            out.extend_from_slice(text.as_bytes());
        }
    }
    out
}

/// HPACK's integer representation (RFC 7541 section 5.1): `value` in a `prefix_bits`-bit prefix of a byte whose
/// other bits are `first`, continued in 7-bit groups when it does not fit.
fn hpack_integer(out: &mut Vec<u8>, first: u8, prefix_bits: u32, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A gRPC length-prefixed message: compression flag 0, big-endian u32 length, the protobuf bytes.
fn grpc_message(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Reads the `service` from a request body holding one gRPC message `HealthCheckRequest { string service = 1; }`.
/// Unknown fields are skipped, as protobuf requires; a missing service is the empty string (the whole server).
fn parse_health_check_request(body: &[u8]) -> Result<String, &'static str> {
    let malformed = "grpc: error unmarshalling request";
    let (&compressed, rest) = body.split_first().ok_or("grpc: no request message")?;
    if compressed != 0 {
        return Err("grpc: compressed requests are not supported");
    }
    let len_bytes: [u8; 4] = rest.get(..4).and_then(|b| b.try_into().ok()).ok_or(malformed)?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let mut message = rest.get(4..).filter(|m| m.len() == len).ok_or(malformed)?;
    let mut service = String::new();
    while !message.is_empty() {
        let key = take_varint(&mut message).ok_or(malformed)?;
        match key & 7 {
            0 => {
                take_varint(&mut message).ok_or(malformed)?;
            }
            1 => message = message.get(8..).ok_or(malformed)?,
            2 => {
                let len = usize::try_from(take_varint(&mut message).ok_or(malformed)?).map_err(|_| malformed)?;
                let value = message.get(..len).ok_or(malformed)?;
                if key >> 3 == 1 {
                    service = String::from_utf8(value.to_vec()).map_err(|_| malformed)?;
                }
                message = &message[len..];
            }
            5 => message = message.get(4..).ok_or(malformed)?,
            _ => return Err(malformed),
        }
    }
    Ok(service)
}

/// A protobuf varint: 7 bits per byte, least significant group first, high bit set on all but the last.
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

fn status_name(status: u64) -> &'static str {
    match status {
        SERVING => "SERVING",
        NOT_SERVING => "NOT_SERVING",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    //! Drives the server with a hand-built HTTP/2 client over a real socket: frames in, frames out.
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::thread;

    /// A server on a loopback port serving one connection, and a client socket connected to it.
    fn connect(serving: &Arc<AtomicBool>) -> (TcpStream, thread::JoinHandle<io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = Arc::clone(serving);
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            handle_connection(stream, &serving)
        });
        let client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (client, server)
    }

    /// The client's preface and an empty SETTINGS frame; then the server's SETTINGS and its ACK are read.
    fn send(client: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        client.write_all(&encode_frame(kind, flags, stream, payload)).unwrap();
    }

    /// A whole Health/Check call on `stream`: its headers, then its message, ending the stream.
    fn send_request(client: &mut TcpStream, stream: u32, service: &str) {
        send(client, HEADERS, END_HEADERS, stream, &request_headers());
        send(client, DATA, END_STREAM, stream, &request_body(service));
    }

    /// A client past the handshake with a server that is SERVING.
    fn serving_client() -> (TcpStream, thread::JoinHandle<io::Result<()>>) {
        let (mut client, server) = connect(&Arc::new(AtomicBool::new(true)));
        handshake(&mut client);
        (client, server)
    }

    fn handshake(client: &mut TcpStream) {
        client.write_all(PREFACE).unwrap();
        send(client, SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let settings = next(client);
        assert_eq!((settings.kind, settings.flags, settings.stream), (SETTINGS, 0, 0));
        let ack = next(client);
        assert_eq!((ack.kind, ack.flags), (SETTINGS, ACK));
    }

    fn next(client: &mut TcpStream) -> Frame {
        read_frame(client).unwrap().expect("a frame from the server")
    }

    /// The request headers a gRPC client sends, in the same plain HPACK form (the server does not read them).
    fn request_headers() -> Vec<u8> {
        encode_headers(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ])
    }

    fn request_body(service: &str) -> Vec<u8> {
        let mut message = vec![0x0a, service.len() as u8];
        message.extend_from_slice(service.as_bytes());
        grpc_message(&message)
    }

    /// Decodes header blocks made only of plain literal-without-indexing fields, which is all the server sends.
    fn decode_headers(mut block: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let string = |block: &mut &[u8]| {
            let len = block[0] as usize;
            assert!(len < 0x7f, "test decoder handles short plain strings only");
            let text = String::from_utf8(block[1..1 + len].to_vec()).unwrap();
            *block = &block[1 + len..];
            text
        };
        while !block.is_empty() {
            assert_eq!(block[0], 0x00, "literal without indexing, new name");
            block = &block[1..];
            let name = string(&mut block);
            let value = string(&mut block);
            fields.push((name, value));
        }
        fields
    }

    /// Reads frames until stream `id` ends and returns them, skipping connection-level WINDOW_UPDATEs.
    fn response(client: &mut TcpStream, id: u32) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let f = next(client);
            if f.kind == WINDOW_UPDATE && f.stream == 0 {
                continue;
            }
            assert_eq!(f.stream, id, "{f:?}");
            let done = f.flags & END_STREAM != 0 && f.kind != DATA;
            frames.push(f);
            if done {
                return frames;
            }
        }
    }

    /// Checks a complete unary response and returns the ServingStatus it carried.
    fn serving_status(frames: &[Frame]) -> u64 {
        let kinds: Vec<u8> = frames.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [HEADERS, DATA, HEADERS], "{frames:?}");
        assert_eq!(
            decode_headers(&frames[0].payload),
            [
                (":status".to_string(), "200".to_string()),
                ("content-type".to_string(), "application/grpc".to_string())
            ]
        );
        assert_eq!(
            decode_headers(&frames[2].payload),
            [("grpc-status".to_string(), "0".to_string())]
        );
        let data = &frames[1].payload;
        assert_eq!(
            &data[..7],
            &[0, 0, 0, 0, 2, 0x08, data[6]],
            "one 2-byte message: field 1, varint"
        );
        u64::from(data[6])
    }

    #[test]
    fn health_checks_follow_the_switch_on_one_connection() {
        let serving = Arc::new(AtomicBool::new(true));
        let (mut client, server) = connect(&serving);
        handshake(&mut client);

        send_request(&mut client, 1, "db");
        assert_eq!(serving_status(&response(&mut client, 1)), SERVING);

        serving.store(false, Ordering::SeqCst);
        send_request(&mut client, 3, "");
        assert_eq!(serving_status(&response(&mut client, 3)), NOT_SERVING);

        // GOAWAY from the client ends the connection cleanly.
        send(&mut client, GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn data_frames_are_credited_back_on_the_connection() {
        let (mut client, _server) = serving_client();
        let body = request_body("abc");
        send(&mut client, HEADERS, END_HEADERS, 1, &request_headers());
        send(&mut client, DATA, END_STREAM, 1, &body);
        let update = next(&mut client);
        assert_eq!((update.kind, update.stream), (WINDOW_UPDATE, 0));
        assert_eq!(update.payload, (body.len() as u32).to_be_bytes());
    }

    #[test]
    fn pings_are_acknowledged_with_their_payload() {
        let (mut client, _server) = serving_client();
        send(&mut client, PING, 0, 0, b"12345678");
        assert_eq!(
            next(&mut client),
            Frame {
                kind: PING,
                flags: ACK,
                stream: 0,
                payload: b"12345678".to_vec()
            }
        );
        // An ACK is not answered: the next frame is the answer to a request.
        send(&mut client, PING, ACK, 0, b"abcdefgh");
        send_request(&mut client, 1, "");
        assert_eq!(serving_status(&response(&mut client, 1)), SERVING);
    }

    #[test]
    fn padded_priority_headers_continuation_and_split_data_are_understood() {
        let (mut client, _server) = serving_client();
        let block = request_headers();
        let (first, second) = block.split_at(10);
        // HEADERS with 3 bytes of padding and priority fields, its block finished by a CONTINUATION frame.
        let mut payload = vec![3, 0, 0, 0, 0, 15];
        payload.extend_from_slice(first);
        payload.extend_from_slice(&[0, 0, 0]);
        send(&mut client, HEADERS, PADDED | PRIORITY, 1, &payload);
        send(&mut client, CONTINUATION, END_HEADERS, 1, second);
        // The message in two DATA frames, the second one padded.
        let body = request_body("split");
        let (a, b) = body.split_at(4);
        send(&mut client, DATA, 0, 1, a);
        let mut padded = vec![2];
        padded.extend_from_slice(b);
        padded.extend_from_slice(&[0, 0]);
        send(&mut client, DATA, END_STREAM | PADDED, 1, &padded);
        assert_eq!(serving_status(&response(&mut client, 1)), SERVING);
    }

    #[test]
    fn a_reset_stream_gets_no_answer_and_later_streams_still_do() {
        let (mut client, _server) = serving_client();
        send(&mut client, HEADERS, END_HEADERS, 1, &request_headers());
        send(&mut client, RST_STREAM, 0, 1, &[0, 0, 0, 8]);
        // Data still in flight for the reset stream is dropped.
        send(&mut client, DATA, END_STREAM, 1, &request_body(""));
        send(&mut client, WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]);
        send_request(&mut client, 3, "");
        // Only stream 3 is answered (response() fails on a frame for any other stream).
        assert_eq!(serving_status(&response(&mut client, 3)), SERVING);
    }

    #[test]
    fn a_malformed_request_gets_a_trailers_only_internal_error() {
        let (mut client, _server) = serving_client();
        send(&mut client, HEADERS, END_HEADERS, 1, &request_headers());
        // The length prefix promises 9 bytes; 1 follows.
        send(&mut client, DATA, END_STREAM, 1, &[0, 0, 0, 0, 9, 0x0a]);
        let frames = response(&mut client, 1);
        assert_eq!(frames.len(), 1);
        let fields = decode_headers(&frames[0].payload);
        assert!(
            fields.contains(&("grpc-status".to_string(), "13".to_string())),
            "{fields:?}"
        );
    }

    #[test]
    fn protocol_errors_end_the_connection_with_goaway() {
        let serving = Arc::new(AtomicBool::new(true));
        let (mut client, server) = connect(&serving);
        handshake(&mut client);
        send(&mut client, HEADERS, END_HEADERS, 2, &request_headers());
        let goaway = next(&mut client);
        assert_eq!(goaway.kind, GOAWAY);
        assert_eq!(&goaway.payload[4..8], &PROTOCOL_ERROR.to_be_bytes());
        assert!(server.join().unwrap().is_err());
    }

    #[test]
    fn a_connection_closed_without_a_word_is_no_error() {
        let serving = Arc::new(AtomicBool::new(true));
        let (client, server) = connect(&serving);
        drop(client);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn an_http1_client_is_told_to_speak_http2() {
        let serving = Arc::new(AtomicBool::new(true));
        let (mut client, _server) = connect(&serving);
        // Shorter than the HTTP/2 preface: the server must not wait for more.
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 505 "), "{answer}");
    }

    #[test]
    fn requests_and_headers_encode_and_decode_by_hand() {
        assert_eq!(parse_health_check_request(&request_body("db")), Ok("db".to_string()));
        assert_eq!(parse_health_check_request(&grpc_message(&[])), Ok(String::new()));
        // An unknown varint field and an unknown fixed64 field around the service are skipped.
        let message = [0x10, 0x96, 0x01, 0x0a, 1, b'x', 0x19, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(parse_health_check_request(&grpc_message(&message)), Ok("x".to_string()));
        assert!(parse_health_check_request(&[]).is_err());
        assert!(parse_health_check_request(&[1, 0, 0, 0, 0]).is_err());
        assert!(parse_health_check_request(&grpc_message(&[0x0a, 5, b'x'])).is_err());
        // RFC 7541 C.1.2: 1337 in a 5-bit prefix.
        let mut out = Vec::new();
        hpack_integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        assert_eq!(encode_headers(&[("a", "bc")]), [0, 1, b'a', 2, b'b', b'c']);
    }
}
