//! The API server's one error type. Every failure a handler can meet becomes a Kubernetes `Status` response with
//! upstream's code, reason and message; internal errors are logged once here and answered with a generic message.

use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_machinery::patch::PatchError;
use berth_machinery::selector::SelectorError;
use berth_store::StoreError;
use http::StatusCode;

/// A handler failure, rendered as a `Status` body.
#[derive(Debug)]
pub struct Error(pub ApiError);

/// The result type of handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error(e)
    }
}

impl From<SelectorError> for Error {
    fn from(e: SelectorError) -> Self {
        Error(ApiError::bad_request(e.to_string()))
    }
}

impl From<PatchError> for Error {
    fn from(e: PatchError) -> Self {
        Error(ApiError::new(e.http_code(), e.reason(), e.to_string()))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { requested, compacted } => Error(ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ))),
            StoreError::Closed => Error(ApiError::unavailable("the storage is shutting down")),
            // Callers map AlreadyExists/NotFound/Conflict with resource context before this point; reaching here
            // with one of them is a bug, and so is anything else.
            other => Error(ApiError::internal(other)),
        }
    }
}

/// Renders a JSON body with the `application/json` content type.
pub fn json_response(code: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (code, [(http::header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

impl Error {
    /// The Status a client may see: internal errors are logged here, once, and replaced by a generic message
    /// (their detail is for operators, not clients); every other error is returned as is.
    pub fn public(&self) -> ApiError {
        if self.0.reason == "InternalError" {
            tracing::error!(error = %self.0.message, "internal error");
            return ApiError::internal("an internal error occurred; see the server log");
        }
        self.0.clone()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let public = self.public();
        let code = StatusCode::from_u16(public.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &public.to_status())
    }
}
