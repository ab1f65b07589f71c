//! Pod end-to-end tests: a real `berth server` whose agent runs pods in the real Docker engine, driven by the real
//! kubectl, checking what a user checks (`kubectl get pods`, `-o jsonpath`, `kubectl describe`, HTTP to the pod).
//!
//! Every pod uses the built-in workload image (`localhost/berth/workload:0.1.0`), which the agent loads itself —
//! no registry is involved. Each test's server has its own node name; its containers are removed when it drops.

// End-to-end tests are synchronous programs driving real processes in real time; the workspace ban on
// blocking sleeps and std Instant is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{container_status, eventually, pod_yaml, wait_pod, Server};

use support::WORKLOAD_IMAGE as IMAGE;

fn pod_json(server: &Server, name: &str) -> Value {
    let out = server.kubectl_ok(&["get", "pod", name, "-o", "json"]);
    serde_json::from_str(&out).expect("pod json")
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// An HTTP GET from the host to the pod's address (the host is on the pod bridge).
fn http_get(ip: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&format!("{ip}:8080").parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn docker_ps(label: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn a_pod_runs_in_docker_serves_traffic_and_goes_away_when_deleted() {
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "hello",
        &format!("  containers:\n  - name: web\n    image: {IMAGE}\n    ports:\n    - containerPort: 8080\n"),
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest);
    let pod = wait_pod(&server, "hello", Duration::from_secs(60), "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && is_ready(p)
    });
    let status = &pod["status"];
    let ip = status["podIP"].as_str().expect("podIP").to_string();
    assert_eq!(status["hostIP"], "127.0.0.1");
    assert!(status["startTime"].is_string());
    let web = container_status(&pod, "web");
    assert_eq!(web["ready"], true);
    assert_eq!(web["started"], true);
    assert_eq!(web["restartCount"], 0);
    assert_eq!(web["image"], IMAGE);
    assert!(
        web["imageID"].as_str().unwrap().starts_with("docker://sha256:"),
        "{web}"
    );
    assert!(web["containerID"].as_str().unwrap().starts_with("docker://"), "{web}");
    assert!(web["state"]["running"]["startedAt"].is_string(), "{web}");

    // The pod answers on its own address with its own name (the workload reads its hostname, the pod name).
    let reply = eventually(Duration::from_secs(10), || http_get(&ip, "/")).expect("pod answers HTTP");
    assert!(reply.contains("Hello from hello"), "{reply}");

    // kubectl's view.
    let out = server.kubectl_ok(&["get", "pod", "hello"]);
    assert!(out.contains("1/1") && out.contains("Running"), "{out}");
    let node = server.node().to_string();
    let out = server.kubectl_ok(&["get", "pod", "hello", "-o", "wide"]);
    assert!(out.contains(&ip) && out.contains(&node), "{out}");
    let events = server.kubectl_ok(&["describe", "pod", "hello"]);
    for reason in ["Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "describe lacks {reason}:\n{events}");
    }

    // The node the agent registered.
    let node_json: Value = serde_json::from_str(&server.kubectl_ok(&["get", "node", &node, "-o", "json"])).unwrap();
    let info = &node_json["status"]["nodeInfo"];
    for field in [
        "architecture",
        "bootID",
        "containerRuntimeVersion",
        "kernelVersion",
        "kubeProxyVersion",
        "kubeletVersion",
        "machineID",
        "operatingSystem",
        "osImage",
        "systemUUID",
    ] {
        assert!(info[field].is_string(), "nodeInfo.{field} missing: {info}");
    }
    assert!(info["containerRuntimeVersion"]
        .as_str()
        .unwrap()
        .starts_with("docker://"));
    assert_eq!(node_json["metadata"]["labels"]["kubernetes.io/hostname"], node.as_str());
    assert_eq!(node_json["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert!(node_json["status"]["capacity"]["cpu"].is_string());
    let lease = server.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        &node,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(lease, node);

    // Deleting the pod stops its containers and removes them, then the object.
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(!docker_ps(&format!("berth.pod.uid={uid}")).is_empty());
    server.kubectl_ok(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
    let out = server.kubectl(&["get", "pod", "hello"]);
    assert!(!out.status.success());
    assert!(
        docker_ps(&format!("berth.pod.uid={uid}")).is_empty(),
        "containers left behind"
    );
}

#[test]
fn a_crashing_container_restarts_with_backoff_and_a_growing_restart_count() {
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "crasher",
        &format!("  containers:\n  - name: app\n    image: {IMAGE}\n    args: [\"exit\", \"3\"]\n"),
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest);
    let pod = wait_pod(&server, "crasher", Duration::from_secs(60), "a restart", |p| {
        container_status(p, "app")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    let app = container_status(&pod, "app");
    assert_eq!(app["lastState"]["terminated"]["exitCode"], 3, "{app}");
    assert_eq!(app["lastState"]["terminated"]["reason"], "Error", "{app}");
    // The second failure waits 10 s: CrashLoopBackOff, visible to kubectl.
    let pod = wait_pod(&server, "crasher", Duration::from_secs(30), "CrashLoopBackOff", |p| {
        container_status(p, "app")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    assert_eq!(pod["status"]["phase"], "Running");
    let out = server.kubectl_ok(&["get", "pod", "crasher"]);
    assert!(out.contains("CrashLoopBackOff"), "{out}");
    let describe = server.kubectl_ok(&["describe", "pod", "crasher"]);
    assert!(describe.contains("BackOff"), "{describe}");
    // Restart counts only grow.
    let mut seen = 0;
    let reached = eventually(Duration::from_secs(60), || {
        let count = container_status(&pod_json(&server, "crasher"), "app")["restartCount"]
            .as_i64()
            .unwrap_or(0);
        assert!(count >= seen, "restartCount went from {seen} back to {count}");
        seen = count;
        (count >= 3).then_some(())
    });
    assert!(reached.is_some(), "restartCount stayed at {seen}");
}

#[test]
fn restart_policies_decide_the_final_phase() {
    let server = Server::start_with_agent();
    for (name, policy, code) in [("done", "Never", 0), ("broken", "Never", 4), ("retry", "OnFailure", 0)] {
        let manifest = pod_yaml(
            &server,
            name,
            &format!(
                "  restartPolicy: {policy}\n  containers:\n  - name: app\n    image: {IMAGE}\n    args: [\"exit\", \"{code}\"]\n"
            ),
        );
        server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest);
    }
    let done = wait_pod(&server, "done", Duration::from_secs(60), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        container_status(&done, "app")["state"]["terminated"]["reason"],
        "Completed"
    );
    let broken = wait_pod(&server, "broken", Duration::from_secs(60), "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(container_status(&broken, "app")["state"]["terminated"]["exitCode"], 4);
    assert_eq!(container_status(&broken, "app")["restartCount"], 0);
    wait_pod(&server, "retry", Duration::from_secs(60), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let out = server.kubectl_ok(&["get", "pods"]);
    assert!(out.contains("Completed") && out.contains("Error"), "{out}");
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let server = Server::start_with_agent();
    let spec = format!(
        "  volumes:\n  - name: work\n    emptyDir: {{}}\n  initContainers:\n\
         \x20 - name: first\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo one > /work/log\"]\n    volumeMounts:\n    - {{name: work, mountPath: /work}}\n\
         \x20 - name: second\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"cat /work/log && echo two >> /work/log\"]\n    volumeMounts:\n    - {{name: work, mountPath: /work}}\n\
         \x20 containers:\n  - name: app\n    image: {IMAGE}\n    volumeMounts:\n    - {{name: work, mountPath: /work}}\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "inits", &spec));
    let pod = wait_pod(&server, "inits", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let inits = pod["status"]["initContainerStatuses"]
        .as_array()
        .expect("init statuses");
    assert_eq!(inits.len(), 2);
    for s in inits {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    let first_done = inits[0]["state"]["terminated"]["finishedAt"]
        .as_str()
        .unwrap()
        .to_string();
    let second_started = inits[1]["state"]["terminated"]["startedAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        first_done <= second_started,
        "second started {second_started} before first finished {first_done}"
    );
    // The second init container saw the first one's file (it exits non-zero otherwise and the pod never runs).
    let initialized = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized");
    assert_eq!(initialized.unwrap()["status"], "True");
}

#[test]
fn a_failed_pull_reports_err_image_pull_then_image_pull_back_off() {
    let server = Server::start_with_agent();
    // A registry on a closed loopback port: the pull fails at once and nothing leaves the machine.
    let manifest = pod_yaml(
        &server,
        "nopull",
        "  containers:\n  - name: app\n    image: localhost:1/none/such:v1\n",
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest);
    wait_pod(&server, "nopull", Duration::from_secs(60), "ImagePullBackOff", |p| {
        container_status(p, "app")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let describe = server.kubectl_ok(&["describe", "pod", "nopull"]);
    assert!(describe.contains("Failed to pull image"), "{describe}");
    assert_eq!(pod_json(&server, "nopull")["status"]["phase"], "Pending");
}

#[test]
fn a_failing_liveness_probe_restarts_the_container_and_says_why() {
    let server = Server::start_with_agent();
    let spec = format!(
        "  containers:\n  - name: web\n    image: {IMAGE}\n    args: [\"serve\", \"--fail-health-after\", \"2\"]\n\
         \x20   livenessProbe:\n      httpGet: {{path: /healthz, port: 8080}}\n      periodSeconds: 1\n      failureThreshold: 2\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "unhealthy", &spec));
    let pod = wait_pod(&server, "unhealthy", Duration::from_secs(60), "two restarts", |p| {
        container_status(p, "web")["restartCount"].as_i64().unwrap_or(0) >= 2
    });
    // Killed by the agent for the probe: the container ended on SIGTERM with the workload's exit code 0.
    assert!(
        container_status(&pod, "web")["lastState"]["terminated"].is_object(),
        "{pod:#}"
    );
    let describe = server.kubectl_ok(&["describe", "pod", "unhealthy"]);
    assert!(
        describe.contains("Liveness probe failed: HTTP probe failed with statuscode: 500"),
        "{describe}"
    );
    assert!(
        describe.contains("failed liveness probe, will be restarted"),
        "{describe}"
    );
}

#[test]
fn the_classic_exec_liveness_example_restarts_once_the_file_is_gone() {
    let server = Server::start_with_agent();
    // The upstream documentation's liveness example, with shorter sleeps.
    let spec = format!(
        "  containers:\n  - name: liveness\n    image: {IMAGE}\n    args: [\"/bin/sh\", \"-c\", \"touch /tmp/healthy; sleep 3; rm -f /tmp/healthy; sleep 600\"]\n\
         \x20   livenessProbe:\n      exec:\n        command: [\"cat\", \"/tmp/healthy\"]\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "liveness-exec", &spec));
    wait_pod(&server, "liveness-exec", Duration::from_secs(60), "a restart", |p| {
        container_status(p, "liveness")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    let describe = server.kubectl_ok(&["describe", "pod", "liveness-exec"]);
    assert!(describe.contains("Liveness probe failed"), "{describe}");
}

#[test]
fn readiness_gates_ready_without_ever_restarting() {
    let server = Server::start_with_agent();
    let spec = format!(
        "  containers:\n  - name: web\n    image: {IMAGE}\n    args: [\"serve\", \"--ready-after\", \"3600\"]\n\
         \x20   readinessProbe:\n      httpGet: {{path: /readyz, port: 8080}}\n      periodSeconds: 1\n      failureThreshold: 1\n\
         \x20   startupProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "gated", &spec));
    let pod = wait_pod(&server, "gated", Duration::from_secs(60), "Running and started", |p| {
        p["status"]["phase"] == "Running" && container_status(p, "web")["started"] == true
    });
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    // Unready for several probe periods: never Ready, never restarted.
    std::thread::sleep(Duration::from_secs(4));
    let pod = pod_json(&server, "gated");
    assert!(!is_ready(&pod), "{pod:#}");
    assert_eq!(container_status(&pod, "web")["ready"], false);
    assert_eq!(container_status(&pod, "web")["restartCount"], 0);
    let out = server.kubectl_ok(&["get", "pod", "gated"]);
    assert!(out.contains("0/1"), "{out}");
    // Toggle readiness in the workload: the pod becomes Ready within a few periods.
    http_get(&ip, "/control/ready").expect("toggle readiness");
    wait_pod(&server, "gated", Duration::from_secs(20), "Ready", is_ready);
    // And unready again, still without a restart.
    http_get(&ip, "/control/unready").expect("toggle readiness");
    let pod = wait_pod(&server, "gated", Duration::from_secs(20), "unready", |p| !is_ready(p));
    assert_eq!(container_status(&pod, "web")["restartCount"], 0);
}

#[test]
fn deletion_waits_for_the_grace_period_and_gives_an_overrunning_pre_stop_two_more_seconds() {
    let server = Server::start_with_agent();
    // The workload takes 100 s to exit after SIGTERM, so only SIGKILL at the end of the grace period stops it.
    let stubborn = format!(
        "  terminationGracePeriodSeconds: 3\n  containers:\n  - name: app\n    image: {IMAGE}\n    args: [\"serve\", \"--term-delay\", \"100\"]\n"
    );
    // A preStop hook that overruns the grace period: upstream gives the container 2 s more after it.
    let overrun = format!(
        "  terminationGracePeriodSeconds: 3\n  containers:\n  - name: app\n    image: {IMAGE}\n    args: [\"serve\", \"--term-delay\", \"100\"]\n\
         \x20   lifecycle:\n      preStop:\n        exec:\n          command: [\"sleep\", \"30\"]\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "stubborn", &stubborn));
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "overrun", &overrun));
    for name in ["stubborn", "overrun"] {
        wait_pod(&server, name, Duration::from_secs(60), "Running", |p| {
            p["status"]["phase"] == "Running"
        });
    }
    let timed_delete = |name: &str| {
        let started = std::time::Instant::now();
        server.kubectl_ok(&["delete", "pod", name, "--timeout=60s"]);
        started.elapsed()
    };
    let stubborn_took = timed_delete("stubborn");
    assert!(
        stubborn_took >= Duration::from_secs(3),
        "deleted after {stubborn_took:?}, before the grace period"
    );
    assert!(
        stubborn_took < Duration::from_secs(15),
        "deletion took {stubborn_took:?}"
    );
    let overrun_took = timed_delete("overrun");
    assert!(
        overrun_took >= Duration::from_secs(5),
        "deleted after {overrun_took:?}: no +2 s after the preStop hook"
    );
    assert!(overrun_took < Duration::from_secs(15), "deletion took {overrun_took:?}");
}

#[test]
fn killing_the_agent_never_disturbs_running_containers() {
    let mut server = Server::start_with_agent();
    let spec = format!(
        "  containers:\n  - name: web\n    image: {IMAGE}\n  - name: crasher\n    image: {IMAGE}\n    args: [\"serve\", \"--exit-after\", \"2\", \"--exit-code\", \"1\"]\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "steady", &spec));
    let pod = wait_pod(
        &server,
        "steady",
        Duration::from_secs(60),
        "Running with web ready",
        |p| p["status"]["phase"] == "Running" && container_status(p, "web")["ready"] == true,
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let web_id = container_status(&pod, "web")["containerID"]
        .as_str()
        .unwrap()
        .to_string();
    let started_at = container_status(&pod, "web")["state"]["running"]["startedAt"].clone();
    let containers_before = docker_ps(&format!("berth.pod.uid={uid}")).len();
    let agent_port = |server: &Server| {
        server.kubectl_ok(&[
            "get",
            "node",
            server.node(),
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
        ])
    };
    let docker_state = |id: &str| {
        let out = std::process::Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{.State.Running}} {{.State.StartedAt}}",
                id.trim_start_matches("docker://"),
            ])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let web_state = docker_state(&web_id);
    assert!(web_state.starts_with("true "), "{web_state}");
    for round in 0..10 {
        let old_port = agent_port(&server);
        server.kill9_agent_and_restart();
        // The new agent process registers with a new port; then give it a moment to sync the pod.
        let back = eventually(Duration::from_secs(30), || {
            (agent_port(&server) != old_port).then_some(())
        });
        assert!(
            back.is_some(),
            "round {round}: the agent did not come back\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            docker_state(&web_id),
            web_state,
            "round {round}: the web container was stopped or restarted"
        );
        let pod = wait_pod(&server, "steady", Duration::from_secs(30), "web Ready", |p| {
            container_status(p, "web")["ready"] == true
        });
        let web = container_status(&pod, "web");
        assert_eq!(
            web["containerID"].as_str().unwrap(),
            web_id,
            "round {round}: the web container was replaced"
        );
        assert_eq!(web["restartCount"], 0, "round {round}: restartCount changed");
        assert_eq!(
            web["state"]["running"]["startedAt"], started_at,
            "round {round}: the container was restarted"
        );
        // No duplicates: one infra, one web, and the crasher's current and previous instances at most.
        let containers = docker_ps(&format!("berth.pod.uid={uid}")).len();
        assert!(
            containers <= containers_before.max(4),
            "round {round}: {containers} containers for one pod"
        );
    }
    // The crashing container's restart count survived the agent restarts too (it never goes down).
    let pod = pod_json(&server, "steady");
    assert!(
        container_status(&pod, "crasher")["restartCount"].as_i64().unwrap() >= 1,
        "{pod:#}"
    );
}

#[test]
fn config_maps_and_secrets_reach_env_and_files_and_file_updates_follow() {
    let server = Server::start_with_agent();
    server.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
        "--from-literal=size=L",
    ]);
    server.kubectl_ok(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"]);
    let spec = format!(
        "  volumes:\n  - name: cfg\n    configMap:\n      name: settings\n  - name: sec\n    secret:\n      secretName: creds\n      defaultMode: 0400\n\
         \x20 containers:\n  - name: app\n    image: {IMAGE}\n\
         \x20   envFrom:\n    - configMapRef: {{name: settings}}\n      prefix: CFG_\n\
         \x20   env:\n    - name: PASSWORD\n      valueFrom:\n        secretKeyRef: {{name: creds, key: password}}\n\
         \x20   - name: MY_POD\n      valueFrom:\n        fieldRef: {{fieldPath: metadata.name}}\n\
         \x20   - name: GREETING\n      value: \"hello $(MY_POD)\"\n\
         \x20   volumeMounts:\n    - {{name: cfg, mountPath: /etc/settings}}\n    - {{name: sec, mountPath: /etc/creds}}\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "configured", &spec));
    wait_pod(&server, "configured", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let env = server.kubectl_ok(&["exec", "configured", "--", "env"]);
    for line in [
        "CFG_color=blue",
        "CFG_size=L",
        "PASSWORD=s3cret",
        "MY_POD=configured",
        "GREETING=hello configured",
    ] {
        assert!(env.lines().any(|l| l == line), "env lacks {line}:\n{env}");
    }
    assert_eq!(
        server.kubectl_ok(&["exec", "configured", "--", "cat", "/etc/settings/color"]),
        "blue"
    );
    assert_eq!(
        server.kubectl_ok(&["exec", "configured", "--", "cat", "/etc/creds/password"]),
        "s3cret"
    );
    // An edit of the ConfigMap shows up in the mounted file within seconds, like upstream's atomic writer.
    server.kubectl_ok(&["patch", "configmap", "settings", "-p", r#"{"data":{"color":"green"}}"#]);
    let updated = eventually(Duration::from_secs(30), || {
        let out = server.kubectl(&["exec", "configured", "--", "cat", "/etc/settings/color"]);
        (String::from_utf8_lossy(&out.stdout) == "green").then_some(())
    });
    assert!(updated.is_some(), "the mounted file never showed the update");
    // A missing ConfigMap keeps a container from starting, with upstream's reason.
    let spec = format!(
        "  containers:\n  - name: app\n    image: {IMAGE}\n    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {{name: absent, key: x}}\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "unconfigured", &spec));
    let pod = wait_pod(
        &server,
        "unconfigured",
        Duration::from_secs(60),
        "CreateContainerConfigError",
        |p| container_status(p, "app")["state"]["waiting"]["reason"] == "CreateContainerConfigError",
    );
    let message = container_status(&pod, "app")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("configmap \"absent\" not found"), "{message}");
}

#[test]
fn a_second_agent_joins_with_berth_agent_and_runs_only_its_own_pods() {
    let server = Server::start_with_agent();
    let agent = support::Agent::join(&server);
    // The joined node carries its zone label next to the well-known ones.
    let labels = server.kubectl_ok(&["get", "node", agent.node(), "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains("\"topology.kubernetes.io/zone\":\"zone-b\""),
        "{labels}"
    );
    // One pod on each node, sharing one Docker engine.
    let spec = |node: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-{node}\nspec:\n  nodeName: {node}\n  containers:\n  - name: web\n    image: {IMAGE}\n")
    };
    for node in [server.node(), agent.node()] {
        server.kubectl_stdin_ok(&["apply", "-f", "-"], &spec(node));
    }
    for node in [server.node(), agent.node()] {
        let name = format!("on-{node}");
        wait_pod(&server, &name, Duration::from_secs(60), "Running and Ready", |p| {
            p["status"]["phase"] == "Running" && is_ready(p)
        });
        // Each node's containers carry only its own label: infra and web, nothing of the other node's pod.
        let mine = docker_ps(&format!("berth.node={node}"));
        assert_eq!(mine.len(), 2, "node {node} has containers {mine:?}");
    }
    // Logs and exec reach the joined agent through the API server too.
    let name = format!("on-{}", agent.node());
    let logs = server.kubectl_ok(&["logs", &name]);
    assert!(logs.contains("serving on :8080"), "{logs}");
    assert_eq!(server.kubectl_ok(&["exec", &name, "--", "hostname"]).trim(), name);
    // Deleting the joined node's pod is handled by that agent alone.
    server.kubectl_ok(&["delete", "pod", &name, "--timeout=60s"]);
    assert!(docker_ps(&format!("berth.node={}", agent.node())).is_empty());
    assert_eq!(docker_ps(&format!("berth.node={}", server.node())).len(), 2);
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let server = Server::start_with_agent();
    // Allocates past its limit at start: with restartPolicy Never the pod ends Failed.
    let hog = format!(
        "  restartPolicy: Never\n  containers:\n  - name: app\n    image: {IMAGE}\n    args: [\"serve\", \"--alloc-mb\", \"128\"]\n\
         \x20   resources:\n      limits: {{memory: 32Mi}}\n"
    );
    // Fits under the same limit at start, and is pushed over it later through the workload's /alloc.
    let grower = format!(
        "  containers:\n  - name: app\n    image: {IMAGE}\n    args: [\"serve\", \"--alloc-mb\", \"8\"]\n\
         \x20   resources:\n      limits: {{memory: 32Mi}}\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "hog", &hog));
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "grower", &grower));

    // Docker may record the exit a moment before the OOM kill (containerd/containerd#8180): the agent corrects the
    // reason when the OOM event follows, so the status settles on OOMKilled within milliseconds.
    let pod = wait_pod(&server, "hog", Duration::from_secs(60), "Failed with OOMKilled", |p| {
        p["status"]["phase"] == "Failed" && container_status(p, "app")["state"]["terminated"]["reason"] == "OOMKilled"
    });
    let app = container_status(&pod, "app");
    assert_eq!(app["state"]["terminated"]["reason"], "OOMKilled", "{app}");
    assert_eq!(app["state"]["terminated"]["exitCode"], 137, "{app}");
    assert_eq!(app["restartCount"], 0, "{app}");
    let out = server.kubectl_ok(&["get", "pod", "hog"]);
    assert!(out.contains("OOMKilled"), "{out}");
    let logs = server.kubectl_ok(&["logs", "hog"]);
    assert!(
        logs.contains("allocating 128 MiB") && !logs.contains("holding"),
        "{logs}"
    );

    // 8 MiB fit: the container runs, holding its memory.
    let pod = wait_pod(&server, "grower", Duration::from_secs(60), "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && is_ready(p)
    });
    assert_eq!(container_status(&pod, "app")["restartCount"], 0);
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    let reply = eventually(Duration::from_secs(10), || http_get(&ip, "/")).expect("pod answers HTTP");
    assert!(reply.contains("Hello from grower"), "{reply}");
    // 64 MiB more does not: the kernel kills it mid-request (so no answer), and the kubelet restarts it.
    let _ = http_get(&ip, "/alloc?mb=64");
    let pod = wait_pod(
        &server,
        "grower",
        Duration::from_secs(60),
        "a restart after OOMKilled",
        |p| {
            let app = container_status(p, "app");
            app["restartCount"].as_i64().unwrap_or(0) >= 1 && app["lastState"]["terminated"]["reason"] == "OOMKilled"
        },
    );
    let last = &container_status(&pod, "app")["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{pod:#}");
    assert_eq!(last["exitCode"], 137, "{pod:#}");
}

#[test]
fn grpc_probes_gate_readiness_and_restart_a_container_that_is_not_serving() {
    let server = Server::start_with_agent();
    // Readiness over gRPC, switched at run time through the workload's control endpoint.
    let gated = format!(
        "  containers:\n  - name: web\n    image: {IMAGE}\n    args: [\"serve\", \"--grpc-port\", \"9090\"]\n\
         \x20   readinessProbe:\n      grpc: {{port: 9090}}\n      periodSeconds: 1\n      failureThreshold: 1\n"
    );
    // Liveness over gRPC, asking about a named service; the workload stops serving after 3 s.
    let dying = format!(
        "  containers:\n  - name: web\n    image: {IMAGE}\n    args: [\"serve\", \"--grpc-port\", \"9090\", \"--grpc-not-serving-after\", \"3\"]\n\
         \x20   livenessProbe:\n      grpc: {{port: 9090, service: liveness}}\n      periodSeconds: 1\n      failureThreshold: 2\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "grpc-gated", &gated));
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "grpc-dying", &dying));

    let pod = wait_pod(
        &server,
        "grpc-gated",
        Duration::from_secs(60),
        "Running and Ready",
        |p| p["status"]["phase"] == "Running" && is_ready(p),
    );
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    http_get(&ip, "/control/grpc-not-serving").expect("switch gRPC health");
    let pod = wait_pod(&server, "grpc-gated", Duration::from_secs(20), "unready", |p| {
        !is_ready(p)
    });
    assert_eq!(container_status(&pod, "web")["ready"], false);
    assert_eq!(container_status(&pod, "web")["restartCount"], 0);
    let describe = server.kubectl_ok(&["describe", "pod", "grpc-gated"]);
    assert!(
        describe.contains("Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")"),
        "{describe}"
    );
    http_get(&ip, "/control/grpc-serving").expect("switch gRPC health");
    let pod = wait_pod(&server, "grpc-gated", Duration::from_secs(20), "Ready again", is_ready);
    assert_eq!(container_status(&pod, "web")["restartCount"], 0);

    let pod = wait_pod(&server, "grpc-dying", Duration::from_secs(60), "a restart", |p| {
        container_status(p, "web")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    assert!(
        container_status(&pod, "web")["lastState"]["terminated"].is_object(),
        "{pod:#}"
    );
    let describe = server.kubectl_ok(&["describe", "pod", "grpc-dying"]);
    assert!(
        describe.contains("Liveness probe failed: service unhealthy (responded with \"NOT_SERVING\")"),
        "{describe}"
    );
    assert!(
        describe.contains("Container web failed liveness probe, will be restarted"),
        "{describe}"
    );
    // The probe's requests reached the workload's gRPC server, naming the service.
    let previous = server.kubectl_ok(&["logs", "grpc-dying", "--previous"]);
    assert!(
        previous.contains("grpc Health/Check service=\"liveness\" SERVING")
            && previous.contains("grpc Health/Check service=\"liveness\" NOT_SERVING"),
        "{previous}"
    );
}

/// The mount points of this process's mount namespace (the server's and dockerd's too) under `dir`.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let dir = dir.to_string_lossy().into_owned();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&dir))
        .map(String::from)
        .collect()
}

/// CVE-2017-1002101's attack: one container of a pod plants symlinks in a shared emptyDir (`ln -s / escape`, and a
/// relative one climbing out), another mounts them with `subPath`. Were the agent to hand Docker
/// `<volume>/escape`, Docker would follow the link and mount the host's `/` read-write into the pod. The agent
/// refuses instead: each victim waits with CreateContainerConfigError and never runs.
#[test]
fn a_sub_path_symlink_planted_by_a_container_never_reaches_the_host() {
    let server = Server::start_with_agent();
    // A file only the host has: a victim that can read it has the host's filesystem.
    let marker = server.scratch("host-only-marker");
    std::fs::write(&marker, "host secret").expect("write marker");
    let host_dir = marker.parent().expect("scratch dir").display().to_string();
    let marker = marker.display();
    // `through` reaches the same file through a link in the middle of its subPath, from subPathExpr.
    let spec = format!(
        "  restartPolicy: Never\n  volumes:\n  - name: shared\n    emptyDir: {{}}\n\
         \x20 initContainers:\n  - name: plant\n    image: {IMAGE}\n\
         \x20   command: [\"sh\", \"-c\", \"ln -s / /vol/escape && ln -s ../../../../../../../../../.. /vol/up\"]\n\
         \x20   volumeMounts: [{{name: shared, mountPath: /vol}}]\n\
         \x20 containers:\n\
         \x20 - name: absolute\n    image: {IMAGE}\n    command: [\"cat\", \"/host{marker}\"]\n\
         \x20   volumeMounts: [{{name: shared, mountPath: /host, subPath: escape}}]\n\
         \x20 - name: relative\n    image: {IMAGE}\n    command: [\"cat\", \"/host{marker}\"]\n\
         \x20   volumeMounts: [{{name: shared, mountPath: /host, subPath: up}}]\n\
         \x20 - name: through\n    image: {IMAGE}\n    command: [\"cat\", \"/host/host-only-marker\"]\n\
         \x20   env: [{{name: DIR, value: \"{dir}\"}}]\n\
         \x20   volumeMounts: [{{name: shared, mountPath: /host, subPathExpr: \"escape/$(DIR)\"}}]\n",
        dir = host_dir.trim_start_matches('/'),
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "escape", &spec));
    let victims = ["absolute", "relative", "through"];
    let pod = wait_pod(
        &server,
        "escape",
        Duration::from_secs(60),
        "every victim settled",
        |p| {
            victims.iter().all(|name| {
                let state = &container_status(p, name)["state"];
                state["waiting"]["reason"] == "CreateContainerConfigError" || state["terminated"].is_object()
            })
        },
    );
    for name in victims {
        let logs = text_of(server.kubectl(&["logs", "escape", "-c", name]).stdout);
        assert!(
            !logs.contains("host secret"),
            "container {name} read the host's file through its subPath"
        );
        let state = &container_status(&pod, name)["state"];
        assert_eq!(
            state["waiting"]["reason"], "CreateContainerConfigError",
            "{name}: {state}"
        );
        let message = state["waiting"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!(
                "failed to prepare subPath for volumeMount \"shared\" of container \"{name}\""
            )) && message.contains("resolves outside its volume"),
            "{name}: {message}"
        );
    }
    let described = server.kubectl_ok(&["describe", "pod", "escape"]);
    assert!(described.contains("resolves outside its volume"), "{described}");
}

fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// subPath as people use it: one key of a configMap (whose files are `..data` symlinks inside the volume), a
/// subdirectory of an emptyDir another container filled, and a per-pod directory from `subPathExpr`, created on
/// demand. The mounts go away with the pod.
#[test]
fn sub_paths_into_config_maps_and_empty_dirs_work_and_are_cleaned_up() {
    let server = Server::start_with_agent();
    server.kubectl_ok(&["create", "configmap", "settings", "--from-literal=color=blue"]);
    let spec = format!(
        "  volumes:\n  - name: cfg\n    configMap:\n      name: settings\n  - name: data\n    emptyDir: {{}}\n\
         \x20 initContainers:\n  - name: seed\n    image: {IMAGE}\n\
         \x20   command: [\"sh\", \"-c\", \"mkdir -p /data/sub && echo seeded > /data/sub/file\"]\n\
         \x20   volumeMounts: [{{name: data, mountPath: /data}}]\n\
         \x20 containers:\n  - name: app\n    image: {IMAGE}\n\
         \x20   env:\n    - name: POD\n      valueFrom:\n        fieldRef: {{fieldPath: metadata.name}}\n\
         \x20   volumeMounts:\n\
         \x20   - {{name: cfg, mountPath: /etc/app/color, subPath: color}}\n\
         \x20   - {{name: data, mountPath: /sub, subPath: sub}}\n\
         \x20   - {{name: data, mountPath: /logs, subPathExpr: \"logs/$(POD)\"}}\n\
         \x20   - {{name: data, mountPath: /data}}\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "subpaths", &spec));
    let pod = wait_pod(&server, "subpaths", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    assert_eq!(
        server.kubectl_ok(&["exec", "subpaths", "--", "cat", "/etc/app/color"]),
        "blue"
    );
    assert_eq!(
        server.kubectl_ok(&["exec", "subpaths", "--", "cat", "/sub/file"]),
        "seeded\n"
    );
    server.kubectl_ok(&["exec", "subpaths", "--", "touch", "/logs/app.log"]);
    assert_eq!(
        server.kubectl_ok(&["exec", "subpaths", "--", "ls", "/data/logs/subpaths"]),
        "app.log\n"
    );

    let pod_dir = server.data_dir().join("agent/pods").join(&uid);
    assert!(
        !mounts_under(&pod_dir).is_empty(),
        "no subPath mounts under {}",
        pod_dir.display()
    );
    server.kubectl_ok(&["delete", "pod", "subpaths", "--wait=true", "--timeout=60s"]);
    let cleaned = eventually(Duration::from_secs(30), || {
        (mounts_under(&pod_dir).is_empty() && !pod_dir.exists()).then_some(())
    });
    assert!(
        cleaned.is_some(),
        "mounts left: {:?}, dir exists: {}",
        mounts_under(&pod_dir),
        pod_dir.exists()
    );
}

/// A hardened manifest (Pod Security's "restricted" shape, less runAsNonRoot) runs, and what it asked for holds
/// inside the container: no capabilities, and no_new_privs set.
#[test]
fn dropped_capabilities_and_no_privilege_escalation_hold_inside_the_container() {
    let server = Server::start_with_agent();
    let spec = format!(
        "  securityContext:\n    seccompProfile: {{type: RuntimeDefault}}\n\
         \x20 containers:\n  - name: app\n    image: {IMAGE}\n\
         \x20   securityContext:\n      allowPrivilegeEscalation: false\n      capabilities: {{drop: [ALL]}}\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "hardened", &spec));
    wait_pod(&server, "hardened", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let status = server.kubectl_ok(&["exec", "hardened", "--", "cat", "/proc/self/status"]);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(
        field("Seccomp:"),
        "2",
        "Docker's default seccomp filter applies:\n{status}"
    );
}

/// A pod deleted while its agent was down never gets a worker to tear it down: after the restart the agent's first
/// list finds it gone and removes its containers, its subPath mounts and its directory.
#[test]
fn sub_path_mounts_of_a_pod_deleted_while_the_agent_was_down_are_removed() {
    let server = Server::start_with_agent();
    let mut agent = support::Agent::join(&server);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gone\nspec:\n  nodeName: {}\n\
         \x20 volumes:\n  - name: data\n    emptyDir: {{}}\n\
         \x20 containers:\n  - name: app\n    image: {IMAGE}\n\
         \x20   volumeMounts: [{{name: data, mountPath: /sub, subPath: sub}}]\n",
        agent.node()
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest);
    let pod = wait_pod(&server, "gone", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    let pod_dir = agent.data_dir().join("pods").join(&uid);
    assert!(
        !mounts_under(&pod_dir).is_empty(),
        "no subPath mount under {}",
        pod_dir.display()
    );

    agent.kill9();
    server.kubectl_ok(&["delete", "pod", "gone", "--grace-period=0", "--force"]);
    agent.start_again();
    let cleaned = eventually(Duration::from_secs(60), || {
        (mounts_under(&pod_dir).is_empty() && !pod_dir.exists()).then_some(())
    });
    assert!(
        cleaned.is_some(),
        "mounts left: {:?}, dir exists: {}\n{}",
        mounts_under(&pod_dir),
        pod_dir.exists(),
        agent.log()
    );
    assert!(docker_ps(&format!("berth.node={}", agent.node())).is_empty());
}

#[test]
fn huge_numbers_from_clients_neither_panic_the_server_nor_the_agent() {
    let server = Server::start_with_agent();
    let spec = format!("  containers:\n  - name: app\n    image: {IMAGE}\n");
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "big", &spec));
    wait_pod(&server, "big", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    // i64::MAX seconds ago overflowed the agent's time arithmetic: its handler panicked and the client saw 503.
    let logs = server.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/big/log?sinceSeconds=9223372036854775807",
    ]);
    assert!(logs.status.success(), "{}", support::text(&logs.stderr));

    // i64::MAX seconds from now reset the connection; now the deadline saturates and the agent still stops the pod.
    server.kubectl_ok(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/pods/big?gracePeriodSeconds=9223372036854775807",
    ]);
    let gone = eventually(Duration::from_secs(60), || {
        let out = server.kubectl(&["get", "pod", "big", "-o", "json"]);
        (!out.status.success()).then_some(())
    });
    assert!(gone.is_some(), "pod big was never removed\n{}", server.log());

    // A pod with that terminationGracePeriodSeconds killed the namespace finalizer: every namespace deletion in the
    // cluster hung. Both namespaces now go.
    for ns in ["huge", "plain"] {
        server.kubectl_ok(&["create", "namespace", ns]);
    }
    let huge = format!(
        "  terminationGracePeriodSeconds: 9223372036854775807\n  containers:\n  - name: app\n    image: {IMAGE}\n"
    );
    server.kubectl_stdin_ok(&["apply", "-n", "huge", "-f", "-"], &pod_yaml(&server, "p", &huge));
    server.kubectl_ok(&["create", "configmap", "cm", "-n", "plain", "--from-literal=a=b"]);
    let running = eventually(Duration::from_secs(60), || {
        let out = server.kubectl(&["get", "pod", "p", "-n", "huge", "-o", "jsonpath={.status.phase}"]);
        (support::text(&out.stdout) == "Running").then_some(())
    });
    assert!(running.is_some(), "pod p never ran");
    server.kubectl_ok(&["delete", "namespace", "huge", "--wait=false"]);
    server.kubectl_ok(&["delete", "namespace", "plain", "--wait=false"]);
    for ns in ["plain", "huge"] {
        let gone = eventually(Duration::from_secs(90), || {
            (!server.kubectl(&["get", "namespace", ns]).status.success()).then_some(())
        });
        assert!(gone.is_some(), "namespace {ns} never went away\n{}", server.log());
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn a_pod_whose_host_port_is_taken_backs_off_under_one_event() {
    let server = Server::start_with_agent();
    // Something else on the host holds the port (on a loopback address of its own, never an external one).
    let taken = std::net::TcpListener::bind("127.0.0.7:0").expect("bind 127.0.0.7");
    let port = taken.local_addr().expect("addr").port();
    let spec = format!(
        "  containers:\n  - name: app\n    image: {IMAGE}\n    ports:\n    - containerPort: 8080\n      \
         hostPort: {port}\n      hostIP: 127.0.0.7\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &pod_yaml(&server, "busy", &spec));

    // The first failure and an immediate retry, then 10 s of back-off: in 15 s at most three sandboxes (it was ~5 a
    // second, with a new Event each).
    let events = |server: &Server| -> Vec<Value> {
        let out = server.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=busy,reason=FailedCreatePodSandBox",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&out).expect("event list");
        list["items"].as_array().cloned().unwrap_or_default()
    };
    let first = eventually(Duration::from_secs(60), || (!events(&server).is_empty()).then_some(()));
    assert!(first.is_some(), "no FailedCreatePodSandBox event\n{}", server.log());
    std::thread::sleep(Duration::from_secs(15));
    let items = events(&server);
    assert_eq!(items.len(), 1, "repeats fold into one Event: {items:#?}");
    let count = items[0]["count"].as_i64().unwrap_or(0);
    assert!(
        (1..=4).contains(&count),
        "{count} sandbox failures in ~15 s: {items:#?}"
    );
    let message = items[0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Failed to create pod sandbox: "), "{message}");
    let pod = pod_json(&server, "busy");
    assert_eq!(pod["status"]["phase"], "Pending", "{pod:#}");
    drop(taken);
}
