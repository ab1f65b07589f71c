//! The SPDY/3.1 framing that `kubectl port-forward` speaks (draft-mbelshe-httpbis-spdy-00 with the 3.1 additions),
//! as far as a port-forward server needs it: a [`FrameReader`] that cuts a byte stream into [`Frame`]s and a
//! [`FrameWriter`] that encodes them. It does no I/O and knows nothing of port-forward; [`super::portforward`]
//! runs the session.
//!
//! # Wire format
//! Every frame starts with 8 bytes. A control frame has the high bit set, then the version (3) in 15 bits, the
//! type in 16 bits, 8 bits of flags and a 24-bit length; a DATA frame has the high bit clear, a 31-bit stream id,
//! the flags and the length. Name/value header blocks (in SYN_STREAM, SYN_REPLY and HEADERS) are
//! `count, (name length, name, value length, value)*` with 32-bit big-endian lengths, compressed with zlib using
//! the SPDY/3 preset dictionary ([`DICTIONARY`]). Each direction has one zlib stream for the whole session:
//! every header block continues it and ends at a sync flush, so the two contexts must never be reset.
//!
//! # What is deliberately missing
//! Flow control: moby/spdystream (kubectl's SPDY implementation) neither sends WINDOW_UPDATE nor honours a
//! window, so WINDOW_UPDATE and SETTINGS are decoded and then ignored by the session, and the agent relies on
//! the transport's own back-pressure. Server push, priorities and CREDENTIAL frames play no part in
//! port-forward.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
const VERSION: u16 = 3;

/// The largest frame the agent accepts from a client (SPDY's length field allows 16 MiB; kubectl sends at most
/// 32 KiB of data per frame).
pub(crate) const MAX_FRAME: usize = 1 << 20;

/// The largest decompressed header block accepted, so a small compressed frame cannot claim much memory.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// The FIN flag: the sender will send nothing more on the stream.
const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM's UNIDIRECTIONAL flag: the receiver may not send on the stream.
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status: the frame broke the protocol.
pub(crate) const PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: the stream was refused.
pub(crate) const REFUSED_STREAM: u32 = 3;

/// A stream's headers as sent: names lower case, multiple values joined by NUL.
pub(crate) type Headers = Vec<(String, String)>;

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// The client opens a stream.
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    /// The receiver of a SYN_STREAM accepts it.
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// A stream ends abnormally.
    RstStream { stream_id: u32, status: u32 },
    /// Session parameters as (flags, id, value) entries.
    Settings { entries: Vec<(u8, u32, u32)> },
    /// A liveness check; the receiver echoes a ping whose id has the other side's parity.
    Ping { id: u32 },
    /// The session is ending; no stream after `last_good` was processed.
    GoAway { last_good: u32, status: u32 },
    /// More headers for a stream.
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// The sender may send `delta` more bytes on the stream (0 = the session).
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Stream payload; `fin` ends the sender's half.
    Data { stream_id: u32, fin: bool, data: Bytes },
    /// A control frame of a type this module does not know (ignored, as the spec asks).
    Unknown { kind: u16 },
}

/// Why a byte stream is not SPDY/3.1 the agent can read. Each of these ends the session.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub(crate) enum SpdyError {
    /// A control frame of another version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A frame longer than [`MAX_FRAME`].
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    /// A frame shorter than its type requires, or a header block that does not parse.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    /// The header block's zlib stream is corrupt or uses another dictionary.
    #[error("header block does not decompress: {0}")]
    Compression(String),
}

/// Cuts a byte stream into frames, keeping the receive side's zlib context.
pub(crate) struct FrameReader {
    buf: BytesMut,
    inflate: Decompress,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            buf: BytesMut::new(),
            inflate: Decompress::new(true),
        }
    }
}

impl FrameReader {
    /// Appends bytes read from the transport.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let len = (usize::from(self.buf[5]) << 16) | (usize::from(self.buf[6]) << 8) | usize::from(self.buf[7]);
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let head = self.buf.split_to(8);
        let mut body = self.buf.split_to(len).freeze();
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream_id,
                fin,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |n: usize, what: &'static str| {
            if len < n {
                Err(SpdyError::Malformed(what))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(10, "SYN_STREAM")?;
                let stream_id = body.get_u32() & 0x7fff_ffff;
                let associated_to = body.get_u32() & 0x7fff_ffff;
                let priority = body.get_u8() >> 5;
                let _slot = body.get_u8();
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.headers(&body)?,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4, "SYN_REPLY")?;
                let stream_id = body.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&body)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            SETTINGS => {
                need(4, "SETTINGS")?;
                let count = body.get_u32() as usize;
                if body.len() != count.saturating_mul(8) {
                    return Err(SpdyError::Malformed("SETTINGS"));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = body.get_u32();
                        ((word >> 24) as u8, word & 0x00ff_ffff, body.get_u32())
                    })
                    .collect();
                Frame::Settings { entries }
            }
            PING => {
                need(4, "PING")?;
                Frame::Ping { id: body.get_u32() }
            }
            GOAWAY => {
                need(8, "GOAWAY")?;
                Frame::GoAway {
                    last_good: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            WINDOW_UPDATE => {
                need(8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: body.get_u32() & 0x7fff_ffff,
                    delta: body.get_u32() & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        };
        Ok(Some(frame))
    }

    /// Decompresses one header block (continuing the session's zlib stream) and parses it.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Malformed("header block (too large)"));
                }
                out.reserve(out.len().max(256));
            }
            let before = self.inflate.total_in();
            let result = self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = usize::try_from(self.inflate.total_in() - before).unwrap_or(usize::MAX);
            input = input.get(consumed..).unwrap_or_default();
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) => {}
                // The first block names the preset dictionary; the client can only mean SPDY/3's.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
        }
        parse_header_block(&out)
    }
}

/// Encodes frames, keeping the send side's zlib context. Frames must go out in the order they are encoded.
pub(crate) struct FrameWriter {
    deflate: Compress,
}

impl Default for FrameWriter {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // A fresh zlib stream takes a dictionary before any data; this cannot fail.
        let _ = deflate.set_dictionary(&DICTIONARY);
        FrameWriter { deflate }
    }
}

impl FrameWriter {
    /// Appends `frame`'s encoding to `out`.
    pub(crate) fn encode(&mut self, frame: &Frame, out: &mut BytesMut) {
        match frame {
            Frame::Data { stream_id, fin, data } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                put_flags_len(out, flag(*fin), data.len());
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.compress(headers);
                let flags = flag(*fin) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                control(out, SYN_STREAM, flags, 10 + block.len());
                out.put_u32(*stream_id);
                out.put_u32(*associated_to);
                out.put_u8(priority << 5);
                out.put_u8(0);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                let block = self.compress(headers);
                control(out, kind, flag(*fin), 4 + block.len());
                out.put_u32(*stream_id);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, RST_STREAM, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*status);
            }
            Frame::Settings { entries } => {
                control(out, SETTINGS, 0, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32((u32::from(*flags) << 24) | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control(out, PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway { last_good, status } => {
                control(out, GOAWAY, 0, 8);
                out.put_u32(*last_good);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, WINDOW_UPDATE, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*delta);
            }
            Frame::Unknown { .. } => {}
        }
    }

    /// Serialises and compresses a header block, ending it with a sync flush so the peer can decode it whole.
    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = BytesMut::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.put_slice(name.as_bytes());
            plain.put_u32(value.len() as u32);
            plain.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = &plain[..];
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            // Compressing into memory fails only on a misuse of the stream, which this loop does not make.
            let _ = self.deflate.compress_vec(input, &mut out, FlushCompress::Sync);
            let consumed = usize::try_from(self.deflate.total_in() - before).unwrap_or(usize::MAX);
            input = input.get(consumed..).unwrap_or_default();
            // The flush is complete once all input is taken and the output was not filled to the brim.
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

fn put_flags_len(out: &mut BytesMut, flags: u8, len: usize) {
    out.put_u32((u32::from(flags) << 24) | (len as u32 & 0x00ff_ffff));
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    put_flags_len(out, flags, len);
}

/// Parses a decompressed name/value block. Names are lower-cased (the spec requires lower case; Go's
/// `http.Header` sends canonical case through spdystream's own lower-casing, so this only makes lookups simple).
fn parse_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    let bad = SpdyError::Malformed("header block");
    let take = |block: &mut &[u8]| -> Result<String, SpdyError> {
        if block.len() < 4 {
            return Err(bad.clone());
        }
        let n = block.get_u32() as usize;
        if block.len() < n {
            return Err(bad.clone());
        }
        let s = String::from_utf8_lossy(&block[..n]).into_owned();
        block.advance(n);
        Ok(s)
    };
    if block.len() < 4 {
        return Err(SpdyError::Malformed("header block"));
    }
    let count = block.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut block)?.to_ascii_lowercase();
        let value = take(&mut block)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// The first value of a header, by name, ignoring case.
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or_default())
}

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, section 2.6.10.1): common header
/// names, each with a 32-bit length prefix, followed by a run of common values. zlib identifies it by its
/// Adler-32 in the stream header, so it has to be exactly these 1,423 bytes.
pub(crate) static DICTIONARY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    const NAMES: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const VALUES: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
        "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1423);
    for name in NAMES {
        d.extend_from_slice(&(name.len() as u32).to_be_bytes());
        d.extend_from_slice(name.as_bytes());
    }
    d.extend_from_slice(VALUES.as_bytes());
    d
});

#[cfg(test)]
mod tests {
    use super::*;

    /// RST_STREAM status: the sender cancelled the stream.
    const CANCEL: u32 = 5;

    fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut writer = FrameWriter::default();
        let mut wire = BytesMut::new();
        for f in frames {
            writer.encode(f, &mut wire);
        }
        // Fed one byte at a time: frames must come out whole however the transport splits them.
        let mut reader = FrameReader::default();
        let mut out = Vec::new();
        for b in wire.iter() {
            reader.extend(&[*b]);
            while let Some(f) = reader.next_frame().unwrap() {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        assert_eq!(DICTIONARY.len(), 1423);
        // The Adler-32 that zlib writes as the dictionary id into the stream header, which kubectl checks.
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for byte in DICTIONARY.iter() {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn every_frame_type_survives_a_roundtrip_split_anywhere() {
        let headers = |t: &str| {
            vec![
                ("streamtype".to_string(), t.to_string()),
                ("port".to_string(), "8080".to_string()),
                ("requestid".to_string(), "0".to_string()),
            ]
        };
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                fin: false,
                unidirectional: false,
                headers: headers("error"),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                fin: true,
                unidirectional: true,
                headers: headers("data"),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                fin: true,
                headers: vec![("x".into(), "a\0b".into())],
            },
            Frame::RstStream {
                stream_id: 3,
                status: CANCEL,
            },
            Frame::Settings {
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1 << 20,
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new(),
            },
        ];
        assert_eq!(roundtrip(&frames), frames);
    }

    #[test]
    fn frames_are_laid_out_as_the_spec_says() {
        let mut wire = BytesMut::new();
        let mut w = FrameWriter::default();
        w.encode(&Frame::Ping { id: 7 }, &mut wire);
        assert_eq!(&wire[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
        wire.clear();
        w.encode(
            &Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::from_static(b"hi"),
            },
            &mut wire,
        );
        assert_eq!(&wire[..], &[0, 0, 0, 5, 1, 0, 0, 2, b'h', b'i']);
        wire.clear();
        w.encode(
            &Frame::RstStream {
                stream_id: 5,
                status: CANCEL,
            },
            &mut wire,
        );
        assert_eq!(&wire[..], &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5]);
        // The first header block opens a zlib stream that names the SPDY/3 dictionary (FDICT and its id).
        wire.clear();
        w.encode(
            &Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            &mut wire,
        );
        assert_eq!(&wire[..4], &[0x80, 3, 0, 2]);
        let zlib = &wire[12..];
        assert_eq!(zlib[1] & 0x20, 0x20, "FDICT is set");
        assert_eq!(&zlib[2..6], &0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn header_names_are_found_regardless_of_case() {
        let h = vec![("streamtype".to_string(), "data".to_string())];
        assert_eq!(header(&h, "streamType"), Some("data"));
        assert_eq!(header(&h, "port"), None);
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        let mut r = FrameReader::default();
        r.extend(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        assert_eq!(r.next_frame(), Err(SpdyError::Version(2)));
        let mut r = FrameReader::default();
        r.extend(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0]);
        assert_eq!(r.next_frame(), Err(SpdyError::Malformed("PING")));
        let mut r = FrameReader::default();
        r.extend(&[0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4]);
        assert!(matches!(r.next_frame(), Err(SpdyError::Compression(_))));
        let mut r = FrameReader::default();
        r.extend(&[0, 0, 0, 1, 0, 0x7f, 0xff, 0xff]);
        assert!(matches!(r.next_frame(), Err(SpdyError::TooLarge(_))));
    }
}
