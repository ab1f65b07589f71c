//! Kubernetes `Status` errors with upstream's reasons, codes and message formats
//! (`k8s.io/apimachinery/pkg/api/errors`). kubectl builds its user-facing messages from these fields, so the
//! strings matter: `Error from server (NotFound): pods "x" not found` comes straight from `message`.

use serde_json::{json, Map, Value};

use crate::resources::ResourceInfo;

/// One field-level cause of an `Invalid` (422) or `BadRequest` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Upstream's cause type, e.g. `FieldValueRequired`, `FieldValueInvalid`.
    pub reason: String,
    /// The human message, e.g. `Required value`.
    pub message: String,
    /// The JSON path of the field, e.g. `spec.selector`.
    pub field: String,
}

/// An API error rendered as a Kubernetes `Status` object. The HTTP status code is `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Upstream's `StatusReason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// The full message.
    pub message: String,
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (a resource plural for NotFound/AlreadyExists/Conflict, a Kind for Invalid).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// An error with an explicit code and reason, for errors classified elsewhere (patch failures).
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn with_resource(mut self, resource: &ResourceInfo, name: &str) -> Self {
        self.name = Some(name.to_string());
        self.group = Some(resource.group.to_string());
        self.kind = Some(resource.plural.to_string());
        self
    }

    /// 400 BadRequest with a free message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 404 for a path that names no resource.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(resource: &ResourceInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", resource.qualified(), name),
        )
        .with_resource(resource, name)
    }

    /// 404 `namespaces "x" not found`, for a create into a missing namespace.
    pub fn namespace_not_found(namespace: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("namespaces \"{namespace}\" not found"));
        e.name = Some(namespace.to_string());
        e.group = Some(String::new());
        e.kind = Some("namespaces".to_string());
        e
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(resource: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", resource.qualified(), name),
        )
        .with_resource(resource, name)
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(resource: &ResourceInfo, name: &str) -> Self {
        Self::conflict_because(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a specific reason (precondition failures, namespace terminating).
    pub fn conflict_because(resource: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                resource.qualified(),
                name,
                why
            ),
        )
        .with_resource(resource, name)
    }

    /// 403 Forbidden, e.g. creating in a terminating namespace.
    pub fn forbidden(resource: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{}\" is forbidden: {}", resource.qualified(), name, why),
        )
        .with_resource(resource, name)
    }

    /// 410 Expired, for a resourceVersion older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType for a PATCH with an unknown content type.
    pub fn unsupported_patch_type(content_type: &str) -> Self {
        let _ = content_type;
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, \
             application/strategic-merge-patch+json",
        )
    }

    /// 415 UnsupportedMediaType for a body with an unknown content type.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 422 Invalid with field causes; the message lists them as upstream does.
    pub fn invalid(resource: &ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let joined = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{}\" is invalid: {}", resource.qualified_kind(), name, joined),
        );
        e.name = Some(name.to_string());
        e.group = Some(resource.group.to_string());
        e.kind = Some(resource.kind.to_string());
        e.causes = causes;
        e
    }

    /// 422 Invalid without a resource (bad watch parameters and the like).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 500 InternalError. The detail is for logs; clients get a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {detail}"))
    }

    /// 503 ServiceUnavailable (store unavailable, shutting down).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group {
            if !g.is_empty() {
                details.insert("group".into(), json!(g));
            }
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(r) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// A `Status` object reporting success, as DELETE of a collection returns.
pub fn success_status(details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}
