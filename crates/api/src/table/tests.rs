//! Unit tests for the Table printers: columns and cells per kind, and the AGE format, checked against upstream's printers.

use chrono::{Duration, TimeZone};
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).single().unwrap_or_default()
}

/// An RFC 3339 timestamp `secs` seconds before [`now`].
fn ago(secs: i64) -> String {
    (now() - Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn human_duration_matches_upstream() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (735 * 86400, "2y5d"),
        (8 * 365 * 86400, "8y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::seconds(secs)), want, "{secs}s");
    }
}

#[test]
fn every_kind_has_as_many_cells_as_columns() {
    for kind in crate::resources::RESOURCES.iter().map(|r| r.kind).chain(["Widget"]) {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": ago(5)}});
        assert_eq!(cells(kind, &obj, now()).len(), columns(kind).len(), "{kind}");
    }
}

fn pod_status(status: Value) -> Value {
    json!({
        "metadata": {"name": "web", "creationTimestamp": ago(300)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]},
        "status": status
    })
}

#[test]
fn pod_status_column_follows_upstream() {
    let running = json!({"running": {}});
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"phase": "Pending"}), "0/2", "Pending"),
        (
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            "0/2",
            "Init:0/1",
        ),
        (
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
            "0/2",
            "Init:ImagePullBackOff",
        ),
        (
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 3}}}]}),
            "0/2",
            "Init:ExitCode:3",
        ),
        (
            json!({"phase": "Running", "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0}}}],
                   "containerStatuses": [{"name": "a", "ready": true, "state": running}, {"name": "b", "ready": true, "state": running}]}),
            "2/2",
            "Running",
        ),
        (
            json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "state": running},
                {"name": "b", "ready": false, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            "1/2",
            "CrashLoopBackOff",
        ),
        (
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            "0/2",
            "Completed",
        ),
        (
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
                {"name": "a", "ready": true, "state": running},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            "1/2",
            "NotReady",
        ),
        (
            json!({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            "0/2",
            "Signal:9",
        ),
        (
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            "0/2",
            "SchedulingGated",
        ),
        (json!({"phase": "Failed", "reason": "Evicted"}), "0/2", "Evicted"),
    ];
    for (status, ready, want) in cases {
        let c = cells("Pod", &pod_status(status.clone()), now());
        assert_eq!((c[1].as_str(), c[2].as_str()), (Some(ready), Some(want)), "{status}");
    }
}

#[test]
fn deleting_pods_show_terminating_or_unknown() {
    let mut p = pod_status(json!({"phase": "Running"}));
    p["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(cells("Pod", &p, now())[2], json!("Terminating"));
    p["status"]["reason"] = json!("NodeLost");
    assert_eq!(cells("Pod", &p, now())[2], json!("Unknown"));
    p["status"] = json!({"phase": "Succeeded"});
    assert_eq!(cells("Pod", &p, now())[2], json!("Succeeded"));
}

#[test]
fn pod_restarts_show_the_age_of_the_last_restart() {
    let p = pod_status(
        json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
        {"name": "a", "restartCount": 2, "state": {"running": {}}, "ready": true,
         "lastState": {"terminated": {"finishedAt": ago(330)}}},
        {"name": "b", "restartCount": 1, "state": {"running": {}}, "ready": true,
         "lastState": {"terminated": {"finishedAt": ago(60)}}}]}),
    );
    assert_eq!(
        cells("Pod", &p, now()),
        vec![
            json!("web"),
            json!("2/2"),
            json!("Running"),
            json!("3 (60s ago)"),
            json!("5m"),
            json!("10.0.0.5"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    assert_eq!(cells("Pod", &pod_status(json!({})), now())[3], json!("0"));
}

#[test]
fn sidecars_count_towards_ready_containers() {
    let p = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "side", "restartPolicy": "Always"}],
                 "readinessGates": [{"conditionType": "x/ready"}]},
        "status": {"phase": "Running", "conditions": [{"type": "x/ready", "status": "True"}],
                   "initContainerStatuses": [{"name": "side", "started": true, "ready": true, "state": {"running": {}}}],
                   "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}
    });
    let c = cells("Pod", &p, now());
    assert_eq!(
        (c[1].clone(), c[2].clone(), c[8].clone()),
        (json!("2/2"), json!("Running"), json!("1/1"))
    );
}

#[test]
fn workload_rows_use_integers_and_selectors() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(7200)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]},
                 "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    assert_eq!(
        cells("Deployment", &d, now()),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("120m"),
            json!("a,b"),
            json!("nginx,busybox"),
            json!("app=web,tier in (be,fe)")
        ]
    );
    let rs = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 1, "selector": {}}, "status": {"replicas": 1}});
    assert_eq!(
        cells("ReplicaSet", &rs, now()),
        vec![
            json!("web-1"),
            json!(1),
            json!(1),
            json!(0),
            json!("<unknown>"),
            json!(""),
            json!(""),
            json!("<none>")
        ]
    );
    let rc = json!({"metadata": {"name": "r"}, "spec": {"replicas": 2, "selector": {"b": "2", "a": "1"}}});
    assert_eq!(cells("ReplicationController", &rc, now())[7], json!("a=1,b=2"));
}

#[test]
fn service_rows_show_ips_and_ports() {
    let svc = |spec: Value, status: Value| json!({"metadata": {"name": "s"}, "spec": spec, "status": status});
    let cases = [
        (
            svc(
                json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80, "protocol": "TCP"}]}),
                json!({}),
            ),
            ["ClusterIP", "10.96.0.10", "<none>", "80/TCP", "<none>"],
        ),
        (
            svc(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"], "selector": {"app": "web"},
                       "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"}, {"port": 53, "nodePort": 30053, "protocol": "UDP"}]}),
                json!({"loadBalancer": {}}),
            ),
            [
                "LoadBalancer",
                "10.96.0.11",
                "<pending>",
                "80:31234/TCP,53:30053/UDP",
                "app=web",
            ],
        ),
        (
            svc(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "externalIPs": ["1.2.3.4"]}),
                json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}}),
            ),
            [
                "LoadBalancer",
                "10.96.0.12",
                "5.6.7.8,lb.example,1.2.3.4",
                "<none>",
                "<none>",
            ],
        ),
        (
            svc(
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                json!({}),
            ),
            ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"],
        ),
    ];
    for (obj, want) in cases {
        let c = cells("Service", &obj, now());
        let got: Vec<&str> = [1, 2, 3, 4, 6].iter().map(|i| c[*i].as_str().unwrap_or("?")).collect();
        assert_eq!(got, want, "{obj}");
    }
}

#[test]
fn endpoints_show_three_then_a_count() {
    let ep = json!({"metadata": {"name": "e"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}
    ]});
    assert_eq!(
        cells("Endpoints", &ep, now())[1],
        json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...")
    );
    assert_eq!(
        cells("Endpoints", &json!({"metadata": {"name": "e"}}), now())[1],
        json!("<none>")
    );
    let es = json!({"metadata": {"name": "e"}, "addressType": "IPv4", "ports": [{"port": 80}, {"name": "x"}],
                    "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
    assert_eq!(
        cells("EndpointSlice", &es, now())[1..4].to_vec(),
        vec![json!("IPv4"), json!("80,x"), json!("10.0.0.1,10.0.0.2")]
    );
    let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4"});
    assert_eq!(cells("EndpointSlice", &empty, now())[2], json!("<unset>"));
}

#[test]
fn node_rows_show_status_roles_and_addresses() {
    let node = json!({
        "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "False"}],
                   "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                   "nodeInfo": {"kubeletVersion": "v1.35.0", "osImage": "Debian"}}
    });
    assert_eq!(
        cells("Node", &node, now()),
        vec![
            json!("n1"),
            json!("NotReady,SchedulingDisabled"),
            json!("control-plane,worker"),
            json!("<unknown>"),
            json!("v1.35.0"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Debian"),
            json!("<unknown>"),
            json!("<unknown>")
        ]
    );
    let bare = cells("Node", &json!({"metadata": {"name": "n2"}}), now());
    assert_eq!((bare[1].clone(), bare[2].clone()), (json!("Unknown"), json!("<none>")));
}

#[test]
fn event_rows_use_last_seen_and_object() {
    let ev = json!({
        "metadata": {"name": "web.17a"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "type": "Normal", "message": "Pulled image \n",
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4,
        "source": {"component": "kubelet", "host": "node1"}
    });
    assert_eq!(
        cells("Event", &ev, now()),
        vec![
            json!("30s"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/web"),
            json!("spec.containers{web}"),
            json!("kubelet, node1"),
            json!("Pulled image"),
            json!("10m"),
            json!(4),
            json!("web.17a")
        ]
    );
    let new_style = json!({"metadata": {"name": "e"}, "eventTime": "2026-05-01T11:59:00.000000Z",
                           "reportingComponent": "berth-scheduler", "involvedObject": {"kind": "Node"}});
    let c = cells("Event", &new_style, now());
    assert_eq!(
        (c[0].clone(), c[3].clone(), c[5].clone(), c[8].clone()),
        (json!("60s"), json!("node"), json!("berth-scheduler"), json!(1))
    );
}

#[test]
fn small_kinds_print_their_counts_and_status() {
    let t = "2026-05-01T11:00:00Z";
    let cm =
        json!({"metadata": {"name": "c", "creationTimestamp": t}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
    assert_eq!(cells("ConfigMap", &cm, now()), vec![json!("c"), json!(2), json!("60m")]);
    let s = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "YQ=="}});
    assert_eq!(
        cells("Secret", &s, now())[1..3].to_vec(),
        vec![json!("Opaque"), json!(1)]
    );
    let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
    assert_eq!(cells("Namespace", &ns, now())[1], json!("Active"));
    let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node1"}});
    assert_eq!(cells("Lease", &lease, now())[1], json!("node1"));
    assert_eq!(
        cells("Widget", &json!({"metadata": {"name": "w"}}), now()),
        vec![json!("w"), json!("<unknown>")]
    );
}

#[test]
fn columns_carry_the_names_kubectl_prints() {
    let names = |kind: &str| -> Vec<String> {
        columns(kind)
            .iter()
            .map(|c| {
                format!(
                    "{}{}",
                    c["name"].as_str().unwrap_or(""),
                    if c["priority"] == json!(1) { "*" } else { "" }
                )
            })
            .collect()
    };
    assert_eq!(
        names("Pod"),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP*",
            "Node*",
            "Nominated Node*",
            "Readiness Gates*"
        ]
    );
    assert_eq!(
        names("Service"),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector*"
        ]
    );
    assert_eq!(columns("Pod")[0]["format"], json!("name"));
    assert_eq!(columns("ReplicaSet")[1]["type"], json!("integer"));
}

#[test]
fn completed_pods_carry_a_row_condition() {
    let p = json!({"status": {"phase": "Succeeded"}});
    assert_eq!(
        row_conditions("Pod", &p),
        Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
        )
    );
    assert_eq!(row_conditions("Pod", &json!({"status": {"phase": "Running"}})), None);
}
