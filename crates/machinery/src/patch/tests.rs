//! Table-driven tests for the three patch formats, including kubectl's real second-apply strategic merge patch.
//! Tests only; no production code here.

use serde_json::{json, Value};

use super::*;

/// Applies a strategic merge patch to an object of `kind` and compares with `expected`.
fn check_smp(kind: &str, original: Value, patch: Value, expected: Value) {
    match strategic_merge_patch(kind, &original, &patch) {
        Ok(got) => assert_eq!(got, expected, "patch {patch}"),
        Err(e) => panic!("patch {patch} failed: {e}"),
    }
}

/// Applies a strategic merge patch that must fail with this message.
fn check_smp_error(kind: &str, original: Value, patch: Value, message: &str, code: u16) {
    match strategic_merge_patch(kind, &original, &patch) {
        Ok(got) => panic!("patch {patch} should fail, got {got}"),
        Err(e) => {
            assert_eq!(e.to_string(), message, "patch {patch}");
            assert_eq!(e.http_code(), code, "patch {patch}");
        }
    }
}

fn stored_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "5d3c",
            "resourceVersion": "7",
            "generation": 1,
            "labels": {"app": "web"},
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"
            }
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.25",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "imagePullPolicy": "IfNotPresent"
                    }],
                    "restartPolicy": "Always"
                }
            }
        },
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    })
}

#[test]
fn kubectls_second_apply_patch_updates_the_deployment_exactly() {
    // The body kubectl 1.35 sends on the second `kubectl apply` (surface doc §11.2).
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"}},
        "spec": {
            "replicas": 4,
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}],
                    "image": "nginx:1.27",
                    "name": "web"
                }]
            }}
        }
    });
    let mut expected = stored_deployment();
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{\"new\":true}\n");
    expected["spec"]["replicas"] = json!(4);
    expected["spec"]["strategy"] = json!({"type": "Recreate"});
    expected["spec"]["template"]["spec"]["containers"] = json!([{
        "name": "web",
        "image": "nginx:1.27",
        "env": [{"name": "A", "value": "1"}],
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "imagePullPolicy": "IfNotPresent"
    }]);
    check_smp("Deployment", stored_deployment(), patch, expected);
}

#[test]
fn cordon_sets_and_uncordon_removes_unschedulable() {
    let node = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"}});
    let cordoned = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24", "unschedulable": true}});
    check_smp(
        "Node",
        node.clone(),
        json!({"spec": {"unschedulable": true}}),
        cordoned.clone(),
    );
    check_smp("Node", cordoned, json!({"spec": {"unschedulable": null}}), node);
}

#[test]
fn labels_and_annotations_merge_key_by_key() {
    let pod = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}, "annotations": {"a": "1"}}});
    check_smp(
        "Pod",
        pod,
        json!({"metadata": {"labels": {"tier": null, "env": "prod"}, "annotations": {"b": "2"}}}),
        json!({"metadata": {"labels": {"app": "web", "env": "prod"}, "annotations": {"a": "1", "b": "2"}}}),
    );
}

fn pod_with(containers: Value) -> Value {
    json!({"spec": {"containers": containers}})
}

#[test]
fn list_merges_follow_the_patch_meta_table() {
    let two = pod_with(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
    for (what, original, patch, expected) in [
        (
            "a container patched by name keeps the other containers",
            two.clone(),
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
            pod_with(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}])),
        ),
        (
            "a new container is added (before server-only items, as upstream orders it)",
            two.clone(),
            json!({"spec": {"containers": [{"name": "c", "image": "c:1"}]}}),
            pod_with(
                json!([{"name": "c", "image": "c:1"}, {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]),
            ),
        ),
        (
            "$setElementOrder places a new container",
            two.clone(),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                "containers": [{"name": "c", "image": "c:1"}]
            }}),
            pod_with(
                json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}, {"name": "c", "image": "c:1"}]),
            ),
        ),
        (
            "upstream: patch order wins for patched items, server-only items keep their place",
            pod_with(json!([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}])),
            json!({"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}}),
            pod_with(json!([{"name": "2", "image": "b"}, {"name": "3", "image": "c"}, {"name": "1", "image": "a"}])),
        ),
        (
            "upstream: $setElementOrder may name items the list does not have",
            pod_with(json!([{"name": "1"}, {"name": "3"}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
                "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]
            }}),
            pod_with(json!([{"name": "3", "image": "3"}, {"name": "1", "image": "1"}])),
        ),
        (
            "$setElementOrder alone reorders",
            two.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            pod_with(json!([{"name": "b", "image": "b:1"}, {"name": "a", "image": "a:1"}])),
        ),
        (
            "$patch: delete removes one container",
            two.clone(),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            pod_with(json!([{"name": "b", "image": "b:1"}])),
        ),
        (
            "$patch: replace on a list replaces it",
            two.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z:1"}]}}),
            pod_with(json!([{"name": "z", "image": "z:1"}])),
        ),
        (
            "ports merge by containerPort",
            pod_with(json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}])),
            json!({"spec": {"containers": [{"name": "a", "ports": [
                {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}
            ]}]}}),
            pod_with(json!([{"name": "a", "ports": [
                {"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}
            ]}])),
        ),
        (
            "command is atomic and replaced",
            pod_with(json!([{"name": "a", "command": ["sh", "-c", "x"]}])),
            json!({"spec": {"containers": [{"name": "a", "command": ["y"]}]}}),
            pod_with(json!([{"name": "a", "command": ["y"]}])),
        ),
        (
            "env entries merge by name",
            pod_with(json!([{"name": "a", "env": [{"name": "X", "value": "1"}]}])),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]}]}}),
            pod_with(json!([{"name": "a", "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]}])),
        ),
    ] {
        let got = strategic_merge_patch("Pod", &original, &patch).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn tolerations_are_atomic() {
    check_smp(
        "Pod",
        json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]}}),
        json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}),
        json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}),
    );
}

#[test]
fn switching_a_volume_source_with_retain_keys_drops_the_old_source() {
    let original = json!({"spec": {"template": {"spec": {"volumes": [
        {"name": "cache", "emptyDir": {}},
        {"name": "other", "emptyDir": {"medium": "Memory"}}
    ]}}}});
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"$retainKeys": ["configMap", "name"], "name": "cache", "configMap": {"name": "cfg"}}
    ]}}}});
    check_smp(
        "Deployment",
        original,
        patch,
        json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "cache", "configMap": {"name": "cfg"}},
            {"name": "other", "emptyDir": {"medium": "Memory"}}
        ]}}}}),
    );
}

#[test]
fn retain_keys_rejects_patch_keys_it_does_not_list() {
    check_smp_error(
        "Deployment",
        json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}}),
        "invalid patch format of retainKeys",
        400,
    );
}

#[test]
fn patch_replace_and_delete_directives_on_maps() {
    let original = json!({"spec": {"selector": {"matchLabels": {"a": "1"}, "matchExpressions": []}, "x": {"k": "v"}}});
    check_smp(
        "ReplicaSet",
        original.clone(),
        json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"b": "2"}}}}),
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}, "x": {"k": "v"}}}),
    );
    // Upstream leaves an empty map behind for `$patch: delete`.
    check_smp(
        "ReplicaSet",
        original,
        json!({"spec": {"x": {"$patch": "delete"}}}),
        json!({"spec": {"selector": {"matchLabels": {"a": "1"}, "matchExpressions": []}, "x": {}}}),
    );
}

#[test]
fn a_pdb_selector_is_replaced_not_merged() {
    check_smp(
        "PodDisruptionBudget",
        json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}}),
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}, "minAvailable": 1}}),
    );
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list_removes() {
    let ns = |f: Value| json!({"metadata": {"name": "x", "finalizers": f}});
    for (what, original, patch, expected) in [
        (
            "a duplicate is not added twice",
            ns(json!(["a", "b"])),
            json!({"metadata": {"finalizers": ["b"]}}),
            ns(json!(["a", "b"])),
        ),
        (
            "a new value goes before server-only values",
            ns(json!(["a", "b"])),
            json!({"metadata": {"finalizers": ["c"]}}),
            ns(json!(["c", "a", "b"])),
        ),
        (
            "kubectl's apply form keeps the configured order",
            ns(json!(["a", "b"])),
            json!({"metadata": {
                "$setElementOrder/finalizers": ["a", "c"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "finalizers": ["c"]
            }}),
            ns(json!(["a", "c"])),
        ),
        (
            "$deleteFromPrimitiveList removes a value",
            ns(json!(["a", "b", "c"])),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            ns(json!(["a", "c"])),
        ),
        (
            "deleting from an absent list is a no-op",
            json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"name": "x"}}),
        ),
    ] {
        let got = strategic_merge_patch("Namespace", &original, &patch).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn directives_never_reach_the_result_even_in_fresh_values() {
    check_smp(
        "Deployment",
        json!({"spec": {"replicas": 1}}),
        json!({"spec": {"template": {
            "metadata": {"labels": {"a": "1", "gone": null}},
            "spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{
                    "name": "web",
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"name": "A", "value": "1"}, {"$patch": "delete", "name": "B"}],
                    "resources": {"$patch": "replace", "limits": {"cpu": "1"}}
                }]
            }
        }}}),
        json!({"spec": {"replicas": 1, "template": {
            "metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "web", "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}}]}
        }}}),
    );
}

#[test]
fn status_conditions_merge_by_type() {
    check_smp(
        "Pod",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}}),
    );
}

#[test]
fn malformed_strategic_patches_are_rejected_with_upstream_messages() {
    let pod = pod_with(json!([{"name": "a", "image": "a:1"}]));
    check_smp_error(
        "Pod",
        pod.clone(),
        json!({"spec": {"containers": [{"image": "httpd"}]}}),
        "map: map[image:httpd] does not contain declared merge key: name",
        400,
    );
    check_smp_error(
        "Pod",
        pod.clone(),
        json!({"spec": {"$patch": "explode"}}),
        "unknown patch type: explode in map: map[$patch:explode]",
        400,
    );
    check_smp_error(
        "Pod",
        pod.clone(),
        json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
        "invalid patch format of setElementOrder list",
        400,
    );
    check_smp_error(
        "Pod",
        pod.clone(),
        json!({"spec": {"$setElementOrder/containers": [{"name": "x"}], "containers": [{"name": "a", "image": "b"}]}}),
        "The order in patch list:\n[map[image:b name:a]]\n doesn't match $setElementOrder list:\n[map[name:x]]\n",
        400,
    );
    check_smp_error("Pod", pod.clone(), json!([1, 2]), "invalid JSON document", 400);
    check_smp_error(
        "Widget",
        json!({}),
        json!({}),
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        415,
    );
}

fn nested(depth: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

#[test]
fn documents_nested_too_deeply_are_rejected() {
    let err = strategic_merge_patch("ConfigMap", &json!({}), &nested(150)).err();
    assert_eq!(err.map(|e| e.http_code()), Some(400));
    let err = json_patch(&nested(150), &json!([])).err();
    assert!(
        err.is_none(),
        "the stored object is not checked by json patch, only the patch"
    );
    let err = json_patch(&json!({}), &json!([{"op": "add", "path": "/x", "value": nested(150)}])).err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("patch is nested deeper than 100 levels".to_string())
    );
    assert!(strategic_merge_patch("ConfigMap", &json!({}), &nested(90)).is_ok());
}

fn check_json_patch(original: Value, patch: Value, expected: Result<Value, u16>) {
    let got = json_patch(&original, &patch).map_err(|e| e.http_code());
    assert_eq!(got, expected, "json patch {patch}");
}

#[test]
fn json_patch_operations_apply_and_fail_like_rfc_6902() {
    let doc = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "list": ["a", "b"]}});
    for (patch, expected) in [
        (
            json!([{"op": "add", "path": "/spec/paused", "value": true}]),
            Ok(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "list": ["a", "b"], "paused": true}})),
        ),
        (
            json!([{"op": "add", "path": "/spec/list/-", "value": "c"}]),
            Ok(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "list": ["a", "b", "c"]}})),
        ),
        (
            json!([{"op": "remove", "path": "/spec/list/0"}]),
            Ok(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "list": ["b"]}})),
        ),
        (
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            Ok(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "list": ["a", "b"]}})),
        ),
        (
            json!([{"op": "move", "from": "/spec/list", "path": "/spec/items"}]),
            Ok(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "items": ["a", "b"]}})),
        ),
        (
            json!([{"op": "copy", "from": "/metadata/name", "path": "/spec/name"}]),
            Ok(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "list": ["a", "b"], "name": "web"}})),
        ),
        (
            json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas", "value": 2}]),
            Ok(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "list": ["a", "b"]}})),
        ),
        (json!([{"op": "test", "path": "/spec/replicas", "value": 9}]), Err(422)),
        (
            json!([{"op": "replace", "path": "/spec/missing", "value": 1}]),
            Err(422),
        ),
        (json!([{"op": "remove", "path": "/nope/deeper"}]), Err(422)),
        (json!([{"op": "frobnicate", "path": "/spec"}]), Err(400)),
        (json!({"op": "add"}), Err(400)),
    ] {
        check_json_patch(doc.clone(), patch, expected);
    }
}

#[test]
fn a_failed_json_patch_operation_leaves_nothing_half_applied() {
    let doc = json!({"a": 1});
    let patch = json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 5}]);
    assert!(json_patch(&doc, &patch).is_err());
    assert_eq!(doc, json!({"a": 1}));
}

#[test]
fn json_patches_over_ten_thousand_operations_are_too_large() {
    let ops: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/a", "value": 1}))
        .collect();
    let err = json_patch(&json!({"a": 1}), &Value::Array(ops)).err();
    assert_eq!(err.as_ref().map(PatchError::http_code), Some(413));
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("The allowed maximum operations in a JSON patch is 10000, got 10001")
    );
}

#[test]
fn merge_patch_follows_rfc_7386() {
    for (original, patch, expected) in [
        (json!({"a": 1, "b": 2}), json!({"b": null}), json!({"a": 1})),
        (
            json!({"a": {"x": 1, "y": 2}}),
            json!({"a": {"y": 3}}),
            json!({"a": {"x": 1, "y": 3}}),
        ),
        (json!({"l": [1, 2, 3]}), json!({"l": [4]}), json!({"l": [4]})),
        (
            json!({"spec": {"replicas": 3}}),
            json!({"spec": {"replicas": 5}}),
            json!({"spec": {"replicas": 5}}),
        ),
        (
            json!({"a": "x"}),
            json!({"a": {"b": null, "c": 1}}),
            json!({"a": {"c": 1}}),
        ),
        (json!({"a": 1}), json!("scalar"), json!("scalar")),
        (json!({"a": 1}), json!({"missing": null}), json!({"a": 1})),
    ] {
        assert_eq!(merge_patch(&original, &patch), expected, "merge patch {patch}");
    }
}

#[test]
fn error_codes_and_reasons_map_to_status_objects() {
    assert_eq!(PatchError::InvalidPatch(String::new()).reason(), "BadRequest");
    assert_eq!(PatchError::NotApplicable(String::new()).http_code(), 422);
    assert_eq!(PatchError::NotApplicable(String::new()).reason(), "Invalid");
}

#[test]
fn lists_of_lists_cannot_be_merged() {
    let err = strategic_merge_patch(
        "Namespace",
        &json!({"metadata": {"finalizers": [["a"]]}}),
        &json!({"metadata": {"finalizers": [["b"]]}}),
    )
    .err();
    assert_eq!(
        err.map(|e| (e.http_code(), e.to_string())),
        Some((422, "lists of lists are not supported".into()))
    );
}

/// The attack that stored a 68 MB ConfigMap from a 1.8 KB patch: each `copy` of a field into a sibling doubles
/// what the next copy copies.
fn doubling_copies(count: usize) -> Value {
    let mut ops = vec![json!({"op": "add", "path": "/foo", "value": {"a": "x".repeat(64 * 1024)}})];
    for i in 0..count {
        ops.push(json!({"op": "copy", "from": "/foo", "path": format!("/foo/c{i}")}));
    }
    Value::Array(ops)
}

#[test]
fn json_patch_copies_stop_at_the_accumulated_copy_limit_before_allocating_the_result() {
    let err = json_patch(&json!({"metadata": {"name": "x"}}), &doubling_copies(21)).err();
    // 64 KiB doubled: the copies add 64 KiB, 128 KiB, ... and the sixth takes them past 3 MiB.
    assert_eq!(
        err.as_ref().map(|e| (e.http_code(), e.reason())),
        Some((422, "Invalid"))
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("Unable to complete the copy, the accumulated size increase of copy is ")
            && message.ends_with(", exceeding the limit 3145728"),
        "{message}"
    );
    // Without the limit the 21 copies would need 64 KiB × 2^21 = 128 GiB: reaching this line at all is the point.

    // A few copies that stay under the limit are carried out.
    let small = json_patch(&json!({}), &doubling_copies(4)).unwrap();
    assert_eq!(
        small["foo"]["c3"]["c2"]["c1"]["c0"]["a"].as_str().map(str::len),
        Some(64 * 1024)
    );
}

#[test]
fn json_size_counts_compact_json_and_stops_past_its_cap() {
    for value in [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(7),
        json!(1234567),
        json!(u64::MAX),
        json!("abc"),
        json!([]),
        json!([1, 2, 3]),
        json!({}),
        json!({"a": [true, {"bc": "d"}], "e": null}),
    ] {
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(json_size(&value, usize::MAX), text.len(), "{text}");
    }
    let big = json!(vec!["x".repeat(1000); 1000]);
    let capped = json_size(&big, 10_000);
    assert!(capped > 10_000 && capped < 20_000, "{capped}");
}

#[test]
fn merge_and_strategic_patches_grow_an_object_by_at_most_the_patch() {
    // Neither format has an operation that duplicates what the object already holds: whatever they add comes
    // from the patch document, so the result is bounded by object + patch, both bounded by the body limit.
    let original = json!({"metadata": {"name": "x", "finalizers": ["a"]}, "data": {"k": "v".repeat(100_000)}});
    let patch = json!({
        "metadata": {"finalizers": ["b", "c"], "$setElementOrder/finalizers": ["b", "a", "c"]},
        "data": {"k2": "w".repeat(100_000)},
    });
    let bound = json_size(&original, usize::MAX) + json_size(&patch, usize::MAX);
    let merged = merge_patch(&original, &patch);
    assert!(json_size(&merged, usize::MAX) <= bound);
    let strategic = strategic_merge_patch("ConfigMap", &original, &patch).unwrap();
    assert!(json_size(&strategic, usize::MAX) <= bound);
}
