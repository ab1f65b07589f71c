//! Loads the workload image into the real Docker engine with the docker CLI and checks it works as pods will use
//! it: applets by name, the shell, the HTTP server reached with `wget`/`get`, and a prompt `docker stop` because
//! the program handles SIGTERM as PID 1. Everything it runs carries the label `berth.test=image-<pid>` and is
//! removed afterwards, even when an assertion fails. Fails (never passes) when Docker is unreachable.

// A synchronous test driving real processes in real time; the workspace ban on blocking sleeps and std Instant
// is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

use berth_image::{workload_image, WORKLOAD_IMAGE};

/// Runs `docker ARGS` and returns its output, whatever the exit status.
fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run the docker CLI (is it installed?): {err}"))
}

/// Runs `docker ARGS`, insists on success and returns stdout.
fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes every container carrying this run's label when dropped, so a failing assertion leaves nothing behind.
struct Cleanup {
    label: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
    }
}

fn require_docker() {
    let output = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        output.status.success(),
        "this test needs a reachable Docker engine, and `docker version` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn workload_image_loads_runs_applets_serves_http_and_stops_promptly() {
    require_docker();
    let label = format!("berth.test=image-{}", std::process::id());
    let _cleanup = Cleanup { label: label.clone() };

    // Load, and check Docker reports the id we computed.
    let image = workload_image();
    let tarball = std::env::temp_dir().join(format!("berth-image-test-{}.tar", std::process::id()));
    std::fs::write(&tarball, &image.bytes).unwrap();
    let loaded = docker(&["load", "-i", tarball.to_str().unwrap()]);
    std::fs::remove_file(&tarball).unwrap();
    assert!(
        loaded.status.success(),
        "docker load failed: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{.Id}}", WORKLOAD_IMAGE]).trim(),
        image.id
    );

    // An applet as the command, through the entrypoint: /workload echo hi.
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "--label", &label, WORKLOAD_IMAGE];
        all.extend_from_slice(args);
        docker_ok(&all)
    };
    assert_eq!(run(&["echo", "hi"]), "hi\n");
    // The shell, with PATH=/bin finding the applet symlinks, and the layer's /tmp writable.
    assert_eq!(
        run(&[
            "sh",
            "-c",
            "touch /tmp/x && cat /tmp/x && echo made > /tmp/x; cat /tmp/x"
        ]),
        "made\n"
    );
    assert_eq!(
        run(&["/bin/cat", "/etc/hostname"]).len(),
        13,
        "Docker writes a 12-character hostname"
    );

    // The default command serves HTTP on 8080; reach it from inside the container, as an exec probe would.
    let name = format!("berth-image-test-{}", std::process::id());
    docker_ok(&["run", "-d", "--label", &label, "--name", &name, WORKLOAD_IMAGE]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let greeting = loop {
        let output = docker(&["exec", &name, "get", "http://127.0.0.1:8080/"]);
        if output.status.success() {
            break String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "serve never answered: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        sleep(Duration::from_millis(100));
    };
    let hostname = docker_ok(&["exec", &name, "hostname"]);
    assert_eq!(greeting, format!("Hello from {hostname}"));
    assert_eq!(
        docker_ok(&["exec", &name, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/healthz"]),
        "ok\n"
    );
    docker_ok(&["exec", &name, "get", "http://127.0.0.1:8080/control/fail-health"]);
    let failing = docker(&["exec", &name, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/healthz"]);
    assert_eq!(failing.status.code(), Some(1), "wget exits 1 on a 500");

    // docker stop sends SIGTERM; the workload must exit 0 at once rather than wait for the 10 s SIGKILL.
    let started = Instant::now();
    docker_ok(&["stop", &name]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "docker stop took {took:?}: SIGTERM is not handled"
    );
    assert_eq!(docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &name]).trim(), "0");
    let logs = docker_ok(&["logs", &name]);
    assert!(logs.starts_with("serving on :8080 as "), "{logs}");
    assert!(logs.contains("\"GET /healthz\" 500"), "requests are logged: {logs}");
    assert!(logs.contains("received SIGTERM\n"), "{logs}");

    // The infra container: pause until stopped, then exit 0, promptly too.
    let pause = format!("{name}-pause");
    docker_ok(&[
        "run",
        "-d",
        "--label",
        &label,
        "--name",
        &pause,
        WORKLOAD_IMAGE,
        "pause",
    ]);
    let started = Instant::now();
    docker_ok(&["stop", &pause]);
    assert!(started.elapsed() < Duration::from_secs(3), "pause ignored SIGTERM");
    assert_eq!(docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &pause]).trim(), "0");
}
