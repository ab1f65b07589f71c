//! Unit tests for validation: invalid objects per kind with upstream's exact field causes, and strict decoding.

use serde_json::{json, Value};

use super::*;

/// The `field: message` lines kubectl would print for an object.
fn problems(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<String> {
    validate(kind, obj, old)
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

fn check(kind: &str, obj: Value, expected: &[&str]) {
    assert_eq!(problems(kind, &obj, None), expected, "{obj}");
}

fn pod(spec: Value) -> Value {
    let mut p =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    crate::defaults::apply("Pod", &mut p);
    p
}

fn deployment(selector: Value, labels: Value) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": selector, "template": {"metadata": {"labels": labels},
                 "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    });
    crate::defaults::apply("Deployment", &mut d);
    d
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation \
is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn a_valid_pod_has_no_problems() {
    check(
        "Pod",
        pod(json!({"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]})),
        &[],
    );
}

#[test]
fn names_use_upstream_messages_per_kind() {
    let named = |kind: &str, name: &str| {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}],
               "type": "ClusterIP", "sessionAffinity": "None"}})
        .pipe(|mut v| {
            if kind == "Namespace" {
                v["metadata"].as_object_mut().map(|m| m.remove("namespace"));
            }
            v
        })
    };
    assert_eq!(
        problems("ConfigMap", &named("ConfigMap", "Foo"), None),
        [format!("metadata.name: Invalid value: \"Foo\": {SUBDOMAIN_MSG}")]
    );
    assert_eq!(
        problems("Namespace", &named("Namespace", "a.b"), None),
        ["metadata.name: Invalid value: \"a.b\": must not contain dots"]
    );
    assert_eq!(
        problems("Service", &named("Service", "1web"), None),
        [
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric \
          characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. \
          'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
    let long = "a".repeat(254);
    assert_eq!(
        problems("ConfigMap", &named("ConfigMap", &long), None),
        [format!(
            "metadata.name: Invalid value: \"{long}\": must be no more than 253 characters"
        )]
    );
    assert_eq!(
        problems("ConfigMap", &json!({"metadata": {"namespace": "default"}}), None),
        ["metadata.name: Required value: name or generateName is required"]
    );
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl Pipe for Value {}

#[test]
fn cluster_scoped_kinds_refuse_a_namespace() {
    check(
        "Node",
        json!({"metadata": {"name": "n1", "namespace": "default"}}),
        &["metadata.namespace: Forbidden: not allowed on this type"],
    );
}

#[test]
fn labels_and_annotations_are_checked() {
    check(
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d", "labels": {"app": "bad value"}}}),
        &[
            "metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string or consist of \
           alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
           'MyValue',  or 'my_value',  or '12345', regex used for validation is \
           '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ],
    );
    check(
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d", "labels": {"/x": "y"}}}),
        &["metadata.labels: Invalid value: \"/x\": prefix part must be non-empty"],
    );
    let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
    check(
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d", "annotations": {"a": big}}}),
        &["metadata.annotations: Too long: may not be more than 262144 bytes"],
    );
}

#[test]
fn the_namespace_of_an_object_cannot_change() {
    let old = json!({"metadata": {"name": "c", "namespace": "a"}});
    let new = json!({"metadata": {"name": "c", "namespace": "b"}});
    assert_eq!(
        problems("ConfigMap", &new, Some(&old)),
        ["metadata.namespace: Invalid value: \"b\": field is immutable"]
    );
}

#[test]
fn pod_spec_problems_use_upstream_paths_and_messages() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"containers": []}), vec!["spec.containers: Required value"]),
        (
            json!({"containers": [{"name": "a", "image": ""}]}),
            vec!["spec.containers[0].image: Required value"],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}),
            vec!["spec.containers[1].name: Duplicate value: \"a\""],
        ),
        (
            json!({"initContainers": [{"name": "a", "image": "x"}], "containers": [{"name": "a", "image": "y"}]}),
            vec!["spec.containers[0].name: Duplicate value: \"a\""],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000, "protocol": "TCPX"}]}]}),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"TCPX\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}], "restartPolicy": "Sometimes"}),
            vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}),
            vec!["spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
        ),
        (
            json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
                   "containers": [{"name": "a", "image": "x"}]}),
            vec!["spec.volumes[1].name: Duplicate value: \"v\""],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "env": [{"name": "A=B", "value": "1"}]}]}),
            vec!["spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='"],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}]}),
            vec!["spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "lots"}}}]}),
            vec!["spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"gpu": "1"}}}]}),
            vec!["spec.containers[0].resources.requests[gpu]: Invalid value: gpu: must be a standard resource for containers"],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "livenessProbe": {"periodSeconds": 5}}]}),
            vec!["spec.containers[0].livenessProbe: Required value: must specify a handler type"],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}]}),
            vec!["spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"],
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "livenessProbe": {"httpGet": {"port": "http-"}, "successThreshold": 2}}]}),
            vec![
                "spec.containers[0].livenessProbe.httpGet.port: Invalid value: \"http-\": must not begin or end with a hyphen",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            ],
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(problems("Pod", &pod(spec.clone()), None), expected, "{spec}");
    }
}

/// A pod with one emptyDir volume `v` mounted by container `a` with the given extra mount fields.
fn pod_mounting(mount: Value) -> Value {
    let mut m = json!({"name": "v", "mountPath": "/v"});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), mount.as_object()) {
        m.extend(extra.clone());
    }
    pod(
        json!({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"name": "a", "image": "x", "volumeMounts": [m]}]}),
    )
}

#[test]
fn sub_paths_must_stay_inside_their_volume() {
    let ok: &[&str] = &[];
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"subPath": "conf/app.yaml"}), ok),
        (json!({"subPath": "a/..b/c.."}), ok),
        (json!({"subPathExpr": "logs/$(POD_NAME)"}), ok),
        (
            json!({"subPath": "/etc"}),
            &["spec.containers[0].volumeMounts.subPath: Invalid value: \"/etc\": must be a relative path"],
        ),
        (
            json!({"subPath": "../../.."}),
            &["spec.containers[0].volumeMounts.subPath: Invalid value: \"../../..\": must not contain '..'"],
        ),
        (
            json!({"subPath": "a/b/.."}),
            &["spec.containers[0].volumeMounts.subPath: Invalid value: \"a/b/..\": must not contain '..'"],
        ),
        (
            json!({"subPath": "/../x"}),
            &[
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"/../x\": must be a relative path",
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"/../x\": must not contain '..'",
            ],
        ),
        (
            json!({"subPathExpr": "$(X)/../.."}),
            &["spec.containers[0].volumeMounts.subPathExpr: Invalid value: \"$(X)/../..\": must not contain '..'"],
        ),
        (
            json!({"subPathExpr": "/$(X)"}),
            &["spec.containers[0].volumeMounts.subPathExpr: Invalid value: \"/$(X)\": must be a relative path"],
        ),
        (
            json!({"subPath": "a", "subPathExpr": "$(X)"}),
            &["spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: \"$(X)\": subPathExpr and subPath are mutually exclusive"],
        ),
    ];
    for (mount, expected) in cases {
        assert_eq!(problems("Pod", &pod_mounting(mount.clone()), None), expected, "{mount}");
    }
    // Every pod template is checked the same way, with the template's path.
    let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": {
        "volumes": [{"name": "v", "emptyDir": {}}],
        "initContainers": [{"name": "i", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "/"}]}],
        "containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": ".."}]}]}});
    let expected = [
        "spec.template.spec.initContainers[0].volumeMounts.subPath: Invalid value: \"/\": must be a relative path",
        "spec.template.spec.containers[0].volumeMounts.subPath: Invalid value: \"..\": must not contain '..'",
    ];
    for kind in ["Deployment", "ReplicaSet", "ReplicationController"] {
        let mut obj = json!({"metadata": {"name": "w", "namespace": "d"},
                             "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template}});
        if kind == "ReplicationController" {
            obj["spec"]["selector"] = json!({"a": "b"});
        }
        crate::defaults::apply(kind, &mut obj);
        assert_eq!(problems(kind, &obj, None), expected, "{kind}");
    }
}

#[test]
fn security_settings_berth_cannot_honour_are_refused() {
    let ok: &[&str] = &[];
    let c = |sc: Value| json!({"containers": [{"name": "a", "image": "x", "securityContext": sc}]});
    let cases: Vec<(Value, &[&str])> = vec![
        // Honoured or harmless: no host namespaces asked for, dropped capabilities, the runtime's own profiles.
        (json!({"hostNetwork": false, "hostPID": false, "hostIPC": false, "containers": [{"name": "a", "image": "x"}]}), ok),
        (c(json!({"capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})), ok),
        (
            json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "appArmorProfile": {"type": "RuntimeDefault"}, "sysctls": []},
                   "containers": [{"name": "a", "image": "x"}]}),
            ok,
        ),
        (
            json!({"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": [{"name": "a", "image": "x"}]}),
            &[
                "spec.hostNetwork: Forbidden: not supported by berth: pods always get their own network, PID and IPC namespaces",
                "spec.hostPID: Forbidden: not supported by berth: pods always get their own network, PID and IPC namespaces",
                "spec.hostIPC: Forbidden: not supported by berth: pods always get their own network, PID and IPC namespaces",
            ],
        ),
        (
            json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                                       "seccompProfile": {"type": "Unconfined"}},
                   "containers": [{"name": "a", "image": "x"}]}),
            &[
                "spec.securityContext.sysctls: Forbidden: not supported by berth: sysctls cannot be set",
                "spec.securityContext.seccompProfile.type: Forbidden: not supported by berth: only RuntimeDefault (the container runtime's default profile)",
            ],
        ),
        (
            c(json!({"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                     "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
                     "appArmorProfile": {"type": "Unconfined"}})),
            &[
                "spec.containers[0].securityContext.capabilities.add: Forbidden: not supported by berth: capabilities can be dropped, not added",
                "spec.containers[0].securityContext.seccompProfile.type: Forbidden: not supported by berth: only RuntimeDefault (the container runtime's default profile)",
                "spec.containers[0].securityContext.appArmorProfile.type: Forbidden: not supported by berth: only RuntimeDefault (the container runtime's default profile)",
            ],
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(problems("Pod", &pod(spec.clone()), None), expected, "{spec}");
    }
    let mut d = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
    d["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
    d["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"add": ["SYS_ADMIN"]}});
    assert_eq!(
        problems("Deployment", &d, None),
        [
            "spec.template.spec.containers[0].securityContext.capabilities.add: Forbidden: not supported by berth: capabilities can be dropped, not added",
            "spec.template.spec.hostNetwork: Forbidden: not supported by berth: pods always get their own network, PID and IPC namespaces",
        ]
    );
}

#[test]
fn quantities_with_surrounding_whitespace_are_refused() {
    for text in [" 1", "1 ", "\t500m"] {
        let p = pod(json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": text}}}]}));
        assert_eq!(
            problems("Pod", &p, None),
            [format!(
                "spec.containers[0].resources.requests[cpu]: Invalid value: {}: {}",
                go_quote(text),
                quantity::QUANTITY_REGEX_ERROR
            )],
            "{text:?}"
        );
        assert!(decode_error("Pod", &p).is_some(), "{text:?}");
    }
}

#[test]
fn pod_updates_may_only_change_images_and_a_few_fields() {
    let old = pod(json!({"containers": [{"name": "a", "image": "nginx:1"}]}));
    let mut new_image = old.clone();
    new_image["spec"]["containers"][0]["image"] = json!("nginx:2");
    assert_eq!(problems("Pod", &new_image, Some(&old)), Vec::<String>::new());

    let mut new_port = old.clone();
    new_port["spec"]["containers"][0]["ports"] = json!([{"containerPort": 81, "protocol": "TCP"}]);
    let errs = validate("Pod", &new_port, Some(&old));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec");
    assert_eq!(errs[0].reason, "FieldValueForbidden");
    assert!(errs[0].message.starts_with(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,\
         `spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to \
         existing tolerations),`spec.terminationGracePeriodSeconds`"
    ));

    let mut more_tolerations = old.clone();
    if let Some(t) = more_tolerations["spec"]["tolerations"].as_array_mut() {
        t.push(json!({"key": "x", "operator": "Exists"}));
    }
    assert_eq!(problems("Pod", &more_tolerations, Some(&old)), Vec::<String>::new());
}

#[test]
fn deployments_need_a_selector_matching_the_template() {
    let mut missing = deployment(json!(null), json!({"app": "x"}));
    missing["spec"].as_object_mut().map(|s| s.remove("selector"));
    assert_eq!(
        problems("Deployment", &missing, None),
        ["spec.selector: Required value"]
    );

    let mismatch = deployment(json!({"matchLabels": {"app": "y"}}), json!({"app": "x"}));
    assert_eq!(
        problems("Deployment", &mismatch, None),
        ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"]
    );

    let empty = deployment(json!({}), json!({"app": "x"}));
    assert_eq!(
        problems("Deployment", &empty, None),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
    );

    let exprs = deployment(
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "z"]}]}),
        json!({"app": "x"}),
    );
    assert_eq!(problems("Deployment", &exprs, None), Vec::<String>::new());

    let mut negative = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
    negative["spec"]["replicas"] = json!(-1);
    assert_eq!(
        problems("Deployment", &negative, None),
        ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
}

#[test]
fn the_selector_of_an_apps_v1_workload_is_immutable() {
    let old = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x", "v": "1"}));
    let new = deployment(
        json!({"matchLabels": {"app": "x", "v": "1"}}),
        json!({"app": "x", "v": "1"}),
    );
    assert_eq!(
        problems("Deployment", &new, Some(&old)),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\", \"v\":\"1\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
    );
    assert_eq!(problems("Deployment", &old, Some(&old)), Vec::<String>::new());
}

#[test]
fn deployment_strategy_is_validated() {
    let mut d = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    assert_eq!(
        problems("Deployment", &d, None),
        ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
    );
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
    assert_eq!(
        problems("Deployment", &d, None),
        ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    );
    d["spec"]["strategy"] = json!({"type": "Canary"});
    assert_eq!(
        problems("Deployment", &d, None),
        ["spec.strategy.type: Unsupported value: \"Canary\": supported values: \"Recreate\", \"RollingUpdate\""]
    );
}

#[test]
fn replica_sets_refuse_other_restart_policies() {
    let mut rs = json!({
        "metadata": {"name": "r", "namespace": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                 "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}
    });
    crate::defaults::apply("ReplicaSet", &mut rs);
    assert_eq!(
        problems("ReplicaSet", &rs, None),
        ["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
    );
}

#[test]
fn replication_controllers_default_their_selector_from_the_template() {
    let mut rc = json!({
        "metadata": {"name": "r", "namespace": "d"},
        "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    });
    crate::defaults::apply("ReplicationController", &mut rc);
    assert_eq!(problems("ReplicationController", &rc, None), Vec::<String>::new());
    rc["spec"]["selector"] = json!({"a": "other"});
    assert_eq!(
        problems("ReplicationController", &rc, None),
        ["spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"b\"}: `selector` does not match template `labels`"]
    );
}

fn service(spec: Value) -> Value {
    let mut s = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    crate::defaults::apply("Service", &mut s);
    s
}

#[test]
fn services_are_validated_like_upstream() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"ports": [{"port": 80}]}), vec![]),
        (json!({}), vec!["spec.ports: Required value"]),
        (json!({"clusterIP": "None"}), vec![]),
        (json!({"type": "ExternalName", "externalName": "example.com"}), vec![]),
        (
            json!({"ports": [{"port": 80}, {"port": 81}]}),
            vec!["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"],
        ),
        (
            json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
            vec!["spec.ports[1].name: Duplicate value: \"a\""],
        ),
        (
            json!({"ports": [{"port": 0}]}),
            // The defaulted targetPort copies the bad port, so upstream reports both.
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            json!({"type": "Magic", "ports": [{"port": 80}]}),
            vec!["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""],
        ),
        (
            json!({"ports": [{"port": 80, "nodePort": 30001}]}),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(problems("Service", &service(spec.clone()), None), expected, "{spec}");
    }
}

#[test]
fn an_allocated_cluster_ip_may_not_change() {
    let old = service(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}));
    let new = service(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]}));
    assert_eq!(
        problems("Service", &new, Some(&old)),
        ["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"]
    );
}

#[test]
fn config_map_and_secret_keys_and_sizes_are_checked() {
    check(
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "1", "..x": "2"}}),
        &[
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ],
    );
    check(
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"big": "x".repeat(1024 * 1024 + 1)}}),
        &[": Too long: may not be more than 1048576 bytes"],
    );
    check(
        "Secret",
        json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
        &["data[tls.key]: Required value"],
    );
    let old = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque", "immutable": true, "data": {"a": "YQ=="}});
    let new = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque", "immutable": true, "data": {"a": "Yg=="}});
    assert_eq!(
        problems("Secret", &new, Some(&old)),
        ["data: Forbidden: field is immutable when `immutable` is set"]
    );
}

#[test]
fn endpoint_slices_need_a_supported_address_type() {
    check(
        "EndpointSlice",
        json!({"metadata": {"name": "e", "namespace": "d"}}),
        &["addressType: Required value"],
    );
    check(
        "EndpointSlice",
        json!({"metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv5"}),
        &["addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""],
    );
    check(
        "EndpointSlice",
        json!({"metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.0.0.300"]}, {"addresses": []}],
               "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}),
        &[
            "endpoints[0].addresses[0]: Invalid value: \"10.0.0.300\": must be a valid IPv4 address",
            "endpoints[1].addresses: Required value: must contain at least 1 address",
        ],
    );
}

#[test]
fn events_and_leases_follow_their_upstream_rules() {
    check(
        "Event",
        json!({"metadata": {"name": "e", "namespace": "a"}, "involvedObject": {"kind": "Pod", "namespace": "b"}}),
        &["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"],
    );
    check(
        "Event",
        json!({"metadata": {"name": "e", "namespace": "a"}, "involvedObject": {"kind": "Pod", "namespace": "a"}}),
        &[],
    );
    check(
        "Lease",
        json!({"metadata": {"name": "l", "namespace": "a"}, "spec": {"leaseDurationSeconds": 0}}),
        &["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
    );
}

#[test]
fn node_taints_need_a_supported_effect() {
    check(
        "Node",
        json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}}),
        &["spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""],
    );
}

// ---- strict decoding ----

fn strict(kind: &str, obj: Value) -> Result<Vec<String>, String> {
    strict_unknown_fields(kind, &obj)
}

#[test]
fn kubectl_style_manifests_have_no_unknown_fields() {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                 "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}}},
        "status": {}
    });
    assert_eq!(strict("Deployment", d), Ok(vec![]));
    let p = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}],
                 "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"},
        "status": {}
    });
    assert_eq!(strict("Pod", p), Ok(vec![]));
}

#[test]
fn unknown_fields_are_reported_with_their_paths() {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replica": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "n", "image": "nginx", "imagePullPolcy": "Always"}]}}}
    });
    assert_eq!(
        strict("Deployment", d),
        Ok(vec![
            "spec.replica".to_string(),
            "spec.template.spec.containers[0].imagePullPolcy".to_string()
        ])
    );
    assert_eq!(
        strict("ConfigMap", json!({"metadata": {"name": "c"}, "datas": {"a": "b"}})),
        Ok(vec!["datas".to_string()])
    );
}

#[test]
fn pruning_removes_exactly_the_unknown_fields_and_keeps_everything_else() {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"any.key/x": "kept"}, "creationTimestamp": null},
        "foo": {"huge": "x"},
        "spec": {"replica": 2, "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "n", "image": "nginx", "imagePullPolcy": "Always",
                                                       "resources": {"limits": {"cpu": 1}}}]}}}
    });
    let pruned = prune_unknown_fields("Deployment", &mut d);
    assert_eq!(
        pruned,
        Ok(vec![
            "foo".to_string(),
            "spec.replica".to_string(),
            "spec.template.spec.containers[0].imagePullPolcy".to_string()
        ])
    );
    // What is known stays exactly as sent: no typed round trip rewrites it (the quantity stays a number, the
    // null stays).
    assert_eq!(
        d,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any.key/x": "kept"}, "creationTimestamp": null},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "n", "image": "nginx",
                                                           "resources": {"limits": {"cpu": 1}}}]}}}
        })
    );
    // A body that does not decode is refused whole, untouched.
    let mut bad = json!({"metadata": {"name": "web"}, "spec": {"replicas": "two"}, "foo": 1});
    assert!(prune_unknown_fields("Deployment", &mut bad).is_err());
    assert_eq!(bad["foo"], 1);
    // Kinds without a typed view keep everything.
    let mut widget = json!({"anything": 1});
    assert_eq!(prune_unknown_fields("Widget", &mut widget), Ok(vec![]));
    assert_eq!(widget, json!({"anything": 1}));
}

#[test]
fn bodies_that_do_not_decode_say_why() {
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": "two"}});
    let err = strict("Deployment", d).unwrap_err();
    assert!(
        err.starts_with(
            "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string"
        ),
        "{err}"
    );
    let s = json!({"metadata": {"name": "s"}, "data": {"a": "not base64!"}});
    assert_eq!(
        decode_error("Secret", &s).as_deref(),
        Some("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3")
    );
    let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "lots"}}}]}});
    assert_eq!(
        decode_error("Pod", &p).as_deref(),
        Some("Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    );
    assert_eq!(decode_error("Widget", &json!({"x": 1})), None);
}
