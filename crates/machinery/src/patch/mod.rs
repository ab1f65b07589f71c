//! The three PATCH formats a Kubernetes API server accepts: JSON patch (RFC 6902), JSON merge patch (RFC 7386)
//! and strategic merge patch (Kubernetes' merge patch with per-field list semantics and `$`-directives). All are
//! pure functions from (stored object, patch document) to the patched object. They do not check preconditions
//! such as `resourceVersion` or immutable fields, and they do not validate the result: the server treats the
//! result like an update body.

mod json;
mod merge;
mod meta;
mod strategic;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use json::{json_patch, MAX_JSON_PATCH_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS};
pub use merge::merge_patch;
pub use meta::supports_strategic_merge;
pub use strategic::strategic_merge_patch;

/// The deepest nesting of objects and arrays a patch or an object may have. Real Kubernetes objects stay well
/// below 30; the bound keeps hostile input from exhausting the stack in the recursive merge.
pub const MAX_DEPTH: usize = 100;

/// Why a patch could not be applied. Each variant maps to the HTTP status upstream answers with
/// ([`PatchError::http_code`]) and the `Status.reason` to use ([`PatchError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed: not a JSON patch array, an unknown `$patch` value, a list item without
    /// its merge key, a badly formed directive. 400 BadRequest.
    ///
    /// Upstream answers a few of these (missing merge key, unknown `$patch`) with a 500 whose reason is empty;
    /// they are the client's fault, so berth says 400 with the same message.
    #[error("{0}")]
    InvalidPatch(String),
    /// The patch is well formed but does not apply to this object: a JSON patch `test` failed or a path does
    /// not exist, or a strategic patch hit a list of lists. 422 Invalid.
    #[error("{0}")]
    NotApplicable(String),
    /// A JSON patch with more operations than [`MAX_JSON_PATCH_OPERATIONS`]. 413 RequestEntityTooLarge, with
    /// upstream's message.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit.
        max: usize,
        /// The number of operations sent.
        got: usize,
    },
    /// The `copy` operations of a JSON patch would add more than [`MAX_JSON_PATCH_COPY_BYTES`] to the object.
    /// 422 like any patch that does not apply (upstream answers json-patch's errors with 422), with
    /// json-patch's message.
    #[error(
        "Unable to complete the copy, the accumulated size increase of copy is {accumulated}, exceeding the \
         limit {max}"
    )]
    CopyTooLarge {
        /// The bytes the copies add up to, counted up to the first one over the limit (and then only as far as
        /// needed to know it is over).
        accumulated: usize,
        /// The limit.
        max: usize,
    },
    /// The patch or the object nests deeper than [`MAX_DEPTH`]. 400 BadRequest.
    #[error("{what} is nested deeper than {max} levels")]
    TooDeep {
        /// `"patch"` or `"object"`.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// Strategic merge patch was asked for a kind without a patch-meta table (custom resources, in upstream).
    /// 415 UnsupportedMediaType.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )]
    StrategicMergeUnsupported {
        /// The kind that was asked for.
        kind: String,
    },
}

impl PatchError {
    /// The HTTP status code upstream uses for this failure.
    pub fn http_code(&self) -> u16 {
        match self {
            PatchError::InvalidPatch(_) | PatchError::TooDeep { .. } => 400,
            PatchError::NotApplicable(_) | PatchError::CopyTooLarge { .. } => 422,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::StrategicMergeUnsupported { .. } => 415,
        }
    }

    /// The `Status.reason` that goes with [`PatchError::http_code`].
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::InvalidPatch(_) | PatchError::TooDeep { .. } => "BadRequest",
            PatchError::NotApplicable(_) | PatchError::CopyTooLarge { .. } => "Invalid",
            PatchError::TooManyOperations { .. } => "RequestEntityTooLarge",
            PatchError::StrategicMergeUnsupported { .. } => "UnsupportedMediaType",
        }
    }
}

/// Rejects documents nested deeper than [`MAX_DEPTH`]. Iterative, so it cannot itself overflow the stack.
pub fn check_depth(value: &Value, what: &'static str) -> Result<(), PatchError> {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(m) => Box::new(m.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => continue,
        };
        if depth > MAX_DEPTH {
            return Err(PatchError::TooDeep { what, max: MAX_DEPTH });
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// The length of `value` written as compact JSON, counted without writing it and without escapes (so a string
/// with quotes or control characters counts a little short). Counting stops as soon as it passes `cap`: the
/// answer is then some number above `cap`, found in time proportional to `cap`, not to the value.
pub fn json_size(value: &Value, cap: usize) -> usize {
    let mut size = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        size += match v {
            Value::Null => 4,
            Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            // Long enough for any i64/u64; floats are rare in objects and rarely longer.
            Value::Number(n) => n
                .as_i64()
                .map_or(20, |i| i.unsigned_abs().checked_ilog10().map_or(1, |d| d as usize + 1)),
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len().saturating_sub(1)
            }
            Value::Object(map) => {
                stack.extend(map.values());
                2 + map.len().saturating_sub(1) + map.keys().map(|k| k.len() + 3).sum::<usize>()
            }
        };
        if size > cap {
            break;
        }
    }
    size
}

/// Formats a value the way Go's `%v` prints a decoded JSON value (`map[k:v]`, `[a b]`, `<nil>`), so error
/// messages read like upstream's (`map: map[image:nginx] does not contain declared merge key: name`).
pub(crate) fn go_fmt(value: &Value) -> String {
    let mut out = String::new();
    go_fmt_into(value, &mut out, 0);
    out
}

fn go_fmt_into(value: &Value, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_fmt_into(item, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // serde_json's map is ordered by key, which is also how Go prints maps.
            out.push_str("map[");
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_fmt_into(v, out, depth + 1);
            }
            out.push(']');
        }
    }
}
