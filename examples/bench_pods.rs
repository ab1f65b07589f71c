//! `just bench-pods`: how fast the agent turns a Pod into a running, ready container, against the floor set by
//! Docker itself, measured in one run on one machine so the ratio is meaningful.
//!
//! 1. Baseline: raw container create + start of the workload image on the pod bridge network, straight through
//!    bollard (the agent's own runtime code), 50 one after another and 50 in batches of 10.
//!    Also the same two containers a pod consists of, straight through bollard: a sandbox on the bridge network,
//!    then an app container joining its namespaces ("raw pod"). That is the floor of the sandbox design itself, so
//!    berth / raw pod is the agent's own overhead and raw pod / raw what the design costs on this engine.
//! 2. berth: an in-process API server and agent; the same number of Pods (with `nodeName`, image present locally)
//!    created through the API, timed from the create call until a watch shows the Pod Running and Ready.
//! 3. Exit detection: pods whose container exits after a second; the delay from Docker's recorded finish time to the
//!    watch event showing the container terminated.
//!
//! `BENCH_PARALLEL_STARTS=N` overrides the agent's `parallel_starts` (how many pods create and start containers at
//! once; `berth server --parallel-starts`), to compare settings.
//!
//! Prints medians and 99th percentiles and the ratio berth/raw. Everything it creates in Docker carries the label
//! `berth.node=bench-<pid>` or `berth.bench=<pid>` and is removed at the end.

#![allow(clippy::disallowed_methods)] // A benchmark measures real time.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_runtime::docker::DockerRuntime;
use berth_runtime::{ContainerConfig, ContainerRuntime, NetworkMode};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;

const SEQUENTIAL: usize = 50;
const BATCHES: usize = 5;
const BATCH: usize = 10;
const EXITS: usize = 20;

#[tokio::main]
async fn main() -> Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("crypto provider already installed"))?;
    let dir = tempfile::tempdir()?;
    let pid = std::process::id();
    let node = format!("bench-{pid}");
    let runtime = Arc::new(DockerRuntime::connect().await.context("connecting to Docker")?);

    // The server and agent, in this process.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let config = berth_apiserver::Config::new(dir.path().join("server"), "127.0.0.1:0".parse()?);
    let api = tokio::spawn(berth_apiserver::run_notify(
        config,
        Some(ready_tx),
        stopped(stop_rx.clone()),
    ));
    let ready = ready_rx.await.context("API server failed to start")?;
    let client = berth_agent::api_client(&ready.url, &ready.ca_pem, &ready.token)?;
    let mut agent_config = berth_agent::AgentConfig::new(&node, IpAddr::from([127, 0, 0, 1]), dir.path().join("agent"));
    agent_config.port = 0;
    if let Some(n) = std::env::var("BENCH_PARALLEL_STARTS").ok().and_then(|n| n.parse().ok()) {
        agent_config.parallel_starts = n;
    }
    println!("agent parallel_starts = {}", agent_config.parallel_starts);
    let agent = tokio::spawn(berth_agent::run(
        agent_config,
        client.clone(),
        runtime.clone(),
        ready.token.clone(),
        stopped(stop_rx.clone()),
    ));
    wait_node_ready(&client, &node).await?;

    let result = measure(&client, runtime.as_ref(), &node, pid).await;

    let _ = stop_tx.send(true);
    let _ = agent.await;
    let _ = api.await;
    cleanup(
        runtime.as_ref(),
        &[("berth.node", node.as_str()), ("berth.bench", &pid.to_string())],
    )
    .await;
    result
}

async fn measure(client: &kube::Client, runtime: &DockerRuntime, node: &str, pid: u32) -> Result<()> {
    println!("pod start latency: create → Running and Ready (image present locally)\n");
    let (raw_seq, raw_batch) = sequential_and_batched(runtime, pid, Shape::Container).await?;
    let (raw_pod_seq, raw_pod_batch) = sequential_and_batched(runtime, pid, Shape::Pod).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut berth_seq = Vec::new();
    for i in 0..SEQUENTIAL {
        berth_seq.extend(berth_start(&pods, node, &[format!("seq-{i}")]).await?);
    }
    delete_all(&pods).await?;
    let mut berth_batch = Vec::new();
    for b in 0..BATCHES {
        let names: Vec<String> = (0..BATCH).map(|i| format!("batch-{b}-{i}")).collect();
        berth_batch.extend(berth_start(&pods, node, &names).await?);
    }
    delete_all(&pods).await?;

    report("sequential", &raw_seq, &berth_seq);
    report(&format!("{BATCH} at a time"), &raw_batch, &berth_batch);
    println!("\nthe same against the pod's own two containers made straight through bollard (raw pod)\n");
    report_pod("sequential", &raw_pod_seq, &raw_seq, &berth_seq);
    report_pod(&format!("{BATCH} at a time"), &raw_pod_batch, &raw_batch, &berth_batch);

    let exits = exit_latencies(&pods, runtime, node).await?;
    delete_all(&pods).await?;
    let (p50, p99) = percentiles(&exits);
    println!(
        "\ncontainer exit → pod status (Docker's finish time to the watch event), {} pods: p50 {:.1} ms, p99 {:.1} ms",
        exits.len(),
        ms(p50),
        ms(p99)
    );
    Ok(())
}

/// What a raw baseline starts: one container, or a pod's two containers.
#[derive(Clone, Copy)]
enum Shape {
    Container,
    Pod,
}

/// `SEQUENTIAL` raw starts one after another, then `BATCHES` batches of `BATCH` at once; removes them after each.
async fn sequential_and_batched(
    runtime: &DockerRuntime,
    pid: u32,
    shape: Shape,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let start = |name: String| async move {
        match shape {
            Shape::Container => raw_start(runtime, pid, &name).await,
            Shape::Pod => raw_pod(runtime, pid, &name).await,
        }
    };
    let mut sequential = Vec::new();
    for i in 0..SEQUENTIAL {
        sequential.push(start(format!("seq-{i}")).await?);
    }
    cleanup(runtime, &[("berth.bench", &pid.to_string())]).await;
    let mut batched = Vec::new();
    for b in 0..BATCHES {
        let starts = (0..BATCH).map(|i| start(format!("batch-{b}-{i}")));
        for r in futures::future::join_all(starts).await {
            batched.push(r?);
        }
    }
    cleanup(runtime, &[("berth.bench", &pid.to_string())]).await;
    Ok((sequential, batched))
}

/// One raw create + start through bollard, like the agent's app container but without a pod around it.
async fn raw_start(runtime: &DockerRuntime, pid: u32, name: &str) -> Result<Duration> {
    let config = bench_container(pid, name, on_bridge(name));
    let started = Instant::now();
    let id = runtime.create_container(&config).await?;
    runtime.start_container(&id).await?;
    Ok(started.elapsed())
}

/// A pod's two containers without berth: a sandbox on the bridge network, then an app container joining it, each
/// created and started in turn (a pod has to wait for its sandbox before its app container can start).
async fn raw_pod(runtime: &DockerRuntime, pid: u32, name: &str) -> Result<Duration> {
    let sandbox = ContainerConfig {
        cmd: Some(vec!["pause".to_string()]),
        ..bench_container(pid, &format!("{name}-pod"), on_bridge(name))
    };
    let started = Instant::now();
    let infra = runtime.create_container(&sandbox).await?;
    runtime.start_container(&infra).await?;
    let app = bench_container(pid, &format!("{name}-app"), NetworkMode::Container { id: infra });
    let id = runtime.create_container(&app).await?;
    runtime.start_container(&id).await?;
    Ok(started.elapsed())
}

/// A container of the workload image, labelled for the clean-up.
fn bench_container(pid: u32, name: &str, network: NetworkMode) -> ContainerConfig {
    ContainerConfig {
        name: format!("berth-bench-{pid}-{name}"),
        image: berth_image::WORKLOAD_IMAGE.to_string(),
        labels: BTreeMap::from([("berth.bench".to_string(), pid.to_string())]),
        network,
        ..Default::default()
    }
}

fn on_bridge(hostname: &str) -> NetworkMode {
    NetworkMode::Bridge {
        network: "berth".to_string(),
        hostname: hostname.to_string(),
    }
}

/// Creates the pods at once and returns, per pod, the time from its create call to the watch event showing it
/// Running and Ready.
async fn berth_start(pods: &Api<Pod>, node: &str, names: &[String]) -> Result<Vec<Duration>> {
    let selector = format!("bench-batch={}", names[0]);
    let mut events = watcher(pods.clone(), watcher::Config::default().labels(&selector)).boxed();
    // Wait for the watch to be established before creating anything.
    while let Some(event) = events.next().await {
        if matches!(event?, watcher::Event::InitDone) {
            break;
        }
    }
    let mut created = HashMap::new();
    for name in names {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"bench-batch": names[0]}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": berth_image::WORKLOAD_IMAGE}]}
        }))?;
        created.insert(name.clone(), Instant::now());
        pods.create(&PostParams::default(), &pod).await?;
    }
    let mut done = HashMap::new();
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(deadline);
    while done.len() < names.len() {
        tokio::select! {
            _ = &mut deadline => anyhow::bail!("pods {names:?} not ready within 120 s"),
            event = events.next() => {
                let Some(watcher::Event::Apply(pod)) = event.transpose()? else { continue };
                let name = pod.metadata.name.clone().unwrap_or_default();
                if ready(&pod) && !done.contains_key(&name) {
                    if let Some(t) = created.get(&name) {
                        done.insert(name, t.elapsed());
                    }
                }
            }
        }
    }
    Ok(done.into_values().collect())
}

fn ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Pods whose only container exits after a second; for each, the time from Docker's FinishedAt to the watch event
/// showing the container terminated.
async fn exit_latencies(pods: &Api<Pod>, runtime: &DockerRuntime, node: &str) -> Result<Vec<Duration>> {
    let mut events = watcher(pods.clone(), watcher::Config::default().labels("bench-exit=true")).boxed();
    while let Some(event) = events.next().await {
        if matches!(event?, watcher::Event::InitDone) {
            break;
        }
    }
    let mut latencies = Vec::new();
    for i in 0..EXITS {
        let name = format!("exit-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"bench-exit": "true"}},
            "spec": {"nodeName": node, "restartPolicy": "Never",
                     "containers": [{"name": "app", "image": berth_image::WORKLOAD_IMAGE, "args": ["sleep", "1"]}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), events.next())
                .await
                .context("no pod event within 60 s")?;
            let Some(watcher::Event::Apply(pod)) = event.transpose()? else {
                continue;
            };
            if pod.metadata.name.as_deref() != Some(name.as_str()) {
                continue;
            }
            let seen = chrono::Utc::now();
            let terminated = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.as_ref())
                .cloned();
            let Some(terminated) = terminated else { continue };
            let id = terminated
                .container_id
                .unwrap_or_default()
                .trim_start_matches("docker://")
                .to_string();
            let info = runtime
                .inspect_container(&id)
                .await?
                .context("exited container vanished")?;
            if let berth_runtime::ContainerState::Exited {
                finished_at: Some(finished),
                ..
            } = info.state
            {
                latencies.push((seen - finished).to_std().unwrap_or_default());
            }
            break;
        }
    }
    Ok(latencies)
}

async fn delete_all(pods: &Api<Pod>) -> Result<()> {
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    for name in &names {
        pods.delete(name, &DeleteParams::default()).await?;
    }
    for _ in 0..600 {
        if pods.list(&ListParams::default()).await?.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("pods not deleted within 60 s")
}

async fn wait_node_ready(client: &kube::Client, node: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for _ in 0..300 {
        if let Ok(n) = nodes.get(node).await {
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("node {node} not ready within 30 s")
}

async fn cleanup(runtime: &DockerRuntime, labels: &[(&str, &str)]) {
    for (k, v) in labels {
        let selector = BTreeMap::from([(k.to_string(), v.to_string())]);
        if let Ok(containers) = runtime.list_containers(&selector).await {
            for c in containers {
                let _ = runtime.remove_container(&c.id).await;
            }
        }
    }
}

fn percentiles(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report_pod(label: &str, raw_pod: &[Duration], raw: &[Duration], berth: &[Duration]) {
    let p50 = |d: &[Duration]| percentiles(d).0.as_secs_f64();
    let (pod50, pod99) = percentiles(raw_pod);
    println!(
        "{label:>16}: raw pod p50 {:7.1} ms  p99 {:7.1} ms | raw pod / raw {:.2}× | berth / raw pod {:.2}×",
        ms(pod50),
        ms(pod99),
        p50(raw_pod) / p50(raw),
        p50(berth) / p50(raw_pod)
    );
}

fn report(label: &str, raw: &[Duration], berth: &[Duration]) {
    let (raw50, raw99) = percentiles(raw);
    let (b50, b99) = percentiles(berth);
    println!(
        "{label:>16}: raw create+start p50 {:7.1} ms  p99 {:7.1} ms | berth pod p50 {:7.1} ms  p99 {:7.1} ms | ratio p50 {:.2}×",
        ms(raw50),
        ms(raw99),
        ms(b50),
        ms(b99),
        b50.as_secs_f64() / raw50.as_secs_f64()
    );
}
