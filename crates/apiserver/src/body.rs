//! Request bodies in and response bodies out: reading a body under the size limit, decoding JSON, YAML or
//! Kubernetes protobuf into a JSON object, and choosing the response form from `Accept`.

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

fn parse_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
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
