//! JSON merge patch (RFC 7386), the `application/merge-patch+json` content type: objects merge recursively,
//! `null` deletes a key, anything else (arrays included) replaces. Used by `kubectl scale`, `label`, `annotate`
//! and `patch --type merge`. It knows nothing about Kubernetes list semantics; see `strategic` for those.

use serde_json::Value;

/// Applies a JSON merge patch to `original` and returns the result.
///
/// Recursion follows the patch's nesting only; documents parsed by serde_json are at most 128 levels deep, and
/// the server may call [`super::check_depth`] first for a tighter bound.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        // A non-object patch replaces the whole document (RFC 7386 §2).
        return patch.clone();
    };
    let mut result = match original {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    for (key, patch_value) in patch_map {
        if patch_value.is_null() {
            result.remove(key);
        } else {
            let merged = merge_patch(result.get(key).unwrap_or(&Value::Null), patch_value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}
