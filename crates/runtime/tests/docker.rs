//! Checks `DockerRuntime` against the local Docker engine: lifecycle, networking, events, logs, exec, attach, stop and
//! pull.
//!
//! Every container and network a test creates carries `berth.test=<unique id>` (networks by a unique name) and is
//! removed by a guard when the test ends, even when it fails. The tests fail, loudly, when Docker is unreachable.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use berth_runtime::docker::DockerRuntime;
use berth_runtime::{
    AttachOptions, ContainerConfig, ContainerRuntime, ContainerState, ExecOptions, LogOptions, NetworkMode, Output,
    RuntimeError, RuntimeEvent, RuntimeEventKind,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// Removes everything a test created, by label and by name, with the docker CLI so it also runs during a panic.
struct Cleanup {
    run_id: String,
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=berth.test={}", self.run_id);
        let listed = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output();
        if let Ok(listed) = listed {
            let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
        for network in &self.networks {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", network])
                .output();
        }
    }
}

/// A test's context: the runtime, its unique label, its cleanup guard.
struct Harness {
    runtime: DockerRuntime,
    run_id: String,
    image: String,
    cleanup: Cleanup,
}

impl Harness {
    async fn new(test: &str) -> Harness {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let run_id = format!("rt-{test}-{}-{nanos:x}", std::process::id());
        let cleanup = Cleanup {
            run_id: run_id.clone(),
            networks: Vec::new(),
        };
        let runtime = match DockerRuntime::connect().await {
            Ok(runtime) => runtime,
            Err(e) => panic!("these tests need the local Docker engine, which is unreachable: {e}"),
        };
        if let Err(e) = runtime.version().await {
            panic!("these tests need the local Docker engine, which does not answer: {e}");
        }
        let image = load_workload_image(&runtime).await;
        Harness {
            runtime,
            run_id,
            image,
            cleanup,
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("berth.test".to_string(), self.run_id.clone())])
    }

    /// A container of the workload image, labelled for this run, running `cmd` (the image's default entrypoint).
    fn config(&self, name: &str, cmd: &[&str]) -> ContainerConfig {
        let mut labels = self.labels();
        labels.insert("berth.container.name".into(), name.into());
        ContainerConfig {
            name: format!("{}-{name}", self.run_id),
            image: self.image.clone(),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            labels,
            ..Default::default()
        }
    }

    async fn run(&self, config: &ContainerConfig) -> String {
        let id = self.runtime.create_container(config).await.unwrap();
        self.runtime.start_container(&id).await.unwrap();
        id
    }

    /// A network only this test uses; removed by the guard.
    async fn network(&mut self) -> String {
        let name = format!("berth-{}", self.run_id);
        self.cleanup.networks.push(name.clone());
        self.runtime.ensure_network(&name, None).await.unwrap();
        name
    }
}

/// Loads the project's workload image (a `docker load` of the tarball berth-image builds) and returns its reference.
async fn load_workload_image(runtime: &DockerRuntime) -> String {
    let image = berth_image::workload_image();
    // Load unless this very image (by id) is there already; an older build under the same tag is replaced.
    let present = runtime.inspect_image(&image.reference).await.unwrap();
    if present.is_none_or(|info| info.id != image.id) {
        runtime.import_image(Bytes::from(image.bytes)).await.unwrap();
    }
    let info = runtime
        .inspect_image(&image.reference)
        .await
        .unwrap()
        .expect("workload image present after import");
    assert!(info.repo_tags.contains(&image.reference), "{info:?}");
    assert_eq!(info.id, image.id, "the loaded image is the one berth-image built");
    image.reference
}

async fn next_event(events: &mut BoxStream<'static, Result<RuntimeEvent, RuntimeError>>) -> RuntimeEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the event stream stays open")
        .expect("no event stream error")
}

async fn collect(stream: BoxStream<'static, Result<Output, RuntimeError>>) -> (String, String) {
    let mut stdout = String::new();
    let mut stderr = String::new();
    let chunks: Vec<Output> = stream.map(Result::unwrap).collect().await;
    for chunk in chunks {
        match chunk {
            Output::Stdout(b) => stdout.push_str(&String::from_utf8_lossy(&b)),
            Output::Stderr(b) => stderr.push_str(&String::from_utf8_lossy(&b)),
        }
    }
    (stdout, stderr)
}

async fn wait_exited(runtime: &DockerRuntime, id: &str) -> ContainerState {
    for _ in 0..100 {
        let state = runtime.inspect_container(id).await.unwrap().unwrap().state;
        if matches!(state, ContainerState::Exited { .. }) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("container {id} did not exit");
}

#[tokio::test]
async fn version_reports_the_engine_in_kubernetes_terms() {
    let h = Harness::new("version").await;
    let version = h.runtime.version().await.unwrap();
    assert!(version.runtime_version.starts_with("docker://"), "{version:?}");
    assert_eq!(version.operating_system, "linux");
    assert!(
        ["amd64", "arm64"].contains(&version.architecture.as_str()),
        "{version:?}"
    );
    assert!(version.cpus > 0 && version.memory_bytes > 0, "{version:?}");
    assert!(
        !version.kernel_version.is_empty() && !version.os_image.is_empty(),
        "{version:?}"
    );
}

#[tokio::test]
async fn pod_containers_share_the_infra_network_and_report_its_address() {
    let mut h = Harness::new("net").await;
    let network = h.network().await;
    // Ensuring an existing network again is a no-op.
    h.runtime.ensure_network(&network, None).await.unwrap();

    let mut infra = h.config("infra", &["pause"]);
    infra.network = NetworkMode::Bridge {
        network: network.clone(),
        hostname: "pod-a".into(),
    };
    let infra_id = h.run(&infra).await;
    let info = h.runtime.inspect_container(&infra_id).await.unwrap().unwrap();
    assert_eq!(info.id, infra_id);
    assert_eq!(info.name, infra.name);
    assert_eq!(info.image, h.image);
    assert!(info.image_id.starts_with("sha256:"), "{info:?}");
    assert_eq!(info.labels, infra.labels);
    assert!(matches!(info.state, ContainerState::Running { .. }), "{info:?}");
    let ip = info
        .ip_address
        .clone()
        .expect("infra container has an address on its network");

    let mut app = h.config("app", &["sh", "-c", "hostname"]);
    app.network = NetworkMode::Container { id: infra_id.clone() };
    let app_id = h.run(&app).await;
    assert!(matches!(
        wait_exited(&h.runtime, &app_id).await,
        ContainerState::Exited { exit_code: 0, .. }
    ));
    let (stdout, _) = collect(h.runtime.logs(&app_id, &LogOptions::default()).await.unwrap()).await;
    assert_eq!(
        stdout.trim(),
        "pod-a",
        "the joined container sees the infra container's hostname"
    );
    let app_info = h.runtime.inspect_container(&app_id).await.unwrap().unwrap();
    assert_eq!(
        app_info.ip_address, None,
        "a joined container has no address of its own"
    );

    let listed = h.runtime.list_containers(&h.labels()).await.unwrap();
    let mut names: Vec<&str> = listed
        .iter()
        .map(|c| c.labels["berth.container.name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["app", "infra"]);
    let listed_infra = listed.iter().find(|c| c.id == infra_id).unwrap();
    assert_eq!(listed_infra.ip_address.as_deref(), Some(ip.as_str()));
    let mut narrower = h.labels();
    narrower.insert("berth.container.name".into(), "infra".into());
    assert_eq!(h.runtime.list_containers(&narrower).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_exit_is_reported_by_a_die_event_within_milliseconds() {
    let h = Harness::new("die").await;
    let mut events = h.runtime.events(&h.labels());
    let id = h.run(&h.config("quitter", &["sh", "-c", "sleep 0.3; exit 3"])).await;
    assert_eq!(next_event(&mut events).await.kind, RuntimeEventKind::Create);
    let start = next_event(&mut events).await;
    assert_eq!(start.kind, RuntimeEventKind::Start);
    assert_eq!(start.container_id, id);
    assert_eq!(start.labels["berth.container.name"], "quitter");

    let die = next_event(&mut events).await;
    let received = chrono::Utc::now();
    assert_eq!(die.kind, RuntimeEventKind::Die { exit_code: Some(3) });
    let ContainerState::Exited {
        exit_code,
        finished_at,
        started_at,
        oom_killed,
        error,
    } = h.runtime.inspect_container(&id).await.unwrap().unwrap().state
    else {
        panic!("container should have exited");
    };
    assert_eq!((exit_code, oom_killed, error), (3, false, None));
    assert!(started_at.is_some());
    let finished_at = finished_at.expect("finish time");
    let latency = received - finished_at;
    println!(
        "die event latency (engine finish time -> event received): {} ms",
        latency.num_milliseconds()
    );
    assert!(
        latency < chrono::Duration::milliseconds(500),
        "die event took {latency}"
    );
}

#[tokio::test]
async fn logs_honour_tail_timestamps_since_and_follow() {
    let h = Harness::new("logs").await;
    let id = h
        .run(&h.config("talker", &["sh", "-c", "echo one; echo two; echo three"]))
        .await;
    let complainer = h.run(&h.config("complainer", &["cat", "/nonexistent"])).await;
    wait_exited(&h.runtime, &id).await;
    wait_exited(&h.runtime, &complainer).await;

    let (stdout, stderr) = collect(h.runtime.logs(&id, &LogOptions::default()).await.unwrap()).await;
    assert_eq!((stdout.as_str(), stderr.as_str()), ("one\ntwo\nthree\n", ""));
    let (stdout, stderr) = collect(h.runtime.logs(&complainer, &LogOptions::default()).await.unwrap()).await;
    assert_eq!(stdout, "");
    assert!(stderr.contains("nonexistent"), "{stderr:?}");

    let tail = LogOptions {
        tail_lines: Some(2),
        ..Default::default()
    };
    let (stdout, _) = collect(h.runtime.logs(&id, &tail).await.unwrap()).await;
    assert_eq!(stdout, "two\nthree\n");

    let stamped = LogOptions {
        timestamps: true,
        ..Default::default()
    };
    let (stdout, _) = collect(h.runtime.logs(&id, &stamped).await.unwrap()).await;
    let first = stdout.lines().next().unwrap();
    let (stamp, text) = first.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{first}");
    assert_eq!(text, "one");

    let future = LogOptions {
        since: Some(chrono::Utc::now() + chrono::Duration::seconds(5)),
        ..Default::default()
    };
    let (stdout, stderr) = collect(h.runtime.logs(&id, &future).await.unwrap()).await;
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""));

    // Follow a running container: lines arrive as written and the stream ends when it stops.
    let ticker = h
        .run(&h.config("ticker", &["serve", "--port", "18080", "--log-every", "100"]))
        .await;
    let follow = LogOptions {
        follow: true,
        ..Default::default()
    };
    let mut stream = h.runtime.logs(&ticker, &follow).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("tick 3") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Output::Stdout(b) = chunk {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    h.runtime
        .stop_container(&ticker, None, Duration::from_secs(5))
        .await
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.count()).await;
    assert!(rest.is_ok(), "a follow stream ends when the container stops");

    let missing = h.runtime.logs("berth-no-such-container", &LogOptions::default()).await;
    assert!(matches!(missing, Err(RuntimeError::NotFound { .. })));
}

#[tokio::test]
async fn exec_reports_exit_codes_and_passes_stdin() {
    let h = Harness::new("exec").await;
    let id = h.run(&h.config("host", &["pause"])).await;

    let plain = ExecOptions {
        command: vec!["sh".into(), "-c".into(), "echo hi; exit 7".into()],
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let session = h.runtime.exec(&id, &plain).await.unwrap();
    let exec_id = session.id.clone();
    let (stdout, _) = collect(session.output).await;
    assert_eq!(stdout, "hi\n");
    let mut code = None;
    for _ in 0..50 {
        code = h.runtime.exec_exit_code(&exec_id).await.unwrap();
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(code, Some(7));

    let cat = ExecOptions {
        command: vec!["cat".into()],
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut session = h.runtime.exec(&id, &cat).await.unwrap();
    session.input.write_all(b"hello through stdin\n").await.unwrap();
    session.input.shutdown().await.unwrap();
    let (stdout, _) = tokio::time::timeout(Duration::from_secs(10), collect(session.output))
        .await
        .unwrap();
    assert_eq!(stdout, "hello through stdin\n");

    let tty = ExecOptions {
        command: vec!["sh".into(), "-c".into(), "sleep 0.5; echo tty".into()],
        stdin: true,
        stdout: true,
        stderr: true,
        tty: true,
    };
    let session = h.runtime.exec(&id, &tty).await.unwrap();
    h.runtime.exec_resize(&session.id, 120, 40).await.unwrap();
    let (stdout, stderr) = tokio::time::timeout(Duration::from_secs(10), collect(session.output))
        .await
        .unwrap();
    assert!(stdout.contains("tty") && stderr.is_empty(), "{stdout:?} {stderr:?}");

    assert!(matches!(
        h.runtime.exec_exit_code("no-such-exec").await,
        Err(RuntimeError::NotFound { .. })
    ));
    let stopped = h.run(&h.config("stopped", &["true"])).await;
    wait_exited(&h.runtime, &stopped).await;
    assert!(matches!(
        h.runtime.exec(&stopped, &plain).await,
        Err(RuntimeError::Rejected { .. })
    ));
}

#[tokio::test]
async fn stop_is_fast_when_sigterm_is_handled_and_kills_after_the_grace_period_otherwise() {
    let h = Harness::new("stop").await;
    let server = h.run(&h.config("server", &["serve", "--port", "18081"])).await;
    let began = Instant::now();
    h.runtime
        .stop_container(&server, None, Duration::from_secs(10))
        .await
        .unwrap();
    let graceful = began.elapsed();
    println!("graceful stop took {graceful:?}");
    assert!(graceful < Duration::from_secs(3), "{graceful:?}");
    assert!(matches!(
        h.runtime.inspect_container(&server).await.unwrap().unwrap().state,
        ContainerState::Exited { exit_code: 0, .. }
    ));
    // Stopping again is fine.
    h.runtime
        .stop_container(&server, None, Duration::from_secs(10))
        .await
        .unwrap();

    // A shutdown slower than the grace period is cut short by SIGKILL (Docker's stop).
    let slow = h
        .run(&h.config("slow", &["serve", "--port", "18082", "--term-delay", "30"]))
        .await;
    let began = Instant::now();
    h.runtime
        .stop_container(&slow, None, Duration::from_millis(1500))
        .await
        .unwrap();
    let killed = began.elapsed();
    println!("stop with a 1.5 s grace (rounded up to 2 s) took {killed:?}");
    assert!(
        killed >= Duration::from_millis(1500) && killed < Duration::from_secs(6),
        "{killed:?}"
    );
    assert!(matches!(
        h.runtime.inspect_container(&slow).await.unwrap().unwrap().state,
        ContainerState::Exited { exit_code: 137, .. }
    ));

    // An explicit signal the process ignores (PID 1 without a handler ignores SIGUSR1), then SIGKILL.
    let deaf = h.run(&h.config("deaf", &["pause"])).await;
    let began = Instant::now();
    h.runtime
        .stop_container(&deaf, Some("SIGUSR1"), Duration::from_secs(1))
        .await
        .unwrap();
    let killed = began.elapsed();
    assert!(
        killed >= Duration::from_secs(1) && killed < Duration::from_secs(5),
        "{killed:?}"
    );
    assert!(matches!(
        h.runtime.inspect_container(&deaf).await.unwrap().unwrap().state,
        ContainerState::Exited { exit_code: 137, .. }
    ));

    // An explicit SIGTERM that is handled returns at once.
    let polite = h.run(&h.config("polite", &["pause"])).await;
    let began = Instant::now();
    h.runtime
        .stop_container(&polite, Some("SIGTERM"), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(3));
    assert!(matches!(
        h.runtime.inspect_container(&polite).await.unwrap().unwrap().state,
        ContainerState::Exited { exit_code: 0, .. }
    ));
}

#[tokio::test]
async fn create_errors_are_classified_and_removal_is_idempotent() {
    let h = Harness::new("errors").await;
    let mut missing_image = h.config("noimage", &["true"]);
    missing_image.image = "localhost/berth/does-not-exist:0.0.0".into();
    match h.runtime.create_container(&missing_image).await {
        Err(RuntimeError::NotFound { what }) => assert!(what.contains("does-not-exist"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    let config = h.config("dup", &["pause"]);
    let id = h.runtime.create_container(&config).await.unwrap();
    assert!(matches!(
        h.runtime.inspect_container(&id).await.unwrap().unwrap().state,
        ContainerState::Created
    ));
    assert!(matches!(
        h.runtime.create_container(&config).await,
        Err(RuntimeError::Rejected { .. })
    ));

    h.runtime.start_container(&id).await.unwrap();
    h.runtime.remove_container(&id).await.unwrap();
    h.runtime.remove_container(&id).await.unwrap();
    assert_eq!(h.runtime.inspect_container(&id).await.unwrap(), None);
    h.runtime
        .stop_container(&id, None, Duration::from_secs(1))
        .await
        .unwrap();
    h.runtime
        .stop_container(&id, Some("SIGTERM"), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(
        h.runtime.start_container(&id).await,
        Err(RuntimeError::NotFound { .. })
    ));

    // A command that does not exist: the start fails and the container reports the engine's error.
    let broken = h
        .runtime
        .create_container(&ContainerConfig {
            entrypoint: Some(vec!["/no/such/binary".into()]),
            ..h.config("broken", &[])
        })
        .await
        .unwrap();
    assert!(h.runtime.start_container(&broken).await.is_err());
    match h.runtime.inspect_container(&broken).await.unwrap().unwrap().state {
        ContainerState::Exited {
            error: Some(error),
            exit_code,
            ..
        } => {
            assert!(error.contains("no/such/binary"), "{error}");
            assert_ne!(exit_code, 0);
        }
        other => panic!("expected an exited container with an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pull_without_a_registry_fails_fast() {
    let h = Harness::new("pull").await;
    let began = Instant::now();
    let err = h.runtime.pull_image("localhost:1/nope:v1").await.unwrap_err();
    let took = began.elapsed();
    println!("failed pull took {took:?}: {err}");
    assert!(matches!(err, RuntimeError::ImagePull { .. }), "{err:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(h.runtime.inspect_image("localhost:1/nope:v1").await.unwrap(), None);
}

#[tokio::test]
async fn networks_get_the_asked_subnet_and_concurrent_creation_leaves_one() {
    let mut h = Harness::new("subnet").await;
    let name = format!("berth-{}", h.run_id);
    h.cleanup.networks.push(name.clone());
    // An unusual private range, picked from the run id so parallel runs do not collide.
    let third = 100 + (std::process::id() % 150);
    let subnet = format!("10.213.{third}.0/24");
    let (a, b, c) = tokio::join!(
        h.runtime.ensure_network(&name, Some(&subnet)),
        h.runtime.ensure_network(&name, Some(&subnet)),
        h.runtime.ensure_network(&name, Some(&subnet)),
    );
    // Racing creators (agents on one engine) all succeed, and one network remains.
    for result in [a, b, c] {
        result.unwrap();
    }
    h.runtime.ensure_network(&name, Some(&subnet)).await.unwrap();
    let ids = networks_named(&name);
    assert_eq!(ids.len(), 1, "exactly one network named {name}: {ids:?}");

    // Without a subnet the engine (before API 1.44) would accept duplicates; the runtime removes them.
    let plain = format!("berth-{}-plain", h.run_id);
    h.cleanup.networks.push(plain.clone());
    let (a, b, c) = tokio::join!(
        h.runtime.ensure_network(&plain, None),
        h.runtime.ensure_network(&plain, None),
        h.runtime.ensure_network(&plain, None),
    );
    for result in [a, b, c] {
        result.unwrap();
    }
    assert_eq!(networks_named(&plain).len(), 1, "exactly one network named {plain}");

    let mut infra = h.config("infra", &["pause"]);
    infra.network = NetworkMode::Bridge {
        network: name.clone(),
        hostname: "pod-b".into(),
    };
    let id = h.run(&infra).await;
    let ip = h
        .runtime
        .inspect_container(&id)
        .await
        .unwrap()
        .unwrap()
        .ip_address
        .unwrap();
    assert!(ip.starts_with(&format!("10.213.{third}.")), "{ip} in {subnet}");
}

/// Ids of the networks with exactly this name, from the docker CLI (independent of the code under test).
fn networks_named(name: &str) -> Vec<String> {
    let listed = std::process::Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &format!("name=^{name}$")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn attach_echoes_through_an_open_stdin_and_ends_with_the_container() {
    let h = Harness::new("attach").await;
    let mut config = h.config("cat", &["cat"]);
    config.open_stdin = true;
    let id = h.run(&config).await;
    let all = AttachOptions {
        stdin: true,
        stdout: true,
        stderr: true,
    };

    // What is typed comes back from the container's own `cat`.
    let mut session = h.runtime.attach(&id, &all).await.unwrap();
    assert_eq!(session.id, id);
    session.input.write_all(b"through attach\n").await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), session.output.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Output::Stdout(Bytes::from_static(b"through attach\n")));
    // Closing the attached stdin ends this attach only: the container and its stdin stay open for the next one.
    session.input.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), collect(session.output))
        .await
        .unwrap();
    let state = h.runtime.inspect_container(&id).await.unwrap().unwrap().state;
    assert!(matches!(state, ContainerState::Running { .. }), "{state:?}");
    let mut again = h.runtime.attach(&id, &all).await.unwrap();
    again.input.write_all(b"second\n").await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), again.output.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Output::Stdout(Bytes::from_static(b"second\n")));

    // An output-only attach ends when the container stops.
    let watcher = h
        .runtime
        .attach(
            &id,
            &AttachOptions {
                stdout: true,
                ..all.clone()
            },
        )
        .await
        .unwrap();
    h.runtime
        .stop_container(&id, None, Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), collect(watcher.output))
        .await
        .expect("the attach outlived its container");

    // A stopped container cannot be attached to (Docker itself would accept and never end the stream).
    assert!(matches!(
        h.runtime.attach(&id, &all).await,
        Err(RuntimeError::Rejected { .. })
    ));

    // With a TTY the output is the terminal's: raw, on stdout (the terminal echoes the input, then `cat` prints
    // it), and resizable.
    let mut tty = h.config("tty", &["cat"]);
    tty.open_stdin = true;
    tty.tty = true;
    let id = h.run(&tty).await;
    let mut session = h.runtime.attach(&id, &all).await.unwrap();
    h.runtime.attach_resize(&id, 100, 30).await.unwrap();
    session.input.write_all(b"word\n").await.unwrap();
    let mut seen = String::new();
    while seen.matches("word\r\n").count() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), session.output.next()).await {
            Ok(Some(Ok(Output::Stdout(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("after {seen:?}: {other:?}"),
        }
    }
}
