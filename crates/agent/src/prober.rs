//! The probe workers of one pod: for each running container, a task per configured probe (startup, liveness,
//! readiness) that runs [`crate::probe::run`] on the probe's schedule, counts consecutive results against the
//! thresholds, and tells the agent what changed.
//!
//! The rules are the kubelet's (kubernetes/kubernetes `pkg/kubelet/prober/worker.go` and `prober_manager.go`):
//! - a probe first runs when its worker starts and then every `periodSeconds`; attempts that fall within
//!   `initialDelaySeconds` of the container's start are skipped;
//! - a result takes effect only after `successThreshold` consecutive successes or `failureThreshold` consecutive
//!   failures; an attempt that could not be run (an `Unknown` outcome, retried up to three times at once like
//!   upstream's `maxProbeRetries`) is thrown away and neither breaks nor extends a run;
//! - `started` is false until the startup probe succeeds (true at once without one); liveness and readiness probes
//!   do not run before that, and once started the startup probe stops;
//! - readiness starts false and follows its probe; without a readiness probe the container is ready as soon as it
//!   has started. A readiness failure never restarts anything;
//! - a liveness or startup result of failure asks for a restart ([`ProbeChange::Restart`]) and that probe stops
//!   until the agent starts workers for the next container attempt.
//!
//! The workers only report: killing and restarting the container (per `restartPolicy`), recording events and writing
//! the Pod status are the agent's job. Timing uses `tokio::time` only, so tests run on a paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use berth_runtime::ContainerRuntime;

use crate::probe::{self, ProbeOutcome, ProbeTarget};

/// Upstream defaults for fields the API server would normally have filled in.
const DEFAULT_PERIOD_SECONDS: i32 = 10;
const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// How often an attempt that could not be run is retried at once before it is given up (`maxProbeRetries`).
const MAX_PROBE_RETRIES: usize = 3;

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// The word that starts the kubelet's event messages: `Liveness`, `Readiness`, `Startup`
    /// (as in "Liveness probe failed: …").
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// Something a probe worker reports about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The container's name in the pod spec.
    pub container: String,
    pub kind: ProbeKind,
    pub change: ProbeChange,
}

/// What happened. The agent turns these into events and status changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeChange {
    /// One attempt failed. Upstream records a Warning event with reason `Unhealthy` and message
    /// `"<Kind> probe failed: <message>"` for every failed attempt, below the threshold or not.
    Failed { message: String },
    /// An attempt could not be run (after the immediate retries). Upstream records an `Unhealthy` Warning
    /// `"<Kind> probe errored and resulted in unknown state: <message>"`; the probe's state does not change.
    Errored { message: String },
    /// The container's readiness changed (readiness probe thresholds, or startup success without a readiness probe).
    ReadyChanged(bool),
    /// The startup probe succeeded: the container counts as started and the other probes begin.
    Started,
    /// The liveness or startup probe reached its failure threshold: the container must be killed (and restarted
    /// per the pod's `restartPolicy`). The message is upstream's `Killing` event text,
    /// `Container <name> failed liveness probe, will be restarted`.
    Restart { message: String },
}

/// The probe workers of one pod. Dropping it stops every worker.
pub struct PodProber {
    runtime: Arc<dyn ContainerRuntime>,
    events: mpsc::UnboundedSender<ProbeEvent>,
    containers: HashMap<String, ContainerProbes>,
}

/// One running container attempt to probe.
#[derive(Debug, Clone)]
pub struct ProbedContainer<'a> {
    /// The container's spec (its probes, ports and env).
    pub container: &'a Container,
    /// The runtime's id of this attempt's container.
    pub container_id: &'a str,
    /// The pod's IP, if it has one.
    pub pod_ip: Option<String>,
    /// How long the container has already been running: zero for a container the agent just started, its age for
    /// one adopted after an agent restart (so an initial delay that has passed is not waited for again).
    pub running_for: Duration,
}

impl PodProber {
    /// A prober that runs probes through `runtime` and reports to `events`.
    pub fn new(runtime: Arc<dyn ContainerRuntime>, events: mpsc::UnboundedSender<ProbeEvent>) -> PodProber {
        PodProber {
            runtime,
            events,
            containers: HashMap::new(),
        }
    }

    /// Starts the workers for a container attempt that is now running, replacing the workers of any earlier attempt
    /// of the same container. Afterwards [`PodProber::readiness`] and [`PodProber::started`] give the initial state
    /// (ready and started at once for a container without probes); events report every later change.
    pub fn start_container(&mut self, target: ProbedContainer<'_>) {
        let name = target.container.name.clone();
        self.stop_container(&name);

        let has_startup = target.container.startup_probe.is_some();
        let has_readiness = target.container.readiness_probe.is_some();
        let (started_tx, _) = watch::channel(!has_startup);
        let state = Arc::new(SharedState {
            started: started_tx,
            ready: AtomicBool::new(!has_startup && !has_readiness),
            has_readiness,
            readiness_trigger: Notify::new(),
        });
        let origin = Instant::now();
        let mut tasks = Vec::new();
        for (kind, spec) in [
            (ProbeKind::Startup, &target.container.startup_probe),
            (ProbeKind::Liveness, &target.container.liveness_probe),
            (ProbeKind::Readiness, &target.container.readiness_probe),
        ] {
            let Some(spec) = spec.clone() else { continue };
            let worker = Worker {
                kind,
                spec,
                container: target.container.clone(),
                container_id: target.container_id.to_string(),
                pod_ip: target.pod_ip.clone(),
                origin,
                running_for: target.running_for,
                runtime: Arc::clone(&self.runtime),
                events: self.events.clone(),
                state: Arc::clone(&state),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        self.containers.insert(name, ContainerProbes { state, tasks });
    }

    /// Stops the workers of a container (it exited, or the pod is terminating: upstream stops liveness and startup
    /// probes on deletion so a shutting-down container is not killed for failing them). Its readiness and started
    /// state are forgotten and read as false.
    pub fn stop_container(&mut self, name: &str) {
        self.containers.remove(name);
    }

    /// Stops every worker of the pod.
    pub fn stop_all(&mut self) {
        self.containers.clear();
    }

    /// Whether the container is ready (false for a container without running workers).
    pub fn readiness(&self, name: &str) -> bool {
        self.containers
            .get(name)
            .is_some_and(|c| c.state.ready.load(Ordering::SeqCst))
    }

    /// Whether the container has started: its startup probe succeeded, or it has none (false for a container without
    /// running workers).
    pub fn started(&self, name: &str) -> bool {
        self.containers.get(name).is_some_and(|c| *c.state.started.borrow())
    }
}

impl std::fmt::Debug for PodProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodProber")
            .field("containers", &self.containers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The workers of one container attempt; dropping it aborts them.
struct ContainerProbes {
    state: Arc<SharedState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What a container attempt's workers share.
struct SharedState {
    /// Startup gate: liveness and readiness workers wait for `true`.
    started: watch::Sender<bool>,
    ready: AtomicBool,
    has_readiness: bool,
    /// Wakes the readiness worker as soon as the container has started, instead of at its next tick (upstream
    /// triggers a readiness run when the status manager first sees the container started).
    readiness_trigger: Notify,
}

struct Worker {
    kind: ProbeKind,
    spec: Probe,
    container: Container,
    container_id: String,
    pod_ip: Option<String>,
    /// When the workers started, on the tokio clock.
    origin: Instant,
    /// How long the container had been running at `origin`.
    running_for: Duration,
    runtime: Arc<dyn ContainerRuntime>,
    events: mpsc::UnboundedSender<ProbeEvent>,
    state: Arc<SharedState>,
}

/// The last effective result and how many times in a row it came.
#[derive(Default)]
struct Run {
    last_success: Option<bool>,
    count: i32,
}

impl Worker {
    async fn run(self) {
        let period = Duration::from_secs(positive_or(self.spec.period_seconds, DEFAULT_PERIOD_SECONDS));
        let mut ticker = tokio::time::interval(period);
        // A slow attempt delays the next one rather than causing a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut started = self.state.started.subscribe();
        let mut run = Run::default();
        loop {
            if self.kind == ProbeKind::Readiness {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = self.state.readiness_trigger.notified() => {}
                }
            } else {
                ticker.tick().await;
            }
            let is_started = *started.borrow_and_update();
            match (self.kind, is_started) {
                // Once started, the startup probe has done its job.
                (ProbeKind::Startup, true) => return,
                // Liveness and readiness wait for startup.
                (ProbeKind::Liveness | ProbeKind::Readiness, false) => continue,
                _ => {}
            }
            // Upstream compares whole seconds since the container started.
            let delay = u64::try_from(self.spec.initial_delay_seconds.unwrap_or(0)).unwrap_or(0);
            if (self.running_for + self.origin.elapsed()).as_secs() < delay {
                continue;
            }
            if !self.attempt(&mut run).await {
                return;
            }
        }
    }

    /// Runs one attempt and applies it. Returns whether the worker keeps going.
    async fn attempt(&self, run: &mut Run) -> bool {
        let target = ProbeTarget {
            pod_ip: self.pod_ip.as_deref(),
            container_id: &self.container_id,
            container: &self.container,
        };
        let mut outcome = ProbeOutcome::Unknown(String::new());
        for _ in 0..MAX_PROBE_RETRIES {
            outcome = probe::run(&self.spec, &target, self.runtime.as_ref()).await;
            if !matches!(outcome, ProbeOutcome::Unknown(_)) {
                break;
            }
        }
        let success = match outcome {
            ProbeOutcome::Success => true,
            ProbeOutcome::Failure(message) => {
                self.emit(ProbeChange::Failed { message });
                false
            }
            ProbeOutcome::Unknown(message) => {
                self.emit(ProbeChange::Errored { message });
                return true;
            }
        };
        if run.last_success == Some(success) {
            run.count = run.count.saturating_add(1);
        } else {
            run.last_success = Some(success);
            run.count = 1;
        }
        let threshold = if success {
            // Validation pins successThreshold to 1 for liveness and startup probes.
            if self.kind == ProbeKind::Readiness {
                positive_or_i32(self.spec.success_threshold, DEFAULT_SUCCESS_THRESHOLD)
            } else {
                1
            }
        } else {
            positive_or_i32(self.spec.failure_threshold, DEFAULT_FAILURE_THRESHOLD)
        };
        if run.count < threshold {
            return true;
        }
        match (self.kind, success) {
            (ProbeKind::Readiness, ready) => {
                if self.state.ready.swap(ready, Ordering::SeqCst) != ready {
                    self.emit(ProbeChange::ReadyChanged(ready));
                }
                true
            }
            (ProbeKind::Startup, true) => {
                self.state.started.send_replace(true);
                self.emit(ProbeChange::Started);
                if self.state.has_readiness {
                    self.state.readiness_trigger.notify_one();
                } else if !self.state.ready.swap(true, Ordering::SeqCst) {
                    self.emit(ProbeChange::ReadyChanged(true));
                }
                false
            }
            (ProbeKind::Liveness, true) => true,
            (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                let probe = if self.kind == ProbeKind::Liveness {
                    "liveness"
                } else {
                    "startup"
                };
                self.emit(ProbeChange::Restart {
                    message: format!(
                        "Container {} failed {probe} probe, will be restarted",
                        self.container.name
                    ),
                });
                // On hold until the agent starts the next attempt's workers (upstream waits for a new container ID).
                false
            }
        }
    }

    fn emit(&self, change: ProbeChange) {
        // The agent dropping its receiver means it is shutting down; there is no one left to tell.
        let _ = self.events.send(ProbeEvent {
            container: self.container.name.clone(),
            kind: self.kind,
            change,
        });
    }
}

fn positive_or(value: Option<i32>, default: i32) -> u64 {
    u64::try_from(positive_or_i32(value, default)).unwrap_or(1)
}

fn positive_or_i32(value: Option<i32>, default: i32) -> i32 {
    value.filter(|v| *v > 0).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    //! Probe scheduling on a paused clock with exec probes scripted through the fake runtime: initial delay,
    //! thresholds, startup gating, readiness that never restarts, and what an adopted container skips.

    use berth_runtime::fake::{ExecScript, FakeRuntime};
    use berth_runtime::{ContainerConfig, RuntimeError};
    use k8s_openapi::api::core::v1::ExecAction;

    use super::*;

    struct Harness {
        runtime: Arc<FakeRuntime>,
        prober: PodProber,
        events: mpsc::UnboundedReceiver<ProbeEvent>,
        id: String,
    }

    impl Harness {
        async fn new() -> Harness {
            let runtime = Arc::new(FakeRuntime::new());
            runtime.add_image("img");
            let config = ContainerConfig {
                name: "c".into(),
                image: "img".into(),
                ..Default::default()
            };
            let id = runtime.create_container(&config).await.unwrap();
            runtime.start_container(&id).await.unwrap();
            let (tx, events) = mpsc::unbounded_channel();
            let prober = PodProber::new(runtime.clone(), tx);
            Harness {
                runtime,
                prober,
                events,
                id,
            }
        }

        fn start(&mut self, container: &Container, running_for: Duration) {
            let id = self.id.clone();
            self.prober.start_container(ProbedContainer {
                container,
                container_id: &id,
                pod_ip: None,
                running_for,
            });
        }

        /// Makes the exec probe running `command` exit with `code` from now on.
        fn script(&self, command: &str, code: i64) {
            self.runtime.script_exec(
                &[command],
                ExecScript {
                    output: vec![],
                    exit_code: code,
                },
            );
        }

        fn execs_of(&self, command: &str) -> usize {
            self.runtime
                .calls_of("exec")
                .iter()
                .filter(|c| c.ends_with(&format!(" {command}")))
                .count()
        }

        fn drain(&mut self) -> Vec<(ProbeKind, ProbeChange)> {
            let mut out = Vec::new();
            while let Ok(event) = self.events.try_recv() {
                assert_eq!(event.container, "app");
                out.push((event.kind, event.change));
            }
            out
        }
    }

    fn exec_probe(command: &str, period: i32, failure_threshold: i32) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec![command.to_string()]),
            }),
            period_seconds: Some(period),
            failure_threshold: Some(failure_threshold),
            ..Default::default()
        }
    }

    fn app() -> Container {
        Container {
            name: "app".into(),
            ..Default::default()
        }
    }

    /// Sleeps on the paused clock to `at` seconds after `origin`; every worker timer due before then has run.
    async fn at(origin: Instant, seconds: f64) {
        tokio::time::sleep_until(origin + Duration::from_secs_f64(seconds)).await;
    }

    fn failed() -> ProbeChange {
        ProbeChange::Failed { message: String::new() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_without_probes_is_started_and_ready_at_once() {
        let mut h = Harness::new().await;
        h.start(&app(), Duration::ZERO);
        assert!(h.prober.started("app"));
        assert!(h.prober.readiness("app"));
        assert!(!h.prober.readiness("other"));
        h.prober.stop_container("app");
        assert!(!h.prober.readiness("app"));
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_asks_for_a_restart_after_failure_threshold_consecutive_failures() {
        let mut h = Harness::new().await;
        h.script("live", 1);
        let container = Container {
            liveness_probe: Some(exec_probe("live", 10, 3)),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        assert!(h.prober.readiness("app"), "no readiness probe: ready once running");

        at(origin, 19.5).await;
        assert_eq!(
            h.drain(),
            vec![(ProbeKind::Liveness, failed()), (ProbeKind::Liveness, failed())]
        );
        at(origin, 20.5).await;
        assert_eq!(
            h.drain(),
            vec![
                (ProbeKind::Liveness, failed()),
                (
                    ProbeKind::Liveness,
                    ProbeChange::Restart {
                        message: "Container app failed liveness probe, will be restarted".into()
                    }
                ),
            ]
        );
        // On hold until the next attempt's workers start.
        at(origin, 100.0).await;
        assert!(h.drain().is_empty());
        assert_eq!(h.execs_of("live"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_in_between_resets_the_failure_count() {
        let mut h = Harness::new().await;
        h.script("live", 1);
        let container = Container {
            liveness_probe: Some(exec_probe("live", 10, 2)),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        at(origin, 5.0).await; // failed once
        h.script("live", 0);
        at(origin, 15.0).await; // succeeded
        h.script("live", 1);
        at(origin, 25.0).await; // failed once again: still below 2
        assert!(!h.drain().iter().any(|(_, c)| matches!(c, ProbeChange::Restart { .. })));
        at(origin, 35.0).await;
        assert!(matches!(
            h.drain().last(),
            Some((ProbeKind::Liveness, ProbeChange::Restart { .. }))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn probes_wait_out_the_initial_delay_on_period_ticks() {
        let mut h = Harness::new().await;
        h.script("live", 0);
        let mut probe = exec_probe("live", 10, 3);
        probe.initial_delay_seconds = Some(15);
        let container = Container {
            liveness_probe: Some(probe),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        at(origin, 19.5).await;
        assert_eq!(h.execs_of("live"), 0, "ticks at 0 and 10 fall within the delay");
        at(origin, 20.5).await;
        assert_eq!(h.execs_of("live"), 1);
        assert!(h.drain().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_adopted_container_does_not_wait_for_an_initial_delay_that_has_passed() {
        let mut h = Harness::new().await;
        h.script("live", 0);
        let mut probe = exec_probe("live", 10, 3);
        probe.initial_delay_seconds = Some(30);
        let container = Container {
            liveness_probe: Some(probe),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::from_secs(60));
        at(origin, 0.5).await;
        assert_eq!(h.execs_of("live"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gates_liveness_and_readiness_until_it_succeeds() {
        let mut h = Harness::new().await;
        h.script("start", 1);
        h.script("live", 0);
        h.script("ready", 0);
        let container = Container {
            startup_probe: Some(exec_probe("start", 1, 30)),
            liveness_probe: Some(exec_probe("live", 10, 3)),
            readiness_probe: Some(exec_probe("ready", 10, 3)),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        assert!(!h.prober.started("app"));
        assert!(!h.prober.readiness("app"));

        at(origin, 5.5).await;
        assert_eq!(h.execs_of("start"), 6);
        assert_eq!(h.execs_of("live") + h.execs_of("ready"), 0);
        assert!(h
            .drain()
            .iter()
            .all(|(kind, change)| *kind == ProbeKind::Startup && *change == failed()));

        h.script("start", 0);
        at(origin, 6.5).await;
        assert!(h.prober.started("app"));
        // Readiness runs as soon as the container has started, not at its next tick.
        assert!(h.prober.readiness("app"));
        assert_eq!(
            h.drain(),
            vec![
                (ProbeKind::Startup, ProbeChange::Started),
                (ProbeKind::Readiness, ProbeChange::ReadyChanged(true))
            ]
        );
        assert_eq!(h.execs_of("ready"), 1);
        // The startup probe has stopped; liveness starts on its next tick.
        at(origin, 10.5).await;
        assert_eq!(h.execs_of("start"), 7);
        assert_eq!(h.execs_of("live"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_startup_probe_that_never_succeeds_asks_for_a_restart() {
        let mut h = Harness::new().await;
        h.script("start", 1);
        let container = Container {
            startup_probe: Some(exec_probe("start", 1, 3)),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        at(origin, 2.5).await;
        let events = h.drain();
        assert_eq!(
            events.last(),
            Some(&(
                ProbeKind::Startup,
                ProbeChange::Restart {
                    message: "Container app failed startup probe, will be restarted".into()
                }
            ))
        );
        assert!(!h.prober.started("app"));
    }

    #[tokio::test(start_paused = true)]
    async fn startup_success_makes_a_container_without_readiness_probe_ready() {
        let mut h = Harness::new().await;
        h.script("start", 0);
        let container = Container {
            startup_probe: Some(exec_probe("start", 1, 3)),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        assert!(!h.prober.readiness("app"));
        at(origin, 0.5).await;
        assert!(h.prober.readiness("app"));
        assert_eq!(
            h.drain(),
            vec![
                (ProbeKind::Startup, ProbeChange::Started),
                (ProbeKind::Startup, ProbeChange::ReadyChanged(true))
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_its_thresholds_and_never_asks_for_a_restart() {
        let mut h = Harness::new().await;
        h.script("ready", 1);
        let mut probe = exec_probe("ready", 10, 3);
        probe.success_threshold = Some(2);
        let container = Container {
            readiness_probe: Some(probe),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);

        at(origin, 100.5).await; // eleven failures
        let events = h.drain();
        assert_eq!(events.len(), 11);
        assert!(
            events.iter().all(|e| *e == (ProbeKind::Readiness, failed())),
            "{events:?}"
        );
        assert!(!h.prober.readiness("app"));

        h.script("ready", 0);
        at(origin, 110.5).await;
        assert!(!h.prober.readiness("app"), "one success is below successThreshold 2");
        at(origin, 120.5).await;
        assert!(h.prober.readiness("app"));
        assert_eq!(h.drain(), vec![(ProbeKind::Readiness, ProbeChange::ReadyChanged(true))]);

        h.script("ready", 1);
        at(origin, 150.5).await;
        assert!(!h.prober.readiness("app"));
        assert_eq!(
            h.drain(),
            vec![
                (ProbeKind::Readiness, failed()),
                (ProbeKind::Readiness, failed()),
                (ProbeKind::Readiness, failed()),
                (ProbeKind::Readiness, ProbeChange::ReadyChanged(false)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_cannot_run_is_retried_then_thrown_away() {
        let mut h = Harness::new().await;
        h.script("live", 1);
        let container = Container {
            liveness_probe: Some(exec_probe("live", 10, 3)),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        at(origin, 15.0).await; // two failures
        for _ in 0..MAX_PROBE_RETRIES {
            h.runtime.fail_next(
                "exec",
                RuntimeError::Engine {
                    operation: "create exec",
                    message: "gone".into(),
                },
            );
        }
        at(origin, 25.0).await; // the third attempt errors three times
        let events = h.drain();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(
            matches!(&events[2], (ProbeKind::Liveness, ProbeChange::Errored { message }) if message.contains("gone"))
        );
        at(origin, 35.0).await; // a third failure: the errored attempt neither reset nor extended the run
        assert!(matches!(
            h.drain().last(),
            Some((ProbeKind::Liveness, ProbeChange::Restart { .. }))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_and_restarting_a_container_replaces_its_workers() {
        let mut h = Harness::new().await;
        h.script("live", 0);
        let container = Container {
            liveness_probe: Some(exec_probe("live", 10, 3)),
            ..app()
        };
        let origin = Instant::now();
        h.start(&container, Duration::ZERO);
        at(origin, 0.5).await;
        assert_eq!(h.execs_of("live"), 1);
        h.start(&container, Duration::ZERO); // a new attempt: the old worker is aborted
        at(origin, 1.0).await;
        assert_eq!(h.execs_of("live"), 2);
        h.prober.stop_container("app");
        at(origin, 100.0).await;
        assert_eq!(h.execs_of("live"), 2);
    }
}
