//! The agent against the fake runtime and a real, in-process API server: the orderings and failures Docker cannot be
//! made to produce on demand. Everything a user sees still goes through the API (the Pod's status and Events).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::fake::FakeRuntime;
use berth_runtime::{ContainerInfo, ContainerRuntime, ContainerState, NetworkMode, RuntimeError};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, PostParams};
use tokio::sync::watch;

struct Cluster {
    client: kube::Client,
    fake: Arc<FakeRuntime>,
    node: String,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// An API server and an agent on node `fake-node`, in this process; the workload image is already "present".
async fn cluster() -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (stop, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let config = berth_apiserver::Config::new(dir.path().join("server"), "127.0.0.1:0".parse().expect("addr"));
    tokio::spawn(berth_apiserver::run_notify(
        config,
        Some(ready_tx),
        stopped(stop_rx.clone()),
    ));
    let ready = ready_rx.await.expect("API server started");
    let client = berth_agent::api_client(&ready.url, &ready.ca_pem, &ready.token).expect("client");

    let fake = Arc::new(FakeRuntime::new());
    fake.add_image(berth_image::WORKLOAD_IMAGE);
    let node = "fake-node".to_string();
    let mut agent = berth_agent::AgentConfig::new(&node, IpAddr::from([127, 0, 0, 1]), dir.path().join("agent"));
    agent.port = 0;
    let runtime: Arc<dyn ContainerRuntime> = fake.clone();
    tokio::spawn(berth_agent::run(
        agent,
        client.clone(),
        runtime,
        ready.token,
        stopped(stop_rx),
    ));
    Cluster {
        client,
        fake,
        node,
        stop,
        _dir: dir,
    }
}

fn pod(node: &str, name: &str, container: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [container]},
    }))
    .expect("pod")
}

/// Polls until the pod is Running with every container ready.
async fn wait_running(pods: &Api<Pod>, name: &str) -> Pod {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pod = pods.get(name).await.expect("get pod");
        let status = pod.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        let ready = status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| cs.iter().all(|c| c.ready));
        if running && ready {
            return pod;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod {name} not running: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pod's (only) app container.
fn app_container(fake: &FakeRuntime) -> ContainerInfo {
    fake.containers()
        .into_iter()
        .find(|c| kind(&c.labels) == "app")
        .expect("app container")
}

fn kind(labels: &BTreeMap<String, String>) -> &str {
    labels.get("berth.container.kind").map(String::as_str).unwrap_or("")
}

#[tokio::test]
async fn a_sandbox_that_fails_to_start_is_reported_and_replaced() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    // The first start is the sandbox's: the app container is created meanwhile, for a sandbox that never runs.
    cluster.fake.fail_next(
        "start_container",
        RuntimeError::Engine {
            operation: "start container",
            message: "no IP addresses available in the network".to_string(),
        },
    );
    let spec = serde_json::json!({"name": "app", "image": berth_image::WORKLOAD_IMAGE});
    pods.create(&PostParams::default(), &pod(&cluster.node, "web", spec))
        .await
        .expect("create");
    let running = wait_running(&pods, "web").await;

    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let reasons: Vec<(String, String)> = events
        .list(&ListParams::default().fields("involvedObject.name=web"))
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(r, m)| r == "FailedCreatePodSandBox" && m.contains("no IP addresses available")),
        "{reasons:?}"
    );

    // What is left is one running sandbox (the second attempt) and one app container joined to it: the app
    // container made for the failed sandbox is gone.
    let containers = cluster.fake.containers();
    assert_eq!(containers.len(), 2, "{containers:?}");
    let infra = containers.iter().find(|c| kind(&c.labels) == "infra").expect("sandbox");
    let app = containers.iter().find(|c| kind(&c.labels) == "app").expect("app");
    assert_eq!(
        infra.labels.get("berth.container.attempt").map(String::as_str),
        Some("1")
    );
    assert!(matches!(infra.state, ContainerState::Running { .. }));
    assert!(matches!(app.state, ContainerState::Running { .. }));
    let joined = cluster.fake.container_config(&app.id).expect("app config").network;
    assert_eq!(joined, NetworkMode::Container { id: infra.id.clone() });
    let status = running.status.expect("status");
    assert_eq!(status.pod_ip, infra.ip_address);
    let app_status = &status.container_statuses.expect("container statuses")[0];
    assert_eq!(app_status.restart_count, 0);
}

#[tokio::test]
async fn a_container_reading_its_pod_ip_gets_the_sandbox_address() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let spec = serde_json::json!({
        "name": "app",
        "image": berth_image::WORKLOAD_IMAGE,
        "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    });
    pods.create(&PostParams::default(), &pod(&cluster.node, "ip", spec))
        .await
        .expect("create");
    let running = wait_running(&pods, "ip").await;
    let pod_ip = running.status.and_then(|s| s.pod_ip).expect("pod IP");

    let app = app_container(&cluster.fake);
    let env = cluster.fake.container_config(&app.id).expect("app config").env;
    assert!(
        env.contains(&("MY_IP".to_string(), pod_ip.clone())),
        "{env:?} lacks MY_IP={pod_ip}"
    );
}

#[tokio::test]
async fn an_oom_event_after_the_exit_still_says_oom_killed() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let mut spec = pod(
        &cluster.node,
        "hungry",
        serde_json::json!({"name": "app", "image": berth_image::WORKLOAD_IMAGE}),
    );
    if let Some(s) = spec.spec.as_mut() {
        s.restart_policy = Some("Never".to_string());
    }
    pods.create(&PostParams::default(), &spec).await.expect("create");
    wait_running(&pods, "hungry").await;
    let app = app_container(&cluster.fake);
    cluster.fake.oom_after_exit(&app.id);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pod = pods.get("hungry").await.expect("get pod");
        let status = pod.status.expect("status");
        let terminated = status
            .container_statuses
            .as_ref()
            .and_then(|cs| cs[0].state.as_ref())
            .and_then(|s| s.terminated.clone());
        if let Some(t) = terminated.filter(|t| t.reason.as_deref() == Some("OOMKilled")) {
            assert_eq!(t.exit_code, 137);
            assert_eq!(status.phase.as_deref(), Some("Failed"));
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no OOMKilled: {:?}",
            status.container_statuses
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_sandbox_that_never_starts_is_retried_with_back_off_under_one_event() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    // Like Docker with the hostPort taken: every sandbox start is refused, naming the attempt's container.
    cluster.fake.refuse_start(|config, id| {
        (config.labels.get("berth.container.kind").map(String::as_str) == Some("infra")).then(|| RuntimeError::Engine {
            operation: "start container",
            message: format!(
                "driver failed programming external connectivity on endpoint {} ({id}): Bind for \
                     127.0.0.1:18080 failed: port is already allocated",
                config.name
            ),
        })
    });
    let spec = serde_json::json!({"name": "app", "image": berth_image::WORKLOAD_IMAGE});
    pods.create(&PostParams::default(), &pod(&cluster.node, "blocked", spec))
        .await
        .expect("create");

    // Each failed sandbox emits create/start/destroy events that used to sync the pod at once: ~5 sandboxes a
    // second. With back-off: the first one, an immediate retry, then nothing for 10 s.
    let sandboxes = || cluster.fake.calls_of("create_container").len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sandboxes() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no retry at all");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let attempts = sandboxes();
    assert!(
        attempts <= 3,
        "{attempts} sandboxes in 6 s: {:?}",
        cluster.fake.calls_of("create_container")
    );

    // The repeats aggregate into one Event whose count is the number of failures.
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let failed: Vec<Event> = events
            .list(&ListParams::default().fields("involvedObject.name=blocked"))
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
            .collect();
        let count = failed.first().and_then(|e| e.count).unwrap_or(0);
        if failed.len() == 1 && count >= 2 {
            let message = failed[0].message.clone().unwrap_or_default();
            assert!(
                message.starts_with("Failed to create pod sandbox: ") && message.contains("port is already allocated"),
                "{message}"
            );
            assert!(count as usize <= attempts, "{count} events for {attempts} attempts");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            failed.iter().map(|e| (e.count, e.message.clone())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pod waits, Pending, rather than failing.
    let pod = pods.get("blocked").await.expect("get");
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
}

#[tokio::test]
async fn a_pod_worker_that_panics_is_started_again_and_other_pods_carry_on() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    // The first start of the app container of pod "bad" panics inside its worker.
    let panicked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = panicked.clone();
    cluster.fake.exit_on_start(move |config| {
        let bad = config.name.starts_with("berth_default_bad_app_");
        if bad && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic in the pod worker");
        }
        None
    });
    for name in ["bad", "good"] {
        let spec = serde_json::json!({"name": "app", "image": berth_image::WORKLOAD_IMAGE});
        pods.create(&PostParams::default(), &pod(&cluster.node, name, spec))
            .await
            .expect("create");
    }
    wait_running(&pods, "good").await;
    // Without supervision the worker stayed dead and the pod never ran (until its object changed).
    wait_running(&pods, "bad").await;
    assert!(panicked.load(std::sync::atomic::Ordering::SeqCst));
}
