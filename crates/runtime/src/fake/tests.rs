//! Checks that the fake runtime behaves like the engine it stands in for: lifecycle, events, scripting, logs, exec,
//! attach.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn config(name: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: "img:1".into(),
        labels: labels(&[("berth.node", "n1"), ("berth.container.name", name)]),
        ..Default::default()
    }
}

fn runtime() -> FakeRuntime {
    let fake = FakeRuntime::new();
    fake.add_image("img:1");
    fake
}

async fn next_event(events: &mut BoxStream<'static, Result<RuntimeEvent, RuntimeError>>) -> RuntimeEvent {
    tokio::time::timeout(Duration::from_secs(1), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn lifecycle_changes_state_and_emits_events_in_docker_order() {
    let fake = runtime();
    let mut events = fake.events(&labels(&[("berth.node", "n1")]));
    let id = fake.create_container(&config("app")).await.unwrap();
    assert_eq!(
        fake.inspect_container(&id).await.unwrap().unwrap().state,
        ContainerState::Created
    );
    fake.start_container(&id).await.unwrap();
    assert!(matches!(
        fake.inspect_container(&id).await.unwrap().unwrap().state,
        ContainerState::Running { .. }
    ));
    fake.exit(&id, 3);
    let info = fake.inspect_container(&id).await.unwrap().unwrap();
    assert!(matches!(
        info.state,
        ContainerState::Exited {
            exit_code: 3,
            oom_killed: false,
            ..
        }
    ));
    fake.remove_container(&id).await.unwrap();
    assert_eq!(fake.inspect_container(&id).await.unwrap(), None);

    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = next_event(&mut events).await;
        assert_eq!(event.container_id, id);
        assert_eq!(event.labels["berth.container.name"], "app");
        seen.push(event.kind);
    }
    assert_eq!(
        seen,
        vec![
            RuntimeEventKind::Create,
            RuntimeEventKind::Start,
            RuntimeEventKind::Die { exit_code: Some(3) },
            RuntimeEventKind::Destroy
        ]
    );
}

#[tokio::test]
async fn oom_emits_oom_then_die_and_marks_the_container() {
    let fake = runtime();
    let id = fake.create_container(&config("app")).await.unwrap();
    fake.start_container(&id).await.unwrap();
    let mut events = fake.events(&BTreeMap::new());
    fake.oom(&id);
    assert_eq!(next_event(&mut events).await.kind, RuntimeEventKind::Oom);
    assert_eq!(
        next_event(&mut events).await.kind,
        RuntimeEventKind::Die { exit_code: Some(137) }
    );
    let info = fake.inspect_container(&id).await.unwrap().unwrap();
    assert!(matches!(
        info.state,
        ContainerState::Exited {
            exit_code: 137,
            oom_killed: true,
            ..
        }
    ));
}

#[tokio::test]
async fn events_are_filtered_by_labels() {
    let fake = runtime();
    let mut events = fake.events(&labels(&[("berth.node", "n2")]));
    fake.create_container(&config("other-node")).await.unwrap();
    let mut mine = config("mine");
    mine.labels.insert("berth.node".into(), "n2".into());
    let id = fake.create_container(&mine).await.unwrap();
    assert_eq!(next_event(&mut events).await.container_id, id);
}

#[tokio::test]
async fn calls_are_recorded_and_failures_scripted_once() {
    let fake = runtime();
    let id = fake.create_container(&config("app")).await.unwrap();
    fake.fail_next(
        "start_container",
        RuntimeError::Engine {
            operation: "start container",
            message: "boom".into(),
        },
    );
    assert!(matches!(
        fake.start_container(&id).await,
        Err(RuntimeError::Engine { .. })
    ));
    fake.start_container(&id).await.unwrap();
    fake.stop_container(&id, None, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        fake.calls(),
        vec![
            "create_container app".to_string(),
            format!("start_container {id}"),
            format!("start_container {id}"),
            format!("stop_container {id} - 30s"),
        ]
    );
    assert_eq!(fake.calls_of("start_container").len(), 2);
    // A stop by the default signal ends like SIGTERM: 128 + 15.
    let info = fake.inspect_container(&id).await.unwrap().unwrap();
    assert!(matches!(info.state, ContainerState::Exited { exit_code: 143, .. }));
}

#[tokio::test]
async fn create_checks_image_name_and_network() {
    let fake = runtime();
    let mut missing = config("a");
    missing.image = "nope:1".into();
    assert!(matches!(
        fake.create_container(&missing).await,
        Err(RuntimeError::NotFound { .. })
    ));
    fake.create_container(&config("a")).await.unwrap();
    assert!(matches!(
        fake.create_container(&config("a")).await,
        Err(RuntimeError::Rejected { .. })
    ));
    let mut bridged = config("b");
    bridged.network = NetworkMode::Bridge {
        network: "berth".into(),
        hostname: "b".into(),
    };
    assert!(matches!(
        fake.create_container(&bridged).await,
        Err(RuntimeError::NotFound { .. })
    ));
    fake.ensure_network("berth", Some("10.88.0.0/16")).await.unwrap();
    let id = fake.create_container(&bridged).await.unwrap();
    fake.start_container(&id).await.unwrap();
    assert!(fake.inspect_container(&id).await.unwrap().unwrap().ip_address.is_some());
    assert_eq!(fake.container_config(&id).unwrap().network, bridged.network);
}

#[tokio::test]
async fn pulls_succeed_unless_scripted_to_fail() {
    let fake = FakeRuntime::new();
    fake.fail_pull("localhost/bad:1", "connection refused");
    let err = fake.pull_image("localhost/bad:1").await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImagePull { .. }), "{err}");
    assert_eq!(fake.inspect_image("localhost/bad:1").await.unwrap(), None);
    fake.pull_image("localhost/good:1").await.unwrap();
    assert!(fake.inspect_image("localhost/good:1").await.unwrap().is_some());
}

#[tokio::test]
async fn start_hook_makes_containers_exit_at_once() {
    let fake = runtime();
    fake.exit_on_start(|config| (config.name == "init").then_some(0));
    let mut events = fake.events(&BTreeMap::new());
    let init = fake.create_container(&config("init")).await.unwrap();
    fake.start_container(&init).await.unwrap();
    assert!(matches!(
        fake.inspect_container(&init).await.unwrap().unwrap().state,
        ContainerState::Exited { exit_code: 0, .. }
    ));
    assert_eq!(next_event(&mut events).await.kind, RuntimeEventKind::Create);
    assert_eq!(next_event(&mut events).await.kind, RuntimeEventKind::Start);
    assert_eq!(
        next_event(&mut events).await.kind,
        RuntimeEventKind::Die { exit_code: Some(0) }
    );
}

#[tokio::test]
async fn list_filters_by_labels() {
    let fake = runtime();
    fake.create_container(&config("a")).await.unwrap();
    let mut other = config("b");
    other.labels.insert("berth.node".into(), "n2".into());
    fake.create_container(&other).await.unwrap();
    let listed = fake.list_containers(&labels(&[("berth.node", "n1")])).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(fake.list_containers(&BTreeMap::new()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn logs_honour_tail_timestamps_and_follow() {
    let fake = runtime();
    let id = fake.create_container(&config("app")).await.unwrap();
    fake.start_container(&id).await.unwrap();
    for line in ["one\n", "two\n", "three\n"] {
        fake.add_log(&id, Output::Stdout(Bytes::from(line)));
    }
    let tail = LogOptions {
        tail_lines: Some(2),
        ..Default::default()
    };
    let lines: Vec<Output> = fake.logs(&id, &tail).await.unwrap().map(Result::unwrap).collect().await;
    assert_eq!(
        lines,
        vec![
            Output::Stdout(Bytes::from("two\n")),
            Output::Stdout(Bytes::from("three\n"))
        ]
    );

    let stamped = LogOptions {
        tail_lines: Some(1),
        timestamps: true,
        ..Default::default()
    };
    let lines: Vec<Output> = fake
        .logs(&id, &stamped)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let Output::Stdout(line) = &lines[0] else {
        panic!("stdout expected")
    };
    let text = std::str::from_utf8(line).unwrap();
    let (stamp, rest) = text.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{text}");
    assert_eq!(rest, "three\n");

    let follow = LogOptions {
        follow: true,
        tail_lines: Some(0),
        ..Default::default()
    };
    let mut stream = fake.logs(&id, &follow).await.unwrap();
    fake.add_log(&id, Output::Stderr(Bytes::from("four\n")));
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        Output::Stderr(Bytes::from("four\n"))
    );
    fake.exit(&id, 0);
    assert!(tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn exec_returns_scripted_output_exit_code_and_records_stdin() {
    let fake = runtime();
    let id = fake.create_container(&config("app")).await.unwrap();
    assert!(matches!(
        fake.exec(
            &id,
            &ExecOptions {
                command: vec!["true".into()],
                ..Default::default()
            }
        )
        .await,
        Err(RuntimeError::Rejected { .. })
    ));
    fake.start_container(&id).await.unwrap();
    fake.script_exec(
        &["cat", "/ready"],
        ExecScript {
            output: vec![
                Output::Stdout(Bytes::from("ok\n")),
                Output::Stderr(Bytes::from("warn\n")),
            ],
            exit_code: 1,
        },
    );
    let options = ExecOptions {
        command: vec!["cat".into(), "/ready".into()],
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let mut session = fake.exec(&id, &options).await.unwrap();
    session.input.write_all(b"hello").await.unwrap();
    session.input.shutdown().await.unwrap();
    let output: Vec<Output> = session.output.map(Result::unwrap).collect().await;
    assert_eq!(output, vec![Output::Stdout(Bytes::from("ok\n"))]);
    assert_eq!(fake.exec_exit_code(&session.id).await.unwrap(), Some(1));
    assert_eq!(fake.exec_stdin(&session.id).unwrap(), b"hello");
    assert_eq!(fake.exec_command(&session.id).unwrap(), (id, options.command));
    fake.exec_resize(&session.id, 80, 24).await.unwrap();
    assert!(matches!(
        fake.exec_exit_code("nope").await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn remove_is_idempotent_and_kills_a_running_container() {
    let fake = runtime();
    let id = fake.create_container(&config("app")).await.unwrap();
    fake.start_container(&id).await.unwrap();
    let mut events = fake.events(&BTreeMap::new());
    fake.remove_container(&id).await.unwrap();
    assert_eq!(
        next_event(&mut events).await.kind,
        RuntimeEventKind::Die { exit_code: Some(137) }
    );
    assert_eq!(next_event(&mut events).await.kind, RuntimeEventKind::Destroy);
    fake.remove_container(&id).await.unwrap();
    fake.stop_container(&id, Some("SIGINT"), Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn a_container_joining_another_starts_only_while_that_one_runs() {
    let fake = runtime();
    let infra = fake.create_container(&config("infra")).await.unwrap();
    let app = fake
        .create_container(&ContainerConfig {
            network: NetworkMode::Container { id: infra.clone() },
            ..config("app")
        })
        .await
        .unwrap();
    let refused = fake.start_container(&app).await.unwrap_err();
    assert!(refused
        .to_string()
        .contains("cannot join network of a non running container"));
    fake.start_container(&infra).await.unwrap();
    fake.start_container(&app).await.unwrap();
    assert!(matches!(
        fake.inspect_container(&app).await.unwrap().unwrap().state,
        ContainerState::Running { .. }
    ));
}

/// The next output of a session, within a second.
async fn next_output(session: &mut ExecSession) -> Option<Output> {
    tokio::time::timeout(Duration::from_secs(1), session.output.next())
        .await
        .expect("no output within a second")
        .map(Result::unwrap)
}

#[tokio::test]
async fn attach_streams_new_output_and_echoes_stdin_like_docker() {
    let fake = runtime();
    let all = AttachOptions {
        stdin: true,
        stdout: true,
        stderr: true,
    };
    let mut cat = config("cat");
    cat.open_stdin = true;
    let id = fake.create_container(&cat).await.unwrap();
    assert!(matches!(
        fake.attach(&id, &all).await,
        Err(RuntimeError::Rejected { .. })
    ));
    fake.start_container(&id).await.unwrap();
    fake.echo_stdin(&id);
    fake.add_log(&id, Output::Stdout(Bytes::from("before\n")));

    // Only what is written after the attach, on the streams asked for.
    let mut session = fake.attach(&id, &all).await.unwrap();
    assert_eq!(session.id, id);
    let mut quiet = fake
        .attach(
            &id,
            &AttachOptions {
                stderr: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    session.input.write_all(b"typed\n").await.unwrap();
    fake.add_log(&id, Output::Stderr(Bytes::from("oops\n")));
    assert_eq!(
        next_output(&mut session).await,
        Some(Output::Stdout(Bytes::from("typed\n")))
    );
    assert_eq!(
        next_output(&mut session).await,
        Some(Output::Stderr(Bytes::from("oops\n")))
    );
    assert_eq!(
        next_output(&mut quiet).await,
        Some(Output::Stderr(Bytes::from("oops\n")))
    );
    assert_eq!(fake.attached_stdin(&id).unwrap(), b"typed\n");

    // Closing stdin ends that attach only; the container runs on and the other attach keeps reading.
    session.input.shutdown().await.unwrap();
    assert_eq!(next_output(&mut session).await, None);
    assert!(matches!(
        fake.inspect_container(&id).await.unwrap().unwrap().state,
        ContainerState::Running { .. }
    ));
    fake.attach_resize(&id, 80, 24).await.unwrap();
    assert_eq!(fake.calls_of("attach_resize"), [format!("attach_resize {id} 80x24")]);
    // The container's exit ends every attach.
    fake.exit(&id, 0);
    assert_eq!(next_output(&mut quiet).await, None);
    assert!(fake.attach_resize(&id, 80, 24).await.is_err());
}

#[tokio::test]
async fn attach_stdin_goes_nowhere_without_open_stdin_and_a_tty_merges_the_streams() {
    let fake = runtime();
    let mut plain = config("plain");
    plain.tty = true;
    let id = fake.create_container(&plain).await.unwrap();
    fake.start_container(&id).await.unwrap();
    fake.echo_stdin(&id);
    let mut session = fake
        .attach(
            &id,
            &AttachOptions {
                stdin: true,
                stdout: true,
                stderr: false,
            },
        )
        .await
        .unwrap();
    session.input.write_all(b"lost").await.unwrap();
    // Without an open stdin, closing the attach's stdin does not end it either.
    session.input.shutdown().await.unwrap();
    fake.add_log(&id, Output::Stderr(Bytes::from("on the terminal")));
    assert_eq!(
        next_output(&mut session).await,
        Some(Output::Stdout(Bytes::from("on the terminal")))
    );
    assert_eq!(fake.attached_stdin(&id).unwrap(), b"");
}
