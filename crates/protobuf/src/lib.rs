//! Decodes Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into the JSON object the same
//! request would have carried as JSON. Typed client-go clientsets — and therefore `kubectl create deployment`,
//! `kubectl autoscale`, drain's fallback DELETE and cordon's PUT fallback — send protobuf with no JSON fallback, so
//! a server that only speaks JSON cannot serve them. This crate only decodes; berth never *sends* protobuf, and
//! nothing here validates or defaults the object.
//!
//! How it works:
//! * The body is `k8s\0` followed by a `runtime.Unknown` envelope holding the TypeMeta and the raw object bytes.
//! * The object is walked by a generic proto2 wire-format decoder driven by a schema table
//!   (`schema_generated.rs`) that berth generates from k8s-pb (tags, types) and k8s-openapi (JSON names) with
//!   `cargo run -p berth-xtask -- gen-protobuf`. No message is hand-written, so no field can be silently dropped
//!   by a forgotten struct member.
//! * Only fields present on the wire are emitted. Go's marshaller writes non-pointer fields even when they hold
//!   their zero value (`"restartPolicy": ""`, `"paused": false`), so those appear exactly as sent; consumers treat
//!   an empty value as Go does (unset) where the Go field is not a pointer.
//! * Hostile bodies produce errors, never panics: every length is bounds-checked, nothing is preallocated from a
//!   length prefix, and message nesting is capped at [`MAX_DEPTH`].

mod decode;
mod schema;
#[rustfmt::skip]
mod schema_generated;
mod special;
mod wire;

use serde_json::Value;

pub use wire::WireError;

/// The request `Content-Type` of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Deepest message nesting accepted below the top-level object. Real objects nest about a dozen levels; the cap
/// only exists so that no input can recurse without bound.
pub const MAX_DEPTH: usize = 100;

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("protobuf body does not start with the \"k8s\\0\" magic prefix")]
    MissingMagic,
    /// The envelope names a content encoding (such as gzip) that berth does not implement.
    #[error("protobuf envelope content encoding {0:?} is not supported")]
    UnsupportedContentEncoding(String),
    /// The envelope carries a content type other than protobuf.
    #[error("protobuf envelope content type {0:?} is not supported")]
    UnsupportedContentType(String),
    /// Neither the envelope nor the URL gave an apiVersion and kind.
    #[error("protobuf body names no apiVersion and kind, and none were inferred from the URL")]
    MissingKind,
    /// The kind is not one berth can decode from protobuf.
    #[error("decoding kind {kind:?} of apiVersion {api_version:?} from protobuf is not supported")]
    UnsupportedKind {
        /// The apiVersion the body (or URL) named.
        api_version: String,
        /// The kind the body (or URL) named.
        kind: String,
    },
    /// The bytes are not valid protobuf.
    #[error("malformed protobuf at {}: {source}", at(.path))]
    Wire {
        /// JSON path of the field being read (`spec.template.spec`), empty at the top level.
        path: String,
        /// What was wrong with the bytes.
        #[source]
        source: WireError,
    },
    /// The bytes are valid protobuf but not a valid value for the field.
    #[error("invalid protobuf value at {}: {reason}", at(.path))]
    InvalidValue {
        /// JSON path of the field (`spec.ports.targetPort`), empty at the top level.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// Messages nest deeper than the limit.
    #[error("protobuf messages nest deeper than {limit} levels at {}", at(.path))]
    TooDeep {
        /// JSON path where the limit was hit.
        path: String,
        /// The limit.
        limit: usize,
    },
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "the top level"
    } else {
        path
    }
}

impl ProtobufError {
    fn wire(source: WireError) -> Self {
        ProtobufError::Wire {
            path: String::new(),
            source,
        }
    }

    /// Prefixes the error's path with the JSON name of the field it occurred in (inline embeds have none).
    fn within(mut self, field: &str) -> Self {
        if let ProtobufError::Wire { path, .. }
        | ProtobufError::InvalidValue { path, .. }
        | ProtobufError::TooDeep { path, .. } = &mut self
        {
            if !field.is_empty() {
                *path = if path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{field}.{path}")
                };
            }
        }
        self
    }
}

/// Decodes a `k8s\0`-prefixed runtime.Unknown envelope into a JSON object with apiVersion/kind set
/// (from the envelope's TypeMeta, or from `fallback` = (apiVersion, kind) inferred from the URL when empty).
///
/// The object is converted field by field from the generated schema: JSON names as upstream spells them, `Time`
/// as RFC3339, `IntOrString` as a number or string, `Quantity` as its string, `bytes` as base64, embedded raw JSON
/// inline, and Go `,inline` embeds flattened into their parent. `DeleteOptions` is accepted under any apiVersion,
/// since every group version registers it.
pub fn decode_object(body: &[u8], fallback: (&str, &str)) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or(ProtobufError::MissingMagic)?;
    let envelope = Envelope::parse(rest).map_err(|e| e.within("(envelope)"))?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding(envelope.content_encoding));
    }
    if !envelope.content_type.is_empty() && envelope.content_type != MEDIA_TYPE {
        return Err(ProtobufError::UnsupportedContentType(envelope.content_type));
    }
    let or_fallback = |s: String, f: &str| if s.is_empty() { f.to_owned() } else { s };
    let api_version = or_fallback(envelope.api_version, fallback.0);
    let kind = or_fallback(envelope.kind, fallback.1);
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    let Some(message) = schema::kind_message(&api_version, &kind) else {
        return Err(ProtobufError::UnsupportedKind { api_version, kind });
    };
    let decoder = decode::Decoder { max_depth: MAX_DEPTH };
    let Value::Object(mut object) = decoder.message(envelope.raw, message, 0)? else {
        return Err(ProtobufError::InvalidValue {
            path: String::new(),
            reason: "top-level kind is not an object".into(),
        });
    };
    object.insert("apiVersion".to_owned(), Value::String(api_version));
    object.insert("kind".to_owned(), Value::String(kind));
    Ok(Value::Object(object))
}

/// `runtime.Unknown {1: TypeMeta typeMeta {1: apiVersion, 2: kind}; 2: bytes raw; 3: string contentEncoding;
/// 4: string contentType}` (apimachinery `runtime/serializer/protobuf`).
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut reader = wire::Reader::new(bytes);
        while let Some((tag, value)) = reader.next_field().map_err(ProtobufError::wire)? {
            match (tag, value) {
                (1, wire::WireValue::Bytes(type_meta)) => {
                    let mut tm = wire::Reader::new(type_meta);
                    while let Some((tag, value)) =
                        tm.next_field().map_err(|e| ProtobufError::wire(e).within("typeMeta"))?
                    {
                        match (tag, value) {
                            (1, wire::WireValue::Bytes(b)) => env.api_version = lossy(b),
                            (2, wire::WireValue::Bytes(b)) => env.kind = lossy(b),
                            (1 | 2, _) => return Err(bad_envelope("typeMeta has a non-string apiVersion or kind")),
                            _ => {}
                        }
                    }
                }
                (2, wire::WireValue::Bytes(b)) => env.raw = b,
                (3, wire::WireValue::Bytes(b)) => env.content_encoding = lossy(b),
                (4, wire::WireValue::Bytes(b)) => env.content_type = lossy(b),
                (1..=4, _) => return Err(bad_envelope("envelope field has the wrong wire type")),
                _ => {}
            }
        }
        Ok(env)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn bad_envelope(reason: &str) -> ProtobufError {
    ProtobufError::InvalidValue {
        path: String::new(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests;
