//! Request bodies in and response bodies out: reading a body under the size limit, decoding JSON, YAML or
//! Kubernetes protobuf into a JSON object, and choosing the response form from `Accept`.
//!
//! Every decoder is bounded by bytes, not only the body: YAML aliases let a 1 MB body name one 1 MiB string
//! 2,000 times, so the YAML decoder counts what it builds as it builds it (see [`parse_yaml`]).

use std::cell::Cell;

use axum::body::Body;
use berth_api::ApiError;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;

/// Bodies larger than this are refused with 413, like upstream's 3 MiB request limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// JSON nested deeper than this is refused. serde_json stops at 128 levels on its own; this bound also covers
/// values that arrive through YAML or protobuf.
pub const MAX_DEPTH: usize = 100;

/// The most a YAML body may expand to, counted as the compact JSON it becomes: the body limit itself, so that
/// YAML can say nothing JSON could not say in a body of the same limit. A manifest without aliases expands to
/// less than its own size.
pub const MAX_YAML_EXPANDED_BYTES: usize = MAX_BODY_BYTES;

/// Reads a whole body, refusing more than [`MAX_BODY_BYTES`].
pub async fn read_limited(body: Body) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(e) => Err(ApiError::bad_request(format!("error reading request body: {e}"))),
    }
}

/// The media type of a header value, lower-cased and without parameters.
pub fn media_type(headers: &HeaderMap, name: http::header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Decodes an object body by its content type. `fallback` is the (apiVersion, kind) the URL implies, for
/// protobuf envelopes that leave TypeMeta empty.
pub fn decode_object(headers: &HeaderMap, bytes: &[u8], fallback: (&str, &str)) -> Result<Value, ApiError> {
    let ct = media_type(headers, http::header::CONTENT_TYPE);
    let value = match ct.as_str() {
        "" | "application/json" => parse_json(bytes)?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => parse_yaml(bytes)?,
        "application/vnd.kubernetes.protobuf" => {
            let mut v = berth_protobuf::decode_object(bytes, fallback)
                .map_err(|e| ApiError::bad_request(format!("unable to decode protobuf body: {e}")))?;
            drop_unset(&mut v);
            v
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    check_depth(&value)?;
    Ok(value)
}

/// Go's protobuf marshaller writes every non-pointer field, so a protobuf body carries `""` and `null` where the
/// same object in JSON would simply omit the field (`omitempty`). Dropping them makes both encodings of one
/// object identical; zero numbers and `false` stay, because for pointer fields (`replicas: 0`) they mean something.
fn drop_unset(v: &mut Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                map.retain(|_, x| !(x.is_null() || x.as_str() == Some("")));
                stack.extend(map.values_mut());
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// Parses JSON, turning syntax errors into 400 Status errors.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body as JSON: {e}")))?;
    check_depth(&v)?;
    Ok(v)
}

/// Parses one YAML document into JSON, refusing with 413 as soon as what it has built passes
/// [`MAX_YAML_EXPANDED_BYTES`], and with 400 anything that is not YAML.
///
/// serde_yaml expands an alias by replaying the events of its anchor, and its own guard counts those events,
/// not their bytes: one aliased 1 MiB string is one event, so 2,000 aliases of it pass and build 2 GB. Here each
/// string, key and node is charged against the budget *before* it is copied into the result, so such a body
/// fails within the first few aliases, having built at most the budget.
pub fn parse_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    let budget = Budget {
        left: Cell::new(MAX_YAML_EXPANDED_BYTES),
        exceeded: Cell::new(false),
    };
    match serde::de::DeserializeSeed::deserialize(Build(&budget), serde_yaml::Deserializer::from_slice(bytes)) {
        Ok(value) => {
            check_depth(&value)?;
            Ok(value)
        }
        Err(_) if budget.exceeded.get() => Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: limit is {MAX_YAML_EXPANDED_BYTES} (the YAML body expands beyond it, \
                 through aliases)"
            ),
        )),
        Err(e) => Err(ApiError::bad_request(format!("error decoding YAML body: {e}"))),
    }
}

/// What is left of a YAML body's expansion budget, shared by every node of one document.
struct Budget {
    left: Cell<usize>,
    /// Set when the budget ran out, to tell that error from a syntax error after serde_yaml has wrapped it.
    exceeded: Cell<bool>,
}

impl Budget {
    /// Charges `bytes` for a node about to be built, or fails without building it.
    fn spend<E: serde::de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom(format_args!(
                    "the document expands to more than {MAX_YAML_EXPANDED_BYTES} bytes"
                )))
            }
        }
    }
}

/// Builds a `serde_json::Value` exactly as `serde_json::Value`'s own `Deserialize` does (NaN and infinities
/// become `null`, keys must be strings), charging each node to the budget first. Sizes are those of compact
/// JSON, so the budget means the same as the body limit.
#[derive(Clone, Copy)]
struct Build<'a>(&'a Budget);

impl<'de> serde::de::DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.spend(5)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.spend(20)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.spend(20)?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.spend(24)?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.spend(v.len() + 2)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.spend(v.len() + 2)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.spend(4)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, deserializer)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.spend(2)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            self.0.spend(1)?;
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.spend(2)?;
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key: a string, charged with its quotes, colon and comma.
struct Key<'a>(&'a Budget);

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        self.0.spend(v.len() + 4)?;
        Ok(v.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        self.0.spend(v.len() + 4)?;
        Ok(v)
    }
}

/// Refuses values nested deeper than [`MAX_DEPTH`], iteratively so hostile input cannot overflow the stack.
pub fn check_depth(v: &Value) -> Result<(), ApiError> {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(ApiError::bad_request(format!(
                "request body is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// How the client wants the response rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object or list as JSON.
    Json,
    /// A `meta.k8s.io/v1` Table (kubectl's human-readable output).
    Table,
}

/// Chooses the output from `Accept`: a Table when the client lists `as=Table` first-class, else JSON. Clients
/// always accept JSON; a request that accepts neither JSON nor anything gets 406.
pub fn negotiate(headers: &HeaderMap) -> Result<Output, ApiError> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    let mut json_ok = false;
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let mt = params.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<&str> = params.collect();
        if mt == "application/json" && params.iter().any(|p| p.eq_ignore_ascii_case("as=Table")) {
            // Only meta.k8s.io/v1 (and v1beta1) Tables exist; both render the same.
            return Ok(Output::Table);
        }
        if mt == "application/json" || mt == "*/*" || mt == "application/*" {
            // Plain JSON, unless this entry asks for some other `as=` rendering we don't offer.
            if !params.iter().any(|p| p.to_ascii_lowercase().starts_with("as=")) {
                json_ok = true;
            }
        }
    }
    if json_ok {
        Ok(Output::Json)
    } else {
        Err(ApiError {
            code: 406,
            reason: "NotAcceptable",
            message: format!("only the following media types are accepted: application/json (got {accept:?})"),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn kubectl_get_accept_asks_for_a_table() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(negotiate(&h).unwrap(), Output::Table);
    }

    #[test]
    fn typed_clients_and_python_get_json() {
        assert_eq!(
            negotiate(&accept("application/vnd.kubernetes.protobuf,application/json")).unwrap(),
            Output::Json
        );
        assert_eq!(negotiate(&accept("application/json, */*")).unwrap(), Output::Json);
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), Output::Json);
    }

    #[test]
    fn protobuf_only_is_not_acceptable() {
        assert_eq!(
            negotiate(&accept("application/vnd.kubernetes.protobuf"))
                .unwrap_err()
                .code,
            406
        );
    }

    /// The attack: one 1 MiB string, aliased 2,000 times, in a 1 MB body.
    fn aliased_string_yaml(aliases: usize) -> Vec<u8> {
        let mut doc = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a: &big {}\n",
            "x".repeat(1024 * 1024)
        );
        doc.push_str("  list: [");
        for i in 0..aliases {
            if i > 0 {
                doc.push(',');
            }
            doc.push_str("*big");
        }
        doc.push_str("]\n");
        doc.into_bytes()
    }

    #[test]
    fn an_aliased_yaml_string_is_refused_before_it_expands() {
        let body = aliased_string_yaml(2_000);
        assert!(body.len() < MAX_BODY_BYTES);
        let err = parse_yaml(&body).unwrap_err();
        assert_eq!((err.code, err.reason), (413, "RequestEntityTooLarge"));
        assert_eq!(
            err.message,
            "Request entity too large: limit is 3145728 (the YAML body expands beyond it, through aliases)"
        );
        // A single alias of it still fits: aliases as such are fine.
        let ok = parse_yaml(&aliased_string_yaml(1)).unwrap();
        assert_eq!(ok["data"]["list"][0].as_str().map(str::len), Some(1024 * 1024));
    }

    #[test]
    fn yaml_decodes_exactly_as_serde_yaml_into_json_does() {
        let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, "a.b/c": ""}
spec:
  replicas: 3
  paused: false
  ratio: 0.5
  big: 18446744073709551615
  neg: -7
  nothing: null
  tilde: ~
  nan: .nan
  list: [1, two, {three: 3}]
  base: &b {x: 1}
  again: *b
"#;
        let expected: Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(parse_yaml(text.as_bytes()).unwrap(), expected);
        for bad in ["a: [1, 2", "- a\nb: c", "a: 1\na: 2\n", "!!binary aGk=", "? [1]\n: x\n"] {
            let ours = parse_yaml(bad.as_bytes()).map_err(|e| e.code);
            let theirs = serde_yaml::from_str::<Value>(bad).map_err(|_| 400);
            assert_eq!(ours, theirs, "{bad:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut v = Value::Null;
        for _ in 0..10_000 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(check_depth(&v).unwrap_err().code, 400);
        // Dropping a deeply nested Value recurses; forget it so the test itself cannot overflow.
        std::mem::forget(v);
    }
}
