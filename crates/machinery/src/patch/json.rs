//! JSON patch (RFC 6902), the `application/json-patch+json` content type: an array of `add`, `remove`,
//! `replace`, `move`, `copy` and `test` operations, applied atomically. Used by `kubectl rollout undo`,
//! `patch --type json` and Python clients sending a list body. The operations themselves are carried out by the
//! `json-patch` crate; this file adds upstream's operation limit and error classification.

use serde_json::Value;

use super::{check_depth, PatchError};

/// Upstream's `maxJSONPatchOperations`: more operations than this is answered with 413.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

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
    json_patch::patch(&mut doc, &operations).map_err(|e| PatchError::NotApplicable(e.to_string()))?;
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
