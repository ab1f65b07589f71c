//! kubectl end-to-end tests: a real kubectl v1.35.2 against a real `berth server`, asserting what a user sees
//! (kubectl's printed lines and errors) and what the server then holds (`-o json`).
//!
//! Each test starts its own server, so tests are independent and can run in parallel. These tests do not need
//! Docker: they exercise the API server only (no pod ever runs).

// End-to-end tests are synchronous programs driving real processes in real time; the workspace ban on
// blocking sleeps and std Instant is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{eventually, repo_root, Server};

/// Absolute path of a file in `tests/manifests/`.
fn manifest(name: &str) -> String {
    repo_root()
        .join("tests/manifests")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Parses kubectl's table output into rows of cells. kubectl pads columns with at least three spaces, while a cell
/// or a header has at most single spaces inside (`NOMINATED NODE`, `3 (5m ago)`).
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The row whose NAME (or first non-namespace cell) is `name`.
fn row<'a>(rows: &'a [Vec<String>], name: &str) -> &'a [String] {
    let name_col = rows[0]
        .iter()
        .position(|h| h == "NAME")
        .expect("table has a NAME column");
    rows.iter()
        .skip(1)
        .find(|r| r.get(name_col).map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row named {name} in {rows:?}"))
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("kubectl printed invalid JSON ({e}):\n{out}"))
}

fn get_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    json(&server.kubectl_ok(&all))
}

#[test]
fn create_from_file_prints_created_and_get_prints_the_upstream_deployment_table() {
    let s = Server::start();
    assert_eq!(
        s.kubectl_ok(&["create", "-f", &manifest("webapp-deployment.yaml")]),
        "deployment.apps/webapp created\n"
    );

    let rows = table(&s.kubectl_ok(&["get", "deployments"]));
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let r = row(&rows, "webapp");
    assert!(r[1].ends_with("/3"), "READY should be n/3, got {r:?}");
    // AGE is a short human duration, seconds for an object this young.
    assert!(
        r[4].ends_with('s') && r[4][..r[4].len() - 1].parse::<u32>().is_ok(),
        "AGE cell {:?}",
        r[4]
    );

    let wide = table(&s.kubectl_ok(&["get", "deploy", "webapp", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(wide[1][5..], ["webapp", "nginx:1.25", "app=webapp"]);
}

#[test]
fn create_from_a_multi_document_file_creates_every_object() {
    let s = Server::start();
    let out = s.kubectl_ok(&["create", "-f", &manifest("multi.yaml")]);
    assert_eq!(
        out,
        "deployment.apps/my-deployment created\nservice/my-service created\n"
    );

    let svc = table(&s.kubectl_ok(&["get", "services", "my-service"]));
    assert_eq!(svc[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(svc[1][1], "ClusterIP");
    assert_eq!(svc[1][3], "<none>");
    assert_eq!(svc[1][4], "80/TCP");
}

#[test]
fn pods_and_replication_controllers_print_their_upstream_columns() {
    let s = Server::start();
    assert_eq!(
        s.kubectl_ok(&["create", "-f", &manifest("webapp-pod.yaml")]),
        "pod/webapp created\n"
    );
    assert_eq!(
        s.kubectl_ok(&["create", "-f", &manifest("my-app-rc.yaml")]),
        "replicationcontroller/my-app created\n"
    );

    let pods = table(&s.kubectl_ok(&["get", "pods"]));
    assert_eq!(pods[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    // With no node agent the pod stays Pending, its container not ready.
    assert_eq!(row(&pods, "webapp")[1..4], ["0/1", "Pending", "0"]);

    let wide = table(&s.kubectl_ok(&["get", "pod", "webapp", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );

    let rcs = table(&s.kubectl_ok(&["get", "rc"]));
    assert_eq!(rcs[0], ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(row(&rcs, "my-app")[1], "3");
}

#[test]
fn get_yaml_shows_the_object_with_server_owned_metadata() {
    let s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("webapp-service.yaml")]);
    let yaml = s.kubectl_ok(&["get", "service", "webapp", "-o", "yaml"]);
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("kubectl printed YAML");
    assert_eq!(doc["apiVersion"].as_str(), Some("v1"));
    assert_eq!(doc["kind"].as_str(), Some("Service"));
    assert_eq!(doc["metadata"]["name"].as_str(), Some("webapp"));
    assert_eq!(doc["metadata"]["namespace"].as_str(), Some("default"));
    for field in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(
            doc["metadata"][field].as_str().is_some_and(|v| !v.is_empty()),
            "metadata.{field} missing:\n{yaml}"
        );
    }
    assert_eq!(doc["spec"]["ports"][0]["port"].as_i64(), Some(80));
}

#[test]
fn apply_creates_then_configures_changes_and_removed_list_elements_then_is_unchanged() {
    let s = Server::start();
    let v1 = manifest("webapp-deployment.yaml");
    let v2 = manifest("webapp-deployment-v2.yaml");
    assert_eq!(s.kubectl_ok(&["apply", "-f", &v1]), "deployment.apps/webapp created\n");
    assert_eq!(
        s.kubectl_ok(&["apply", "-f", &v2]),
        "deployment.apps/webapp configured\n"
    );

    let d = get_json(&s, &["deployment", "webapp"]);
    assert_eq!(d["spec"]["replicas"], 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(
        c["env"],
        serde_json::json!([{"name": "MODE", "value": "staging"}]),
        "DEBUG should be gone"
    );
    assert!(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());

    assert_eq!(
        s.kubectl_ok(&["apply", "-f", &v2]),
        "deployment.apps/webapp unchanged\n"
    );
}

#[test]
fn label_selectors_filter_lists() {
    let s = Server::start();
    for (name, app) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")] {
        s.kubectl_ok(&["create", "configmap", name, "--from-literal=k=v"]);
        s.kubectl_ok(&["label", "configmap", name, &format!("app={app}")]);
    }
    let names = |sel: &str| s.kubectl_ok(&["get", "configmaps", "-l", sel, "-o", "name"]);
    assert_eq!(names("app=a"), "configmap/a1\nconfigmap/a2\n");
    assert_eq!(names("app in (b,c)"), "configmap/b1\nconfigmap/c1\n");
    assert_eq!(names("app!=a,app"), "configmap/b1\nconfigmap/c1\n");

    let rows = table(&s.kubectl_ok(&["get", "cm", "-l", "app=b"]));
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][..2], ["b1", "1"]);

    let none = s.kubectl(&["get", "cm", "-l", "app=zzz"]);
    assert!(none.status.success());
    assert_eq!(
        support::text(&none.stderr).trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn all_namespaces_and_show_labels_add_their_columns() {
    let s = Server::start();
    assert_eq!(
        s.kubectl_ok(&["create", "namespace", "other"]),
        "namespace/other created\n"
    );
    s.kubectl_ok(&["create", "-f", &manifest("webapp-pod.yaml")]);
    s.kubectl_ok(&["create", "-f", &manifest("webapp-pod.yaml"), "-n", "other"]);

    let rows = table(&s.kubectl_ok(&["get", "pods", "-A"]));
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let mut seen: Vec<_> = rows[1..].iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    seen.sort();
    assert_eq!(seen, [("default", "webapp"), ("other", "webapp")]);

    let rows = table(&s.kubectl_ok(&["get", "pods", "--show-labels"]));
    assert_eq!(rows[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]);
    assert_eq!(row(&rows, "webapp")[5], "app=webapp,tier=web");
}

#[test]
fn get_watch_prints_added_modified_and_deleted_events() {
    let s = Server::start();
    s.kubectl_ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    let watch = s.kubectl_background(&["get", "configmaps", "--watch", "--output-watch-events"]);
    // The initial list is printed as ADDED; wait for it so later changes happen while the watch is open.
    assert!(
        eventually(Duration::from_secs(20), || watch
            .stdout()
            .contains("ADDED")
            .then_some(()))
        .is_some(),
        "kubectl get -w printed no ADDED event: {}",
        watch.stdout()
    );
    s.kubectl_ok(&["label", "configmap", "watched", "step=two"]);
    assert!(
        eventually(Duration::from_secs(20), || watch
            .stdout()
            .contains("MODIFIED")
            .then_some(()))
        .is_some(),
        "no MODIFIED event: {}",
        watch.stdout()
    );
    s.kubectl_ok(&["delete", "configmap", "watched"]);
    let (out, err) = watch.stop_when(Duration::from_secs(20), |o| o.contains("DELETED"));

    let rows = table(&out);
    assert_eq!(
        rows[0],
        ["EVENT", "NAME", "DATA", "AGE"],
        "stdout:\n{out}\nstderr:\n{err}"
    );
    let events: Vec<_> = rows[1..].iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(
        events,
        [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")],
        "stderr: {err}"
    );
}

#[test]
fn label_and_annotate_change_metadata() {
    let s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("webapp-pod.yaml")]);
    assert_eq!(
        s.kubectl_ok(&["label", "pod", "webapp", "env=prod"]),
        "pod/webapp labeled\n"
    );
    assert_eq!(
        s.kubectl_ok(&["annotate", "pod", "webapp", "note=hello world"]),
        "pod/webapp annotated\n"
    );
    let p = get_json(&s, &["pod", "webapp"]);
    assert_eq!(p["metadata"]["labels"]["env"], "prod");
    assert_eq!(p["metadata"]["annotations"]["note"], "hello world");

    let err = s.kubectl_err(&["label", "pod", "webapp", "env=dev"]);
    assert!(
        err.contains("'env' already has a value (prod), and --overwrite is false"),
        "{err}"
    );
    s.kubectl_ok(&["label", "pod", "webapp", "env-"]);
    let p = get_json(&s, &["pod", "webapp"]);
    assert!(
        p["metadata"]["labels"].get("env").is_none(),
        "label env should be removed: {p}"
    );
    assert_eq!(p["metadata"]["labels"]["tier"], "web");
}

#[test]
fn delete_removes_the_object_and_get_then_says_not_found() {
    let s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("webapp-pod.yaml")]);
    let out = s.kubectl_ok(&["delete", "pod", "webapp", "--grace-period=0", "--force"]);
    assert!(out.contains("pod \"webapp\""), "{out}");
    let err = s.kubectl_err(&["get", "pod", "webapp"]);
    assert_eq!(err.trim(), "Error from server (NotFound): pods \"webapp\" not found");

    s.kubectl_ok(&["create", "configmap", "gone", "--from-literal=a=b"]);
    let out = s.kubectl_ok(&["delete", "configmap", "gone"]);
    assert!(out.starts_with("configmap \"gone\" deleted"), "{out}");
    let err = s.kubectl_err(&["delete", "configmap", "gone"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): configmaps \"gone\" not found"
    );
}

#[test]
fn create_deployment_sends_protobuf_and_the_server_stores_it() {
    let s = Server::start();
    let out = s.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=80",
    ]);
    assert_eq!(out, "deployment.apps/web created\n");
    let d = get_json(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["labels"]["app"], "web");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "nginx");
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["ports"][0]["containerPort"], 80);
}

#[test]
fn create_configmap_and_secret_from_literals() {
    let s = Server::start();
    let out = s.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
        "--from-literal=size=L",
    ]);
    assert_eq!(out, "configmap/settings created\n");
    let cm: serde_yaml::Value =
        serde_yaml::from_str(&s.kubectl_ok(&["get", "cm", "settings", "-o", "yaml"])).expect("yaml");
    assert_eq!(cm["data"]["color"].as_str(), Some("blue"));
    assert_eq!(cm["data"]["size"].as_str(), Some("L"));

    let out = s.kubectl_ok(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"]);
    assert_eq!(out, "secret/creds created\n");
    let yaml = s.kubectl_ok(&["get", "secret", "creds", "-o", "yaml"]);
    let secret: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("yaml");
    assert_eq!(
        secret["data"]["password"].as_str(),
        Some("czNjcmV0"),
        "base64 of s3cret:\n{yaml}"
    );
    assert_eq!(secret["type"].as_str(), Some("Opaque"));

    let rows = table(&s.kubectl_ok(&["get", "secrets", "creds"]));
    assert_eq!(rows[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(rows[1][1..3], ["Opaque", "1"]);
}

#[test]
fn run_creates_a_pod_labelled_with_its_name() {
    let s = Server::start();
    assert_eq!(s.kubectl_ok(&["run", "nginx", "--image=nginx"]), "pod/nginx created\n");
    let p = get_json(&s, &["pod", "nginx"]);
    assert_eq!(p["metadata"]["labels"]["run"], "nginx");
    assert_eq!(p["spec"]["containers"][0]["image"], "nginx");
    assert_eq!(p["status"]["phase"], "Pending");
}

#[test]
fn api_resources_lists_the_served_resources_with_short_names() {
    let s = Server::start();
    let rows = table(&s.kubectl_ok(&["api-resources"]));
    assert_eq!(rows[0], ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for expected in [
        ["pods", "po", "v1", "true", "Pod"],
        ["services", "svc", "v1", "true", "Service"],
        ["configmaps", "cm", "v1", "true", "ConfigMap"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
    ] {
        assert!(
            rows.iter().any(|r| r == &expected),
            "api-resources lacks {expected:?}:\n{rows:?}"
        );
    }
    assert!(rows
        .iter()
        .any(|r| r[..1] == ["secrets"] && r.last().map(String::as_str) == Some("Secret")));
}

#[test]
fn version_reports_a_1_35_server() {
    let s = Server::start();
    let v = json(&s.kubectl_ok(&["version", "-o", "json"]));
    let server = v["serverVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(server.starts_with("v1.35."), "server version {server:?} in {v}");
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "35");
    assert!(s.kubectl_ok(&["version"]).contains("Server Version: v1.35."));
}

#[test]
fn namespaces_scope_objects_and_deleting_one_removes_its_contents() {
    let s = Server::start();
    assert_eq!(
        s.kubectl_ok(&["create", "namespace", "team"]),
        "namespace/team created\n"
    );
    s.kubectl_ok(&["create", "configmap", "inside", "-n", "team", "--from-literal=a=b"]);
    s.kubectl_ok(&["create", "-f", &manifest("webapp-deployment.yaml"), "-n", "team"]);
    assert_eq!(
        s.kubectl_ok(&["get", "cm", "inside", "-n", "team", "-o", "name"]),
        "configmap/inside\n"
    );
    // Namespaced, so it is not in default.
    let err = s.kubectl_err(&["get", "cm", "inside"]);
    assert!(err.contains("configmaps \"inside\" not found"), "{err}");

    let err = s.kubectl_err(&["create", "configmap", "x", "-n", "nope", "--from-literal=a=b"]);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
    let err = s.kubectl_err(&["create", "-f", &manifest("webapp-pod.yaml"), "-n", "nope"]);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");

    let ns = table(&s.kubectl_ok(&["get", "namespaces"]));
    assert_eq!(ns[0], ["NAME", "STATUS", "AGE"]);
    assert_eq!(row(&ns, "team")[1], "Active");
    assert_eq!(row(&ns, "default")[1], "Active");

    let out = s.kubectl_ok(&["delete", "namespace", "team", "--timeout=60s"]);
    assert!(out.starts_with("namespace \"team\" deleted"), "{out}");
    let gone = eventually(Duration::from_secs(30), || {
        let out = s.kubectl(&["get", "namespace", "team"]);
        (!out.status.success()).then(|| support::text(&out.stderr))
    });
    assert_eq!(
        gone.as_deref().map(str::trim),
        Some("Error from server (NotFound): namespaces \"team\" not found")
    );
    let raw = json(&s.kubectl_ok(&["get", "--raw", "/api/v1/namespaces/team/configmaps"]));
    assert_eq!(
        raw["items"],
        serde_json::json!([]),
        "contents of a deleted namespace must go"
    );
    let raw = json(&s.kubectl_ok(&["get", "--raw", "/apis/apps/v1/namespaces/team/deployments"]));
    assert_eq!(raw["items"], serde_json::json!([]));
}

#[test]
fn an_invalid_name_is_rejected_with_the_rfc_1123_message_and_nothing_is_stored() {
    let s = Server::start();
    let err = s.kubectl_err(&["create", "configmap", "Bad_Name", "--from-literal=a=b"]);
    assert!(err.contains("is invalid") && err.contains("RFC 1123"), "{err}");
    assert!(err.contains("metadata.name: Invalid value: \"Bad_Name\""), "{err}");
    let raw = json(&s.kubectl_ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]));
    assert!(!raw["items"].to_string().contains("Bad_Name"), "{raw}");
}

#[test]
fn creating_an_existing_object_says_already_exists() {
    let s = Server::start();
    let file = manifest("webapp-deployment.yaml");
    s.kubectl_ok(&["create", "-f", &file]);
    let err = s.kubectl_err(&["create", "-f", &file]);
    assert!(err.contains("Error from server (AlreadyExists)"), "{err}");
    assert!(err.contains("deployments.apps \"webapp\" already exists"), "{err}");

    s.kubectl_ok(&["create", "configmap", "twice"]);
    let err = s.kubectl_err(&["create", "configmap", "twice"]);
    assert!(err.contains("configmaps \"twice\" already exists"), "{err}");
}

#[test]
fn scale_sets_the_desired_replicas_shown_by_get() {
    let s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("webapp-deployment.yaml")]);
    assert_eq!(
        s.kubectl_ok(&["scale", "deployment", "webapp", "--replicas=5"]),
        "deployment.apps/webapp scaled\n"
    );
    let rows = table(&s.kubectl_ok(&["get", "deploy", "webapp"]));
    assert!(rows[1][1].ends_with("/5"), "READY should be n/5: {rows:?}");
    assert_eq!(get_json(&s, &["deploy", "webapp"])["spec"]["replicas"], 5);
    let scale = json(&s.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/webapp/scale",
    ]));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
}

#[test]
fn patch_supports_merge_json_and_strategic_types() {
    let s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("webapp-deployment.yaml")]);
    let patch = |kind: &str, body: &str| s.kubectl_ok(&["patch", "deployment", "webapp", "--type", kind, "-p", body]);

    assert_eq!(
        patch("merge", r#"{"metadata":{"labels":{"tier":"gold"}}}"#),
        "deployment.apps/webapp patched\n"
    );
    assert_eq!(
        patch("json", r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#),
        "deployment.apps/webapp patched\n"
    );
    // Strategic merge matches containers by name, so the container keeps its ports and env; a JSON merge patch
    // would have replaced the whole list.
    let strategic = r#"{"spec":{"template":{"spec":{"containers":[{"name":"webapp","image":"nginx:1.29"}]}}}}"#;
    assert_eq!(patch("strategic", strategic), "deployment.apps/webapp patched\n");
    assert_eq!(
        patch("strategic", strategic),
        "deployment.apps/webapp patched (no change)\n"
    );

    let d = get_json(&s, &["deploy", "webapp"]);
    assert_eq!(
        d["metadata"]["labels"],
        serde_json::json!({"app": "webapp", "tier": "gold"})
    );
    assert_eq!(d["spec"]["replicas"], 4);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "nginx:1.29");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
    assert_eq!(containers[0]["env"][1]["name"], "DEBUG");

    // A failing JSON patch `test` operation rejects the whole patch, replace included.
    let test_op =
        r#"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":1}]"#;
    s.kubectl_err(&["patch", "deployment", "webapp", "--type", "json", "-p", test_op]);
    assert_eq!(get_json(&s, &["deploy", "webapp"])["spec"]["replicas"], 4);
}

#[test]
fn replace_with_a_stale_resource_version_is_a_conflict() {
    let s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("webapp-deployment.yaml")]);
    let mut stale = get_json(&s, &["deploy", "webapp"]);
    s.kubectl_ok(&["label", "deploy", "webapp", "touched=yes"]); // Moves the resourceVersion on.

    stale["spec"]["replicas"] = 7.into();
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &stale.to_string());
    assert!(!out.status.success(), "replace with a stale resourceVersion succeeded");
    let err = support::text(&out.stderr);
    assert!(err.contains("Error from server (Conflict)"), "{err}");
    assert!(
        err.contains(
            "Operation cannot be fulfilled on deployments.apps \"webapp\": the object has been modified; \
             please apply your changes to the latest version and try again"
        ),
        "{err}"
    );
    assert_eq!(get_json(&s, &["deploy", "webapp"])["spec"]["replicas"], 3);

    // With the current resourceVersion, the same replace goes through.
    let mut fresh = get_json(&s, &["deploy", "webapp"]);
    fresh["spec"]["replicas"] = 7.into();
    assert_eq!(
        s.kubectl_stdin_ok(&["replace", "-f", "-"], &fresh.to_string()),
        "deployment.apps/webapp replaced\n"
    );
    assert_eq!(get_json(&s, &["deploy", "webapp"])["spec"]["replicas"], 7);
}

#[test]
fn raw_get_serves_discovery_version_and_lists() {
    let s = Server::start();
    let core = json(&s.kubectl_ok(&["get", "--raw", "/api/v1"]));
    assert_eq!(core["kind"], "APIResourceList");
    assert_eq!(core["groupVersion"], "v1");
    let pods = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods")
        .cloned();
    let pods = pods.expect("/api/v1 lists pods");
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["namespaced"], true);

    let api = json(&s.kubectl_ok(&["get", "--raw", "/api"]));
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], serde_json::json!(["v1"]));

    let groups = json(&s.kubectl_ok(&["get", "--raw", "/apis"]));
    assert_eq!(groups["kind"], "APIGroupList");
    assert!(
        groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "apps"),
        "{groups}"
    );

    let apps = json(&s.kubectl_ok(&["get", "--raw", "/apis/apps/v1"]));
    assert_eq!(apps["groupVersion"], "apps/v1");

    let version = json(&s.kubectl_ok(&["get", "--raw", "/version"]));
    assert!(
        version["gitVersion"].as_str().is_some_and(|v| v.starts_with("v1.35.")),
        "{version}"
    );

    let list = json(&s.kubectl_ok(&["get", "--raw", "/api/v1/namespaces/default/pods"]));
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["items"], serde_json::json!([]));
    assert!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty()),
        "{list}"
    );

    let err = s.kubectl_err(&["get", "--raw", "/api/v1/nonsense"]);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn objects_and_credentials_survive_a_graceful_restart() {
    let mut s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("webapp-deployment.yaml")]);
    let before = get_json(&s, &["deploy", "webapp"]);
    let creds = s.credentials();
    let ca = std::fs::read(&creds.ca_path).expect("read CA");

    s.restart();
    let after_creds = s.credentials();
    assert_eq!(after_creds.token, creds.token, "the admin token must be reused");
    assert_eq!(
        std::fs::read(&after_creds.ca_path).expect("read CA"),
        ca,
        "the CA must be reused"
    );
    let after = get_json(&s, &["deploy", "webapp"]);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(after["spec"], before["spec"]);

    let cm = json(&s.kubectl_ok(&["create", "configmap", "later", "-o", "json"]));
    let rv = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse::<u64>().ok())
    };
    assert!(
        rv(&cm) > rv(&before),
        "resourceVersions must keep growing across restarts: {cm}"
    );
}

#[test]
fn the_kubeconfig_command_prints_the_admin_kubeconfig() {
    let s = Server::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("kubeconfig")
        .arg("--data-dir")
        .arg(s.data_dir())
        .output()
        .expect("run berth kubeconfig");
    assert!(
        out.status.success(),
        "berth kubeconfig failed: {}",
        support::text(&out.stderr)
    );
    let printed: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).expect("berth kubeconfig prints YAML");
    let written: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(s.kubeconfig_path()).expect("read kubeconfig")).expect("yaml");
    assert_eq!(printed["users"], written["users"]);
    assert_eq!(
        printed["clusters"][0]["cluster"]["certificate-authority-data"],
        written["clusters"][0]["cluster"]["certificate-authority-data"]
    );
    assert_eq!(
        written["clusters"][0]["cluster"]["server"].as_str(),
        Some(format!("https://127.0.0.1:{}", s.port()).as_str())
    );
    assert_eq!(written["contexts"][0]["context"]["namespace"].as_str(), Some("default"));
}

#[test]
fn an_unknown_field_is_a_strict_decoding_error_and_validate_false_drops_it() {
    let s = Server::start();
    let typo = std::fs::read_to_string(manifest("webapp-deployment.yaml"))
        .expect("read manifest")
        .replace("  replicas: 3", "  replica: 3");
    let out = s.kubectl_stdin(&["create", "-f", "-"], &typo);
    assert!(
        !out.status.success(),
        "a misspelt field must be rejected under the default --validate=strict"
    );
    let err = support::text(&out.stderr);
    assert!(err.contains("unknown field \"spec.replica\""), "{err}");
    assert!(
        s.kubectl(&["get", "deploy", "webapp"]).status.code() != Some(0),
        "nothing stored"
    );

    // With validation off kubectl asks the server to ignore unknown fields: the object is created without it
    // and gets the default of one replica.
    s.kubectl_stdin_ok(&["create", "--validate=false", "-f", "-"], &typo);
    let created = get_json(&s, &["deploy", "webapp"]);
    assert_eq!(created["spec"]["replicas"], 1);
    assert!(
        created["spec"].get("replica").is_none(),
        "unknown fields are never stored"
    );

    // --validate=warn: stored without the field, and kubectl prints the server's warning.
    s.kubectl_ok(&["delete", "deploy", "webapp"]);
    let out = s.kubectl_stdin(&["create", "--validate=warn", "-f", "-"], &typo);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    let warned = support::text(&out.stderr);
    assert!(warned.contains("Warning: unknown field \"spec.replica\""), "{warned}");
    assert!(get_json(&s, &["deploy", "webapp"])["spec"].get("replica").is_none());
}

#[test]
fn field_selectors_multiple_types_names_and_delete_from_file() {
    let s = Server::start();
    s.kubectl_ok(&["create", "-f", &manifest("multi.yaml")]);
    s.kubectl_ok(&["create", "-f", &manifest("webapp-pod.yaml")]);
    s.kubectl_ok(&["run", "other", "--image=busybox"]);

    let names = s.kubectl_ok(&["get", "pods", "--field-selector", "metadata.name=other", "-o", "name"]);
    assert_eq!(names, "pod/other\n");
    let pending = s.kubectl_ok(&["get", "pods", "--field-selector", "status.phase=Pending", "-o", "name"]);
    assert_eq!(pending, "pod/other\npod/webapp\n");
    let err = s.kubectl_err(&["get", "pods", "--field-selector", "spec.nope=x"]);
    assert!(err.contains("field label not supported: spec.nope"), "{err}");

    let both = s.kubectl_ok(&["get", "deploy,svc", "-o", "name"]);
    assert!(
        both.contains("deployment.apps/my-deployment\n") && both.contains("service/my-service\n"),
        "{both}"
    );

    let out = s.kubectl_ok(&["delete", "-f", &manifest("multi.yaml")]);
    assert!(out.contains("deployment.apps \"my-deployment\" deleted"), "{out}");
    assert!(out.contains("service \"my-service\" deleted"), "{out}");
    let err = s.kubectl_err(&["get", "-f", &manifest("multi.yaml")]);
    assert!(err.contains("deployments.apps \"my-deployment\" not found"), "{err}");
}
