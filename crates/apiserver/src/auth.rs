//! Bearer-token authentication. Every request must carry `Authorization: Bearer <admin token>` (the scheme in any
//! case, as upstream accepts it), except the health endpoints, which upstream also serves to anonymous clients.
//! Failures get upstream's 401 Status, which kubectl renders as "You must be logged in to the server
//! (Unauthorized)".

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;

use crate::error::Error;

/// Paths anyone may read.
const PUBLIC: &[&str] = &["/healthz", "/livez", "/readyz"];

/// Axum middleware checking the bearer token (in constant time, through [`berth_serve::bearer_token_matches`]).
pub async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    if PUBLIC.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    if berth_serve::bearer_token_matches(req.headers(), &token) {
        next.run(req).await
    } else {
        Error(ApiError::unauthorized()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http::StatusCode;
    use tower::ServiceExt;

    async fn status(authorization: &str) -> StatusCode {
        let app = Router::new()
            .route("/api", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::<str>::from("s3cret"),
                require_token,
            ));
        let req = http::Request::get("/api")
            .header("authorization", authorization)
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_bearer_scheme_is_accepted_in_any_case_as_upstream_does() {
        assert_eq!(status("Bearer s3cret").await, StatusCode::OK);
        assert_eq!(status("bearer s3cret").await, StatusCode::OK);
        assert_eq!(status("BEARER s3cret").await, StatusCode::OK);
        assert_eq!(status("bearer wrong").await, StatusCode::UNAUTHORIZED);
        assert_eq!(status("Basic s3cret").await, StatusCode::UNAUTHORIZED);
    }
}
