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

/// Compares in time independent of where the strings differ, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Axum middleware checking the bearer token.
pub async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    if PUBLIC.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => Error(ApiError::unauthorized()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_exactly() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
