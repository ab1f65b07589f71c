//! One pod's worker: a level-triggered loop that makes the runtime match the Pod spec and writes back the status.
//!
//! Each sync lists the pod's containers (by label), then, in the kubelet's order: makes sure the infra container
//! holds the pod's network namespace, prepares volumes, runs init containers one at a time to completion, starts
//! app containers, restarts exited ones as `restartPolicy` says (with CrashLoopBackOff), kills containers whose
//! liveness probe failed, and writes the Pod status if it changed. A sync runs on every change of the Pod object, on
//! every Docker event for one of its containers, on probe results, and every few seconds as a safety net.
//!
//! Deleting the pod ends the worker: preStop hooks, the stop signal, SIGKILL after the grace period, removal of the
//! containers and volumes, and finally the deletion of the Pod object with grace 0. The worker keeps no state that
//! matters across agent restarts — container labels carry it — so a restarted agent adopts running pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerConfig, ContainerInfo, ContainerState, ExecOptions};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::env::{self, Downward, Sources};
use super::spec::{self, ContainerPlan, VolumePath};
use super::status::{self, ContainerView, PodFacts};
use super::{volumes, Context};
use crate::events::EventType;
use crate::labels::{self, Kind, PodIdentity, INFRA_NAME};
use crate::prober::{PodProber, ProbeChange, ProbeEvent, ProbedContainer};

/// What the manager tells a worker.
#[derive(Debug)]
pub enum Signal {
    /// A new version of the Pod object.
    Pod(Box<Pod>),
    /// The Pod object is gone from the API server.
    Deleted,
    /// Something happened to one of the pod's containers: sync now.
    Poke,
    /// The kernel's OOM killer hit this container (by id): sync now.
    Oom(String),
}

/// A worker's signals, remembering the newest Pod object and whether the pod is gone, so that a worker started
/// again after a panic picks up where the manager's last word left it rather than from the first object it saw.
pub(super) struct Inbox {
    rx: mpsc::UnboundedReceiver<Signal>,
    /// The newest Pod object delivered.
    pub(super) latest: Option<Box<Pod>>,
    /// Whether [`Signal::Deleted`] was delivered.
    pub(super) deleted: bool,
}

impl Inbox {
    pub(super) fn new(rx: mpsc::UnboundedReceiver<Signal>) -> Inbox {
        Inbox {
            rx,
            latest: None,
            deleted: false,
        }
    }

    async fn recv(&mut self) -> Option<Signal> {
        let signal = self.rx.recv().await?;
        self.note(&signal);
        Some(signal)
    }

    fn try_recv(&mut self) -> Option<Signal> {
        let signal = self.rx.try_recv().ok()?;
        self.note(&signal);
        Some(signal)
    }

    fn note(&mut self, signal: &Signal) {
        match signal {
            Signal::Pod(pod) => self.latest = Some(pod.clone()),
            Signal::Deleted => self.deleted = true,
            Signal::Poke | Signal::Oom(_) => {}
        }
    }
}

/// Why [`PodWorker::sandbox`] has no sandbox to offer.
enum SandboxWait {
    /// Creating it failed, with the Event message.
    Failed(String),
    /// A recent failure's back-off has this long to run.
    BackOff(Duration),
}

/// The kubelet's `FailedCreatePodSandBox` message for an engine error. The attempt's container name and the
/// engine's ids (the container's, its network endpoint's: any 64-hex-digit word, and the container id's 12-digit
/// short form) are taken out so that repeats read the same, and the event recorder folds them into one Event with a
/// count.
fn sandbox_failure(error: &str, name: &str, id: Option<&str>) -> String {
    let mut message = error.replace(name, "sandbox");
    if let Some(id) = id {
        message = message.replace(id, "").replace(id.get(..12).unwrap_or(id), "");
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        out.push_str(&rest[..start]);
        let run = rest[start..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len() - start);
        if run != 64 {
            out.push_str(&rest[start..start + run]);
        }
        rest = &rest[start + run..];
    }
    out.push_str(rest);
    format!("Failed to create pod sandbox: {}", out.replace(" ()", ""))
}

/// Upstream's default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: i64 = 30;
/// The kubelet never gives a container less than this to stop (`minimumGracePeriodInSeconds`), and gives a preStop
/// hook that overran the grace period this much extra.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// How soon a sync that failed for a transient reason (engine hiccup, sandbox creation) is retried.
const RETRY: Duration = Duration::from_secs(2);

pub(super) struct PodWorker {
    ctx: Arc<Context>,
    pod: Pod,
    identity: PodIdentity,
    deleted: bool,
    prober: PodProber,
    probe_events: mpsc::UnboundedReceiver<ProbeEvent>,
    /// The container id each container's probes are watching.
    probing: HashMap<String, String>,
    /// Restart back-off per container name.
    backoff: HashMap<String, Backoff>,
    /// Image pull back-off per image, with the time of the last failure.
    image_backoff: HashMap<String, (Backoff, DateTime<Utc>)>,
    /// Why a container is waiting, as found by the current sync.
    waiting: HashMap<String, (String, String)>,
    /// Containers whose liveness or startup probe asked for a restart, with the reason.
    restart: HashMap<String, String>,
    /// Attempts for which a BackOff event was already recorded.
    backoff_reported: HashSet<(String, u32)>,
    /// The pod failed for good (an init container failed under restartPolicy Never).
    failed: bool,
    /// The pod reached Succeeded or Failed: nothing is started again.
    terminal: bool,
    pod_ip: Option<String>,
    /// A new sandbox being started in the background while the first container is created; yields its IP.
    sandbox_starting: Option<JoinHandle<Result<Option<String>, String>>>,
    /// Containers the engine reported an OOM kill for. Docker can record the exit before the OOM and then never sets
    /// its own flag (the same race as containerd/containerd#8180), so the event is remembered here.
    oom_events: HashSet<String>,
    /// Why the sandbox started by this sync could not run.
    sandbox_failed: Option<String>,
    /// Back-off between sandbox creations, like CrashLoopBackOff: a sandbox that cannot start (a taken hostPort)
    /// was otherwise recreated on every sync, and every engine event of the failed one triggered a sync.
    sandbox_backoff: Backoff,
    /// When the last sandbox failed to be created or started.
    sandbox_failed_at: Option<DateTime<Utc>>,
    /// One of the node's start slots, held from the first container this sync creates until its actions end.
    start_slot: Option<OwnedSemaphorePermit>,
    start_time: DateTime<Utc>,
    last_status: Option<Value>,
}

/// A container spec with its newest instance and the one before.
type Instances = (Container, Option<ContainerInfo>, Option<ContainerInfo>);

enum Next {
    After(Duration),
    Done,
}

impl PodWorker {
    pub(super) fn new(ctx: Arc<Context>, pod: Pod) -> PodWorker {
        let identity = PodIdentity {
            node: ctx.config.node_name.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let (tx, probe_events) = mpsc::unbounded_channel();
        let prober = PodProber::new(ctx.runtime.clone(), tx);
        let status = pod.status.as_ref();
        let terminal = matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        let start_time = status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| crate::time::chrono(t.0))
            .unwrap_or_else(Utc::now);
        let pod_ip = status.and_then(|s| s.pod_ip.clone());
        let oom_events = reported_oom_kills(status);
        PodWorker {
            ctx,
            pod,
            identity,
            deleted: false,
            prober,
            probe_events,
            probing: HashMap::new(),
            backoff: HashMap::new(),
            image_backoff: HashMap::new(),
            waiting: HashMap::new(),
            restart: HashMap::new(),
            backoff_reported: HashSet::new(),
            failed: false,
            terminal,
            pod_ip,
            sandbox_starting: None,
            sandbox_failed: None,
            sandbox_backoff: Backoff::default(),
            sandbox_failed_at: None,
            oom_events,
            start_slot: None,
            start_time,
            last_status: None,
        }
    }

    /// Syncs until the pod is gone. Returns early (leaving containers running) if the manager goes away.
    pub(super) async fn run(mut self, signals: &mut Inbox) {
        if signals.deleted {
            self.deleted = true;
        }
        loop {
            let wait = match self.sync().await {
                Next::Done => return,
                Next::After(wait) => wait,
            };
            tokio::select! {
                signal = signals.recv() => match signal {
                    Some(signal) => self.apply(signal),
                    None => return,
                },
                Some(event) = self.probe_events.recv() => self.on_probe(event),
                _ = tokio::time::sleep(wait) => {}
            }
            // Coalesce whatever else queued up into the one sync.
            while let Some(signal) = signals.try_recv() {
                self.apply(signal);
            }
            while let Ok(event) = self.probe_events.try_recv() {
                self.on_probe(event);
            }
        }
    }

    fn apply(&mut self, signal: Signal) {
        match signal {
            Signal::Pod(pod) => self.pod = *pod,
            Signal::Deleted => self.deleted = true,
            Signal::Poke => {}
            Signal::Oom(id) => {
                self.oom_events.insert(id);
            }
        }
    }

    fn on_probe(&mut self, event: ProbeEvent) {
        let field = self.field_ref(&event.container, Kind::App);
        match event.change {
            ProbeChange::Failed { message } => {
                let what = format!("{} probe failed: {message}", event.kind.as_str());
                self.ctx.recorder.record(&field, EventType::Warning, "Unhealthy", what);
            }
            ProbeChange::Errored { message } => {
                let what = format!(
                    "{} probe errored and resulted in unknown state: {message}",
                    event.kind.as_str()
                );
                self.ctx.recorder.record(&field, EventType::Warning, "Unhealthy", what);
            }
            ProbeChange::Restart { message } => {
                self.restart.insert(event.container, message);
            }
            ProbeChange::ReadyChanged(_) | ProbeChange::Started => {}
        }
    }

    async fn sync(&mut self) -> Next {
        if self.deleted || self.pod.metadata.deletion_timestamp.is_some() {
            self.terminate().await;
            return Next::Done;
        }
        let mut observed = match self.observe().await {
            Some(observed) => observed,
            None => return Next::After(RETRY),
        };
        let mut wake = self.ctx.config.pod_resync_interval;
        self.waiting.clear();
        if self.terminal {
            self.stop_leftovers(&observed).await;
        } else {
            let next = self.act(&observed, &mut wake).await;
            self.start_slot = None;
            if let Some(next) = next {
                return next;
            }
            // Containers were started or stopped: look again so the status shows the result.
            if let Some(fresh) = self.observe().await {
                observed = fresh;
            }
        }
        self.sync_probes(&observed);
        self.write_status(&observed).await;
        self.prune(&observed).await;
        Next::After(wake)
    }

    /// Removes exited instances older than the previous one of each container: the kubelet keeps the last dead
    /// instance for `kubectl logs --previous` and garbage-collects the rest.
    async fn prune(&self, observed: &Observed) {
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for instance in &observed.all {
            let kind = instance.labels.get(labels::CONTAINER_KIND).cloned().unwrap_or_default();
            let name = instance.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default();
            let keep = if kind == Kind::Infra.as_str() { 1 } else { 2 };
            let count = seen.entry((kind, name)).or_default();
            *count += 1;
            if *count > keep && !matches!(instance.state, ContainerState::Running { .. }) {
                if let Err(error) = self.ctx.runtime.remove_container(&instance.id).await {
                    tracing::debug!(%error, container = %instance.name, "removing an old instance failed");
                }
            }
        }
    }

    /// Lists the pod's containers, grouped and newest first. `None` if the runtime failed (retried soon).
    async fn observe(&mut self) -> Option<Observed> {
        match self.ctx.runtime.list_containers(&self.identity.selector()).await {
            Ok(mut containers) => {
                self.oom_events.retain(|id| containers.iter().any(|c| &c.id == id));
                for c in &mut containers {
                    mark_oom_killed(c, &self.oom_events);
                }
                Some(Observed::new(containers))
            }
            Err(error) => {
                tracing::warn!(%error, pod = %self.identity.name, "listing pod containers failed");
                None
            }
        }
    }

    /// One pass over sandbox, volumes, init and app containers. Returns `Some` to end the sync early.
    async fn act(&mut self, observed: &Observed, wake: &mut Duration) -> Option<Next> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".to_string());

        let infra_id = match self.sandbox(observed).await {
            Ok(id) => id,
            Err(SandboxWait::BackOff(left)) => {
                self.write_status(observed).await;
                return Some(Next::After(left));
            }
            Err(SandboxWait::Failed(message)) => {
                let reference = self.pod_ref();
                self.ctx
                    .recorder
                    .record(&reference, EventType::Warning, "FailedCreatePodSandBox", message);
                self.write_status(observed).await;
                return Some(Next::After(RETRY));
            }
        };
        // One read of each ConfigMap and Secret per sync, shared by volumes and environments.
        let mut sources = Sources::default();
        let volumes = match volumes::prepare(&self.ctx, &self.pod, &self.identity, &mut sources).await {
            Ok(volumes) => volumes,
            Err(message) => {
                let reference = self.pod_ref();
                self.ctx
                    .recorder
                    .record(&reference, EventType::Warning, "FailedMount", message);
                self.write_status(observed).await;
                return Some(Next::After(RETRY));
            }
        };

        let mut initialized = true;
        for c in spec.init_containers.iter().flatten() {
            let current = observed.newest(Kind::Init, &c.name);
            match current.map(|i| &i.state) {
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Running { .. }) => {}
                Some(ContainerState::Created) => self.start_existing(c, Kind::Init, current).await,
                Some(ContainerState::Exited { .. }) => {
                    if restart_policy == "Never" {
                        self.failed = true;
                    } else {
                        self.restart_or_wait(c, Kind::Init, current, &infra_id, &volumes, &mut sources, wake)
                            .await;
                    }
                }
                None => self.start(c, Kind::Init, 0, &infra_id, &volumes, &mut sources).await,
            }
            initialized = false;
            break;
        }
        if !initialized || self.failed {
            for c in &spec.containers {
                self.waiting
                    .insert(c.name.clone(), ("PodInitializing".to_string(), String::new()));
            }
            return self.sandbox_failed().await;
        }

        for c in &spec.containers {
            let mut current = observed.newest(Kind::App, &c.name).cloned();
            if let Some(message) = self.restart.remove(&c.name) {
                if let Some(running) = current
                    .as_ref()
                    .filter(|i| matches!(i.state, ContainerState::Running { .. }))
                {
                    let grace = spec.termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE);
                    let field = self.field_ref(&c.name, Kind::App);
                    self.ctx.recorder.record(&field, EventType::Normal, "Killing", message);
                    // Stopping takes up to the grace period: nobody else's start should wait for it.
                    self.start_slot = None;
                    kill(&self.ctx, running, c, grace, self.pod_ip.as_deref()).await;
                    current = self.ctx.runtime.inspect_container(&running.id).await.ok().flatten();
                }
            }
            match current.as_ref().map(|i| &i.state) {
                None => self.start(c, Kind::App, 0, &infra_id, &volumes, &mut sources).await,
                Some(ContainerState::Created) => self.start_existing(c, Kind::App, current.as_ref()).await,
                Some(ContainerState::Running { .. }) => {}
                Some(ContainerState::Exited { exit_code, .. }) => {
                    let restart = match restart_policy.as_str() {
                        "Never" => false,
                        "OnFailure" => *exit_code != 0,
                        _ => true,
                    };
                    if restart {
                        self.restart_or_wait(c, Kind::App, current.as_ref(), &infra_id, &volumes, &mut sources, wake)
                            .await;
                    }
                }
            }
        }
        self.sandbox_failed().await
    }

    /// Waits for a sandbox started by this sync. If it could not start, records why and ends the sync, to be retried
    /// with a new sandbox.
    async fn sandbox_failed(&mut self) -> Option<Next> {
        let message = match self.sandbox_started().await {
            Ok(()) => return None,
            Err(message) => message,
        };
        let reference = self.pod_ref();
        self.ctx
            .recorder
            .record(&reference, EventType::Warning, "FailedCreatePodSandBox", message);
        if let Some(observed) = self.observe().await {
            self.write_status(&observed).await;
        }
        Some(Next::After(RETRY))
    }

    /// Waits for one of the node's start slots ([`crate::AgentConfig::parallel_starts`]), unless this sync holds
    /// one already.
    async fn take_start_slot(&mut self) {
        if self.start_slot.is_none() {
            self.start_slot = self.ctx.start_slots.clone().acquire_owned().await.ok();
        }
    }

    /// Waits until the sandbox being started (if any) runs, and takes its IP. Errors stay until the sync ends.
    async fn sandbox_started(&mut self) -> Result<(), String> {
        if let Some(starting) = self.sandbox_starting.take() {
            match starting.await {
                Ok(Ok(ip)) => self.pod_ip = ip,
                Ok(Err(message)) => self.sandbox_failed = Some(message),
                Err(error) => self.sandbox_failed = Some(format!("Failed to create pod sandbox: {error}")),
            }
            if self.sandbox_failed.is_some() {
                self.sandbox_failed_at = Some(Utc::now());
            }
        }
        match &self.sandbox_failed {
            Some(message) => Err(message.clone()),
            None => Ok(()),
        }
    }

    /// Makes sure the infra container runs or is starting; returns its id.
    ///
    /// A new sandbox is only created here. Starting it (most of a pod's start-up time: the engine sets up the
    /// network namespace) runs in the background, so the first container is created meanwhile; everything that
    /// needs the sandbox running or its IP waits in [`Self::sandbox_started`].
    async fn sandbox(&mut self, observed: &Observed) -> Result<String, SandboxWait> {
        self.sandbox_starting = None;
        self.sandbox_failed = None;
        let newest = observed.newest(Kind::Infra, INFRA_NAME);
        if let Some(infra) = newest.filter(|i| matches!(i.state, ContainerState::Running { .. })) {
            if let Some(ip) = &infra.ip_address {
                self.pod_ip = Some(ip.clone());
            }
            return Ok(infra.id.clone());
        }
        // A sandbox that failed or died recently is not recreated before its back-off passes, however often the pod
        // syncs. As with CrashLoopBackOff the first retry is immediate, then 10 s, doubling up to 5 minutes.
        let now = Utc::now();
        if newest.is_some() && self.sandbox_failed_at.is_none() {
            self.sandbox_failed_at = Some(now);
        }
        if let Some(failed) = self.sandbox_failed_at {
            if let Some(until) = self.sandbox_backoff.blocked_until(failed, now) {
                return Err(SandboxWait::BackOff((until - now).to_std().unwrap_or_default()));
            }
            self.sandbox_backoff.next(now);
            self.sandbox_failed_at = None;
        }
        // A sandbox that died takes the pod's network with it: like the kubelet, start a new one (containers
        // joined to the old namespace are restarted by the normal restart logic once they notice).
        let attempt = newest.map(|i| labels::attempt(&i.labels) + 1).unwrap_or(0);
        if let Some(old) = newest {
            let _ = self.ctx.runtime.remove_container(&old.id).await;
        }
        // Containers created for the old sandbox but never started would join a namespace that is gone.
        for instance in &observed.all {
            if matches!(instance.state, ContainerState::Created) && labels::kind(&instance.labels) != Some(Kind::Infra)
            {
                let _ = self.ctx.runtime.remove_container(&instance.id).await;
            }
        }
        self.take_start_slot().await;
        let config = spec::infra_config(
            &self.identity,
            &self.pod,
            &self.ctx.config.network,
            berth_image::WORKLOAD_IMAGE,
            attempt,
        );
        let id = match self.ctx.runtime.create_container(&config).await {
            Ok(id) => id,
            Err(e) => {
                self.sandbox_failed_at = Some(Utc::now());
                return Err(SandboxWait::Failed(sandbox_failure(&e.to_string(), &config.name, None)));
            }
        };
        let runtime = self.ctx.runtime.clone();
        let infra = id.clone();
        let name = config.name.clone();
        self.sandbox_starting = Some(tokio::spawn(async move {
            runtime
                .start_container(&infra)
                .await
                .map_err(|e| sandbox_failure(&e.to_string(), &name, Some(&infra)))?;
            let info = runtime
                .inspect_container(&infra)
                .await
                .map_err(|e| format!("inspecting sandbox: {e}"))?
                .ok_or_else(|| "sandbox container vanished".to_string())?;
            Ok(info.ip_address)
        }));
        Ok(id)
    }

    /// Restarts an exited container now, or records that it waits in CrashLoopBackOff and when to look again.
    #[allow(clippy::too_many_arguments)]
    async fn restart_or_wait(
        &mut self,
        c: &Container,
        kind: Kind,
        current: Option<&ContainerInfo>,
        infra_id: &str,
        volumes: &BTreeMap<String, VolumePath>,
        sources: &mut Sources,
        wake: &mut Duration,
    ) {
        let now = Utc::now();
        let attempt = current.map(|i| labels::attempt(&i.labels)).unwrap_or(0);
        let finished = match current.map(|i| &i.state) {
            Some(ContainerState::Exited {
                finished_at: Some(t), ..
            }) => *t,
            _ => now,
        };
        let backoff = self.backoff.entry(c.name.clone()).or_default();
        match backoff.blocked_until(finished, now) {
            Some(until) => {
                let delay = backoff.current_delay().as_secs();
                let pod = format!(
                    "{}_{}({})",
                    self.identity.name, self.identity.namespace, self.identity.uid
                );
                self.waiting.insert(
                    c.name.clone(),
                    (
                        "CrashLoopBackOff".to_string(),
                        format!("back-off {delay}s restarting failed container={} pod={pod}", c.name),
                    ),
                );
                if self.backoff_reported.insert((c.name.clone(), attempt)) {
                    let field = self.field_ref(&c.name, kind);
                    let message = format!("Back-off restarting failed container {} in pod {pod}", c.name);
                    self.ctx.recorder.record(&field, EventType::Warning, "BackOff", message);
                }
                let left = (until - now).to_std().unwrap_or_default();
                *wake = (*wake).min(left + Duration::from_millis(10));
            }
            None => {
                backoff.next(now);
                self.start(c, kind, attempt + 1, infra_id, volumes, sources).await;
            }
        }
    }

    /// Creates and starts a new instance of `c`. Failures become the container's waiting reason and an event.
    async fn start(
        &mut self,
        c: &Container,
        kind: Kind,
        attempt: u32,
        infra_id: &str,
        volumes: &BTreeMap<String, VolumePath>,
        sources: &mut Sources,
    ) {
        let field = self.field_ref(&c.name, kind);
        if let Err((reason, message)) = self.ensure_image(c, &field).await {
            self.waiting.insert(c.name.clone(), (reason, message));
            return;
        }
        self.take_start_slot().await;
        if env::needs_pod_ip(c) && self.sandbox_started().await.is_err() {
            return;
        }
        let host_ip = self.ctx.config.node_ip.to_string();
        let downward = Downward {
            pod_ip: self.pod_ip.as_deref(),
            host_ip: &host_ip,
            node_name: &self.identity.node,
        };
        let config = match self
            .container_config(c, kind, attempt, infra_id, volumes, sources, &downward)
            .await
        {
            Ok(config) => config,
            Err(message) => {
                self.ctx
                    .recorder
                    .record(&field, EventType::Warning, "Failed", format!("Error: {message}"));
                self.waiting
                    .insert(c.name.clone(), ("CreateContainerConfigError".to_string(), message));
                return;
            }
        };
        let id = match self.ctx.runtime.create_container(&config).await {
            Ok(id) => id,
            Err(error) => {
                let message = error.to_string();
                self.ctx
                    .recorder
                    .record(&field, EventType::Warning, "Failed", format!("Error: {message}"));
                self.waiting
                    .insert(c.name.clone(), ("CreateContainerError".to_string(), message));
                return;
            }
        };
        self.ctx.recorder.record(
            &field,
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        self.start_id(c, &field, &id).await;
    }

    /// The runtime config for a new instance of `c`: its environment, its subPath mounts prepared (safely, see
    /// `subpath`), then the translation. Errors are `CreateContainerConfigError` messages.
    #[allow(clippy::too_many_arguments)]
    async fn container_config(
        &self,
        c: &Container,
        kind: Kind,
        attempt: u32,
        infra_id: &str,
        volumes: &BTreeMap<String, VolumePath>,
        sources: &mut Sources,
        downward: &Downward<'_>,
    ) -> Result<ContainerConfig, String> {
        let env = env::resolve(&self.ctx.client, sources, &self.pod, c, downward).await?;
        let wanted = spec::sub_paths(c, &env)?;
        let sub_paths = volumes::prepare_sub_paths(&self.ctx, &self.identity, c, volumes, wanted).await?;
        spec::container_config(ContainerPlan {
            identity: &self.identity,
            pod: &self.pod,
            container: c,
            kind,
            attempt,
            infra_id,
            env,
            volumes,
            sub_paths: &sub_paths,
            allow_privileged: self.ctx.config.allow_privileged,
        })
    }

    /// Starts an instance that was created but never started (the agent stopped in between).
    async fn start_existing(&mut self, c: &Container, kind: Kind, current: Option<&ContainerInfo>) {
        if let Some(instance) = current {
            self.take_start_slot().await;
            let field = self.field_ref(&c.name, kind);
            self.start_id(c, &field, &instance.id).await;
        }
    }

    async fn start_id(&mut self, c: &Container, field: &ObjectReference, id: &str) {
        // A container joins the sandbox's namespaces, so the sandbox must run first. If it cannot, the container
        // stays created and is removed with the failed sandbox on the next sync.
        if self.sandbox_started().await.is_err() {
            return;
        }
        match self.ctx.runtime.start_container(id).await {
            Ok(()) => {
                let message = format!("Started container {}", c.name);
                self.ctx.recorder.record(field, EventType::Normal, "Started", message);
            }
            // The runtime keeps the failed instance as exited with its error; the status shows it and the
            // restart policy decides what happens next.
            Err(error) => {
                self.ctx
                    .recorder
                    .record(field, EventType::Warning, "Failed", format!("Error: {error}"));
            }
        }
    }

    /// Applies `imagePullPolicy`: Never uses only a local image, IfNotPresent pulls when missing, Always pulls.
    /// Failed pulls back off like containers do (ErrImagePull, then ImagePullBackOff).
    async fn ensure_image(&mut self, c: &Container, field: &ObjectReference) -> Result<(), (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".to_string());
        let present = match self.ctx.runtime.inspect_image(&image).await {
            Ok(found) => found.is_some(),
            Err(error) => return Err(("ErrImageInspect".to_string(), error.to_string())),
        };
        let recorder = &self.ctx.recorder;
        if policy != "Always" && present {
            let message = format!("Container image {image:?} already present on machine");
            recorder.record(field, EventType::Normal, "Pulled", message);
            return Ok(());
        }
        if policy == "Never" {
            let message = format!("Container image {image:?} is not present with pull policy of Never");
            recorder.record(field, EventType::Warning, "ErrImageNeverPull", message.clone());
            return Err(("ErrImageNeverPull".to_string(), message));
        }
        let now = Utc::now();
        if let Some((backoff, failed_at)) = self.image_backoff.get(&image) {
            if backoff.blocked_until(*failed_at, now).is_some() {
                let message = format!("Back-off pulling image {image:?}");
                recorder.record(field, EventType::Normal, "BackOff", message.clone());
                return Err(("ImagePullBackOff".to_string(), message));
            }
        }
        recorder.record(field, EventType::Normal, "Pulling", format!("Pulling image {image:?}"));
        let started = tokio::time::Instant::now();
        match self.ctx.runtime.pull_image(&image).await {
            Ok(()) => {
                self.image_backoff.remove(&image);
                let message = format!("Successfully pulled image {image:?} in {:?}", started.elapsed());
                recorder.record(field, EventType::Normal, "Pulled", message);
                Ok(())
            }
            Err(error) => {
                let entry = self
                    .image_backoff
                    .entry(image.clone())
                    .or_insert((Backoff::default(), now));
                entry.0.next(now);
                entry.1 = now;
                let message = format!("Failed to pull image {image:?}: {error}");
                recorder.record(field, EventType::Warning, "Failed", message.clone());
                recorder.record(field, EventType::Warning, "Failed", "Error: ErrImagePull");
                Err(("ErrImagePull".to_string(), message))
            }
        }
    }

    /// Starts or stops probe workers so they follow the running instance of each app container.
    fn sync_probes(&mut self, observed: &Observed) {
        let Some(spec) = self.pod.spec.as_ref() else { return };
        for c in &spec.containers {
            let running = observed
                .newest(Kind::App, &c.name)
                .filter(|i| matches!(i.state, ContainerState::Running { .. }) && !self.terminal);
            match running {
                Some(instance) => {
                    if self.probing.get(&c.name) != Some(&instance.id) {
                        let running_for = match instance.state {
                            ContainerState::Running { started_at } => {
                                (Utc::now() - started_at).to_std().unwrap_or_default()
                            }
                            _ => Duration::ZERO,
                        };
                        self.prober.start_container(ProbedContainer {
                            container: c,
                            container_id: &instance.id,
                            pod_ip: self.pod_ip.clone(),
                            running_for,
                        });
                        self.probing.insert(c.name.clone(), instance.id.clone());
                    }
                }
                None => {
                    if self.probing.remove(&c.name).is_some() {
                        self.prober.stop_container(&c.name);
                    }
                }
            }
        }
    }

    /// Computes the status and writes it through `/status` when it changed.
    async fn write_status(&mut self, observed: &Observed) {
        let Some(spec) = self.pod.spec.as_ref() else { return };
        let views = |containers: &[Container], kind: Kind| -> Vec<Instances> {
            containers
                .iter()
                .map(|c| {
                    let mut instances = observed.instances(kind, &c.name).into_iter();
                    (c.clone(), instances.next().cloned(), instances.next().cloned())
                })
                .collect()
        };
        let init = views(spec.init_containers.as_deref().unwrap_or_default(), Kind::Init);
        let app = views(&spec.containers, Kind::App);
        let init_views: Vec<ContainerView<'_>> = init.iter().map(|v| self.view(v, Kind::Init)).collect();
        let app_views: Vec<ContainerView<'_>> = app.iter().map(|v| self.view(v, Kind::App)).collect();
        let sandbox_ready = observed
            .newest(Kind::Infra, INFRA_NAME)
            .is_some_and(|i| matches!(i.state, ContainerState::Running { .. }) && i.ip_address.is_some());
        let host_ip = self.ctx.config.node_ip.to_string();
        let facts = PodFacts {
            restart_policy: spec.restart_policy.as_deref().unwrap_or("Always"),
            pod_ip: self.pod_ip.as_deref(),
            host_ip: &host_ip,
            sandbox_ready,
            failed: self.failed,
            start_time: self.start_time,
        };
        let status = status::pod_status(&facts, &init_views, &app_views, self.pod.status.as_ref(), Utc::now());
        if matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")) && !self.terminal {
            self.terminal = true;
        }
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.identity.namespace);
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(&self.identity.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(pod) => {
                self.pod.status = pod.status;
                self.last_status = Some(status);
            }
            Err(error) => tracing::warn!(%error, pod = %self.identity.name, "writing pod status failed"),
        }
    }

    fn view<'a>(&self, instances: &'a Instances, kind: Kind) -> ContainerView<'a> {
        let (c, current, previous) = instances;
        let running = matches!(current.as_ref().map(|i| &i.state), Some(ContainerState::Running { .. }));
        let is_app = kind == Kind::App;
        ContainerView {
            spec: c,
            current: current.as_ref(),
            previous: previous.as_ref(),
            waiting: self.waiting.get(&c.name).filter(|_| !running || !is_app).cloned(),
            ready: is_app && running && self.prober.readiness(&c.name),
            started: if is_app {
                running && self.prober.started(&c.name)
            } else {
                running
            },
        }
    }

    /// A terminal pod keeps no running containers (the sandbox included).
    async fn stop_leftovers(&self, observed: &Observed) {
        for instance in observed
            .all
            .iter()
            .filter(|i| matches!(i.state, ContainerState::Running { .. }))
        {
            let _ = self.ctx.runtime.stop_container(&instance.id, None, MIN_GRACE).await;
        }
    }

    /// The end of the pod: stop everything within the grace period, clean up, and let the API server forget it.
    async fn terminate(&mut self) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(DEFAULT_GRACE);
        for name in self.probing.drain().map(|(name, _)| name).collect::<Vec<_>>() {
            self.prober.stop_container(&name);
        }
        let observed = self.observe().await.unwrap_or_default();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let all_specs: Vec<(Kind, &Container)> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (Kind::Init, c))
            .chain(spec.containers.iter().map(|c| (Kind::App, c)))
            .collect();
        let kills = all_specs.iter().filter_map(|(kind, c)| {
            let running = observed
                .newest(*kind, &c.name)
                .filter(|i| matches!(i.state, ContainerState::Running { .. }))?;
            let field = self.field_ref(&c.name, *kind);
            self.ctx.recorder.record(
                &field,
                EventType::Normal,
                "Killing",
                format!("Stopping container {}", c.name),
            );
            Some(kill(&self.ctx, running, c, grace, self.pod_ip.as_deref()))
        });
        futures::future::join_all(kills).await;
        for instance in &observed.all {
            if let Err(error) = self.ctx.runtime.remove_container(&instance.id).await {
                tracing::warn!(%error, container = %instance.name, "removing container failed");
            }
        }
        volumes::remove(&self.ctx, &self.identity).await;
        if !self.deleted {
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.identity.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.identity.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&self.identity.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => tracing::warn!(%error, pod = %self.identity.name, "final pod deletion failed"),
            }
        }
        tracing::debug!(pod = %self.identity.name, "pod terminated");
    }

    fn pod_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            namespace: Some(self.identity.namespace.clone()),
            name: Some(self.identity.name.clone()),
            uid: Some(self.identity.uid.clone()),
            resource_version: self.pod.metadata.resource_version.clone(),
            field_path: None,
        }
    }

    fn field_ref(&self, container: &str, kind: Kind) -> ObjectReference {
        let list = if kind == Kind::Init {
            "initContainers"
        } else {
            "containers"
        };
        ObjectReference {
            field_path: Some(format!("spec.{list}{{{container}}}")),
            ..self.pod_ref()
        }
    }
}

/// Stops one running container the kubelet's way: the preStop hook (bounded by the grace period), then the stop
/// signal, then SIGKILL when the rest of the grace period is used up. A hook that overran gets the container 2 s
/// more, and no container gets less than 2 s.
async fn kill(ctx: &Context, instance: &ContainerInfo, c: &Container, grace_seconds: i64, pod_ip: Option<&str>) {
    let grace = Duration::from_secs(u64::try_from(grace_seconds).unwrap_or(0));
    let started = tokio::time::Instant::now();
    if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        if !grace.is_zero() {
            let run = run_hook(ctx, instance, hook, pod_ip, c);
            if tokio::time::timeout(grace, run).await.is_err() {
                tracing::debug!(container = %c.name, "preStop hook did not finish within the grace period");
            }
        }
    }
    let left = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
    if let Err(error) = ctx.runtime.stop_container(&instance.id, None, left).await {
        tracing::warn!(%error, container = %c.name, "stopping container failed");
    }
}

/// Runs a lifecycle hook (exec or httpGet) to completion; failures are logged, as upstream only records them.
async fn run_hook(
    ctx: &Context,
    instance: &ContainerInfo,
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    pod_ip: Option<&str>,
    c: &Container,
) {
    if let Some(exec) = &hook.exec {
        let options = ExecOptions {
            command: exec.command.clone().unwrap_or_default(),
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        match ctx.runtime.exec(&instance.id, &options).await {
            Ok(mut session) => while session.output.next().await.is_some() {},
            Err(error) => tracing::debug!(%error, container = %c.name, "preStop exec failed"),
        }
    } else if let Some(http) = &hook.http_get {
        let probe = k8s_openapi::api::core::v1::Probe {
            http_get: Some(http.clone()),
            timeout_seconds: Some(i32::MAX),
            ..Default::default()
        };
        let target = crate::probe::ProbeTarget {
            pod_ip,
            container_id: &instance.id,
            container: c,
        };
        let outcome = crate::probe::run(&probe, &target, ctx.runtime.as_ref()).await;
        tracing::debug!(?outcome, container = %c.name, "preStop httpGet hook ran");
    }
}

/// The pod's containers as the runtime reports them, newest instance first.
#[derive(Debug, Default)]
struct Observed {
    all: Vec<ContainerInfo>,
}

/// The containers an earlier agent already reported OOMKilled, so an agent restart does not turn them back into
/// `Error` when the engine's flag missed the kill.
fn reported_oom_kills(status: Option<&k8s_openapi::api::core::v1::PodStatus>) -> HashSet<String> {
    let statuses = status.into_iter().flat_map(|s| {
        let init = s.init_container_statuses.iter().flatten();
        init.chain(s.container_statuses.iter().flatten())
    });
    statuses
        .flat_map(|c| [c.state.as_ref(), c.last_state.as_ref()])
        .filter_map(|state| state?.terminated.as_ref())
        .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
        .filter_map(|t| t.container_id.as_deref()?.strip_prefix("docker://"))
        .map(str::to_string)
        .collect()
}

/// Marks `c` OOMKilled if it was SIGKILLed (137) after an OOM event for it. An OOM event alone is not enough: the
/// killer may have picked a child process, and the container went on to exit on its own.
fn mark_oom_killed(c: &mut ContainerInfo, oom_events: &HashSet<String>) {
    if let ContainerState::Exited {
        exit_code: 137,
        oom_killed,
        ..
    } = &mut c.state
    {
        if oom_events.contains(&c.id) {
            *oom_killed = true;
        }
    }
}

impl Observed {
    fn new(mut all: Vec<ContainerInfo>) -> Observed {
        all.sort_by_key(|i| std::cmp::Reverse((labels::attempt(&i.labels), i.created_at)));
        Observed { all }
    }

    fn instances(&self, kind: Kind, name: &str) -> Vec<&ContainerInfo> {
        self.all
            .iter()
            .filter(|i| {
                i.labels.get(labels::CONTAINER_KIND).and_then(|k| Kind::parse(k)) == Some(kind)
                    && i.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(name)
            })
            .collect()
    }

    fn newest(&self, kind: Kind, name: &str) -> Option<&ContainerInfo> {
        self.instances(kind, name).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::sandbox_failure;

    #[test]
    fn sandbox_failures_read_the_same_whatever_the_attempt() {
        let docker = |name: &str, id: &str| {
            format!(
                "driver failed programming external connectivity on endpoint {name} ({id}): Error starting userland \
                 proxy: listen tcp4 127.0.0.7:18080: bind: address already in use"
            )
        };
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let first = sandbox_failure(
            &docker("berth_ns_web_POD_1234abcd_3", &a),
            "berth_ns_web_POD_1234abcd_3",
            None,
        );
        let second = sandbox_failure(
            &docker("berth_ns_web_POD_1234abcd_4", &b),
            "berth_ns_web_POD_1234abcd_4",
            Some(&a),
        );
        assert_eq!(first, second);
        assert_eq!(
            first,
            "Failed to create pod sandbox: driver failed programming external connectivity on endpoint sandbox: Error \
             starting userland proxy: listen tcp4 127.0.0.7:18080: bind: address already in use"
        );
    }
}
