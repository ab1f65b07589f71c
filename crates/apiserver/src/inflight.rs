//! Bounds how many requests are in flight, in total and per client, as upstream's max-in-flight filter does
//! (`--max-requests-inflight`, `--max-mutating-requests-inflight`). A request over a bound gets upstream's 429
//! `TooManyRequests` Status with `Retry-After: 1`, which client-go and kubectl wait out and retry.
//!
//! Long-running requests (watches, and the `log`, `exec`, `attach`, `portforward` and `proxy` subresources, by
//! upstream's `BasicLongRunningRequestCheck`) are not counted with the others: they are bounded separately,
//! because a watch legitimately stays open for an hour. A long-running request counts until its response body
//! ends, and an upgraded one (exec, attach, port-forward) until its connection closes.
//!
//! A client is its source IP address (there is one token, so no user to tell clients apart). The per-client
//! bounds keep one client, a runaway script or a tenant's loop, from taking the whole budget. This module does
//! not limit connections (`berth_serve` does) or request sizes (`body`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use http::{Method, StatusCode};

use crate::error::Error;

/// The bounds; `0` means unbounded, as upstream's flags do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Read-only requests (GET, HEAD, OPTIONS) in flight, not long-running ones (upstream's default: 400).
    pub max_requests_inflight: usize,
    /// Mutating requests (POST, PUT, PATCH, DELETE) in flight (upstream's default: 200).
    pub max_mutating_requests_inflight: usize,
    /// Long-running requests open: watches, log streams, exec, attach and port-forward sessions.
    pub max_long_running: usize,
    /// Requests in flight from one client, read-only and mutating together.
    pub max_requests_inflight_per_client: usize,
    /// Long-running requests open from one client.
    pub max_long_running_per_client: usize,
}

impl Default for Limits {
    /// Upstream's two in-flight defaults, and room for every client berth knows: `just bench-api` runs 64
    /// writers and 100 watchers from one address, and an agent holds a handful of watches.
    fn default() -> Self {
        Limits {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            max_long_running: 1000,
            max_requests_inflight_per_client: 200,
            max_long_running_per_client: 250,
        }
    }
}

/// The counts behind [`Limits`], shared by every request of one server.
#[derive(Clone)]
pub struct InFlight {
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    read_only: usize,
    mutating: usize,
    long_running: usize,
    per_client: HashMap<Option<IpAddr>, PerClient>,
}

#[derive(Default, Clone, Copy)]
struct PerClient {
    short: usize,
    long_running: usize,
}

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ReadOnly,
    Mutating,
    LongRunning,
}

/// One request's place in the counts, given back when dropped.
struct Permit {
    counts: Arc<Mutex<Counts>>,
    kind: Kind,
    client: Option<IpAddr>,
}

/// Upstream's words for a 429 from the max-in-flight filter.
const TOO_MANY: &str = "Too many requests, please try again later.";

/// Upstream's `Retry-After` for the same answer, in seconds.
const RETRY_AFTER_SECONDS: u32 = 1;

/// Subresources upstream counts as long-running.
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["log", "exec", "attach", "portforward", "proxy"];

impl InFlight {
    /// Counts under `limits`.
    pub fn new(limits: Limits) -> InFlight {
        InFlight {
            limits,
            counts: Arc::default(),
        }
    }

    fn acquire(&self, kind: Kind, client: Option<IpAddr>) -> Option<Permit> {
        let l = &self.limits;
        let over = |count: usize, max: usize| max != 0 && count >= max;
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = counts.per_client.get(&client).copied().unwrap_or_default();
        let refused = match kind {
            Kind::ReadOnly => {
                over(counts.read_only, l.max_requests_inflight) || over(mine.short, l.max_requests_inflight_per_client)
            }
            Kind::Mutating => {
                over(counts.mutating, l.max_mutating_requests_inflight)
                    || over(mine.short, l.max_requests_inflight_per_client)
            }
            Kind::LongRunning => {
                over(counts.long_running, l.max_long_running) || over(mine.long_running, l.max_long_running_per_client)
            }
        };
        if refused {
            return None;
        }
        counts.add(kind, client, 1);
        Some(Permit {
            counts: self.counts.clone(),
            kind,
            client,
        })
    }
}

impl Counts {
    /// Adds `delta` (±1) to the counts of `kind` and `client`; forgets a client whose counts reach zero.
    fn add(&mut self, kind: Kind, client: Option<IpAddr>, delta: isize) {
        let apply = |n: &mut usize| *n = n.saturating_add_signed(delta);
        match kind {
            Kind::ReadOnly => apply(&mut self.read_only),
            Kind::Mutating => apply(&mut self.mutating),
            Kind::LongRunning => apply(&mut self.long_running),
        }
        let mine = self.per_client.entry(client).or_default();
        match kind {
            Kind::ReadOnly | Kind::Mutating => apply(&mut mine.short),
            Kind::LongRunning => apply(&mut mine.long_running),
        }
        if mine.short == 0 && mine.long_running == 0 {
            self.per_client.remove(&client);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.add(self.kind, self.client, -1);
    }
}

/// Axum middleware enforcing [`Limits`]; requests over a bound get 429.
pub async fn limit(State(inflight): State<InFlight>, req: Request, next: Next) -> Response {
    let kind = classify(&req);
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let Some(permit) = inflight.acquire(kind, client) else {
        return too_many_requests();
    };
    let connection = req.extensions().get::<berth_serve::Connection>().cloned();
    let response = next.run(req).await;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // An exec, attach or port-forward session runs on the upgraded connection after this response.
        if let Some(connection) = connection {
            connection.hold_until_closed(permit);
        }
        return response;
    }
    response.map(|body| Body::new(berth_serve::BodyWith::new(body, permit)))
}

/// The 429 upstream's max-in-flight filter answers, as a Status (`errors.NewTooManyRequests`) so that clients
/// show its message.
fn too_many_requests() -> Response {
    let mut error = ApiError::new(429, "TooManyRequests", TOO_MANY);
    error.retry_after = Some(RETRY_AFTER_SECONDS);
    let mut response = Error(error).into_response();
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

/// Sorts a request into its budget.
fn classify(req: &Request) -> Kind {
    let watch = req
        .uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "watch" && crate::query::parse_bool("watch", &v).unwrap_or(false))
        })
        .unwrap_or(false);
    let path = req.uri().path();
    // Most requests end in no such word; only the rest pay for parsing the path (a pod may be named `log`).
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    let subresource = LONG_RUNNING_SUBRESOURCES.contains(&last)
        && crate::target::Target::parse(path)
            .ok()
            .and_then(|t| t.subresource)
            .is_some_and(|s| LONG_RUNNING_SUBRESOURCES.contains(&s.as_str()));
    if watch || subresource {
        return Kind::LongRunning;
    }
    match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => Kind::ReadOnly,
        _ => Kind::Mutating,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::{get, post};
    use axum::Router;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    /// A router whose `/api/v1/namespaces` (GET and POST) and `?watch=1` requests hang until the body is read,
    /// behind the limit; `started` reports each request reaching a handler.
    fn app(limits: Limits) -> (Router, mpsc::UnboundedReceiver<()>) {
        let (tx, started) = mpsc::unbounded_channel();
        let hang = move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
                // A body that never ends: the request stays in flight until the response is dropped.
                Body::from_stream(futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>())
            }
        };
        let router = Router::new()
            .route("/api/v1/namespaces", get(hang.clone()).post(hang.clone()))
            .route("/api/v1/namespaces/{name}", post(hang))
            .layer(axum::middleware::from_fn_with_state(InFlight::new(limits), limit));
        (router, started)
    }

    fn request(method: Method, uri: &str, client: [u8; 4]) -> Request {
        let mut req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((client, 40000))));
        req
    }

    async fn send(app: &Router, method: Method, uri: &str, client: [u8; 4]) -> Response {
        app.clone().oneshot(request(method, uri, client)).await.unwrap()
    }

    const NONE: Limits = Limits {
        max_requests_inflight: 0,
        max_mutating_requests_inflight: 0,
        max_long_running: 0,
        max_requests_inflight_per_client: 0,
        max_long_running_per_client: 0,
    };

    async fn assert_429(resp: Response) {
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["message"], TOO_MANY);
        assert_eq!(status["code"], 429);
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
    }

    #[tokio::test]
    async fn read_only_requests_over_the_total_get_429_until_one_ends() {
        let (app, _started) = app(Limits {
            max_requests_inflight: 2,
            ..NONE
        });
        let a = send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 1]).await;
        let _b = send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 2]).await;
        assert_429(send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 3]).await).await;
        // Mutating requests and watches have budgets of their own.
        assert_eq!(
            send(&app, Method::POST, "/api/v1/namespaces", [10, 0, 0, 3])
                .await
                .status(),
            200
        );
        let watch = send(&app, Method::GET, "/api/v1/namespaces?watch=1", [10, 0, 0, 3]).await;
        assert_eq!(watch.status(), 200);
        drop(a);
        assert_eq!(
            send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 3])
                .await
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn mutating_requests_have_their_own_total() {
        let (app, _started) = app(Limits {
            max_mutating_requests_inflight: 1,
            ..NONE
        });
        let _a = send(&app, Method::POST, "/api/v1/namespaces", [10, 0, 0, 1]).await;
        assert_429(send(&app, Method::POST, "/api/v1/namespaces/x", [10, 0, 0, 2]).await).await;
        assert_eq!(
            send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 2])
                .await
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn one_client_cannot_take_the_whole_budget() {
        let (app, _started) = app(Limits {
            max_requests_inflight_per_client: 2,
            max_long_running_per_client: 1,
            ..NONE
        });
        let _a = send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 1]).await;
        let _b = send(&app, Method::POST, "/api/v1/namespaces", [10, 0, 0, 1]).await;
        assert_429(send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 1]).await).await;
        assert_eq!(
            send(&app, Method::GET, "/api/v1/namespaces", [10, 0, 0, 2])
                .await
                .status(),
            200
        );

        let watch = send(&app, Method::GET, "/api/v1/namespaces?watch=true", [10, 0, 0, 1]).await;
        assert_eq!(watch.status(), 200);
        assert_429(send(&app, Method::GET, "/api/v1/namespaces?watch=true", [10, 0, 0, 1]).await).await;
        drop(watch);
        let again = send(&app, Method::GET, "/api/v1/namespaces?watch=true", [10, 0, 0, 1]).await;
        assert_eq!(again.status(), 200, "a watch that ended gives its place back");
    }

    #[test]
    fn long_running_requests_are_told_apart_as_upstream_does() {
        let kind = |method: Method, uri: &str| classify(&request(method, uri, [127, 0, 0, 1]));
        assert_eq!(kind(Method::GET, "/api/v1/pods?watch=true"), Kind::LongRunning);
        assert_eq!(kind(Method::GET, "/api/v1/pods?watch=1"), Kind::LongRunning);
        assert_eq!(kind(Method::GET, "/api/v1/pods?watch=false"), Kind::ReadOnly);
        assert_eq!(kind(Method::GET, "/api/v1/namespaces/d/pods/p/log"), Kind::LongRunning);
        assert_eq!(kind(Method::GET, "/api/v1/namespaces/d/pods/p/exec"), Kind::LongRunning);
        assert_eq!(
            kind(Method::POST, "/api/v1/namespaces/d/pods/p/portforward"),
            Kind::LongRunning
        );
        assert_eq!(
            kind(Method::GET, "/api/v1/namespaces/d/pods/log"),
            Kind::ReadOnly,
            "a pod named log"
        );
        assert_eq!(
            kind(Method::PATCH, "/api/v1/namespaces/d/pods/p/status"),
            Kind::Mutating
        );
        assert_eq!(kind(Method::DELETE, "/api/v1/namespaces/d/pods/p"), Kind::Mutating);
        assert_eq!(kind(Method::GET, "/version"), Kind::ReadOnly);
    }
}
