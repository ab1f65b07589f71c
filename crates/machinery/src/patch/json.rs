//! JSON patch (RFC 6902), the `application/json-patch+json` content type: an array of `add`, `remove`,
//! `replace`, `move`, `copy` and `test` operations, applied atomically. Used by `kubectl rollout undo`,
//! `patch --type json` and Python clients sending a list body. The operations themselves are carried out by the
//! `json-patch` crate; this file adds upstream's limits (operation count, accumulated copy size) and error
//! classification.
//!
//! `copy` is the one operation whose output can grow faster than its input: each copy of a value the document
//! already holds doubles it, so 21 copies of a 1 MB field ask for 2 TB while the patch itself is under 2 KB. The
//! limit is checked before each copy is carried out, so a hostile patch fails before allocating anything big.
//! `add` and `replace` insert values carried in the patch body itself, which the body size already bounds.

use serde_json::Value;

use super::{check_depth, json_size, PatchError};

/// Upstream's `maxJSONPatchOperations`: more operations than this is answered with 413.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Upstream's `JSONPatchMaxCopyBytes` (the apiserver sets json-patch's `AccumulatedCopySizeLimit` to it): the
/// most bytes, as JSON text, that the `copy` operations of one patch may add up to. 3 MiB is twice the largest
/// object etcd stores, so no legitimate patch comes near it.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies a JSON patch document to `original` and returns the result; `original` is left untouched even when
/// a later operation fails.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::InvalidPatch(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_type(patch)
        )));
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            got: ops.len(),
        });
    }
    check_depth(patch, "patch")?;
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::InvalidPatch(e.to_string()))?;
    let mut doc = original.clone();
    let mut copied = 0usize;
    for (index, operation) in operations.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(copy) = operation {
            // A missing `from` is left to the crate, which reports it with its own message.
            if let Some(source) = doc.pointer(copy.from.as_str()) {
                let budget = MAX_JSON_PATCH_COPY_BYTES - copied;
                copied += json_size(source, budget);
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(PatchError::CopyTooLarge {
                        accumulated: copied,
                        max: MAX_JSON_PATCH_COPY_BYTES,
                    });
                }
            }
        }
        // One operation at a time, so the copy limit is checked between them. The crate's non-reverting entry
        // point is enough: on failure `doc`, a private copy, is dropped and `original` is untouched.
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(operation)).map_err(|e| {
            PatchError::NotApplicable(format!("operation '/{index}' failed at path '{}': {}", e.path, e.kind))
        })?;
    }
    Ok(doc)
}

/// The JSON type name Go's decoder uses in its messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
