//! Exec probes: runs the probe's command in the container through the runtime and passes on exit code 0, like the
//! kubelet's exec prober (kubernetes/kubernetes `pkg/probe/exec`). It does not start or stop containers.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction};

use berth_runtime::{ContainerRuntime, ExecOptions, Output};

use super::{go_quote, ProbeOutcome, ProbeTarget, MAX_READ_LENGTH};

pub(super) async fn exec_probe(
    action: &ExecAction,
    target: &ProbeTarget<'_>,
    runtime: &dyn ContainerRuntime,
    timeout: Duration,
) -> ProbeOutcome {
    // Like the kubelet, `$(VAR)` in the command is expanded from the container's literal env values only (not from
    // valueFrom sources: the exec probe has no access to the pod's downward API or referenced objects).
    let command: Vec<String> = action
        .command
        .iter()
        .flatten()
        .map(|arg| expand_static(arg, target.container))
        .collect();
    let options = ExecOptions {
        command: command.clone(),
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let attempt = async {
        let mut session = runtime.exec(target.container_id, &options).await?;
        // stdout and stderr go into one buffer, capped like upstream's LimitWriter: the rest is read and dropped so
        // the process is never blocked on a full pipe.
        let mut data = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut session.output).await {
            let bytes = match chunk? {
                Output::Stdout(b) | Output::Stderr(b) => b,
            };
            let room = MAX_READ_LENGTH.saturating_sub(data.len());
            data.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        // The output ends when the process exits, but an engine may take a moment to record the exit code.
        loop {
            if let Some(code) = runtime.exec_exit_code(&session.id).await? {
                return Ok::<_, berth_runtime::RuntimeError>((code, data));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((0, _))) => ProbeOutcome::Success,
        // Upstream's failure message for an exec probe is the command's combined output, as it is.
        Ok(Ok((_, data))) => ProbeOutcome::Failure(String::from_utf8_lossy(&data).into_owned()),
        Ok(Err(err)) => ProbeOutcome::Unknown(err.to_string()),
        // The CRI client's TimeoutError text; with ExecProbeTimeout (GA) a timeout is a failure, not an error.
        Err(_) => ProbeOutcome::Failure(format!("command {} timed out", go_quote(&command.join(" ")))),
    }
}

/// Expands `$(NAME)` from the container's env entries that have a literal `value`, the way the kubelet expands probe
/// commands (`ExpandContainerCommandOnlyStatic`): `$$` is an escaped `$`, unknown or unclosed references stay as
/// written.
fn expand_static(input: &str, container: &Container) -> String {
    let lookup = |name: &str| -> Option<String> {
        container
            .env
            .iter()
            .flatten()
            .rev()
            .find(|e| e.name == name && e.value_from.is_none())
            .map(|e| e.value.clone().unwrap_or_default())
    };
    crate::pods::env::expand_with(input, lookup)
}

#[cfg(test)]
mod tests {
    //! Exec probes against the fake runtime: exit codes, output as the failure message, env expansion, timeouts.

    use bytes::Bytes;
    use k8s_openapi::api::core::v1::Probe;

    use berth_runtime::fake::{ExecScript, FakeRuntime};
    use berth_runtime::ContainerConfig;

    use super::super::run;
    use super::super::tests::container;
    use super::*;

    async fn running_container(runtime: &FakeRuntime) -> String {
        runtime.add_image("img");
        let config = ContainerConfig {
            name: "c".into(),
            image: "img".into(),
            ..Default::default()
        };
        let id = runtime.create_container(&config).await.unwrap();
        runtime.start_container(&id).await.unwrap();
        id
    }

    fn exec(command: &[&str]) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(command.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn exec_passes_on_exit_0_and_fails_with_the_output_otherwise() {
        let runtime = FakeRuntime::new();
        let id = running_container(&runtime).await;
        let c = container();
        let target = ProbeTarget {
            pod_ip: None,
            container_id: &id,
            container: &c,
        };

        runtime.script_exec(
            &["true"],
            ExecScript {
                output: vec![],
                exit_code: 0,
            },
        );
        assert_eq!(run(&exec(&["true"]), &target, &runtime).await, ProbeOutcome::Success);

        let output = vec![
            Output::Stdout(Bytes::from_static(b"cat: ")),
            Output::Stderr(Bytes::from_static(b"/tmp/healthy: No such file or directory\n")),
        ];
        runtime.script_exec(&["cat", "/tmp/healthy"], ExecScript { output, exit_code: 1 });
        // $(FILE) is expanded from the container's literal env value.
        assert_eq!(
            run(&exec(&["cat", "$(FILE)"]), &target, &runtime).await,
            ProbeOutcome::Failure("cat: /tmp/healthy: No such file or directory\n".into())
        );
        assert_eq!(
            runtime.calls_of("exec").last().unwrap(),
            &format!("exec {id} cat /tmp/healthy")
        );
    }

    #[tokio::test]
    async fn exec_in_a_container_the_runtime_cannot_reach_is_unknown() {
        let runtime = FakeRuntime::new();
        let c = container();
        let target = ProbeTarget {
            pod_ip: None,
            container_id: "missing",
            container: &c,
        };
        assert!(matches!(
            run(&exec(&["true"]), &target, &runtime).await,
            ProbeOutcome::Unknown(_)
        ));
    }

    #[test]
    fn static_expansion_follows_upstreams_rules() {
        let c = container();
        assert_eq!(expand_static("$(FILE)", &c), "/tmp/healthy");
        assert_eq!(expand_static("a$$(FILE)b", &c), "a$(FILE)b");
        assert_eq!(expand_static("$(NOPE) $(FILE", &c), "$(NOPE) $(FILE");
        assert_eq!(expand_static("$HOME", &c), "$HOME");
    }

    /// A runtime whose execs never finish, for the exec timeout. Only `exec` is used.
    struct HangingExec;

    #[async_trait::async_trait]
    impl ContainerRuntime for HangingExec {
        async fn version(&self) -> Result<berth_runtime::RuntimeVersion, berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn ensure_network(&self, _: &str, _: Option<&str>) -> Result<(), berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn inspect_image(
            &self,
            _: &str,
        ) -> Result<Option<berth_runtime::ImageInfo>, berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn pull_image(&self, _: &str) -> Result<(), berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn import_image(&self, _: Bytes) -> Result<(), berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn create_container(&self, _: &ContainerConfig) -> Result<String, berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn start_container(&self, _: &str) -> Result<(), berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn stop_container(
            &self,
            _: &str,
            _: Option<&str>,
            _: Duration,
        ) -> Result<(), berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn remove_container(&self, _: &str) -> Result<(), berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn inspect_container(
            &self,
            _: &str,
        ) -> Result<Option<berth_runtime::ContainerInfo>, berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn list_containers(
            &self,
            _: &std::collections::BTreeMap<String, String>,
        ) -> Result<Vec<berth_runtime::ContainerInfo>, berth_runtime::RuntimeError> {
            unimplemented!()
        }
        fn events(
            &self,
            _: &std::collections::BTreeMap<String, String>,
        ) -> futures::stream::BoxStream<'static, Result<berth_runtime::RuntimeEvent, berth_runtime::RuntimeError>>
        {
            unimplemented!()
        }
        async fn logs(
            &self,
            _: &str,
            _: &berth_runtime::LogOptions,
        ) -> Result<
            futures::stream::BoxStream<'static, Result<Output, berth_runtime::RuntimeError>>,
            berth_runtime::RuntimeError,
        > {
            unimplemented!()
        }
        async fn exec(
            &self,
            _: &str,
            _: &ExecOptions,
        ) -> Result<berth_runtime::ExecSession, berth_runtime::RuntimeError> {
            use futures::StreamExt;
            Ok(berth_runtime::ExecSession {
                id: "hang".into(),
                output: futures::stream::pending().boxed(),
                input: Box::pin(tokio::io::sink()),
            })
        }
        async fn exec_resize(&self, _: &str, _: u16, _: u16) -> Result<(), berth_runtime::RuntimeError> {
            unimplemented!()
        }
        async fn exec_exit_code(&self, _: &str) -> Result<Option<i64>, berth_runtime::RuntimeError> {
            Ok(None)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_exec_that_outlives_its_timeout_fails_with_the_cri_message() {
        let c = container();
        let target = ProbeTarget {
            pod_ip: None,
            container_id: "x",
            container: &c,
        };
        let mut probe = exec(&["sleep", "10"]);
        probe.timeout_seconds = Some(5);
        assert_eq!(
            run(&probe, &target, &HangingExec).await,
            ProbeOutcome::Failure("command \"sleep 10\" timed out".into())
        );
    }
}
