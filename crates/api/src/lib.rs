//! berth's view of the Kubernetes API: the table of served kinds, upstream's `Status` errors, and the per-kind
//! pure functions every request goes through — defaulting, validation, field-selector values and server-side
//! table printing. (The kind-agnostic machinery — selectors and patches — is in `berth-machinery`; protobuf
//! decoding in `berth-protobuf`.)
//!
//! This crate does no I/O and holds no state. It works on `serde_json::Value` objects (the form objects are
//! stored and served in) and uses the `k8s-openapi` types where a typed view helps (strict decoding, field access).
//! The API server (`berth-apiserver`) decides *when* each function runs; this crate decides *what* it does.

pub mod defaults;
pub mod fields;
pub mod meta;

pub mod resources;

pub mod status;
pub mod table;
pub mod validation;

pub use k8s_openapi;
pub use resources::{ResourceInfo, Scope};
pub use status::{ApiError, Cause};
