//! Request bodies in and response bodies out: reading a body under the size limit, decoding JSON, YAML or
//! Kubernetes protobuf into a JSON object, and choosing the response form from `Accept`.
//!
//! Every decoder is bounded by bytes, not only the body: YAML aliases let a 1 MB body name one 1 MiB string
//! 2,000 times, so the YAML decoder counts what it builds as it builds it (see [`parse_yaml`]).

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

/// Parses one YAML document into JSON, refusing with 413 as soon as what it has built would pass
/// [`MAX_YAML_EXPANDED_BYTES`], with 400 nesting deeper than [`MAX_DEPTH`], and with 400 anything that is not YAML.
///
/// Two amplifications are closed here. Aliases: one aliased 1 MiB string, named 2,000 times, would build 2 GB, so
/// each string, key and node (every alias expansion included) is charged against the budget *before* it is
/// built. And the parser itself: serde_yaml kept every event of a document (~100 bytes each) before building
/// anything, ~100 × the body even without aliases; `crate::yaml` builds the value from the events as they come,
/// so a body costs a small multiple of the value it decodes to. Scalars resolve as serde_yaml resolved them.
pub fn parse_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    match crate::yaml::decode(bytes, MAX_YAML_EXPANDED_BYTES, MAX_DEPTH) {
        Ok(value) => Ok(value),
        Err(crate::yaml::Error::TooLarge) => Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: limit is {MAX_YAML_EXPANDED_BYTES} (the YAML body expands beyond it, \
                 through aliases)"
            ),
        )),
        Err(crate::yaml::Error::TooDeep) => Err(too_deep()),
        Err(crate::yaml::Error::Invalid(e)) => Err(ApiError::bad_request(format!("error decoding YAML body: {e}"))),
    }
}

fn too_deep() -> ApiError {
    ApiError::bad_request(format!("request body is nested deeper than {MAX_DEPTH} levels"))
}

/// Refuses values nested deeper than [`MAX_DEPTH`], iteratively so hostile input cannot overflow the stack.
pub fn check_depth(v: &Value) -> Result<(), ApiError> {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(too_deep());
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
    use serde_json::json;

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

    /// The decoder this one replaced, kept as the reference: serde_yaml feeding a `serde_json::Value` builder
    /// under the same byte budget, then the depth check.
    mod reference {
        use std::cell::Cell;

        use serde_json::Value;

        use super::super::{check_depth, MAX_YAML_EXPANDED_BYTES};

        /// `Ok(value)` or the status code.
        pub fn parse(bytes: &[u8]) -> Result<Value, u16> {
            let budget = Budget(Cell::new(MAX_YAML_EXPANDED_BYTES), Cell::new(false));
            let de = serde_yaml::Deserializer::from_slice(bytes);
            match serde::de::DeserializeSeed::deserialize(Build(&budget), de) {
                Ok(v) => check_depth(&v).map(|()| v).map_err(|e| e.code),
                Err(_) if budget.1.get() => Err(413),
                Err(_) => Err(400),
            }
        }

        struct Budget(Cell<usize>, Cell<bool>);

        impl Budget {
            fn spend<E: serde::de::Error>(&self, bytes: usize) -> Result<(), E> {
                match self.0.get().checked_sub(bytes) {
                    Some(left) => {
                        self.0.set(left);
                        Ok(())
                    }
                    None => {
                        self.1.set(true);
                        Err(E::custom("over budget"))
                    }
                }
            }
        }

        #[derive(Clone, Copy)]
        struct Build<'a>(&'a Budget);

        impl<'de> serde::de::DeserializeSeed<'de> for Build<'_> {
            type Value = Value;
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                d.deserialize_any(self)
            }
        }

        impl<'de> serde::de::Visitor<'de> for Build<'_> {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any valid JSON value")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
                self.0.spend(5).map(|()| Value::Bool(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
                self.0.spend(20).map(|()| Value::from(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
                self.0.spend(20).map(|()| Value::from(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
                self.0.spend(24)?;
                Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
                self.0.spend(v.len() + 2).map(|()| Value::String(v.to_owned()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
                self.0.spend(4).map(|()| Value::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
                self.visit_unit()
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                serde::de::DeserializeSeed::deserialize(self, d)
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

        struct Key<'a>(&'a Budget);

        impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
            type Value = String;
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
                d.deserialize_str(self)
            }
        }

        impl serde::de::Visitor<'_> for Key<'_> {
            type Value = String;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                self.0.spend(v.len() + 4).map(|()| v.to_owned())
            }
        }
    }

    /// Every case decodes to the same value, or fails with the same status, as the serde_yaml decoder did.
    #[test]
    fn yaml_decodes_exactly_as_serde_yaml_into_json_does() {
        let manifest = r#"
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
  script: |
    echo hi
      indented
  folded: >
    one
    two
"#;
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut cases: Vec<String> = vec![manifest.into()];
        // Scalars: core-schema resolution and serde_yaml's extensions, quoted, tagged.
        for s in [
            "",
            "~",
            "null",
            "Null",
            "NULL",
            "nUll",
            "true",
            "True",
            "TRUE",
            "tRue",
            "false",
            "yes",
            "no",
            "on",
            "y",
            "0",
            "-0",
            "+0",
            "7",
            "+7",
            "-7",
            "007",
            "-007",
            "0x1F",
            "0X1F",
            "-0x1F",
            "+0x1F",
            "0x",
            "0x-1",
            "0o17",
            "-0o17",
            "0b101",
            "-0b101",
            "0b2",
            "1_000",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "340282366920938463463374607431768211456",
            "99999999999999999999999999999999999999999",
            "1.5",
            "-1.5",
            "+1.5",
            ".5",
            "1.",
            "1e3",
            "1E3",
            "-1e-3",
            "1e400",
            ".inf",
            "-.inf",
            "+.inf",
            ".Inf",
            ".INF",
            ".nan",
            ".NaN",
            ".NAN",
            "-.nan",
            "inf",
            "nan",
            "infinity",
            "0.0",
            "00.5",
            "012.5",
            "1:2",
            "12:30:00",
            "2001-12-14",
            "a b",
            "'q'",
            "\"q\"",
            "\"\"",
            "''",
            "\"\\u00e9\\n\"",
            "'it''s'",
            "\"1\"",
            "'true'",
            "!!str 1",
            "!!str true",
            "!!str",
            "!!int 1",
            "!!int '1'",
            "!!int x",
            "!!int 0x10",
            "!!float 1",
            "!!float x",
            "!!float .inf",
            "!!bool true",
            "!!bool yes",
            "!!null ~",
            "!!null ''",
            "!!null x",
            "!!null",
            "!!binary aGk=",
            "!!timestamp 2001-12-14",
            "!foo x",
            "! x",
            "!<tag:yaml.org,2002:str> 1",
            "!!map {}",
            "!!seq []",
            "!!str [1]",
            "!foo [1]",
            "!foo {a: 1}",
            "|\n  lit\n",
            ">\n  fold\n",
            "!!int |\n  1\n",
        ] {
            cases.push(s.into());
            cases.push(format!("k: {s}\n"));
            cases.push(format!("- {s}\n"));
            cases.push(format!("[{s}]"));
        }
        // Keys are verbatim strings; collections as keys are not.
        for k in [
            "1", "~", "null", "true", "1.5", "'q'", "\"a b\"", "!!int 3", "!foo k", "[1]", "{a: 1}", "? [1]",
        ] {
            cases.push(format!("{k}: v\n"));
            cases.push(format!("{{{k}: v}}"));
        }
        cases.extend(
            [
                ": v\n",
                "? k\n",
                "? k\n: v\n",
                "a:\n",
                "a: 1\na: 2\n",
                "<<: {a: 1}\nb: 2\n",
                "base: &b {a: 1}\nm:\n  <<: *b\n  c: 2\n",
                "&k a: 1\n*k : 2\n",
                "a: &s x\nb: *s\n",
                "a: &s 1\n*s : 2\n",
                "a: &m {x: 1}\n*m : 2\n",
                "a: &n !!int x\nb: 1\n",
                "a: &n !!int x\nb: *n\n",
                "a: &n !!int x\n*n : 1\n",
                "a: *nope\n",
                "a: &r [*r]\n",
                "a: &x 1\nb: &x 2\nc: *x\n",
                "---\na: 1\n",
                "a: 1\n...\n",
                "a: 1\n---\nb: 2\n",
                "a: 1\n---\n",
                "---\n",
                "# only\n",
                "---\n...\n",
                "a: [1, 2",
                "- a\nb: c",
                "a: 'x",
                "a: \"\\q\"",
                "\ta: 1",
                "a:\n\t- 1",
                "[a, b]: c",
                "{a: 1, a: 2}",
                "- - - x\n",
                "a: {b: {c: [d, {e: f}]}}\n",
                "%YAML 1.2\n---\na: 1\n",
                "%TAG !e! tag:e.com,2000:\n---\n!e!x 1\n",
                "a: !!str\n",
                "\u{feff}a: 1\n",
                "a: 1 # c\n",
                "? |\n  block key\n: v\n",
                "[a, b, ]",
                "{a, b: }",
                "[a: 1, b]",
                "- &a\n- *a\n",
            ]
            .map(String::from),
        );
        // Depth: 100 levels is the limit, whatever way they are reached.
        for n in [99, 100, 101, 127, 128, 129, 200] {
            cases.push(deep(n));
            cases.push(format!("a: &d {}\nb: [*d]\n", deep(n.min(100) - 1)));
        }
        // serde_yaml's own alias guard: more than 100 expansions per event.
        let fan = |n: usize| format!("a: &a [x]\nb: [{}]\n", vec!["*a"; n].join(","));
        let nested = "a: &a [x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
        cases.extend([fan(10), fan(1000), nested.into(), nested.replace("x, x", "x")]);
        // The only differences: granit (a YAML 1.2 parser) accepts three corners libyaml refused: a tagged empty
        // flow entry and an empty key (both valid YAML 1.2), and a tab before the first key. Each decodes to the
        // value shown; none says more than the same body could in YAML both accept.
        let lenient = [
            ("[!!str]", json!([""])),
            (": v\n", json!({"": "v"})),
            ("\ta: 1", json!({"a": 1})),
        ];
        for (case, value) in &lenient {
            assert_eq!(parse_yaml(case.as_bytes()).ok().as_ref(), Some(value), "{case:?}");
            assert_eq!(reference::parse(case.as_bytes()), Err(400), "{case:?}");
        }
        let differ: Vec<String> = cases
            .iter()
            .filter(|case| !lenient.iter().any(|(l, _)| l == case))
            .filter_map(|case| {
                let ours = parse_yaml(case.as_bytes()).map_err(|e| e.code);
                let theirs = reference::parse(case.as_bytes());
                (ours != theirs).then(|| format!("{case:?}: ours {ours:?}, serde_yaml {theirs:?}"))
            })
            .collect();
        assert!(differ.is_empty(), "{}", differ.join("\n"));
    }

    /// Anchors nest: each anchored collection is kept apart to be copied at its aliases, so 100 nested anchors
    /// around one list would keep it 100 times (165 MB for this 100 KB body) unless those copies are budgeted.
    #[test]
    fn nested_anchors_are_refused_before_they_are_copied() {
        let nested = |levels: usize| {
            let mut doc = String::new();
            for i in 0..levels {
                doc.push_str(&format!("&a{i} ["));
            }
            doc.push_str(&vec!["x"; 50_000].join(","));
            doc.push_str(&"]".repeat(levels));
            doc
        };
        let refused = parse_yaml(nested(99).as_bytes())
            .map(|_| ())
            .map_err(|e| (e.code, e.reason));
        assert_eq!(refused, Err((413, "RequestEntityTooLarge")));
        // One anchor on the same list is fine.
        assert_eq!(
            parse_yaml(nested(1).as_bytes()).unwrap().as_array().map(Vec::len),
            Some(50_000)
        );
    }

    /// Deep YAML is refused as it opens, by the depth limit or, where the parser looks ahead further (a flow
    /// collection could be a key), by the parser's own nesting limit of 255; never by the stack.
    #[test]
    fn deep_yaml_is_refused_as_it_opens() {
        let block_maps: String = (0..1_000).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        for body in [
            "[".repeat(100_000),
            "- ".repeat(100_000),
            block_maps,
            "{a: ".repeat(100_000),
        ] {
            let err = parse_yaml(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, 400, "{}", &body[..8]);
            assert!(
                err.message == "request body is nested deeper than 100 levels"
                    || err
                        .message
                        .starts_with("error decoding YAML body: recursion limit exceeded"),
                "{}: {}",
                &body[..8],
                err.message
            );
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
