//! Hostile and malformed requests, sent raw over HTTPS with curl (no client library to tidy them up): each must
//! get the right HTTP status with a `Status` body, store nothing, and leave the server serving.
//!
//! It does not test well-formed requests; the kubectl and Python tests do that.

// End-to-end tests are synchronous programs driving real processes in real time; the workspace ban on
// blocking sleeps and std Instant is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::Value;
use support::Server;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Asserts `(code, body)` is an error `Status` with HTTP status `code`, and returns it.
fn status(expected: u16, (code, body): (u16, String)) -> Value {
    assert_eq!(code, expected, "HTTP status; body: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"));
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], expected, "{v}");
    v
}

/// Asserts none of `names` is stored as a configmap in `default` (and so that the server still answers).
fn nothing_stored(s: &Server, names: &[&str]) {
    let list: Value = serde_json::from_str(&s.kubectl_ok(&["get", "--raw", CONFIGMAPS])).expect("list is JSON");
    for item in list["items"].as_array().expect("items") {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        assert!(!names.contains(&name), "{name} should not have been stored");
    }
}

/// The names of the configmaps in `default`.
fn configmap_names(s: &Server) -> Vec<String> {
    let list: Value = serde_json::from_str(&s.kubectl_ok(&["get", "--raw", CONFIGMAPS])).expect("list is JSON");
    let items = list["items"].as_array().expect("items").iter();
    items
        .map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn configmap(name: &str, value: &str) -> Vec<u8> {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}})
        .to_string()
        .into_bytes()
}

#[test]
fn a_request_without_a_valid_token_is_unauthorized() {
    let s = Server::start();
    let body = configmap("anon", "x");
    let v = status(401, s.curl("POST", CONFIGMAPS, None, "application/json", &body));
    assert_eq!(v["reason"], "Unauthorized");
    let v = status(
        401,
        s.curl("POST", CONFIGMAPS, Some("not-the-token"), "application/json", &body),
    );
    assert_eq!(v["reason"], "Unauthorized");
    status(401, s.curl("GET", CONFIGMAPS, None, "application/json", b""));
    nothing_stored(&s, &["anon"]);
}

#[test]
fn a_body_over_3_mib_is_too_large() {
    let s = Server::start();
    let token = s.credentials().token;
    let body = configmap("huge", &"x".repeat(4 << 20));
    // If the server starts reading the body (`100 Continue`) before refusing it, the 413 races with curl's upload
    // and curl may see the connection close first. That is a transport race, not a wrong answer, so retry it a
    // few times; a server that refuses by Content-Length up front never needs a retry.
    let reply = (0..5)
        .map(|_| s.try_curl("POST", CONFIGMAPS, Some(&token), "application/json", &body))
        .find(|r| r.code >= 200)
        .expect("no final response to a 4 MiB body in 5 tries");
    let v = status(413, (reply.code, reply.body));
    assert_eq!(v["reason"], "RequestEntityTooLarge", "{v}");
    nothing_stored(&s, &["huge"]);
}

#[test]
fn malformed_json_is_a_bad_request() {
    let s = Server::start();
    let token = s.credentials().token;
    let before = configmap_names(&s);
    for body in [
        &b"{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", "[..],
        b"not json at all",
        b"[1,2,3]",
    ] {
        let v = status(400, s.curl("POST", CONFIGMAPS, Some(&token), "application/json", body));
        assert_eq!(v["reason"], "BadRequest", "{v}");
    }
    assert_eq!(configmap_names(&s), before, "nothing should have been stored");
}

#[test]
fn deeply_nested_json_is_rejected_and_the_server_keeps_serving() {
    let s = Server::start();
    let token = s.credentials().token;
    let depth = 10_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep","annotations":{{"a":{nested}}}}}}}"#
    );
    let (code, resp) = s.curl("POST", CONFIGMAPS, Some(&token), "application/json", body.as_bytes());
    assert!(code == 400 || code == 422, "expected 400 or 422, got {code}: {resp}");
    status(code, (code, resp));
    assert_eq!(s.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
    nothing_stored(&s, &["deep"]);
}

#[test]
fn an_unknown_resource_path_is_not_found() {
    let s = Server::start();
    let token = s.credentials().token;
    for path in [
        "/api/v1/namespaces/default/widgets",
        "/apis/nope.example.com/v1/things",
        "/api/v9/pods",
        "/nonsense",
    ] {
        let v = status(404, s.curl("GET", path, Some(&token), "application/json", b""));
        assert_eq!(v["reason"], "NotFound", "{path}: {v}");
    }
    let v = status(
        404,
        s.curl(
            "POST",
            "/api/v1/namespaces/default/widgets",
            Some(&token),
            "application/json",
            b"{}",
        ),
    );
    assert_eq!(v["reason"], "NotFound");
}

#[test]
fn a_patch_with_an_unsupported_content_type_is_415() {
    let s = Server::start();
    let token = s.credentials().token;
    s.kubectl_ok(&["create", "configmap", "target", "--from-literal=k=v"]);
    let path = format!("{CONFIGMAPS}/target");
    let v = status(
        415,
        s.curl(
            "PATCH",
            &path,
            Some(&token),
            "text/plain",
            br#"{"data":{"k":"changed"}}"#,
        ),
    );
    assert_eq!(v["reason"], "UnsupportedMediaType", "{v}");
    assert_eq!(s.kubectl_ok(&["get", "cm", "target", "-o", "jsonpath={.data.k}"]), "v");
}

#[test]
fn a_garbage_protobuf_body_is_a_bad_request() {
    let s = Server::start();
    let token = s.credentials().token;
    let before = configmap_names(&s);
    let proto = "application/vnd.kubernetes.protobuf";
    // With the "k8s\0" magic but a nonsense envelope, and without the magic at all.
    let with_magic: Vec<u8> = b"k8s\0"
        .iter()
        .copied()
        .chain([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])
        .collect();
    for body in [with_magic.as_slice(), b"\x00\x01\x02garbage"] {
        let v = status(400, s.curl("POST", CONFIGMAPS, Some(&token), proto, body));
        assert_eq!(v["reason"], "BadRequest", "{v}");
    }
    assert_eq!(configmap_names(&s), before, "nothing should have been stored");
}

#[test]
fn an_invalid_label_selector_is_a_bad_request() {
    let s = Server::start();
    let token = s.credentials().token;
    let v = status(
        400,
        s.curl(
            "GET",
            &format!("{CONFIGMAPS}?labelSelector=app%20in%20in"),
            Some(&token),
            "",
            b"",
        ),
    );
    assert_eq!(v["reason"], "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unable to parse requirement"),
        "{v}"
    );
    let err = s.kubectl_err(&["get", "cm", "-l", "a b c"]);
    assert!(err.contains("unable to parse requirement"), "{err}");
}

/// Pod specs that used to get 201: a subPath leaving its volume, security settings berth would have ignored, and
/// a quantity with a space in it. Each is refused with upstream's status and field path, and nothing is stored.
#[test]
fn pods_that_escape_their_volumes_or_ask_for_unsupported_security_are_refused() {
    let s = Server::start();
    let token = s.credentials().token;
    let pods = "/api/v1/namespaces/default/pods";
    let post = |name: &str, spec: Value| {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec});
        s.curl(
            "POST",
            pods,
            Some(&token),
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    let with_mount = |mount: Value| {
        serde_json::json!({"volumes": [{"name": "v", "emptyDir": {}}],
                           "containers": [{"name": "c", "image": "i", "volumeMounts": [mount]}]})
    };
    let cases = [
        (
            "up",
            with_mount(serde_json::json!({"name": "v", "mountPath": "/v", "subPath": "../../etc"})),
            "spec.containers[0].volumeMounts.subPath",
            "Invalid value: \"../../etc\": must not contain '..'",
        ),
        (
            "absolute",
            with_mount(serde_json::json!({"name": "v", "mountPath": "/v", "subPathExpr": "/etc/$(X)"})),
            "spec.containers[0].volumeMounts.subPathExpr",
            "Invalid value: \"/etc/$(X)\": must be a relative path",
        ),
        (
            "both",
            with_mount(serde_json::json!({"name": "v", "mountPath": "/v", "subPath": "a", "subPathExpr": "b"})),
            "spec.containers[0].volumeMounts[0].subPathExpr",
            "Invalid value: \"b\": subPathExpr and subPath are mutually exclusive",
        ),
        (
            "hostnet",
            serde_json::json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}),
            "spec.hostNetwork",
            "Forbidden: not supported by berth",
        ),
        (
            "caps",
            serde_json::json!({"containers": [{"name": "c", "image": "i",
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}),
            "spec.containers[0].securityContext.capabilities.add",
            "Forbidden: not supported by berth",
        ),
        (
            "unconfined",
            serde_json::json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                               "containers": [{"name": "c", "image": "i"}]}),
            "spec.securityContext.seccompProfile.type",
            "Forbidden: not supported by berth",
        ),
    ];
    for (name, spec, field, message) in cases {
        let v = status(422, post(name, spec));
        assert_eq!(v["reason"], "Invalid", "{v}");
        let causes = v["details"]["causes"].as_array().expect("causes");
        assert!(
            causes
                .iter()
                .any(|c| c["field"] == field && c["message"].as_str().unwrap_or_default().starts_with(message)),
            "{name}: {v}"
        );
    }
    // Not a quantity at all (upstream's decoder refuses " 1" too): a decoding error.
    let spaced =
        serde_json::json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": " 1"}}}]});
    let v = status(400, post("spaced", spaced));
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("quantities must match"),
        "{v}"
    );
    // Hardened manifests still go through: dropped capabilities and the runtime's default profiles.
    let hardened = serde_json::json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "i", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]});
    let (code, body) = post("hardened", hardened);
    assert_eq!(code, 201, "{body}");
    let list: Value = serde_json::from_str(&s.kubectl_ok(&["get", "--raw", pods])).expect("list is JSON");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["hardened"]);
}

/// The JSON patch that stored a 68 MB ConfigMap (16 copies) and killed a 3 GiB server (21 copies): an unknown root
/// field, copied into itself, each copy doubling it.
fn doubling_patch(field_bytes: usize, copies: usize) -> Vec<u8> {
    let mut ops = vec![serde_json::json!({"op": "add", "path": "/foo", "value": {"a": "x".repeat(field_bytes)}})];
    for i in 0..copies {
        ops.push(serde_json::json!({"op": "copy", "from": "/foo", "path": format!("/foo/c{i}")}));
    }
    serde_json::to_vec(&ops).expect("encode patch")
}

#[test]
fn a_json_patch_of_doubling_copies_stores_nothing_and_the_server_keeps_serving() {
    let s = Server::start();
    let token = s.credentials().token;
    let (code, _) = s.curl(
        "POST",
        CONFIGMAPS,
        Some(&token),
        "application/json",
        &configmap("target", "v"),
    );
    assert_eq!(code, 201);
    let path = format!("{CONFIGMAPS}/target");

    // 16 copies of a 1 KiB field are the 68 MB object of the report; 21 of a 64 KiB one would need 128 GiB. Both
    // are refused as soon as the copies pass 3 MiB.
    for (field, copies) in [(1024, 16), (64 * 1024, 21)] {
        let started = std::time::Instant::now();
        let patch = doubling_patch(field, copies);
        let v = status(
            422,
            s.curl("PATCH", &path, Some(&token), "application/json-patch+json", &patch),
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("exceeding the limit 3145728"),
            "{v}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    // 10 copies of a small field fit the copy limit, but the field is not in the ConfigMap schema: it is dropped,
    // as upstream drops it, so nothing of it is stored.
    let (code, body) = s.curl(
        "PATCH",
        &path,
        Some(&token),
        "application/json-patch+json",
        &doubling_patch(64, 10),
    );
    assert_eq!(code, 200, "{body}");
    let stored: Value = serde_json::from_str(&s.kubectl_ok(&["get", "--raw", &path])).expect("object is JSON");
    assert!(stored.get("foo").is_none(), "{stored}");
    assert_eq!(stored["data"]["k"], "v");
    assert_eq!(s.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
}

#[test]
fn an_aliased_yaml_body_is_refused_at_once_and_stores_nothing() {
    let s = Server::start();
    let token = s.credentials().token;
    // One 1 MiB string aliased 2,000 times, in a 1 MiB body: 2 GB once expanded.
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a: &big {}\n  b: [",
        "x".repeat(1024 * 1024)
    );
    yaml.push_str(&vec!["*big"; 2000].join(","));
    yaml.push_str("]\n");
    let started = std::time::Instant::now();
    let v = status(
        413,
        s.curl("POST", CONFIGMAPS, Some(&token), "application/yaml", yaml.as_bytes()),
    );
    assert_eq!(v["reason"], "RequestEntityTooLarge", "{v}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    nothing_stored(&s, &["bomb"]);
    assert_eq!(s.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
}

#[test]
fn an_object_over_one_and_a_half_mib_is_too_large_to_store() {
    let s = Server::start();
    let token = s.credentials().token;
    // A Pod's container args are bounded by nothing but the object limit; 2 MiB of them fit in a request.
    let args: Vec<String> = (0..8).map(|_| "a".repeat(256 * 1024)).collect();
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "args": args}]},
    });
    let v = status(
        413,
        s.curl(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(&token),
            "application/json",
            pod.to_string().as_bytes(),
        ),
    );
    assert_eq!(v["reason"], "RequestEntityTooLarge", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("an object may have at most 1572864"),
        "{v}"
    );
}
