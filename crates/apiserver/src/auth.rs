//! Bearer-token authentication. Every request must carry `Authorization: Bearer <admin token>`, except the
//! health endpoints, which upstream also serves to anonymous clients. Failures get upstream's 401 Status,
//! which kubectl renders as "You must be logged in to the server (Unauthorized)".

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
