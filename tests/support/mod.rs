//! End-to-end test support: runs a real `berth server` in a temporary data dir and drives it with the real clients
//! (a pinned kubectl v1.35.2, the Python `kubernetes` 35.0.0 client and curl) fetched into the test cache.
//!
//! It deliberately contains no assertions about Kubernetes behaviour: the test files say what a user would see.
//! Tools that cannot be fetched make tests FAIL with the reason; nothing here skips.
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a server gets to write its kubeconfig and answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root (this package lives in `crates/berth`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where fetched tools live: `$BERTH_TEST_CACHE`, else `<repo>/.cache` (gitignored).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache"))
}

/// Runs one of `tests/tools/*.py` (which are idempotent and safe to run concurrently) and returns the path it
/// prints. Panics with the tool's output if it fails: a test that cannot get its client must fail, not skip.
fn run_tool(script: &str) -> PathBuf {
    let path = repo_root().join("tests/tools").join(script);
    let out = Command::new("python3")
        .arg(&path)
        .arg(cache_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 {}: {e} (python3 is needed to fetch test tools)",
                path.display()
            )
        });
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The pinned kubectl binary, fetched once per process (and once per cache across processes).
pub fn kubectl() -> &'static Path {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL.get_or_init(|| run_tool("fetch-kubectl.py"))
}

/// The venv's python with `kubernetes==35.0.0` installed, built once per cache.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| run_tool("python-env.py"))
}

/// Turns process output into text for assertions and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `berth server` child process with its own data dir and loopback port. Killed on drop; if the test is
/// panicking, the server's log is printed so the failure can be understood.
pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    /// The node name of the server's own agent, when it runs one.
    node: Option<String>,
    /// Extra `berth server` flags.
    extra_args: Vec<String>,
    /// The open-file limit (soft and hard) the server runs under, when the test sets one.
    open_files: Option<u64>,
}

static NEXT_NODE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Server {
    /// Starts an API-only server (no agent, no Docker) on a fresh data dir and a free port, and waits until it is
    /// ready.
    pub fn start() -> Server {
        Server::start_inner(None)
    }

    /// Starts an all-in-one server whose agent runs pods in the real Docker engine, under a node name unique to
    /// this test (`e2e-<pid>-<n>`), so tests running in parallel never touch each other's containers. Every
    /// container the agent creates carries `berth.node=<that name>`; they are all removed when the server is
    /// dropped, even if the test fails.
    pub fn start_with_agent() -> Server {
        docker_required();
        let n = NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Server::start_inner(Some(format!("e2e-{}-{n}", std::process::id())))
    }

    /// Starts an API-only server with extra flags and, when given, under an open-file limit (soft and hard, set
    /// by `prlimit`), and waits until it is ready.
    pub fn start_api_with(args: &[&str], open_files: Option<u64>) -> Server {
        Server::start_full(None, args, open_files)
    }

    fn start_inner(node: Option<String>) -> Server {
        Server::start_full(node, &[], None)
    }

    fn start_full(node: Option<String>, args: &[&str], open_files: Option<u64>) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("create temp data dir");
        let mut server = Server {
            child: None,
            dir,
            port: free_port(),
            node,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            open_files,
        };
        server.spawn();
        if let Some(node) = server.node.clone() {
            let ready = eventually(Duration::from_secs(60), || {
                let out = server.kubectl(&["get", "node", &node, "-o", "jsonpath={.status.conditions[0].status}"]);
                (text(&out.stdout) == "True").then_some(())
            });
            assert!(ready.is_some(), "node {node} never became Ready\n{}", server.log());
        }
        server
    }

    /// The node name of the server's agent.
    pub fn node(&self) -> &str {
        self.node.as_deref().expect("server runs no agent")
    }

    /// Kills the server's process (API server and agent) with SIGKILL, leaving containers running.
    pub fn kill9_agent_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The data dir the server owns.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The kubeconfig the server wrote for its admin.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir().join("kubeconfig")
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Stops the server gracefully (SIGTERM, as an operator would) and starts it again on the same data dir and
    /// port.
    pub fn restart(&mut self) {
        self.stop(true);
        self.spawn();
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and starts it again on the same data dir.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Kills the server with SIGKILL and leaves it dead; `start_again` brings it back.
    pub fn kill9(&mut self) {
        self.stop(false);
    }

    /// Starts the server again after `kill9`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        self.spawn();
    }

    fn stop(&mut self, graceful: bool) {
        let Some(mut child) = self.child.take() else { return };
        if graceful {
            // std only sends SIGKILL; `kill` from procps sends SIGTERM to this one pid.
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(50));
            }
            panic!("berth did not exit within 15s of SIGTERM\n{}", self.log());
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn spawn(&mut self) {
        kubectl(); // Fetch before starting the readiness clock.
        fs::create_dir_all(self.data_dir()).expect("create data dir");
        // The kubeconfig is rewritten on every start; removing the old one lets us wait for the new one.
        let _ = fs::remove_file(self.kubeconfig_path());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server log");
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            // Dies with the test process even if that is itself killed, so no server outlives a test run.
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--"]);
            c
        } else {
            // `env` runs the next program in place, like setpriv does.
            Command::new("env")
        };
        if let Some(n) = self.open_files {
            // prlimit sets the limit and then executes berth in place, so the limit is the server's own.
            cmd.arg("prlimit").arg(format!("--nofile={n}:{n}"));
        }
        cmd.arg(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port));
        match &self.node {
            Some(node) => {
                cmd.args(["--node-name", node, "--agent-port", "0", "--node-ip", "127.0.0.1"]);
            }
            None => {
                cmd.arg("--disable-agent");
            }
        }
        cmd.args(&self.extra_args);
        cmd.env(
            "BERTH_LOG",
            std::env::var("BERTH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn berth server"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("kubeconfig not written yet");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "berth server exited during startup ({status})\n--- server log ---\n{}",
                        self.log()
                    );
                }
            }
            if self.kubeconfig_path().exists() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() && text(&out.stdout).trim() == "ok" {
                    return;
                }
                last = format!("kubectl get --raw /readyz: {}{}", text(&out.stdout), text(&out.stderr));
            }
            sleep(Duration::from_millis(100));
        }
        panic!(
            "berth server not ready after {READY_TIMEOUT:?}; last: {last}\n--- server log ---\n{}",
            self.log()
        );
    }

    /// A kubectl command pointed at this server (its kubeconfig and its own discovery cache; kubectl caches
    /// discovery for 6 hours, which must not leak between servers or runs).
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl());
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig_path())
            .env("KUBECACHEDIR", self.dir.path().join("kubecache"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl and returns its output whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl, asserts it succeeded and returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "`kubectl {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs kubectl, asserts it failed and returns its stderr (where kubectl prints `Error from server ...`).
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "`kubectl {}` should have failed but succeeded:\n{}",
            args.join(" "),
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    /// Runs kubectl with `input` on stdin (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write kubectl stdin");
        child.wait_with_output().expect("wait for kubectl")
    }

    /// Like `kubectl_stdin` but asserts success and returns stdout.
    pub fn kubectl_stdin_ok(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_stdin(args, input);
        assert!(
            out.status.success(),
            "`kubectl {}` failed ({}):\nstdout: {}\nstderr: {}\ninput:\n{input}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Starts a long-running kubectl (e.g. `get -w`) with stdout and stderr going to files; see `Background`.
    pub fn kubectl_background(&self, args: &[&str]) -> Background {
        let n = NEXT_BACKGROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out_path = self.dir.path().join(format!("bg-{n}.out"));
        let err_path = self.dir.path().join(format!("bg-{n}.err"));
        let child = self
            .kubectl_cmd(args)
            .stdout(File::create(&out_path).expect("create bg stdout"))
            .stderr(File::create(&err_path).expect("create bg stderr"))
            .spawn()
            .expect("spawn kubectl");
        Background {
            child: Some(child),
            out_path,
            err_path,
        }
    }

    /// The admin bearer token, the CA PEM (written to a file for curl) and the server URL, from the kubeconfig.
    pub fn credentials(&self) -> Credentials {
        let raw = fs::read_to_string(self.kubeconfig_path()).expect("read kubeconfig");
        let doc: serde_yaml::Value = serde_yaml::from_str(&raw).expect("kubeconfig is YAML");
        let cluster = &doc["clusters"][0]["cluster"];
        let server = cluster["server"]
            .as_str()
            .expect("kubeconfig cluster.server")
            .to_string();
        let ca_b64 = cluster["certificate-authority-data"]
            .as_str()
            .expect("kubeconfig certificate-authority-data");
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .expect("CA data is base64");
        let ca_path = self.dir.path().join("ca.pem");
        fs::write(&ca_path, ca).expect("write CA");
        let token = doc["users"][0]["user"]["token"]
            .as_str()
            .expect("kubeconfig user.token")
            .to_string();
        Credentials { server, ca_path, token }
    }

    /// Sends one raw HTTPS request with curl, verifying the server against the cluster CA. `token` is sent as a
    /// bearer token when given; `body` is sent as-is. Returns the HTTP status and the response body; panics if no
    /// final response arrived (see `try_curl`).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let reply = self.try_curl(method, path, token, content_type, body);
        assert!(
            reply.code >= 200,
            "curl {method} {path} got no final HTTP response ({}): {}",
            reply.code,
            reply.stderr
        );
        (reply.code, reply.body)
    }

    /// Like `curl`, but returns whatever happened: `code` is curl's last status, 0 if nothing came back.
    pub fn try_curl(&self, method: &str, path: &str, token: Option<&str>, content_type: &str, body: &[u8]) -> Reply {
        let creds = self.credentials();
        let n = NEXT_BACKGROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body_path = self.dir.path().join(format!("curl-{n}.body"));
        let resp_path = self.dir.path().join(format!("curl-{n}.resp"));
        fs::write(&body_path, body).expect("write request body");
        let mut cmd = Command::new("curl");
        // HTTP/1.1: over HTTP/2, a server answering before it has read the whole body (401, 413) resets the stream,
        // which curl 7.88 reports as a framing error instead of showing the response.
        cmd.arg("--http1.1");
        // curl sends `Expect: 100-continue` with big bodies, so a server can refuse one by its Content-Length before
        // any of it is sent; wait for that answer rather than start uploading after curl's 1 s default.
        cmd.args([
            "--expect100-timeout",
            "30",
            "--max-time",
            "60",
            "-sS",
            "--write-out",
            "%{http_code}",
        ]);
        cmd.arg("--output")
            .arg(&resp_path)
            .args(["--request", method])
            .arg("--cacert")
            .arg(&creds.ca_path);
        cmd.args([
            "--header",
            "Accept: application/json",
            "--header",
            &format!("Content-Type: {content_type}"),
        ]);
        if let Some(token) = token {
            cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        if !body.is_empty() {
            cmd.arg("--data-binary").arg(format!("@{}", body_path.display()));
        }
        cmd.arg(format!("{}{path}", creds.server));
        let out = cmd.output().expect("run curl (is curl installed?)");
        Reply {
            // A server may answer early (413) and close the upload, which curl reports as an error after the
            // status it got, so the exit code alone says little.
            code: text(&out.stdout).trim().parse().unwrap_or(0),
            body: fs::read_to_string(&resp_path).unwrap_or_default(),
            stderr: text(&out.stderr),
        }
    }

    /// A path in this server's temp dir (not its data dir) for test scratch files.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(false);
        if let Some(node) = &self.node {
            remove_containers(&format!("berth.node={node}"));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- berth server log ({}) ---\n{}",
                self.log_path().display(),
                self.log()
            );
        }
    }
}

/// What `try_curl` saw.
pub struct Reply {
    /// The last HTTP status curl received (100 if only `100 Continue` came), 0 if none.
    pub code: u16,
    /// The response body.
    pub body: String,
    /// curl's own error messages.
    pub stderr: String,
}

/// What a raw HTTP client needs to talk to the server as the admin.
pub struct Credentials {
    /// `https://127.0.0.1:PORT`
    pub server: String,
    /// The cluster CA certificate as a PEM file.
    pub ca_path: PathBuf,
    /// The admin bearer token.
    pub token: String,
}

static NEXT_BACKGROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A background kubectl; killed on drop so none outlives its test.
pub struct Background {
    child: Option<Child>,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Background {
    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out_path).unwrap_or_default()
    }

    /// Waits until its stdout satisfies `done` (or the timeout passes), then kills it and returns (stdout, stderr).
    pub fn stop_when(mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> (String, String) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !done(&self.stdout()) {
            sleep(Duration::from_millis(100));
        }
        self.kill();
        (self.stdout(), fs::read_to_string(&self.err_path).unwrap_or_default())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now. (Racy in theory; another test would have to grab the same
/// ephemeral port between our probe and the server's bind.)
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind probe port");
    listener.local_addr().expect("probe addr").port()
}

/// A `berth agent` process joined to a server, with its own node name and data dir; killed on drop, and its
/// containers removed.
pub struct Agent {
    child: Option<Child>,
    node: String,
    log_path: PathBuf,
    data_dir: PathBuf,
    command: Vec<std::ffi::OsString>,
}

impl Agent {
    /// Starts `berth agent` against `server` under a fresh unique node name and waits until its Node is Ready.
    pub fn join(server: &Server) -> Agent {
        docker_required();
        let n = NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let node = format!("e2e-{}-{n}", std::process::id());
        let data_dir = server.scratch(&format!("agent-{node}"));
        fs::create_dir_all(&data_dir).expect("agent data dir");
        let log_path = data_dir.join("agent.log");
        let token = fs::read_to_string(server.data_dir().join("token")).expect("server token");
        let command: Vec<std::ffi::OsString> = [
            "--pdeathsig".into(),
            "KILL".into(),
            "--".into(),
            env!("CARGO_BIN_EXE_berth").into(),
            "agent".into(),
            "--server".into(),
            format!("https://127.0.0.1:{}", server.port()).into(),
            "--token".into(),
            token.trim().into(),
            "--ca-file".into(),
            server.data_dir().join("ca.crt").into_os_string(),
            "--data-dir".into(),
            data_dir.clone().into_os_string(),
            "--node-name".into(),
            node.clone().into(),
            "--agent-port".into(),
            "0".into(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--zone".into(),
            "zone-b".into(),
        ]
        .into();
        let mut agent = Agent {
            child: None,
            node,
            log_path,
            data_dir,
            command,
        };
        agent.spawn();
        let ready = eventually(Duration::from_secs(60), || {
            let out = server.kubectl(&[
                "get",
                "node",
                &agent.node,
                "-o",
                "jsonpath={.status.conditions[0].status}",
            ]);
            (text(&out.stdout) == "True").then_some(())
        });
        assert!(
            ready.is_some(),
            "agent {} never became Ready\n{}",
            agent.node,
            agent.log()
        );
        agent
    }

    /// Starts the agent process (appending to its log).
    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("agent log");
        let child = Command::new("/usr/bin/setpriv")
            .args(&self.command)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn berth agent");
        self.child = Some(child);
    }

    /// Kills the agent with SIGKILL, leaving its containers and mounts behind.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again after [`Agent::kill9`], with the same node name and data dir.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// The agent's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The agent's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_containers(&format!("berth.node={}", self.node));
        if std::thread::panicking() {
            eprintln!("--- berth agent log ({}) ---\n{}", self.node, self.log());
        }
    }
}

/// The built-in workload image every agent loads (`crates/image`).
pub const WORKLOAD_IMAGE: &str = "localhost/berth/workload:0.1.0";

/// A pod manifest bound to the server's node (there is no scheduler yet), labelled `app: <name>`, with `spec` as
/// YAML lines indented 2 under `spec`.
pub fn pod_yaml(server: &Server, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  nodeName: {}\n{spec}",
        server.node()
    )
}

/// Waits until `check` holds for the pod's JSON (`kubectl get pod -o json`), failing with the last JSON seen.
pub fn wait_pod(
    server: &Server,
    name: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let found = eventually(timeout, || {
        let out = server.kubectl(&["get", "pod", name, "-o", "json"]);
        let pod: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        last = pod.clone();
        check(&pod).then_some(pod)
    });
    found.unwrap_or_else(|| panic!("pod {name}: {what} not reached in {timeout:?}; last:\n{last:#}"))
}

/// The status of the named container in a pod's JSON (`Null` if it has none yet).
pub fn container_status<'a>(pod: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&NULL)
}

/// Fails the test with a clear message when the Docker engine cannot be reached: pod tests need it, and must never
/// pass silently without it.
pub fn docker_required() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "these tests need a running Docker engine: docker version failed: {}",
            text(&out.stderr)
        ),
        Err(e) => panic!("these tests need Docker: cannot run the docker CLI: {e}"),
    }
}

/// Force-removes every container carrying `label` (`key=value`).
pub fn remove_containers(label: &str) {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output();
    let Ok(out) = out else { return };
    let ids: Vec<String> = text(&out.stdout).split_whitespace().map(String::from).collect();
    if !ids.is_empty() {
        let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(100));
    }
}
