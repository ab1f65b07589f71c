//! End-to-end tests of [`decode_object`]: objects are built with k8s-pb's prost types (the same generated.proto
//! messages client-go encodes), wrapped in the `k8s\0` + runtime.Unknown envelope exactly as Go does, decoded, and
//! compared literally with the JSON a client would have sent. Also hostile input: truncation, garbage, nesting.

use std::collections::BTreeMap;

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::{json, Value};

use super::*;

/// The body a typed client sends: magic, then runtime.Unknown with the TypeMeta and the encoded object. Go's
/// marshaller always writes the (empty) contentEncoding and contentType strings, so these do too.
fn envelope(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

/// Encodes `object` as `api_version`/`kind`, decodes it, and compares with `expected` (which omits apiVersion/kind).
fn check(api_version: &str, kind: &str, object: &impl prost::Message, expected: Value) {
    let mut expected = expected;
    expected["apiVersion"] = api_version.into();
    expected["kind"] = kind.into();
    let decoded = decode_object(&envelope(api_version, kind, object), ("", ""));
    assert_eq!(decoded, Ok(expected), "{api_version} {kind}");
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        ..Default::default()
    })
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_port(p: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(p),
        str_val: None,
    })
}

fn named_port(p: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: None,
        str_val: s(p),
    })
}

fn nginx_deployment() -> k8s_pb::api::apps::v1::Deployment {
    use k8s_pb::api::apps::v1 as apps;
    let app = labels(&[("app", "nginx")]);
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("nginx"),
            labels: app.clone(),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: app.clone(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: app,
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("nginx"),
                        image: s("nginx"),
                        resources: Some(core::ResourceRequirements::default()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn kubectl_create_deployment_body_decodes_to_its_json() {
    check(
        "apps/v1",
        "Deployment",
        &nginx_deployment(),
        json!({
            "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}
                },
                "strategy": {}
            }
        }),
    );
}

#[test]
fn observed_envelope_prefix_of_kubectl_create_deployment_is_reproduced() {
    // §2.3: `0a15 0a07 "apps/v1" 12 0a "Deployment" 12 <len> <Deployment>`.
    let body = envelope("apps/v1", "Deployment", &nginx_deployment());
    let mut expected = b"k8s\0\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12".to_vec();
    expected.truncate(body.len().min(expected.len()));
    assert_eq!(&body[..expected.len()], &expected[..]);
}

#[test]
fn creation_timestamp_renders_as_rfc3339_and_an_empty_time_as_null() {
    let mut d = nginx_deployment();
    d.spec = None;
    d.metadata = Some(meta::ObjectMeta {
        name: s("web"),
        creation_timestamp: Some(meta::Time {
            seconds: Some(1_767_366_305),
            nanos: Some(0),
        }),
        deletion_timestamp: Some(meta::Time {
            seconds: None,
            nanos: None,
        }),
        generation: Some(0),
        ..Default::default()
    });
    check(
        "apps/v1",
        "Deployment",
        &d,
        json!({"metadata": {
            "name": "web",
            "creationTimestamp": "2026-01-02T15:05:05Z",
            "deletionTimestamp": null,
            "generation": 0
        }}),
    );
}

#[test]
fn configmap_data_and_binary_data_decode_as_maps() {
    let cm = core::ConfigMap {
        metadata: meta("cfg"),
        data: labels(&[("a.conf", "x=1\n"), ("b", "")]),
        binary_data: [("blob".to_owned(), vec![0u8, 255, 1])].into_iter().collect(),
        immutable: Some(true),
    };
    check(
        "v1",
        "ConfigMap",
        &cm,
        json!({
            "metadata": {"name": "cfg"},
            "data": {"a.conf": "x=1\n", "b": ""},
            "binaryData": {"blob": "AP8B"},
            "immutable": true
        }),
    );
}

#[test]
fn secret_binary_data_is_base64_encoded() {
    let secret = core::Secret {
        metadata: meta("creds"),
        data: [
            ("password".to_owned(), b"s3cr\xffet".to_vec()),
            ("empty".to_owned(), Vec::new()),
        ]
        .into_iter()
        .collect(),
        r#type: s("Opaque"),
        ..Default::default()
    };
    check(
        "v1",
        "Secret",
        &secret,
        json!({
            "metadata": {"name": "creds"},
            "data": {"password": "czNjcv9ldA==", "empty": ""},
            "type": "Opaque"
        }),
    );
}

#[test]
fn service_ports_keep_target_port_as_number_or_name_and_cluster_ips_are_named_as_upstream() {
    let svc = core::Service {
        metadata: meta("web"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: int_port(8080),
                    ..Default::default()
                },
                core::ServicePort {
                    name: s("metrics"),
                    port: Some(9090),
                    target_port: named_port("metrics"),
                    ..Default::default()
                },
            ],
            selector: labels(&[("app", "web")]),
            cluster_ip: s("10.96.0.10"),
            cluster_ips: vec!["10.96.0.10".into(), "fd00::10".into()],
            external_ips: vec!["192.0.2.1".into()],
            r#type: s("ClusterIP"),
            ip_families: vec!["IPv4".into(), "IPv6".into()],
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(Default::default()),
            conditions: vec![],
        }),
    };
    check(
        "v1",
        "Service",
        &svc,
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "port": 9090, "targetPort": "metrics"}
                ],
                "selector": {"app": "web"},
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00::10"],
                "externalIPs": ["192.0.2.1"],
                "type": "ClusterIP",
                "ipFamilies": ["IPv4", "IPv6"]
            },
            "status": {"loadBalancer": {}}
        }),
    );
}

#[test]
fn pod_flattens_probe_handlers_volume_sources_and_local_object_references() {
    let container = core::Container {
        name: s("app"),
        image: s("busybox"),
        command: vec!["sh".into(), "-c".into(), "sleep 1d".into()],
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: named_port("http"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: int_port(8080),
                    host: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        env: vec![core::EnvVar {
            name: s("PASSWORD"),
            value_from: Some(core::EnvVarSource {
                secret_key_ref: Some(core::SecretKeySelector {
                    local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                    key: s("password"),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            value: None,
        }],
        resources: Some(core::ResourceRequirements {
            limits: [
                ("cpu".to_owned(), quantity("500m")),
                ("memory".to_owned(), quantity("128Mi")),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        }),
        volume_mounts: vec![core::VolumeMount {
            name: s("scratch"),
            mount_path: s("/tmp"),
            ..Default::default()
        }],
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            namespace: s("default"),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![container],
            ephemeral_containers: vec![core::EphemeralContainer {
                ephemeral_container_common: Some(core::EphemeralContainerCommon {
                    name: s("debugger"),
                    image: s("busybox"),
                    stdin: Some(true),
                    ..Default::default()
                }),
                target_container_name: s("app"),
            }],
            volumes: vec![
                core::Volume {
                    name: s("scratch"),
                    volume_source: Some(core::VolumeSource {
                        empty_dir: Some(core::EmptyDirVolumeSource {
                            medium: None,
                            size_limit: Some(quantity("1Gi")),
                        }),
                        ..Default::default()
                    }),
                },
                core::Volume {
                    name: s("cfg"),
                    volume_source: Some(core::VolumeSource {
                        config_map: Some(core::ConfigMapVolumeSource {
                            local_object_reference: Some(core::LocalObjectReference { name: s("cfg") }),
                            items: vec![core::KeyToPath {
                                key: s("a"),
                                path: s("a.conf"),
                                mode: None,
                            }],
                            default_mode: Some(0o644),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
            ],
            host_ipc: Some(true),
            host_pid: Some(false),
            node_name: s("node-1"),
            security_context: Some(core::PodSecurityContext {
                supplemental_groups: vec![1000, 2000],
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            pod_ip: s("10.0.0.5"),
            pod_ips: vec![core::PodIp { ip: s("10.0.0.5") }],
            host_ip: s("192.168.1.2"),
            ..Default::default()
        }),
    };
    check(
        "v1",
        "Pod",
        &pod,
        json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "busybox",
                    "command": ["sh", "-c", "sleep 1d"],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "initialDelaySeconds": 5,
                        "periodSeconds": 10
                    },
                    "readinessProbe": {"tcpSocket": {"port": 8080}},
                    "env": [{
                        "name": "PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password", "optional": false}}
                    }],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}]
                }],
                "ephemeralContainers": [{
                    "name": "debugger", "image": "busybox", "stdin": true, "targetContainerName": "app"
                }],
                "volumes": [
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.conf"}], "defaultMode": 420}}
                ],
                "hostIPC": true,
                "hostPID": false,
                "nodeName": "node-1",
                "securityContext": {"supplementalGroups": [1000, 2000]},
                "terminationGracePeriodSeconds": 0
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.5",
                "podIPs": [{"ip": "10.0.0.5"}],
                "hostIP": "192.168.1.2"
            }
        }),
    );
}

#[test]
fn hpa_v2_from_kubectl_autoscale_decodes() {
    use k8s_pb::api::autoscaling::v2 as as2;
    let hpa = as2::HorizontalPodAutoscaler {
        metadata: meta("web"),
        spec: Some(as2::HorizontalPodAutoscalerSpec {
            scale_target_ref: Some(as2::CrossVersionObjectReference {
                kind: s("Deployment"),
                name: s("web"),
                api_version: s("apps/v1"),
            }),
            min_replicas: Some(2),
            max_replicas: Some(5),
            metrics: vec![as2::MetricSpec {
                r#type: s("Resource"),
                resource: Some(as2::ResourceMetricSource {
                    name: s("cpu"),
                    target: Some(as2::MetricTarget {
                        r#type: s("Utilization"),
                        average_utilization: Some(80),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }],
            behavior: None,
        }),
        status: Some(as2::HorizontalPodAutoscalerStatus {
            current_replicas: Some(0),
            desired_replicas: Some(0),
            ..Default::default()
        }),
    };
    check(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        &hpa,
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                "minReplicas": 2,
                "maxReplicas": 5,
                "metrics": [{
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
                }]
            },
            "status": {"currentReplicas": 0, "desiredReplicas": 0}
        }),
    );
}

#[test]
fn hpa_v1_and_scale_decode() {
    use k8s_pb::api::autoscaling::v1 as as1;
    let hpa = as1::HorizontalPodAutoscaler {
        metadata: meta("web"),
        spec: Some(as1::HorizontalPodAutoscalerSpec {
            scale_target_ref: Some(as1::CrossVersionObjectReference {
                kind: s("Deployment"),
                name: s("web"),
                api_version: s("apps/v1"),
            }),
            min_replicas: Some(2),
            max_replicas: Some(5),
            target_cpu_utilization_percentage: Some(80),
        }),
        status: None,
    };
    check(
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        &hpa,
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                "minReplicas": 2,
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 80
            }
        }),
    );
    let scale = as1::Scale {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            resource_version: s("42"),
            ..Default::default()
        }),
        spec: Some(as1::ScaleSpec { replicas: Some(5) }),
        status: Some(as1::ScaleStatus {
            replicas: Some(3),
            selector: s("app=web"),
        }),
    };
    check(
        "autoscaling/v1",
        "Scale",
        &scale,
        json!({
            "metadata": {"name": "web", "resourceVersion": "42"},
            "spec": {"replicas": 5},
            "status": {"replicas": 3, "selector": "app=web"}
        }),
    );
}

fn delete_options() -> meta::DeleteOptions {
    meta::DeleteOptions {
        grace_period_seconds: Some(30),
        preconditions: Some(meta::Preconditions {
            uid: s("1234"),
            resource_version: None,
        }),
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ..Default::default()
    }
}

#[test]
fn delete_options_decode_under_each_api_version_typed_clients_use() {
    let expected = json!({
        "gracePeriodSeconds": 30,
        "preconditions": {"uid": "1234"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"]
    });
    for api_version in ["meta.k8s.io/v1", "v1", "apps/v1"] {
        check(api_version, "DeleteOptions", &delete_options(), expected.clone());
    }
}

#[test]
fn eviction_and_pod_disruption_budget_decode() {
    use k8s_pb::api::policy::v1 as policy;
    let eviction = policy::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: s("runner"),
            namespace: s("default"),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions::default()),
    };
    check(
        "policy/v1",
        "Eviction",
        &eviction,
        json!({"metadata": {"name": "runner", "namespace": "default"}, "deleteOptions": {}}),
    );
    let pdb = policy::PodDisruptionBudget {
        metadata: meta("web"),
        spec: Some(policy::PodDisruptionBudgetSpec {
            min_available: Some(IntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: s("50%"),
            }),
            selector: Some(meta::LabelSelector {
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("app"),
                    operator: s("In"),
                    values: vec!["web".into()],
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "policy/v1",
        "PodDisruptionBudget",
        &pdb,
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "minAvailable": "50%",
                "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}
            }
        }),
    );
}

#[test]
fn namespace_node_and_binding_decode() {
    check(
        "v1",
        "Namespace",
        &core::Namespace {
            metadata: meta("dev"),
            ..Default::default()
        },
        json!({"metadata": {"name": "dev"}}),
    );
    let node = core::Node {
        metadata: meta("node-1"),
        spec: Some(core::NodeSpec {
            unschedulable: Some(true),
            pod_cidr: s("10.244.1.0/24"),
            pod_cid_rs: vec!["10.244.1.0/24".into()],
            provider_id: s("berth://node-1"),
            taints: vec![core::Taint {
                key: s("node.kubernetes.io/unschedulable"),
                effect: s("NoSchedule"),
                time_added: Some(meta::Time {
                    seconds: Some(1_767_366_305),
                    nanos: Some(5),
                }),
                value: None,
            }],
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: [("pods".to_owned(), quantity("110"))].into_iter().collect(),
            addresses: vec![core::NodeAddress {
                r#type: s("InternalIP"),
                address: s("192.168.1.2"),
            }],
            ..Default::default()
        }),
    };
    check(
        "v1",
        "Node",
        &node,
        json!({
            "metadata": {"name": "node-1"},
            "spec": {
                "unschedulable": true,
                "podCIDR": "10.244.1.0/24",
                "podCIDRs": ["10.244.1.0/24"],
                "providerID": "berth://node-1",
                "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2026-01-02T15:05:05Z"}]
            },
            "status": {"capacity": {"pods": "110"}, "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}
        }),
    );
    let binding = core::Binding {
        metadata: meta("p"),
        target: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("node-1"),
            ..Default::default()
        }),
    };
    check(
        "v1",
        "Binding",
        &binding,
        json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}}),
    );
}

#[test]
fn event_and_lease_render_micro_time_with_six_fraction_digits() {
    let event = core::Event {
        metadata: meta("p.1"),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("p"),
            ..Default::default()
        }),
        reason: s("Started"),
        count: Some(1),
        first_timestamp: Some(meta::Time {
            seconds: Some(1_767_366_305),
            nanos: None,
        }),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_767_366_305),
            nanos: Some(123_456_789),
        }),
        r#type: s("Normal"),
        ..Default::default()
    };
    check(
        "v1",
        "Event",
        &event,
        json!({
            "metadata": {"name": "p.1"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Started",
            "count": 1,
            "firstTimestamp": "2026-01-02T15:05:05Z",
            "eventTime": "2026-01-02T15:05:05.123456Z",
            "type": "Normal"
        }),
    );
    use k8s_pb::api::coordination::v1 as coordination;
    let lease = coordination::Lease {
        metadata: meta("node-1"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_767_366_305),
                nanos: Some(500_000_000),
            }),
            ..Default::default()
        }),
    };
    check(
        "coordination.k8s.io/v1",
        "Lease",
        &lease,
        json!({
            "metadata": {"name": "node-1"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2026-01-02T15:05:05.500000Z"}
        }),
    );
}

#[test]
fn endpoints_and_endpoint_slice_decode() {
    let endpoints = core::Endpoints {
        metadata: meta("web"),
        subsets: vec![core::EndpointSubset {
            addresses: vec![core::EndpointAddress {
                ip: s("10.0.0.5"),
                node_name: s("node-1"),
                ..Default::default()
            }],
            ports: vec![core::EndpointPort {
                port: Some(80),
                protocol: s("TCP"),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    check(
        "v1",
        "Endpoints",
        &endpoints,
        json!({
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.5", "nodeName": "node-1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]
        }),
    );
    use k8s_pb::api::discovery::v1 as discovery;
    let slice = discovery::EndpointSlice {
        metadata: meta("web-abc"),
        address_type: s("IPv4"),
        endpoints: vec![discovery::Endpoint {
            addresses: vec!["10.0.0.5".into()],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: s("node-1"),
            ..Default::default()
        }],
        ports: vec![discovery::EndpointPort {
            name: s(""),
            port: Some(80),
            ..Default::default()
        }],
    };
    check(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice,
        json!({
            "metadata": {"name": "web-abc"},
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.0.0.5"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "node-1"
            }],
            "ports": [{"name": "", "port": 80}]
        }),
    );
}

#[test]
fn workload_kinds_decode() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::batch::v1 as batch;
    let template = || {
        Some(core::PodTemplateSpec {
            metadata: Some(meta::ObjectMeta {
                labels: labels(&[("app", "w")]),
                ..Default::default()
            }),
            spec: Some(core::PodSpec {
                containers: vec![core::Container {
                    name: s("c"),
                    image: s("busybox"),
                    ..Default::default()
                }],
                restart_policy: s("Never"),
                ..Default::default()
            }),
        })
    };
    let template_json = json!({
        "metadata": {"labels": {"app": "w"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}
    });
    let selector = || {
        Some(meta::LabelSelector {
            match_labels: labels(&[("app", "w")]),
            ..Default::default()
        })
    };
    let job = batch::Job {
        metadata: meta("pi"),
        spec: Some(batch::JobSpec {
            template: template(),
            backoff_limit: Some(4),
            completions: Some(1),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "batch/v1",
        "Job",
        &job,
        json!({"metadata": {"name": "pi"}, "spec": {"template": template_json, "backoffLimit": 4, "completions": 1}}),
    );
    let rs = apps::ReplicaSet {
        metadata: meta("w-1"),
        spec: Some(apps::ReplicaSetSpec {
            replicas: Some(0),
            selector: selector(),
            template: template(),
            ..Default::default()
        }),
        status: Some(apps::ReplicaSetStatus {
            replicas: Some(0),
            ..Default::default()
        }),
    };
    check(
        "apps/v1",
        "ReplicaSet",
        &rs,
        json!({
            "metadata": {"name": "w-1"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "w"}}, "template": template_json},
            "status": {"replicas": 0}
        }),
    );
    let sts = apps::StatefulSet {
        metadata: meta("db"),
        spec: Some(apps::StatefulSetSpec {
            replicas: Some(1),
            selector: selector(),
            template: template(),
            service_name: s("db"),
            volume_claim_templates: vec![core::PersistentVolumeClaim {
                metadata: meta("data"),
                spec: Some(core::PersistentVolumeClaimSpec {
                    access_modes: vec!["ReadWriteOnce".into()],
                    resources: Some(core::VolumeResourceRequirements {
                        requests: [("storage".to_owned(), quantity("1Gi"))].into_iter().collect(),
                        ..Default::default()
                    }),
                    storage_class_name: s(""),
                    ..Default::default()
                }),
                status: None,
            }],
            ..Default::default()
        }),
        status: None,
    };
    check(
        "apps/v1",
        "StatefulSet",
        &sts,
        json!({
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "w"}},
                "template": template_json,
                "serviceName": "db",
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": ""}
                }]
            }
        }),
    );
    let rc = core::ReplicationController {
        metadata: meta("rc"),
        spec: Some(core::ReplicationControllerSpec {
            replicas: Some(2),
            selector: labels(&[("app", "w")]),
            template: template(),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "ReplicationController",
        &rc,
        json!({"metadata": {"name": "rc"}, "spec": {"replicas": 2, "selector": {"app": "w"}, "template": template_json}}),
    );
}

#[test]
fn persistent_volume_source_is_flattened_into_the_spec() {
    let pv = core::PersistentVolume {
        metadata: meta("pv"),
        spec: Some(core::PersistentVolumeSpec {
            capacity: [("storage".to_owned(), quantity("5Gi"))].into_iter().collect(),
            persistent_volume_source: Some(core::PersistentVolumeSource {
                host_path: Some(core::HostPathVolumeSource {
                    path: s("/data"),
                    r#type: s("DirectoryOrCreate"),
                }),
                ..Default::default()
            }),
            access_modes: vec!["ReadWriteOnce".into()],
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "PersistentVolume",
        &pv,
        json!({
            "metadata": {"name": "pv"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "hostPath": {"path": "/data", "type": "DirectoryOrCreate"},
                "accessModes": ["ReadWriteOnce"]
            }
        }),
    );
}

#[test]
fn raw_extension_and_managed_fields_embed_their_json() {
    let rev = k8s_pb::api::apps::v1::ControllerRevision {
        metadata: Some(meta::ObjectMeta {
            name: s("web-1"),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:spec":{}}"#.to_vec()),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"template":{"x":[1,2]}}}"#.to_vec()),
        }),
        revision: Some(1),
    };
    check(
        "apps/v1",
        "ControllerRevision",
        &rev,
        json!({
            "metadata": {"name": "web-1", "managedFields": [{"manager": "kubectl", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "data": {"spec": {"template": {"x": [1, 2]}}},
            "revision": 1
        }),
    );
}

#[test]
fn empty_type_meta_falls_back_to_the_kind_inferred_from_the_url() {
    let body = envelope(
        "",
        "",
        &core::Namespace {
            metadata: meta("dev"),
            ..Default::default()
        },
    );
    assert_eq!(
        decode_object(&body, ("v1", "Namespace")),
        Ok(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}))
    );
    // An envelope with its own TypeMeta wins over the URL.
    let body = envelope(
        "v1",
        "Namespace",
        &core::Namespace {
            metadata: meta("dev"),
            ..Default::default()
        },
    );
    assert_eq!(
        decode_object(&body, ("v1", "Pod")).map(|v| v["kind"].clone()),
        Ok(json!("Namespace"))
    );
}

#[test]
fn unknown_fields_are_skipped_and_packed_repeated_scalars_are_accepted() {
    // PodSecurityContext.supplementalGroups (tag 4) packed as one run, then an unknown field 999 (varint).
    let mut sc = Vec::new();
    sc.extend([0x22, 0x03, 0x01, 0x02, 0x03]);
    sc.extend([0xb8, 0x3e, 0x07]);
    let mut pod_spec = vec![0x72, sc.len() as u8]; // PodSpec.securityContext = tag 14
    pod_spec.extend(&sc);
    let mut pod = vec![0x12, pod_spec.len() as u8]; // Pod.spec = tag 2
    pod.extend(&pod_spec);
    pod.extend([0xfa, 0x3e, 0x01, 0x00]); // unknown length-delimited field 999
    let raw = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Pod"),
        }),
        raw: Some(pod),
        ..Default::default()
    };
    let mut body = MAGIC.to_vec();
    body.extend(raw.encode_to_vec());
    assert_eq!(
        decode_object(&body, ("", "")),
        Ok(json!({"apiVersion": "v1", "kind": "Pod", "spec": {"securityContext": {"supplementalGroups": [1, 2, 3]}}}))
    );
}

#[test]
fn errors_name_the_problem() {
    let ns = core::Namespace {
        metadata: meta("dev"),
        ..Default::default()
    };
    let check = |body: Vec<u8>, fallback: (&str, &str), expected: ProtobufError| {
        assert_eq!(decode_object(&body, fallback), Err(expected));
    };
    check(
        b"{\"kind\":\"Pod\"}".to_vec(),
        ("v1", "Pod"),
        ProtobufError::MissingMagic,
    );
    check(envelope("", "", &ns), ("", ""), ProtobufError::MissingKind);
    check(
        envelope("rbac.authorization.k8s.io/v1", "Role", &ns),
        ("", ""),
        ProtobufError::UnsupportedKind {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "Role".into(),
        },
    );
    check(
        envelope("v1", "Namespace", &ns)
            .into_iter()
            .chain(*b"\x1a\x04gzip")
            .collect(),
        ("", ""),
        ProtobufError::UnsupportedContentEncoding("gzip".into()),
    );
    check(
        envelope("v1", "Namespace", &ns)
            .into_iter()
            .chain(*b"\x22\x10application/json")
            .collect(),
        ("", ""),
        ProtobufError::UnsupportedContentType("application/json".into()),
    );
}

#[test]
fn invalid_values_report_the_json_path() {
    let svc = core::Service {
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                target_port: Some(IntOrString {
                    r#type: Some(7),
                    int_val: None,
                    str_val: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = decode_object(&envelope("v1", "Service", &svc), ("", "")).expect_err("type 7 is invalid");
    assert_eq!(
        err.to_string(),
        "invalid protobuf value at spec.ports.targetPort: IntOrString has unknown type 7"
    );
    // A string where PodSpec.hostIPC (tag 13, bool) belongs.
    let pod = vec![0x12, 0x04, 0x6a, 0x02, b'h', b'i'];
    let body = envelope("v1", "Pod", &RawBytes(pod));
    let err = decode_object(&body, ("", "")).expect_err("wrong wire type");
    assert_eq!(
        err.to_string(),
        "invalid protobuf value at spec.hostIPC: length-delimited value for a Bool field"
    );
}

#[test]
fn nesting_beyond_the_limit_is_rejected_with_its_path() {
    let decoder = decode::Decoder { max_depth: 3 };
    let message = schema::kind_message("apps/v1", "Deployment").expect("Deployment in table");
    let err = decoder
        .message(&nginx_deployment().encode_to_vec(), message, 0)
        .expect_err("too deep");
    assert_eq!(
        err,
        ProtobufError::TooDeep {
            path: "spec.template.metadata.labels".into(),
            limit: 3
        }
    );
    let roomy = decode::Decoder { max_depth: MAX_DEPTH };
    assert!(roomy.message(&nginx_deployment().encode_to_vec(), message, 0).is_ok());
}

#[test]
fn deeply_nested_embedded_json_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    let rev = k8s_pb::api::apps::v1::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(deep.into_bytes()),
        }),
        ..Default::default()
    };
    let result = decode_object(&envelope("apps/v1", "ControllerRevision", &rev), ("", ""));
    assert!(
        matches!(result, Err(ProtobufError::InvalidValue { ref path, .. }) if path == "data"),
        "{result:?}"
    );
}

#[test]
fn every_truncation_of_a_real_body_decodes_or_errors_without_panicking() {
    let body = envelope("apps/v1", "Deployment", &nginx_deployment());
    let mut errors = 0;
    for len in 0..body.len() {
        if decode_object(&body[..len], ("apps/v1", "Deployment")).is_err() {
            errors += 1;
        }
    }
    // Cutting inside the envelope's length-delimited raw field is always an error; only the few cuts that end
    // exactly on an envelope field boundary (before raw) still parse.
    assert!(
        errors >= body.len() - 4,
        "{errors} errors for {} truncations",
        body.len()
    );
}

#[test]
fn garbage_after_the_magic_never_panics() {
    // A small deterministic generator (xorshift) keeps the test reproducible without a dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let real = nginx_deployment().encode_to_vec();
    for round in 0..3000 {
        let mut raw = real.clone();
        // Flip a few bytes of a real object, or use pure noise.
        if round % 3 == 0 {
            raw = (0..(next() % 64)).map(|_| next() as u8).collect();
        } else {
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % raw.len();
                raw[i] = next() as u8;
            }
        }
        let _ = decode_object(&envelope("apps/v1", "Deployment", &RawBytes(raw.clone())), ("", ""));
        let mut body = MAGIC.to_vec();
        body.extend(&raw);
        let _ = decode_object(&body, ("apps/v1", "Deployment"));
    }
}

#[test]
fn a_huge_length_prefix_is_truncation_not_an_allocation() {
    // Deployment.metadata claiming 2^62 bytes.
    let raw = vec![0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
    let err = decode_object(&envelope("apps/v1", "Deployment", &RawBytes(raw)), ("", "")).expect_err("truncated");
    assert_eq!(
        err,
        ProtobufError::Wire {
            path: String::new(),
            source: WireError::Truncated
        }
    );
}

/// Pre-encoded message bytes, for bodies prost would not produce.
#[derive(Clone, PartialEq, Default, Debug)]
struct RawBytes(Vec<u8>);

impl prost::Message for RawBytes {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        _tag: u32,
        _wire_type: prost::encoding::WireType,
        _buf: &mut impl prost::bytes::Buf,
        _ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        unreachable!("only encoded in these tests")
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

#[test]
fn zero_values_go_writes_for_non_pointer_fields_are_emitted_as_sent() {
    // Go's marshaller writes every non-pointer field, so a real kubectl ObjectMeta carries empty strings, a zero
    // generation and an empty creationTimestamp; they come out as Go's JSON of the decoded struct shows them
    // (`creationTimestamp: null`), and consumers treat empty values as unset, as Go does.
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("dev"),
            generate_name: s(""),
            namespace: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            conditions: vec![],
        }),
    };
    check(
        "v1",
        "Namespace",
        &ns,
        json!({
            "metadata": {
                "name": "dev",
                "generateName": "",
                "namespace": "",
                "uid": "",
                "resourceVersion": "",
                "generation": 0,
                "creationTimestamp": null
            },
            "spec": {},
            "status": {"phase": ""}
        }),
    );
}

#[test]
fn unsupported_kind_error_says_which_kind() {
    let body = envelope("rbac.authorization.k8s.io/v1", "Role", &core::Namespace::default());
    let err = decode_object(&body, ("", "")).expect_err("Role is not decodable");
    assert_eq!(
        err.to_string(),
        "decoding kind \"Role\" of apiVersion \"rbac.authorization.k8s.io/v1\" from protobuf is not supported"
    );
}
