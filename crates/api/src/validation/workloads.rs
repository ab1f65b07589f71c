//! Validation of the replicating kinds: Deployment and ReplicaSet (`apps/validation`) and
//! ReplicationController (`core/validation`). The selector must select the template's own Pods, or the
//! controller would create Pods forever; that check is the one users meet most.

use std::collections::BTreeMap;

use serde_json::Value;

use super::pod::pod_template;
use super::{
    arr_at, forbidden, go_label_selector, go_quote, go_string_map, invalid, names, not_supported, required, str_at,
    IMMUTABLE, NEGATIVE,
};
use crate::meta;
use crate::status::Cause;

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// Deployment and ReplicaSet: replicas, selector (required, non-empty, matching the template, immutable),
/// template, and for Deployments the strategy and the timing fields.
pub(super) fn validate_apps(kind: &str, obj: &Value, old: Option<&Value>, errs: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    nonnegative(spec, "replicas", "spec.replicas", errs);
    if kind == "ReplicaSet" {
        nonnegative(spec, "minReadySeconds", "spec.minReadySeconds", errs);
    }
    'selector: {
        let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) else {
            errs.push(required("spec.selector", ""));
            break 'selector;
        };
        label_selector(selector, "spec.selector", errs);
        let empty = selector
            .get("matchLabels")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
            && arr_at(selector, "matchExpressions").is_empty();
        if empty {
            errs.push(invalid(
                "spec.selector",
                &go_label_selector(selector),
                "empty selector is invalid for deployment",
            ));
        }
        let template = spec.get("template").unwrap_or(&Value::Null);
        match selector_matches(selector, &template_labels(template)) {
            Err(()) => errs.push(invalid(
                "spec.selector",
                &go_label_selector(selector),
                "invalid label selector",
            )),
            Ok(matches) => {
                if !empty && !matches {
                    errs.push(invalid(
                        "spec.template.metadata.labels",
                        &go_string_map(meta::path(template, "metadata.labels")),
                        SELECTOR_MISMATCH,
                    ));
                }
                template_for_replicas(template, kind, errs);
            }
        }
    }
    if kind == "Deployment" {
        strategy(spec.get("strategy").unwrap_or(&Value::Null), errs);
        nonnegative(spec, "minReadySeconds", "spec.minReadySeconds", errs);
        nonnegative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit", errs);
        if let Some(pds) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
            nonnegative(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds", errs);
            let min_ready = spec.get("minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
            if pds <= min_ready {
                errs.push(invalid(
                    "spec.progressDeadlineSeconds",
                    &pds.to_string(),
                    "must be greater than minReadySeconds",
                ));
            }
        }
    }
    // apps/v1 made the selector immutable: changing it would orphan the existing ReplicaSets and Pods.
    if let Some(old) = old {
        let new_sel = spec.get("selector").unwrap_or(&Value::Null);
        let old_sel = meta::path(old, "spec.selector").unwrap_or(&Value::Null);
        if !selectors_equal(new_sel, old_sel) {
            errs.push(invalid("spec.selector", &go_label_selector(new_sel), IMMUTABLE));
        }
    }
}

/// ReplicationController (core/v1): a non-empty map selector that matches the template labels.
pub(super) fn validate_rc(obj: &Value, errs: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    nonnegative(spec, "minReadySeconds", "spec.minReadySeconds", errs);
    let selector = meta::string_map(spec.get("selector"));
    if selector.is_empty() {
        errs.push(required("spec.selector", ""));
    }
    nonnegative(spec, "replicas", "spec.replicas", errs);
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        errs.push(required("spec.template", ""));
        return;
    };
    let labels = template_labels(template);
    if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            &go_string_map(meta::path(template, "metadata.labels")),
            SELECTOR_MISMATCH,
        ));
    }
    template_for_replicas(template, "ReplicationController", errs);
}

/// The template checks shared by every replicating kind: a valid pod template whose Pods restart forever.
fn template_for_replicas(template: &Value, kind: &str, errs: &mut Vec<Cause>) {
    pod_template(template, "spec.template", errs);
    let restart = meta::path(template, "spec.restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !restart.is_empty() && restart != "Always" {
        errs.push(not_supported("spec.template.spec.restartPolicy", restart, &["Always"]));
    }
    if meta::path(template, "spec.activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        let owner = if kind == "Deployment" { "ReplicaSet" } else { kind };
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
}

fn template_labels(template: &Value) -> BTreeMap<String, String> {
    meta::string_map(meta::path(template, "metadata.labels"))
}

fn nonnegative(obj: &Value, key: &str, path: &str, errs: &mut Vec<Cause>) {
    if let Some(n) = obj.get(key).and_then(Value::as_i64) {
        if n < 0 {
            errs.push(invalid(path, &n.to_string(), NEGATIVE));
        }
    }
}

/// Compares selectors ignoring `null` vs absent fields.
fn selectors_equal(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let labels = meta::string_map(v.get("matchLabels"));
        let exprs = arr_at(v, "matchExpressions").to_vec();
        (labels, exprs)
    };
    norm(a) == norm(b)
}

/// Upstream's `ValidateLabelSelector`: valid keys and values, and values present exactly when the operator
/// needs them.
pub(crate) fn label_selector(selector: &Value, path: &str, errs: &mut Vec<Cause>) {
    super::labels(selector.get("matchLabels"), &format!("{path}.matchLabels"), errs);
    for (i, e) in arr_at(selector, "matchExpressions").iter().enumerate() {
        let idx = format!("{path}.matchExpressions[{i}]");
        let values = arr_at(e, "values");
        match str_at(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        &format!("{idx}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        &format!("{idx}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(invalid(
                &format!("{idx}.operator"),
                &go_quote(op),
                "not a valid selector operator",
            )),
        }
        let key = str_at(e, "key");
        for msg in names::is_qualified_name(key) {
            errs.push(invalid(&format!("{idx}.key"), &go_quote(key), &msg));
        }
    }
}

/// Evaluates a `LabelSelector` against a label set; `Err` when the selector cannot be converted (an unknown
/// operator, or `In`/`NotIn` without values), as `metav1.LabelSelectorAsSelector` would fail.
pub(crate) fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> Result<bool, ()> {
    let mut ok = meta::string_map(selector.get("matchLabels"))
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    for e in arr_at(selector, "matchExpressions") {
        let key = str_at(e, "key");
        let values: Vec<&str> = arr_at(e, "values").iter().filter_map(Value::as_str).collect();
        let have = labels.get(key).map(String::as_str);
        let matched = match str_at(e, "operator") {
            "In" if !values.is_empty() => have.is_some_and(|h| values.contains(&h)),
            "NotIn" if !values.is_empty() => have.is_none_or(|h| !values.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => return Err(()),
        };
        ok &= matched;
    }
    Ok(ok)
}

/// Upstream's `ValidateDeploymentStrategy` and `ValidateRollingUpdateDeployment`.
fn strategy(s: &Value, errs: &mut Vec<Cause>) {
    match str_at(s, "type") {
        "Recreate" => {
            if s.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                errs.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let Some(ru) = s.get("rollingUpdate").filter(|r| !r.is_null()) else {
                errs.push(required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                ));
                return;
            };
            let unavailable = int_or_percent(
                ru.get("maxUnavailable"),
                "spec.strategy.rollingUpdate.maxUnavailable",
                errs,
            );
            let surge = int_or_percent(ru.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge", errs);
            if unavailable == Some(0) && surge == Some(0) {
                errs.push(invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &super::render(ru.get("maxUnavailable").unwrap_or(&Value::Null)),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some(Value::String(p)) = ru.get("maxUnavailable") {
                if p.strip_suffix('%')
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| n > 100)
                {
                    errs.push(invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &go_quote(p),
                        "must not be greater than 100%",
                    ));
                }
            }
        }
        other => errs.push(not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// Validates an int-or-percent field (`2` or `"25%"`), returning its numeric part when valid.
fn int_or_percent(v: Option<&Value>, path: &str, errs: &mut Vec<Cause>) -> Option<i64> {
    let n = match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
            Some(n) => Some(n),
            None => {
                errs.push(invalid(path, &go_quote(s), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
                return None;
            }
        },
        _ => None,
    }?;
    if n < 0 {
        errs.push(invalid(path, &n.to_string(), NEGATIVE));
    }
    Some(n)
}
