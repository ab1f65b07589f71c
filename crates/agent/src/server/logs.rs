//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log as a `text/plain` stream, with upstream's
//! `PodLogOptions` (`follow`, `tailLines`, `timestamps`, `previous`, `sinceSeconds`, `sinceTime`, `limitBytes`).
//!
//! The body is chunked and each piece the runtime yields is sent as it arrives, so `kubectl logs -f` sees lines
//! as they are written. A followed stream ends when the container exits, when the client goes away or when the
//! agent shuts down. This file does not decide which container is meant beyond the lookup in the parent module,
//! and never reads logs from disk itself: the runtime does.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use berth_runtime::{LogOptions, Output};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{find_container, parse_bool, parse_int, AppState, StatusError};

/// The log request's parameters, parsed and checked.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LogQuery {
    pub(crate) options: LogOptions,
    pub(crate) previous: bool,
    pub(crate) limit_bytes: Option<u64>,
}

impl LogQuery {
    /// Parses a raw query string with upstream's validation of `PodLogOptions` (`now` anchors `sinceSeconds`).
    pub(crate) fn parse(query: Option<&str>, now: DateTime<Utc>) -> Result<LogQuery, StatusError> {
        let params: HashMap<String, String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| params.get(k).map(String::as_str);
        let flag = |k: &str| get(k).map(|v| parse_bool(k, v)).transpose().map(|v| v.unwrap_or(false));
        let mut q = LogQuery {
            options: LogOptions {
                follow: flag("follow")?,
                timestamps: flag("timestamps")?,
                ..Default::default()
            },
            previous: flag("previous")?,
            limit_bytes: None,
        };
        if let Some(v) = get("tailLines") {
            let n = parse_int("tailLines", v)?;
            if n < 0 {
                return Err(StatusError::bad_request(format!(
                    "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                )));
            }
            q.options.tail_lines = Some(n as u64);
        }
        if let Some(v) = get("limitBytes") {
            let n = parse_int("limitBytes", v)?;
            if n < 1 {
                return Err(StatusError::bad_request(format!(
                    "limitBytes: Invalid value: {n}: must be greater than 0"
                )));
            }
            q.limit_bytes = Some(n as u64);
        }
        match (get("sinceSeconds"), get("sinceTime")) {
            (Some(_), Some(_)) => {
                return Err(StatusError::bad_request(
                    "at most one of sinceTime or sinceSeconds may be specified",
                ));
            }
            (Some(v), None) => {
                let n = parse_int("sinceSeconds", v)?;
                if n < 1 {
                    return Err(StatusError::bad_request(format!(
                        "sinceSeconds: Invalid value: {n}: must be greater than 0"
                    )));
                }
                q.options.since = Some(since_seconds_ago(now, n));
            }
            (None, Some(v)) => {
                let t = DateTime::parse_from_rfc3339(v)
                    .map_err(|e| StatusError::bad_request(format!("invalid value {v:?} for sinceTime: {e}")))?;
                q.options.since = Some(t.with_timezone(&Utc));
            }
            (None, None) => {}
        }
        Ok(q)
    }
}

/// The moment `seconds` before `now`. Saturates at the Unix epoch (no log line is older), so a client's
/// `sinceSeconds=9223372036854775807` means "everything" instead of overflowing the time arithmetic.
fn since_seconds_ago(now: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    chrono::TimeDelta::try_seconds(seconds)
        .and_then(|d| now.checked_sub_signed(d))
        .filter(|t| *t > DateTime::UNIX_EPOCH)
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// Streams a container's log.
pub(crate) async fn container_logs(
    State(state): State<AppState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    match stream_logs(&state, &namespace, &pod, &container, query.as_deref()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn stream_logs(
    state: &AppState,
    namespace: &str,
    pod: &str,
    container: &str,
    query: Option<&str>,
) -> Result<Response, StatusError> {
    let q = LogQuery::parse(query, Utc::now())?;
    let found = find_container(state, namespace, pod, container, q.previous).await?;
    let stream = state
        .runtime
        .logs(&found.id, &q.options)
        .await
        .map_err(|e| StatusError::runtime(&e))?;
    // stdout and stderr go out interleaved as written, like upstream's log files.
    let bytes = stream.map(|item| match item {
        Ok(Output::Stdout(b) | Output::Stderr(b)) => Ok(b),
        Err(e) => Err(std::io::Error::other(e)),
    });
    let bytes = limit(bytes, q.limit_bytes).take_until(state.stopped());
    Ok(Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(bytes))
        .unwrap_or_else(|_| StatusError::bad_request("building the response").into_response()))
}

/// Ends a byte stream after `limit` bytes (upstream's `limitBytes`; the last chunk is cut to fit). It ends as soon
/// as the limit is reached, without waiting for another chunk, so a followed stream does not hang on.
fn limit<S>(stream: S, limit: Option<u64>) -> BoxStream<'static, std::io::Result<Bytes>>
where
    S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let Some(limit) = limit else { return stream.boxed() };
    futures::stream::unfold((stream.boxed(), limit), |(mut stream, left)| async move {
        if left == 0 {
            return None;
        }
        match stream.next().await? {
            Ok(mut b) => {
                let n = (b.len() as u64).min(left);
                b.truncate(n as usize);
                Some((Ok(b), (stream, left - n)))
            }
            Err(e) => Some((Err(e), (stream, left))),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn log_parameters_parse_like_upstream() {
        let q = LogQuery::parse(
            Some("follow=true&tailLines=5&timestamps=True&previous=1&limitBytes=10"),
            now(),
        )
        .unwrap();
        assert!(q.options.follow && q.options.timestamps && q.previous);
        assert_eq!(q.options.tail_lines, Some(5));
        assert_eq!(q.limit_bytes, Some(10));
        let q = LogQuery::parse(Some("sinceSeconds=60"), now()).unwrap();
        assert_eq!(q.options.since, Some(now() - chrono::Duration::seconds(60)));
        let q = LogQuery::parse(Some("sinceTime=2026-01-02T03%3A00%3A00Z"), now()).unwrap();
        assert_eq!(q.options.since.unwrap().to_rfc3339(), "2026-01-02T03:00:00+00:00");
        assert_eq!(LogQuery::parse(None, now()).unwrap(), LogQuery::default());
    }

    #[test]
    fn invalid_log_parameters_are_bad_requests() {
        for bad in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "follow=yes",
            "sinceTime=yesterday",
            "sinceSeconds=1&sinceTime=2026-01-02T03:00:00Z",
        ] {
            let e = LogQuery::parse(Some(bad), now()).unwrap_err();
            assert_eq!(e.code, http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn huge_log_numbers_saturate_instead_of_panicking() {
        // i64::MAX seconds ago overflowed the time arithmetic and panicked the agent (the client saw 503).
        for n in [
            i64::MAX.to_string(),
            "9223372036854775".to_string(),
            "100000000000".to_string(),
        ] {
            let q = LogQuery::parse(Some(&format!("sinceSeconds={n}")), now()).unwrap();
            assert_eq!(q.options.since, Some(DateTime::UNIX_EPOCH), "{n}");
        }
        let q = LogQuery::parse(
            Some("tailLines=9223372036854775807&limitBytes=9223372036854775807"),
            now(),
        )
        .unwrap();
        assert_eq!(q.options.tail_lines, Some(i64::MAX as u64));
        assert_eq!(q.limit_bytes, Some(i64::MAX as u64));
        // Past the int64 range is a bad request, as upstream's decoding makes it.
        let e = LogQuery::parse(Some("sinceSeconds=9223372036854775808"), now()).unwrap_err();
        assert_eq!(e.code, http::StatusCode::BAD_REQUEST);
        let q = LogQuery::parse(Some("sinceTime=0001-01-01T00%3A00%3A00Z"), now()).unwrap();
        assert!(q.options.since.is_some());
    }

    #[tokio::test]
    async fn limit_bytes_cuts_the_stream() {
        let chunks = futures::stream::iter(["hello ", "world", "!"].map(|s| Ok(Bytes::from(s))));
        let got: Vec<Bytes> = limit(chunks, Some(8)).map(|r| r.unwrap()).collect().await;
        assert_eq!(got.concat(), b"hello wo");
    }
}
