//! Strategic merge patch, the `application/strategic-merge-patch+json` content type that `kubectl apply`,
//! `set image`, `rollout restart`, `cordon` and friends send. It is JSON merge patch plus per-field list
//! semantics from the patch-meta table (`meta.rs`) plus `$`-directives:
//!
//! * `$patch: replace | delete` on a map replaces it with the rest of the patch / empties it;
//!   `{"$patch": "replace"}` in a list replaces the list with the other items; an item with
//!   `"$patch": "delete"` removes the item with the same merge key.
//! * `$retainKeys: [k…]` keeps only those keys of the stored map (switching a union such as a volume source or a
//!   deployment strategy).
//! * `$setElementOrder/<f>: […]` fixes the order of the merged list `f`.
//! * `$deleteFromPrimitiveList/<f>: […]` removes values from a merged list of primitives (finalizers).
//!
//! The algorithm mirrors upstream `apimachinery/pkg/util/strategicpatch/patch.go` (`mergeMap`, `mergeSlice`,
//! `mergePatchIntoOriginal`, `normalizeElementOrder`), including how it orders merged lists. Directives are never
//! left in the result: values inserted fresh are stripped of them too (upstream relies on decoding into Go
//! structs to drop them). This file does not build patches (that is the client's job) and knows no kinds; it
//! asks `meta.rs`.

use serde_json::{Map, Value};

use super::meta::{self, Schema, Strategy};
use super::{check_depth, go_fmt, PatchError};

type Object = Map<String, Value>;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

// Upstream's `mergepatch` error texts.
const ERR_BAD_JSON_DOC: &str = "invalid JSON document";
const ERR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_LIST_OF_LISTS: &str = "lists of lists are not supported";

/// Applies a strategic merge patch to an object of the given `kind` and returns the result.
///
/// Fails with [`PatchError::StrategicMergeUnsupported`] (415) for kinds without a patch-meta table, and with
/// [`PatchError::InvalidPatch`] (400) for malformed patches such as a merged-list item missing its merge key.
pub fn strategic_merge_patch(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let schema = meta::root(kind).ok_or_else(|| PatchError::StrategicMergeUnsupported { kind: kind.to_string() })?;
    check_depth(original, "object")?;
    check_depth(patch, "patch")?;
    let patch = match patch {
        Value::Object(p) => p.clone(),
        // `null` decodes to an empty patch upstream.
        Value::Null => Object::new(),
        _ => return Err(PatchError::InvalidPatch(ERR_BAD_JSON_DOC.to_string())),
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        _ => Object::new(),
    };
    merge_map(original, patch, schema).map(Value::Object)
}

/// Merges a patch map into a stored map (upstream `mergeMap`).
fn merge_map(mut original: Object, mut patch: Object, schema: Schema) -> Result<Object, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                return Ok(fresh_map(patch, schema));
            }
            // Upstream returns an empty map, not an absent key.
            Some("delete") => return Ok(Object::new()),
            // Upstream rejects an explicit `merge` on a map; merging is the default, so berth accepts it.
            Some("merge") => {
                patch.remove(DIRECTIVE);
            }
            _ => return Err(bad_patch_type(directive, &patch)),
        }
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, schema)?;

    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((key, patch_value));
            continue;
        }
        if key.starts_with('$') {
            // An unknown directive: upstream would store it and the typed decode would drop it.
            continue;
        }
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let (child, strategy) = meta::lookup(schema, &key);
        let merged = match (original.remove(&key), patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) if strategy != Strategy::Replace => {
                Value::Object(merge_map(o, p, child)?)
            }
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list_field(o, p, child, strategy)?),
            // Absent before, a type change, a replaced map or a scalar: the patch value wins.
            (_, p) => fresh(p, child),
        };
        original.insert(key, merged);
    }

    // Deletions run after additions so a value both added and deleted ends up deleted.
    for (key, patch_value) in deletions {
        let field = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST, ERR_PRIMITIVE_LIST)?;
        let Value::Array(to_delete) = patch_value else {
            return Err(PatchError::InvalidPatch(ERR_PRIMITIVE_LIST.to_string()));
        };
        // Deleting from a list that does not exist is a no-op (upstream would store the deletion list itself).
        if let Some(Value::Array(list)) = original.get_mut(&field) {
            list.retain(|v| !to_delete.contains(v));
        }
    }
    Ok(original)
}

/// `$retainKeys`: drop every stored key not listed. Every non-null key the patch sets must be listed
/// (upstream `applyRetainKeysDirective`).
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::InvalidPatch(ERR_RETAIN_KEYS.to_string()));
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !listed(k) {
            return Err(PatchError::InvalidPatch(ERR_RETAIN_KEYS.to_string()));
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<f>`: merge list `f` now, then order it: items named in the order list follow that list,
/// and items only the server has keep their relative stored order, interleaved by upstream's
/// `normalizeElementOrder`. The merged list is taken out of `patch` so the main loop skips it.
fn apply_set_element_order(original: &mut Object, patch: &mut Object, schema: Schema) -> Result<(), PatchError> {
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for order_key in order_keys {
        let field = extract_key(&order_key, SET_ELEMENT_ORDER, ERR_SET_ELEMENT_ORDER)?;
        let Some(Value::Array(order)) = patch.remove(&order_key) else {
            return Err(PatchError::InvalidPatch(ERR_SET_ELEMENT_ORDER.to_string()));
        };
        let stored = match original.get(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_arg_type("[]interface {}", other)),
        };
        let patched = match patch.remove(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => return Err(bad_arg_type("[]interface {}", &other)),
        };
        let (child, strategy) = meta::lookup(schema, &field);
        let key = strategy.merge_key();
        validate_patch_with_order(patched.as_deref().unwrap_or_default(), &order, key)?;
        let merged = match (&stored, patched) {
            (Some(stored), None) => stored.clone(),
            (None, Some(patched)) => fresh_list(patched, child),
            (Some(stored), Some(patched)) => merge_list_field(stored.clone(), patched, child, strategy)?,
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, key)?;
        let ordered = normalize_element_order(
            in_order,
            server_only,
            &order,
            stored.as_deref().unwrap_or_default(),
            key,
        )?;
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// Upstream `validatePatchWithSetOrderList`: the patch's items must appear in the order list, in that order.
fn validate_patch_with_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut items = Vec::with_capacity(patch.len());
    for item in patch {
        if key.is_some() {
            let Value::Object(m) = item else {
                return Err(bad_arg_type("map[string]interface {}", item));
            };
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        items.push(item);
    }
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if items[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if merge_key_value_equal(items[p], &order[o], key)? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(PatchError::InvalidPatch(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_fmt(&Value::Array(patch.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = key else {
        return Ok(left == right);
    };
    let (Value::Object(l), Value::Object(r)) = (left, right) else {
        let odd = if left.is_object() { right } else { left };
        return Err(bad_arg_type("map[string]interface {}", odd));
    };
    match (l.get(key), r.get(key)) {
        (Some(a), Some(b)) => Ok(a == b),
        (None, _) => Err(no_merge_key(l, key)),
        (_, None) => Err(no_merge_key(r, key)),
    }
}

/// A list field present in both the object and the patch (upstream `mergeSliceHandler`): merged when the
/// field's strategy says so, otherwise replaced by the patch's list.
fn merge_list_field(
    stored: Vec<Value>,
    patch: Vec<Value>,
    child: Schema,
    strategy: Strategy,
) -> Result<Vec<Value>, PatchError> {
    if strategy.merges_lists() {
        merge_slice(stored, patch, child, strategy.merge_key())
    } else {
        Ok(fresh_list(patch, child))
    }
}

/// The JSON type of list elements, for upstream's "all elements must have the same type" rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

fn element_kind(lists: [&[Value]; 2]) -> Result<Option<ElementKind>, PatchError> {
    let mut kind = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = match v {
            Value::Null => ElementKind::Null,
            Value::Bool(_) => ElementKind::Bool,
            Value::Number(_) => ElementKind::Number,
            Value::String(_) => ElementKind::String,
            Value::Object(_) => ElementKind::Object,
            Value::Array(_) => return Err(PatchError::NotApplicable(ERR_LIST_OF_LISTS.to_string())),
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(PatchError::InvalidPatch(format!(
                    "list element types are not identical: [{} {}]",
                    go_fmt(&Value::Array(lists[0].to_vec())),
                    go_fmt(&Value::Array(lists[1].to_vec()))
                )))
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// Merges two lists (upstream `mergeSlice`): primitives as a set union, maps item by item on `key`, honouring
/// `$patch` items. The result is ordered patch-first-where-it-speaks, see [`normalize_element_order`].
fn merge_slice(
    stored: Vec<Value>,
    patch: Vec<Value>,
    child: Schema,
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    if stored.is_empty() && patch.is_empty() {
        return Ok(stored);
    }
    if element_kind([&stored, &patch])? != Some(ElementKind::Object) {
        let mut merged: Vec<Value> = Vec::with_capacity(stored.len() + patch.len());
        for v in stored.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return normalize_element_order(in_patch, server_only, &patch, &stored, None);
    }
    let Some(key) = key else {
        return Err(PatchError::InvalidPatch(
            "cannot merge lists without merge key for type map".to_string(),
        ));
    };

    // Special elements first (upstream `mergeSliceWithSpecialElements`).
    let mut stored = stored;
    let mut plain: Vec<Object> = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(mut m) = item else { continue };
        match m.get(DIRECTIVE) {
            None => plain.push(m),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let Some(wanted) = m.get(key) else {
                        return Err(no_merge_key(&m, key));
                    };
                    stored.retain(|s| s.get(key) != Some(wanted));
                }
                Some("replace") => replace = true,
                // Upstream rejects this ("merging lists cannot yet be specified in the patch"); merging is what
                // happens anyway, so berth treats it as a plain item.
                Some("merge") => {
                    m.remove(DIRECTIVE);
                    plain.push(m);
                }
                _ => return Err(bad_patch_type(directive, &m)),
            },
        }
    }
    if replace {
        stored = plain.into_iter().map(|m| Value::Object(fresh_map(m, child))).collect();
        plain = Vec::new();
    }

    // Then the ordinary items (upstream `mergeSliceWithoutSpecialElements`).
    let mut merged = stored.clone();
    for item in &plain {
        let Some(wanted) = item.get(key) else {
            return Err(no_merge_key(item, key));
        };
        match merged.iter().position(|m| m.get(key) == Some(wanted)) {
            Some(i) => {
                let Value::Object(existing) = std::mem::take(&mut merged[i]) else {
                    return Err(bad_arg_type("map[string]interface {}", &merged[i]));
                };
                merged[i] = Value::Object(merge_map(existing, item.clone(), child)?);
            }
            None => merged.push(Value::Object(fresh_map(item.clone(), child))),
        }
    }
    let plain: Vec<Value> = plain.into_iter().map(Value::Object).collect();
    let (in_patch, server_only) = partition(merged, &plain, Some(key))?;
    normalize_element_order(in_patch, server_only, &plain, &stored, Some(key))
}

/// Splits `list` into the items present in `by` (matched on `key`, or by value for primitives) and the rest.
fn partition(list: Vec<Value>, by: &[Value], key: Option<&str>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let (mut present, mut absent) = (Vec::new(), Vec::new());
    for item in list {
        let found = match key {
            None => by.contains(&item),
            Some(key) => {
                let Value::Object(m) = &item else {
                    return Err(bad_arg_type("map[string]interface {}", &item));
                };
                let Some(wanted) = m.get(key) else {
                    return Err(no_merge_key(m, key));
                };
                by.iter().any(|b| b.get(key) == Some(wanted))
            }
        };
        if found {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Upstream `normalizeElementOrder`: sort the patch's items by the patch (or `$setElementOrder`) order, sort
/// the server-only items by their stored order, then interleave them. A server-only item goes before a patch
/// item only when both are in the stored list and it came first there; so items new to the list come before
/// the server-only items that follow them. Example: stored `[a, b]`, patch `[c]` gives `[c, a, b]`.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = normalize_slice_order(patch_items, patch_order, key)?;
    let server_only = normalize_slice_order(server_only, server_order, key)?;
    Ok(merge_sorted(server_only, patch_items, server_order, key))
}

/// Upstream `normalizeSliceOrder`: stable sort by position in `order`; `$patch: delete` items go last.
fn normalize_slice_order(items: Vec<Value>, order: &[Value], key: Option<&str>) -> Result<Vec<Value>, PatchError> {
    let Some(key) = key else {
        let mut items = items;
        items.sort_by_key(|item| index(order, item, None).unwrap_or(usize::MAX));
        return Ok(items);
    };
    for item in items.iter().chain(order.iter()) {
        let Value::Object(m) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        if !m.contains_key(key) {
            return Err(no_merge_key(m, key));
        }
    }
    let (mut keep, deleted): (Vec<Value>, Vec<Value>) = items
        .into_iter()
        .partition(|item| item.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
    // Upstream's comparator is only meaningful when both items are in `order`, which is always the case for
    // the lists it is called with; items missing from `order` are kept last, in their relative order.
    keep.sort_by_key(|item| index(order, item, Some(key)).unwrap_or(usize::MAX));
    keep.extend(deleted);
    Ok(keep)
}

/// Upstream `mergeSortedSlice`: interleave two sorted lists, taking from `left` only when both heads are in
/// `server_order` and `left`'s comes first.
fn merge_sorted(left: Vec<Value>, right: Vec<Value>, server_order: &[Value], key: Option<&str>) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => return out,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index(server_order, l, key), index(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
}

/// Position of `item` in `list`, comparing merge-key values for maps and whole values for primitives.
fn index(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(key) => list.iter().position(|l| l.get(key) == item.get(key)),
        None => list.iter().position(|l| l == item),
    }
}

/// A patch value stored where the object had nothing (or something of another type): directives and null map
/// entries are stripped recursively, since there is nothing for them to act on.
fn fresh(value: Value, schema: Schema) -> Value {
    match value {
        Value::Object(m) => Value::Object(fresh_map(m, schema)),
        Value::Array(items) => Value::Array(fresh_list(items, schema)),
        other => other,
    }
}

fn fresh_map(mut map: Object, schema: Schema) -> Object {
    if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
        return Object::new();
    }
    map.retain(|k, v| !k.starts_with('$') && !v.is_null());
    map.into_iter()
        .map(|(k, v)| {
            let (child, _) = meta::lookup(schema, &k);
            let v = fresh(v, child);
            (k, v)
        })
        .collect()
}

/// A list stored fresh: `{"$patch": "replace"}` markers and `$patch: delete` items have nothing to act on and
/// are dropped; other items are stripped like [`fresh_map`].
fn fresh_list(items: Vec<Value>, schema: Schema) -> Vec<Value> {
    items
        .into_iter()
        .filter(|item| !matches!(item.get(DIRECTIVE).and_then(Value::as_str), Some("replace" | "delete")))
        .map(|item| match item {
            Value::Object(m) => Value::Object(fresh_map(m, schema)),
            Value::Array(inner) => Value::Array(fresh_list(inner, Schema::Any)),
            other => other,
        })
        .collect()
}

/// Upstream `extractKey`: `$prefix/field` → `field`.
fn extract_key(directive_key: &str, prefix: &str, error: &str) -> Result<String, PatchError> {
    match directive_key.split_once('/') {
        Some((p, field)) if p == prefix => Ok(field.to_string()),
        _ => Err(PatchError::InvalidPatch(error.to_string())),
    }
}

fn no_merge_key(map: &Object, key: &str) -> PatchError {
    PatchError::InvalidPatch(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(&Value::Object(map.clone()))
    ))
}

fn bad_patch_type(directive: &Value, map: &Object) -> PatchError {
    PatchError::InvalidPatch(format!(
        "unknown patch type: {} in map: {}",
        go_fmt(directive),
        go_fmt(&Value::Object(map.clone()))
    ))
}

/// Upstream `ErrBadArgType`, naming types the way Go's reflection prints them.
fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    let actual = match actual {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    };
    PatchError::InvalidPatch(format!("expected a {expected}, but received a {actual}"))
}
