//! Unit tests for per-kind defaulting: each case is a manifest as a user writes it and the fields upstream would fill in.

use serde_json::json;

use super::*;

fn applied(kind: &str, mut obj: Value) -> Value {
    apply(kind, &mut obj);
    obj
}

#[test]
fn a_bare_pod_gets_upstreams_defaults() {
    let p = applied(
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    );
    assert_eq!(
        p["spec"],
        json!({
            "containers": [{
                "name": "c", "image": "nginx", "imagePullPolicy": "Always",
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "resources": {}
            }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30, "enableServiceLinks": true,
            "serviceAccountName": "default", "serviceAccount": "default", "priority": 0,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ]
        })
    );
}

#[test]
fn image_pull_policy_depends_on_the_tag() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
        ("localhost:5000/app:v2", "IfNotPresent"),
        ("nginx@sha256:abcd", "IfNotPresent"),
    ];
    for (image, want) in cases {
        let p = applied("Pod", json!({"spec": {"containers": [{"name": "c", "image": image}]}}));
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], json!(want), "{image}");
    }
}

#[test]
fn container_details_are_defaulted() {
    let p = applied(
        "Pod",
        json!({"spec": {
            "containers": [{"name": "c", "image": "i:1",
                "ports": [{"containerPort": 80}],
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": 1}},
                "livenessProbe": {"httpGet": {"port": 80}}}],
            "volumes": [{"name": "a"}, {"name": "b", "configMap": {"name": "cm"}}, {"name": "s", "secret": {"secretName": "x"}}]
        }}),
    );
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["protocol"], json!("TCP"));
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], json!("v1"));
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10,
               "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(p["spec"]["volumes"][0], json!({"name": "a", "emptyDir": {}}));
    assert_eq!(p["spec"]["volumes"][1]["configMap"]["defaultMode"], json!(420));
    assert_eq!(p["spec"]["volumes"][2]["secret"]["defaultMode"], json!(420));
}

#[test]
fn existing_tolerations_are_kept_and_not_duplicated() {
    let p = applied(
        "Pod",
        json!({"spec": {"containers": [], "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}}),
    );
    let t = p["spec"]["tolerations"].as_array().map(Vec::len);
    assert_eq!(t, Some(2));
    assert_eq!(p["spec"]["tolerations"][0]["tolerationSeconds"], json!(10));
}

#[test]
fn deployments_get_strategy_and_limits_and_template_defaults_only() {
    let d = applied(
        "Deployment",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}),
    );
    assert_eq!(d["spec"]["replicas"], json!(1));
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], json!(10));
    assert_eq!(d["spec"]["progressDeadlineSeconds"], json!(600));
    let t = &d["spec"]["template"]["spec"];
    assert_eq!(t["restartPolicy"], json!("Always"));
    assert_eq!(t["containers"][0]["imagePullPolicy"], json!("IfNotPresent"));
    // Admission-time Pod fields are not part of a template.
    assert_eq!(t.get("tolerations"), None);
    assert_eq!(t.get("enableServiceLinks"), None);
    assert_eq!(t.get("serviceAccountName"), None);
}

#[test]
fn a_recreate_deployment_gets_no_rolling_update() {
    let d = applied("Deployment", json!({"spec": {"strategy": {"type": "Recreate"}}}));
    assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn replication_controllers_take_selector_and_labels_from_the_template() {
    let rc = applied(
        "ReplicationController",
        json!({"metadata": {"name": "r"}, "spec": {"template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": []}}}}),
    );
    assert_eq!(rc["spec"]["selector"], json!({"app": "r"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "r"}));
    assert_eq!(rc["spec"]["replicas"], json!(1));
}

#[test]
fn services_get_policies_families_and_target_ports() {
    let s = applied(
        "Service",
        json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}),
    );
    assert_eq!(
        s["spec"],
        json!({
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "web"},
            "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
            "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
        })
    );
    assert_eq!(s["status"], json!({"loadBalancer": {}}));
    let lb = applied(
        "Service",
        json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}]}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], json!("Cluster"));
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], json!(true));
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], json!("http"));
    let ext = applied(
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    );
    assert_eq!(ext["spec"].get("ipFamilies"), None);
}

#[test]
fn namespaces_secrets_and_slices_get_their_defaults() {
    let ns = applied("Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "team-a"})
    );
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    assert_eq!(applied("Secret", json!({}))["type"], json!("Opaque"));
    let es = applied("EndpointSlice", json!({"ports": [{"port": 80}]}));
    assert_eq!(es["ports"][0], json!({"port": 80, "name": "", "protocol": "TCP"}));
}

#[test]
fn qos_class_follows_upstream_rules() {
    let cases = [
        (json!({"containers": [{"name": "a"}]}), "BestEffort"),
        (
            json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]}),
            "Burstable",
        ),
        (
            json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
            "Guaranteed",
        ),
        (
            json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]}),
            "Burstable",
        ),
        (
            json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}, {"name": "b"}]}),
            "Burstable",
        ),
        (
            json!({"containers": [{"resources": {"requests": {"cpu": "0"}}}]}),
            "BestEffort",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(pod_qos_class(&spec), want, "{spec}");
    }
}

#[test]
fn defaulting_twice_changes_nothing() {
    let once = applied("Pod", json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}));
    assert_eq!(applied("Pod", once.clone()), once);
    let svc = applied("Service", json!({"spec": {"ports": [{"port": 80}]}}));
    assert_eq!(applied("Service", svc.clone()), svc);
}
