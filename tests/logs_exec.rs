//! `kubectl logs`, `exec`, `attach` and `run -i` end to end: the real kubectl 1.35 and the real Python
//! `kubernetes` client against a real `berth server`, whose API server proxies `pods/log`, `pods/exec` and
//! `pods/attach` to its node agent, which runs the pods in the real Docker engine. Each test checks what a user sees: the lines printed, the exit code, the
//! error message.
//!
//! It does not test the agent's or the API server's handlers in isolation (their own unit tests do), nor pod
//! lifecycle beyond what logs and exec need (`tests/pods.rs` does). Every pod uses the built-in workload image;
//! each test's server has its own node name and its containers are removed when it drops.

// End-to-end tests are synchronous programs driving real processes in real time; the workspace ban on
// blocking sleeps and std Instant is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

mod support;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{container_status, eventually, pod_yaml, python, repo_root, text, wait_pod, Server};

use support::WORKLOAD_IMAGE as IMAGE;

/// How long a pod may take to start on a loaded machine (image load, network, two cores shared with other tests).
const START: Duration = Duration::from_secs(90);

/// How long one kubectl command may take before the test gives up on it (an exec whose stream never ends must
/// fail the test, not hang it).
const COMMAND: Duration = Duration::from_secs(60);

/// A container entry for `pod_yaml`: `name`, running the workload with `args` (a YAML flow sequence).
fn container(name: &str, args: &str) -> String {
    format!("  - name: {name}\n    image: {IMAGE}\n    args: {args}\n")
}

/// Applies the manifest and waits until every container of the pod is running.
fn run_pod(server: &Server, name: &str, manifest: &str) -> Value {
    server.kubectl_stdin_ok(&["apply", "-f", "-"], manifest);
    wait_pod(server, name, START, "all containers running", |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["state"]["running"].is_object()))
    })
}

/// The tick numbers in a `serve --log-every` log, in order (lines `tick N`, possibly after a timestamp).
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split_once("tick ").and_then(|(_, n)| n.trim().parse().ok()))
        .collect()
}

fn max_tick(log: &str) -> u64 {
    ticks(log).into_iter().max().unwrap_or(0)
}

/// Waits until the container's log has at least `n` ticks and returns it.
fn wait_ticks(server: &Server, args: &[&str], n: usize) -> String {
    let mut last = String::new();
    eventually(START, || {
        last = server.kubectl_ok(args);
        (ticks(&last).len() >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("`kubectl {}` never showed {n} ticks; last:\n{last}", args.join(" ")));
    last
}

/// What a kubectl run under `timed` did: `status` is `None` if it had to be killed at the timeout.
struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what}: {}\nstdout: {:?}\nstderr: {:?}",
            match self.status {
                Some(s) => s.to_string(),
                None => format!("still running after {COMMAND:?}, killed"),
            },
            self.stdout,
            self.stderr
        )
    }
}

/// Scratch files for one child's stdout and stderr.
fn output_files(server: &Server) -> (PathBuf, PathBuf) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        server.scratch(&format!("run-{n}.out")),
        server.scratch(&format!("run-{n}.err")),
    )
}

/// Waits for `child` up to `timeout`, killing it if it overstays, and collects what it wrote.
fn finish(mut child: Child, timeout: Duration, out: PathBuf, err: PathBuf) -> Run {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(50));
    };
    Run {
        status,
        stdout: fs::read_to_string(out).unwrap_or_default(),
        stderr: fs::read_to_string(err).unwrap_or_default(),
    }
}

/// Runs kubectl with `input` on stdin (closed after it is written), giving it `COMMAND` to finish. Unlike
/// `Server::kubectl_stdin`, a kubectl that never exits (a stream that never ends) fails the test instead of hanging it.
fn kubectl_timed(server: &Server, args: &[&str], input: &str) -> Run {
    let (out, err) = output_files(server);
    let mut child = server
        .kubectl_cmd(args)
        .stdin(Stdio::piped())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn kubectl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write kubectl stdin");
    drop(stdin);
    finish(child, COMMAND, out, err)
}

/// Like `kubectl_timed` with no input, asserting success and returning stdout.
fn kubectl_timed_ok(server: &Server, args: &[&str]) -> String {
    let run = kubectl_timed(server, args, "");
    assert!(
        run.code() == Some(0),
        "{}",
        run.describe(&format!("`kubectl {}`", args.join(" ")))
    );
    run.stdout
}

#[test]
fn kubectl_logs_shows_tails_timestamps_and_follows_a_running_container() {
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "ticker",
        &format!(
            "  containers:\n{}",
            container("main", r#"["serve", "--log-every", "200"]"#)
        ),
    );
    run_pod(&server, "ticker", &manifest);

    // The whole log: the startup line, then numbered ticks in order.
    let log = wait_ticks(&server, &["logs", "ticker"], 5);
    assert!(log.starts_with("serving on :8080 as ticker\n"), "{log}");
    let seen = ticks(&log);
    assert_eq!(
        seen,
        (1..=seen.len() as u64).collect::<Vec<_>>(),
        "ticks out of order:\n{log}"
    );

    // `--tail 2`: exactly the last two lines, consecutive ticks.
    let tail = server.kubectl_ok(&["logs", "ticker", "--tail", "2"]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 2, "--tail 2 gave:\n{tail}");
    let pair = ticks(&tail);
    assert!(
        pair.len() == 2 && pair[1] == pair[0] + 1 && pair[1] >= seen.len() as u64,
        "--tail 2 should be the two newest ticks:\n{tail}"
    );
    assert_eq!(server.kubectl_ok(&["logs", "ticker", "--tail", "0"]), "");

    // `--timestamps`: every line starts with an RFC 3339 timestamp with nanoseconds (Go's RFC3339Nano, in UTC),
    // taken when the line was written.
    let stamped = server.kubectl_ok(&["logs", "ticker", "--timestamps", "--tail", "5"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 5, "{stamped}");
    let now = chrono::Utc::now();
    for line in &lines {
        let (stamp, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
        assert!(rest.starts_with("tick "), "{line:?}");
        assert!(stamp.ends_with('Z'), "timestamp not in UTC: {line:?}");
        let at = chrono::DateTime::parse_from_rfc3339(stamp).unwrap_or_else(|e| panic!("{stamp:?}: {e}"));
        let age = now.signed_duration_since(at);
        assert!(
            age > chrono::Duration::seconds(-5) && age < chrono::Duration::minutes(5),
            "timestamp {stamp} is not about now ({now})"
        );
    }

    // `-f` keeps delivering lines as they are written: ticks newer than any seen before the follow started.
    let before = max_tick(&server.kubectl_ok(&["logs", "ticker"]));
    let follow = server.kubectl_background(&["logs", "-f", "ticker"]);
    let (out, err) = follow.stop_when(START, |out| max_tick(out) >= before + 10);
    assert!(
        max_tick(&out) >= before + 10,
        "kubectl logs -f stopped delivering after tick {} (tick {before} was already written)\nstdout:\n{out}\nstderr:\n{err}",
        max_tick(&out)
    );
    let followed = ticks(&out);
    assert_eq!(followed[0], 1, "-f starts from the beginning of the log:\n{out}");
    assert!(
        followed.windows(2).all(|w| w[1] == w[0] + 1),
        "-f lost or reordered lines:\n{out}"
    );

    // A follow with a tail starts at the end and keeps going.
    let before = max_tick(&server.kubectl_ok(&["logs", "ticker"]));
    let follow = server.kubectl_background(&["logs", "-f", "--tail", "1", "ticker"]);
    let (out, err) = follow.stop_when(START, |out| max_tick(out) >= before + 5);
    let followed = ticks(&out);
    assert!(
        max_tick(&out) >= before + 5 && followed[0] >= before,
        "kubectl logs -f --tail 1 (tick {before} already written):\nstdout:\n{out}\nstderr:\n{err}"
    );
}

#[test]
fn kubectl_logs_defaults_to_the_first_container_and_c_picks_another() {
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "pair",
        &format!(
            "  containers:\n{}{}",
            container("first", r#"["serve", "--log-every", "500"]"#),
            container("second", r#"["sh", "-c", "echo second says hello; sleep 3600"]"#)
        ),
    );
    run_pod(&server, "pair", &manifest);
    wait_ticks(&server, &["logs", "pair", "-c", "first"], 1);

    // kubectl 1.35 picks the first container and says so on stderr.
    let out = server.kubectl(&["logs", "pair"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "kubectl logs pair failed:\n{stderr}");
    assert!(
        stdout.contains("serving on :8080 as pair") && stdout.contains("tick 1"),
        "{stdout}"
    );
    assert!(!stdout.contains("second says hello"), "{stdout}");
    assert!(
        stderr.contains(r#"Defaulted container "first" out of: first, second"#),
        "{stderr}"
    );

    let second = eventually(START, || {
        let log = server.kubectl_ok(&["logs", "pair", "-c", "second"]);
        (!log.is_empty()).then_some(log)
    })
    .expect("the second container's log stays empty");
    assert_eq!(second, "second says hello\n");

    // `--all-containers` fetches each container's log in turn.
    let all = server.kubectl_ok(&["logs", "pair", "--all-containers", "--prefix"]);
    assert!(all.contains("[pod/pair/first] tick 1"), "{all}");
    assert!(all.contains("[pod/pair/second] second says hello"), "{all}");

    // A container the pod does not have.
    let err = server.kubectl_err(&["logs", "pair", "-c", "third"]);
    assert!(err.contains(r#"container third is not valid for pod pair"#), "{err}");
}

#[test]
fn kubectl_logs_previous_shows_the_instance_before_a_restart() {
    let server = Server::start_with_agent();
    // The first instance finds no marker in the pod's emptyDir, leaves one, prints a line and fails; every later
    // instance finds the marker, prints it and stays up. So the pod settles Running with restartCount 1, and
    // the two instances' logs differ.
    // Docker copies stdout and stderr into the log through separate pipes, so two lines written a moment apart on
    // different streams may land in either order; the `sleep 1` keeps the order the `--tail 1` check relies on.
    let script = "cat /data/marker && sleep 3600; sleep 1; echo left-by-first > /data/marker; \
                  echo first instance failing; exit 1";
    let manifest = pod_yaml(
        &server,
        "phoenix",
        &format!(
            "  containers:\n{}    volumeMounts:\n    - name: data\n      mountPath: /data\n  volumes:\n  - name: data\n    emptyDir: {{}}\n",
            container("app", &format!(r#"["sh", "-c", "{script}"]"#))
        ),
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest);
    let pod = wait_pod(&server, "phoenix", START, "running again after a restart", |p| {
        let app = container_status(p, "app");
        app["restartCount"].as_i64().unwrap_or(0) >= 1 && app["state"]["running"].is_object()
    });
    let app = container_status(&pod, "app");
    assert_eq!(app["restartCount"], 1, "{app}");
    assert_eq!(app["lastState"]["terminated"]["exitCode"], 1, "{app}");

    // The current instance's log, eventually (it may be a moment between start and first write).
    let current = eventually(START, || {
        let log = server.kubectl_ok(&["logs", "phoenix"]);
        (!log.is_empty()).then_some(log)
    })
    .expect("the running instance's log stays empty");
    assert_eq!(current, "left-by-first\n");

    // `--previous` (and `-p`): the failed first instance, with what it wrote to stdout and stderr.
    for flag in ["--previous", "-p"] {
        let previous = server.kubectl_ok(&["logs", "phoenix", flag]);
        assert!(previous.contains("first instance failing\n"), "{flag}:\n{previous}");
        assert!(
            previous.contains("cat: /data/marker"),
            "{flag}: stderr is in the log too:\n{previous}"
        );
        assert!(!previous.contains("left-by-first"), "{flag}:\n{previous}");
    }
    let tail = server.kubectl_ok(&["logs", "phoenix", "--previous", "--tail", "1"]);
    assert_eq!(tail, "first instance failing\n");

    // A pod that never restarted has no previous instance: upstream's kubelet message.
    let manifest = pod_yaml(
        &server,
        "steady",
        &format!("  containers:\n{}", container("web", r#"["serve"]"#)),
    );
    run_pod(&server, "steady", &manifest);
    let err = server.kubectl_err(&["logs", "steady", "--previous"]);
    assert!(
        err.contains(r#"previous terminated container "web" in pod "steady" not found"#),
        "{err}"
    );
}

#[test]
fn kubectl_exec_runs_commands_with_exit_codes_stdin_and_a_chosen_container() {
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "shell",
        &format!(
            "  containers:\n{}    env:\n    - name: WHO\n      value: main\n{}    env:\n    - name: WHO\n      value: helper\n",
            container("main", r#"["serve"]"#),
            container("helper", r#"["sleep", "3600"]"#)
        ),
    );
    run_pod(&server, "shell", &manifest);

    // Output comes back, and kubectl (defaulting to the first container, as for logs) exits 0.
    let run = kubectl_timed(&server, &["exec", "shell", "--", "echo", "hi"], "");
    assert_eq!(run.code(), Some(0), "{}", run.describe("exec echo hi"));
    assert_eq!(run.stdout, "hi\n");
    assert!(
        run.stderr
            .contains(r#"Defaulted container "main" out of: main, helper"#),
        "{}",
        run.stderr
    );

    // The command's exit code becomes kubectl's, with upstream's message.
    let run = kubectl_timed(
        &server,
        &["exec", "shell", "-c", "main", "--", "sh", "-c", "exit 3"],
        "",
    );
    assert_eq!(run.code(), Some(3), "{}", run.describe("exec exit 3"));
    assert!(
        run.stderr.contains("command terminated with exit code 3"),
        "{}",
        run.stderr
    );

    // stdout and stderr arrive on their own streams.
    let run = kubectl_timed(
        &server,
        &[
            "exec",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo to-out; cat /nonexistent",
        ],
        "",
    );
    assert_eq!(run.code(), Some(1), "{}", run.describe("exec cat /nonexistent"));
    assert_eq!(run.stdout, "to-out\n");
    assert!(run.stderr.contains("cat: /nonexistent"), "{}", run.stderr);

    // A command that does not exist: Docker's exec reports it as exit code 126, with runc's reason in the output,
    // as on a Docker-based upstream node.
    let run = kubectl_timed(&server, &["exec", "shell", "-c", "main", "--", "/no/such/program"], "");
    assert!(
        run.code() == Some(126)
            && run.stderr.contains("command terminated with exit code 126")
            && run.stdout.contains("/no/such/program"),
        "{}",
        run.describe("exec /no/such/program")
    );

    // `-i`: stdin reaches the command and its end (kubectl closes the stream) ends `cat`.
    let input = "first line\nsecond line\n";
    let run = kubectl_timed(&server, &["exec", "-i", "shell", "-c", "main", "--", "cat"], input);
    assert_eq!(run.code(), Some(0), "{}", run.describe("exec -i cat"));
    assert_eq!(run.stdout, input);
    // Without -i the command gets no stdin at all.
    let out = kubectl_timed_ok(&server, &["exec", "shell", "-c", "main", "--", "cat"]);
    assert_eq!(out, "");

    // `-c` picks the container: each sees its own environment.
    let out = kubectl_timed_ok(
        &server,
        &["exec", "shell", "-c", "helper", "--", "sh", "-c", "echo I am $WHO"],
    );
    assert_eq!(out, "I am helper\n");
    let out = kubectl_timed_ok(
        &server,
        &["exec", "shell", "-c", "main", "--", "sh", "-c", "echo I am $WHO"],
    );
    assert_eq!(out, "I am main\n");
    let run = kubectl_timed(&server, &["exec", "shell", "-c", "nope", "--", "true"], "");
    assert!(
        run.code() != Some(0) && run.stderr.contains("container nope is not valid for pod shell"),
        "{}",
        run.describe("exec -c nope")
    );

    // A pod whose containers have all finished cannot be exec'd into.
    let manifest = pod_yaml(
        &server,
        "done",
        &format!(
            "  restartPolicy: Never\n  containers:\n{}",
            container("once", r#"["echo", "finished"]"#)
        ),
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest);
    wait_pod(&server, "done", START, "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let run = kubectl_timed(&server, &["exec", "done", "--", "echo", "hi"], "");
    assert!(
        run.code() != Some(0)
            && run
                .stderr
                .contains("cannot exec into a container in a completed pod; current phase is Succeeded"),
        "{}",
        run.describe("exec into a Succeeded pod")
    );
}

#[test]
fn kubectl_exec_it_gives_an_interactive_shell_on_a_terminal() {
    assert!(
        std::path::Path::new("/usr/bin/script").exists(),
        "this test needs `script` from util-linux to give kubectl a terminal"
    );
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "tty",
        &format!(
            "  containers:\n{}    env:\n    - name: WHO\n      value: from-the-pod\n",
            container("main", r#"["serve"]"#)
        ),
    );
    run_pod(&server, "tty", &manifest);

    // `script` runs kubectl on a pseudo-terminal, as a user's shell would. What we type is echoed by the local
    // terminal before kubectl switches it to raw mode, so the check is on text only the pod can produce: the
    // variable's value.
    let kubectl = support::kubectl().display().to_string();
    let (out, err) = output_files(&server);
    let mut child = Command::new("/usr/bin/script")
        .args(["-q", "-e", "-c", &format!("{kubectl} exec -it tty -- sh"), "/dev/null"])
        .env("KUBECONFIG", server.kubeconfig_path())
        .env("KUBECACHEDIR", server.scratch("kubecache"))
        .env("HOME", server.scratch(""))
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"echo tty-$WHO\n").expect("type a command");
    stdin.flush().expect("flush");
    let answered = eventually(COMMAND, || {
        fs::read_to_string(&out).ok().filter(|o| o.contains("tty-from-the-pod"))
    });
    // Leave the shell; kubectl then exits with the shell's status.
    let _ = stdin.write_all(b"exit 0\n");
    let _ = stdin.flush();
    let run = finish(child, COMMAND, out, err);
    drop(stdin);
    assert!(answered.is_some(), "{}", run.describe("the shell never answered"));
    assert_eq!(run.code(), Some(0), "{}", run.describe("exec -it sh; exit 0"));
}

/// Runs `tests/python/<script> KUBECONFIG default <pod>` and fails the test unless every check in it passed.
fn run_python_checks(python: &Path, server: &Server, script: &str, pod: &str) {
    let (out, err) = output_files(server);
    let child = Command::new(python)
        .arg(repo_root().join("tests/python").join(script))
        .args([server.kubeconfig_path().as_os_str(), "default".as_ref(), pod.as_ref()])
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("run python");
    let run = finish(child, Duration::from_secs(300), out, err);
    let report = format!("--- stdout ---\n{}--- stderr ---\n{}", run.stdout, run.stderr);
    println!("{report}");
    assert_eq!(run.code(), Some(0), "{script} failed:\n{report}");
}

#[test]
fn the_python_client_execs_and_reads_logs() {
    let python = python();
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "pyclient",
        &format!(
            "  containers:\n{}",
            container("main", r#"["serve", "--log-every", "200"]"#)
        ),
    );
    run_pod(&server, "pyclient", &manifest);
    wait_ticks(&server, &["logs", "pyclient"], 5);

    run_python_checks(python, &server, "logs_exec_test.py", "pyclient");
}

/// Starts a pod whose only container, `main`, runs `cat` on an open stdin (`stdin: true`), and waits until it runs.
fn cat_pod(server: &Server, name: &str) {
    let manifest = pod_yaml(
        server,
        name,
        &format!("  containers:\n{}    stdin: true\n", container("main", r#"["cat"]"#)),
    );
    run_pod(server, name, &manifest);
}

/// Starts kubectl with its stdin a pipe kept open by the caller (a user at a keyboard, not a finished file).
fn kubectl_interactive(server: &Server, args: &[&str]) -> (Child, std::process::ChildStdin, PathBuf, PathBuf) {
    let (out, err) = output_files(server);
    let mut child = server
        .kubectl_cmd(args)
        .stdin(Stdio::piped())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn kubectl");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin, out, err)
}

#[test]
fn kubectl_attach_i_talks_to_the_containers_own_process_and_leaves_it_running() {
    let server = Server::start_with_agent();
    cat_pod(&server, "catty");

    for line in ["first attach\n", "second attach\n"] {
        // What is typed reaches the container's `cat`, whose echo comes back.
        let (child, mut stdin, out, err) = kubectl_interactive(&server, &["attach", "-i", "catty"]);
        stdin.write_all(line.as_bytes()).expect("type into kubectl");
        stdin.flush().expect("flush");
        let echoed = eventually(COMMAND, || fs::read_to_string(&out).ok().filter(|o| o == line));
        // The end of kubectl's input ends the attach (without `stdinOnce` it does not close the container's
        // stdin), and kubectl exits 0.
        drop(stdin);
        let run = finish(child, COMMAND, out, err);
        assert!(echoed.is_some(), "{}", run.describe("the pod never echoed"));
        assert_eq!(run.code(), Some(0), "{}", run.describe("kubectl attach -i"));
        assert_eq!(run.stdout, line);
    }
    // Both attaches talked to the same process: the container never restarted.
    let pod = server.kubectl_ok(&["get", "pod", "catty", "-o", "json"]);
    let pod: Value = serde_json::from_str(&pod).expect("pod JSON");
    let main = container_status(&pod, "main");
    assert!(
        main["state"]["running"].is_object() && main["restartCount"] == 0,
        "{main}"
    );
    // Everything it echoed is in its log too.
    assert_eq!(server.kubectl_ok(&["logs", "catty"]), "first attach\nsecond attach\n");

    // Without -i, attach shows what the container writes from now on, and nothing from before.
    let manifest = pod_yaml(
        &server,
        "ticker",
        &format!(
            "  containers:\n{}",
            container("main", r#"["serve", "--log-every", "200"]"#)
        ),
    );
    run_pod(&server, "ticker", &manifest);
    let before = max_tick(&wait_ticks(&server, &["logs", "ticker"], 3));
    let attached = server.kubectl_background(&["attach", "ticker"]);
    let (out, err) = attached.stop_when(START, |out| ticks(out).len() >= 3);
    let seen = ticks(&out);
    assert!(
        seen.len() >= 3 && seen[0] >= before && seen.windows(2).all(|w| w[1] == w[0] + 1),
        "kubectl attach (tick {before} already written):\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(!out.contains("serving on"), "attach replayed the log:\n{out}");

    // A container the pod does not have: kubectl checks this itself, from the pod the API server serves.
    let run = kubectl_timed(&server, &["attach", "catty", "-c", "nope"], "");
    assert!(
        run.code() != Some(0) && run.stderr.contains("container nope not found in pod catty"),
        "{}",
        run.describe("attach -c nope")
    );
}

/// `kubectl run -i --rm --restart=Never` of the workload image on this server's node (no scheduler yet); returns
/// what it did. With `input`, kubectl's stdin is that text and then closed, as a shell pipe does; without, it is a
/// pipe left open, as a terminal would be.
fn kubectl_run_i_rm(server: &Server, name: &str, command: &[&str], input: Option<&str>) -> Run {
    let overrides = format!(r#"{{"spec":{{"nodeName":"{}"}}}}"#, server.node());
    let mut args = vec![
        "run",
        "-i",
        "--rm",
        "--restart=Never",
        "--image",
        IMAGE,
        "--overrides",
        &overrides,
        name,
        "--",
    ];
    args.extend_from_slice(command);
    let (child, mut stdin, out, err) = kubectl_interactive(server, &args);
    let run = match input {
        Some(input) => {
            stdin.write_all(input.as_bytes()).expect("write kubectl's stdin");
            drop(stdin);
            finish(child, Duration::from_secs(180), out, err)
        }
        None => {
            let run = finish(child, Duration::from_secs(180), out, err);
            drop(stdin);
            run
        }
    };
    let what = format!("kubectl {}", args.join(" "));
    assert_eq!(run.code(), Some(0), "{}", run.describe(&what));
    assert!(
        run.stdout.contains(&format!("pod \"{name}\" deleted")),
        "{}",
        run.describe(&what)
    );
    let gone = eventually(START, || {
        let out = server.kubectl(&["get", "pod", name, "-o", "name"]);
        text(&out.stderr).contains("NotFound").then_some(())
    });
    assert!(gone.is_some(), "pod {name} still exists after kubectl run --rm");
    run
}

#[test]
fn kubectl_run_i_rm_prints_the_output_and_deletes_the_pod() {
    let server = Server::start_with_agent();
    // kubectl attaches once it sees the pod running, or prints the log if the pod has already completed; either
    // way the output arrives. (A bare `echo hello` can exit in the moment between kubectl's attach and its first
    // read, and then kubectl shows nothing: the agent reports Running sooner than the kubelet's 1 s relist would.)
    let run = kubectl_run_i_rm(&server, "hello", &["sh", "-c", "sleep 1; echo hello"], None);
    assert!(
        run.stdout.lines().any(|l| l == "hello"),
        "{}",
        run.describe("run -- sh -c 'sleep 1; echo hello'")
    );

    // One still running when kubectl attaches: the output comes through the attach, and the pod's exit ends it.
    let run = kubectl_run_i_rm(&server, "later", &["sh", "-c", "sleep 5; echo hello from attach"], None);
    assert!(
        run.stdout.lines().any(|l| l == "hello from attach"),
        "{}",
        run.describe("run -- sh -c 'sleep 5; echo ...'")
    );
    assert!(
        run.stderr
            .contains("If you don't see a command prompt, try pressing enter.")
            && !run.stderr.contains("falling back to streaming logs"),
        "{}",
        run.describe("kubectl did not attach")
    );
}

#[test]
fn kubectl_run_i_rm_feeds_piped_input_and_the_end_of_it_to_the_container() {
    let server = Server::start_with_agent();
    // kubectl run -i sets stdin and stdinOnce: when kubectl's input ends, the container's does too, so `cat` exits
    // and the pod completes.
    let run = kubectl_run_i_rm(&server, "piped", &["cat"], Some("through stdin\n"));
    assert!(
        run.stdout.lines().any(|l| l == "through stdin"),
        "{}",
        run.describe("run -i -- cat < input")
    );
}

#[test]
fn the_python_client_attaches_to_a_pods_stdin() {
    let python = python();
    let server = Server::start_with_agent();
    cat_pod(&server, "pyattach");
    run_python_checks(python, &server, "attach_test.py", "pyattach");
    assert_eq!(
        server.kubectl_ok(&["logs", "pyattach"]),
        "typed into the pod\nonce more\n"
    );
}

/// Starts `kubectl port-forward pod/NAME :REMOTE` and returns it with the local port it chose.
fn port_forward(server: &Server, pod: &str, remote: u16) -> (support::Background, u16) {
    let pf = server.kubectl_background(&["port-forward", &format!("pod/{pod}"), &format!(":{remote}")]);
    let mut out = String::new();
    let port = eventually(COMMAND, || {
        out = pf.stdout();
        let rest = out.split("Forwarding from 127.0.0.1:").nth(1)?;
        rest.split_whitespace().next()?.parse::<u16>().ok()
    })
    .unwrap_or_else(|| panic!("kubectl port-forward never said where it listens; stdout:\n{out}"));
    (pf, port)
}

/// A plain HTTP/1.1 GET of `/` through 127.0.0.1:`port`, read to the end of the reply.
fn http_get_local(port: u16) -> String {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    conn.set_read_timeout(Some(COMMAND)).expect("set a read timeout");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply
}

#[test]
fn kubectl_port_forward_reaches_the_pods_port_over_several_connections() {
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "fwd",
        &format!("  containers:\n{}", container("web", r#"["serve"]"#)),
    );
    run_pod(&server, "fwd", &manifest);
    let (pf, port) = port_forward(&server, "fwd", 8080);

    let reply = http_get_local(port);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("Hello from fwd"), "{reply}");

    // Two connections at once, each answered on its own stream pair.
    let both: Vec<String> = std::thread::scope(|s| {
        let a = s.spawn(|| http_get_local(port));
        let b = s.spawn(|| http_get_local(port));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for reply in &both {
        assert!(reply.contains("Hello from fwd"), "{reply}");
    }
    // And one after another on the same port-forward, so finished connections are cleaned up properly.
    for _ in 0..3 {
        assert!(http_get_local(port).contains("Hello from fwd"));
    }
    let (out, err) = pf.stop_when(Duration::from_millis(100), |_| false);
    assert!(
        out.contains("Handling connection for"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(!err.contains("error"), "stderr:\n{err}");
}

#[test]
fn kubectl_port_forward_to_a_closed_port_reports_the_kubelets_error() {
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "nofwd",
        &format!("  containers:\n{}", container("web", r#"["serve"]"#)),
    );
    run_pod(&server, "nofwd", &manifest);
    let (pf, port) = port_forward(&server, "nofwd", 9);
    let reply = http_get_local(port);
    assert_eq!(reply, "", "nothing listens on port 9 in the pod");
    let (_, err) = pf.stop_when(Duration::from_secs(5), |_| false);
    assert!(
        err.contains("error forwarding port 9 to pod") && err.contains("connect: connection refused"),
        "stderr:\n{err}"
    );
}

#[test]
fn kubectl_port_forward_falls_back_to_spdy_when_told_not_to_tunnel() {
    // kubectl 1.35 uses SPDY upgraded directly on the connection when WebSocket tunnelling is switched off (and,
    // unasked, when the WebSocket upgrade fails): the API server forwards that upgrade too.
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "spdyfwd",
        &format!("  containers:\n{}", container("web", r#"["serve"]"#)),
    );
    run_pod(&server, "spdyfwd", &manifest);
    let (out, err) = output_files(&server);
    let mut child = server
        .kubectl_cmd(&["port-forward", "pod/spdyfwd", ":8080", "-v=6"])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn kubectl");
    let port = eventually(COMMAND, || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        let rest = text.split("Forwarding from 127.0.0.1:").nth(1)?.to_string();
        rest.split_whitespace().next()?.parse::<u16>().ok()
    });
    let reply = port.map(http_get_local).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let log = fs::read_to_string(&err).unwrap_or_default();
    assert!(
        reply.contains("Hello from spdyfwd"),
        "reply {reply:?}\nkubectl stderr:\n{log}"
    );
    assert!(
        log.contains(r#"verb="POST""#) && log.contains("101 Switching Protocols"),
        "kubectl did not use the SPDY upgrade:\n{log}"
    );
}

#[test]
fn the_python_client_forwards_a_pods_port() {
    let python = python();
    let server = Server::start_with_agent();
    let manifest = pod_yaml(
        &server,
        "pyfwd",
        &format!("  containers:\n{}", container("web", r#"["serve"]"#)),
    );
    run_pod(&server, "pyfwd", &manifest);
    run_python_checks(python, &server, "portforward_test.py", "pyfwd");
}
