//! The pod manager: one worker task per Pod bound to this node, fed by a watch on the API server and by Docker's
//! event stream.
//!
//! The manager only routes. It watches Pods with `spec.nodeName=<node>` and hands each object to the worker owning
//! its uid (starting one for a new pod); it turns each container event from Docker (start, die, oom, …) into a poke
//! for the worker of the pod the container's labels name, which is how a container exit reaches the Pod status in
//! milliseconds. When the first list after a (re)start is complete it removes containers of pods that no longer
//! exist. All decisions about containers are the workers' ([`worker`]).

pub mod backoff;
pub mod env;
pub mod spec;
pub mod status;
mod subpath;
mod volumes;
mod worker;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerRuntime, RuntimeEventKind};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::{mpsc, watch};

use crate::config::AgentConfig;
use crate::events::Recorder;
use crate::labels;

pub use worker::Signal;

/// What every pod worker shares.
pub struct Context {
    pub client: kube::Client,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub config: AgentConfig,
    pub recorder: Recorder,
    /// [`AgentConfig::parallel_starts`] permits, taken by a pod worker while it creates and starts containers.
    pub start_slots: Arc<tokio::sync::Semaphore>,
}

/// Runs pods until `shutdown` flips to true, starting the manager again (after a second) if it panics: a new
/// manager relists the node's pods and adopts their containers, as after an agent restart.
pub async fn supervise(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    loop {
        match AssertUnwindSafe(run(ctx.clone(), shutdown.clone()))
            .catch_unwind()
            .await
        {
            Ok(()) => return,
            Err(panic) => tracing::error!(panic = %panic_message(&panic), "pod manager panicked; starting it again"),
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::time::sleep(WORKER_RESTART_INITIAL).await;
    }
}

/// Runs pods until `shutdown` flips to true. Containers are left running on shutdown: a restarted agent adopts them.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let node = ctx.config.node_name.clone();
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut pods = watcher(api, config).default_backoff().boxed();
    let mut runtime_events = ctx.runtime.events(&labels::for_node(&node));
    // When the event stream was last known to be alive: a new subscription starts there (less a margin for the
    // engine's clock and delivery), so the engine replays what happened while it was broken.
    let mut alive_at = chrono::Utc::now();
    let mut workers: HashMap<String, mpsc::UnboundedSender<Signal>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listing: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            event = pods.next() => match event {
                Some(Ok(watcher::Event::Apply(pod))) => dispatch(&ctx, &mut workers, &done_tx, pod),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.as_ref()) {
                        seen.insert(uid.clone());
                    }
                    dispatch(&ctx, &mut workers, &done_tx, pod);
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if let Some(tx) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                        let _ = tx.send(Signal::Deleted);
                    }
                }
                Some(Ok(watcher::Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitDone)) => {
                    // Pods deleted while the watch was down never get a Delete event: the fresh list is the truth.
                    let seen = listing.take().unwrap_or_default();
                    for (uid, tx) in &workers {
                        if !seen.contains(uid) {
                            let _ = tx.send(Signal::Deleted);
                        }
                    }
                    // A worker still running for a pod missing from the list terminates it and removes its
                    // directory itself, after its containers are gone; orphan removal leaves those alone.
                    let workers_now: HashSet<String> = workers.keys().cloned().collect();
                    tokio::spawn(remove_orphans(ctx.clone(), seen, workers_now, chrono::Utc::now()));
                }
                Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                None => break,
            },
            event = runtime_events.next() => match event {
                Some(Ok(event)) => {
                    alive_at = chrono::Utc::now();
                    if let Some(tx) = event.labels.get(labels::POD_UID).and_then(|uid| workers.get(uid)) {
                        let signal = match event.kind {
                            RuntimeEventKind::Oom => Signal::Oom(event.container_id),
                            _ => Signal::Poke,
                        };
                        let _ = tx.send(signal);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "container event stream failed; resubscribing");
                    runtime_events = resubscribe(&ctx, &workers, alive_at).await;
                }
                None => runtime_events = resubscribe(&ctx, &workers, alive_at).await,
            },
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
            }
        }
    }
}

fn dispatch(
    ctx: &Arc<Context>,
    workers: &mut HashMap<String, mpsc::UnboundedSender<Signal>>,
    done: &mpsc::UnboundedSender<String>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else { return };
    if let Some(tx) = workers.get(&uid) {
        if tx.send(Signal::Pod(Box::new(pod.clone()))).is_ok() {
            return;
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    workers.insert(uid.clone(), tx);
    let done = done.clone();
    let ctx = ctx.clone();
    tokio::spawn(async move {
        supervise_worker(ctx, pod, worker::Inbox::new(rx)).await;
        let _ = done.send(uid);
    });
}

/// The first pause before a pod worker that panicked is started again; it doubles up to [`WORKER_RESTART_MAX`].
const WORKER_RESTART_INITIAL: Duration = Duration::from_secs(1);
const WORKER_RESTART_MAX: Duration = Duration::from_secs(60);

/// Runs one pod's worker until it is done. A worker that panics is logged and started again from the newest Pod
/// object (workers keep no state that matters: container labels carry it), after a pause that grows while it
/// keeps panicking, so one bad pod neither stops nor starves the node's other pods.
async fn supervise_worker(ctx: Arc<Context>, pod: Pod, mut inbox: worker::Inbox) {
    let mut pod = pod;
    let mut pause = WORKER_RESTART_INITIAL;
    loop {
        let worker = worker::PodWorker::new(ctx.clone(), pod.clone());
        match AssertUnwindSafe(worker.run(&mut inbox)).catch_unwind().await {
            Ok(()) => return,
            Err(panic) => {
                let message = panic_message(&panic);
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                tracing::error!(pod = %name, panic = %message, "pod worker panicked; starting it again");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(WORKER_RESTART_MAX);
        if let Some(latest) = inbox.latest.take() {
            pod = *latest;
        }
    }
}

/// The text of a caught panic, for the log.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A new event subscription after the old one broke, plus a poke for every worker: a sync relists the pod's
/// containers. The subscription starts a little before the old one was last seen alive, so the engine replays the
/// events of the gap (repeats are harmless): an `oom` reported only there would otherwise leave an OOM-killed
/// container reported as `Error` for good.
async fn resubscribe(
    ctx: &Arc<Context>,
    workers: &HashMap<String, mpsc::UnboundedSender<Signal>>,
    alive_at: chrono::DateTime<chrono::Utc>,
) -> futures::stream::BoxStream<'static, Result<berth_runtime::RuntimeEvent, berth_runtime::RuntimeError>> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    for tx in workers.values() {
        let _ = tx.send(Signal::Poke);
    }
    let since = alive_at - chrono::TimeDelta::seconds(1);
    ctx.runtime
        .events_since(&labels::for_node(&ctx.config.node_name), since)
}

/// Removes this node's containers whose pod is not in the API server's list (deleted while the agent was down),
/// then those pods' volume directories and subPath mounts.
/// Containers created after the list was complete belong to pods that arrived since, and are left alone.
async fn remove_orphans(
    ctx: Arc<Context>,
    live: HashSet<String>,
    workers: HashSet<String>,
    listed_at: chrono::DateTime<chrono::Utc>,
) {
    let containers = match ctx
        .runtime
        .list_containers(&labels::for_node(&ctx.config.node_name))
        .await
    {
        Ok(containers) => containers,
        Err(error) => {
            tracing::warn!(%error, "listing containers for orphan removal failed");
            return;
        }
    };
    for c in containers {
        let Some(uid) = c.labels.get(labels::POD_UID) else {
            continue;
        };
        if live.contains(uid) || c.created_at >= listed_at {
            continue;
        }
        tracing::info!(container = %c.name, pod_uid = %uid, "removing container of a pod that no longer exists");
        if let Err(error) = ctx.runtime.stop_container(&c.id, None, Duration::from_secs(2)).await {
            tracing::warn!(%error, container = %c.name, "stopping orphan failed");
        }
        if let Err(error) = ctx.runtime.remove_container(&c.id).await {
            tracing::warn!(%error, container = %c.name, "removing orphan failed");
        }
    }
    let keep: HashSet<String> = live.union(&workers).cloned().collect();
    volumes::remove_orphans(&ctx, &keep, listed_at.into()).await;
}
