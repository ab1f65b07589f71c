//! `just bench-attacks`: the server's memory under the attacks of issue 8 (hole 3 and hole 5), measured on a real
//! `berth server` process so that its resident set (RSS, from `/proc/<pid>/status`) is the server's alone.
//!
//! It starts `target/release/berth server --disable-agent` on a temporary data directory, measures the idle RSS,
//! then runs each attack and reports its HTTP status and latency, the RSS right after it, and the RSS after up to
//! a minute (the target is to be back under twice the idle figure within that minute):
//! 1. a JSON patch of 16 doubling `copy` operations of an unknown root field (it stored a 68 MB ConfigMap);
//! 2. the same with 21 copies (it killed a server capped at 3 GiB);
//! 3. a 1 MB YAML body naming one 1 MiB string 2,000 times (2.35 GB and 16 s before a 422);
//! 4. 400 PUTs of a 1 MB ConfigMap (1.2 GB of retained history), then a restart (1.6 GB).
//!
//! Not a test: it asserts nothing, it reports. It needs the release binary beside it (`just bench-attacks`
//! builds it first); `BERTH_BIN` names another one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::time::Instant;

/// How long an attack's memory gets to come back down before the figure is reported as it stands.
const SETTLE: Duration = Duration::from_secs(60);

/// One running server process and what a client needs to reach it.
struct Server {
    child: Child,
    data: PathBuf,
    port: u16,
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Server {
    /// Starts the server on `data` and waits until it answers `/readyz` with its token.
    async fn start(bin: &Path, data: &Path, port: u16) -> Result<Server> {
        std::fs::create_dir_all(data)?;
        let _ = std::fs::remove_file(data.join("kubeconfig"));
        let log = std::fs::File::create(data.with_extension("log"))?;
        let child = Command::new(bin)
            .args([
                "server",
                "--disable-agent",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env("BERTH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let started = Instant::now();
        while !data.join("kubeconfig").exists() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ca = std::fs::read(data.join("ca.crt")).context("reading ca.crt")?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .timeout(Duration::from_secs(120))
            .build()?;
        let server = Server {
            child,
            data: data.to_path_buf(),
            port,
            base: format!("https://127.0.0.1:{port}"),
            token: std::fs::read_to_string(data.join("token"))?.trim().to_string(),
            client,
        };
        while server.send("GET", "/readyz", "", Vec::new()).await.ok().map(|r| r.0) != Some(200) {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "server never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    /// Sends one request; returns the status and how long the answer took.
    async fn send(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Result<(u16, Duration)> {
        let started = Instant::now();
        let mut request = self
            .client
            .request(method.parse()?, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await?;
        let code = response.status().as_u16();
        response.bytes().await?;
        Ok((code, started.elapsed()))
    }

    /// The server's resident set, in MiB.
    fn rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS in /proc status")?;
        Ok(kib / 1024.0)
    }

    /// Polls the RSS once a second until it is under `target` MiB or [`SETTLE`] has passed; returns the last
    /// figure and when it was taken.
    async fn settle(&self, target: f64) -> Result<(f64, Duration)> {
        let started = Instant::now();
        loop {
            let rss = self.rss_mib()?;
            if rss < target || started.elapsed() >= SETTLE {
                return Ok((rss, started.elapsed()));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Stops the server with SIGTERM (as an operator would) and waits for it to exit.
    fn stop(mut self) -> Result<(PathBuf, u16)> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok((self.data.clone(), self.port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An unknown root field of `field_bytes`, copied into itself `copies` times.
fn doubling_patch(field_bytes: usize, copies: usize) -> Vec<u8> {
    let mut ops = vec![json!({"op": "add", "path": "/foo", "value": {"a": "x".repeat(field_bytes)}})];
    for i in 0..copies {
        ops.push(json!({"op": "copy", "from": "/foo", "path": format!("/foo/c{i}")}));
    }
    serde_json::to_vec(&ops).unwrap_or_default()
}

/// One 1 MiB string aliased `aliases` times.
fn aliased_yaml(aliases: usize) -> Vec<u8> {
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a: &big {}\n  b: [",
        "x".repeat(1024 * 1024)
    );
    yaml.push_str(&vec!["*big"; aliases].join(","));
    yaml.push_str("]\n");
    yaml.into_bytes()
}

fn configmap(name: &str, value: String) -> Vec<u8> {
    let body: Value =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}});
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Prints one attack's line: status, latency, RSS after and after settling.
async fn report(server: &Server, idle: f64, name: &str, outcome: &str) -> Result<()> {
    let after = server.rss_mib()?;
    let (settled, took) = server.settle(2.0 * idle).await?;
    let verdict = if settled < 2.0 * idle { "ok" } else { "OVER 2x idle" };
    println!(
        "{name:<42} {outcome:<26} RSS after {after:>7.1} MiB, after {:>4.0} s {settled:>7.1} MiB  ({verdict})",
        took.as_secs_f64()
    );
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn berth_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return Ok(bin.into());
    }
    // target/<profile>/examples/bench-attacks → target/<profile>/berth
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("berth"))
        .context("no directory above the example")?;
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (just bench-attacks does)",
        bin.display()
    );
    Ok(bin)
}

#[tokio::main]
async fn main() -> Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("crypto provider already installed"))?;
    let bin = berth_binary()?;
    let tmp = tempfile::tempdir()?;
    let server = Server::start(&bin, &tmp.path().join("data"), free_port()?).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.rss_mib()?;
    println!("# berth memory under attack ({})", bin.display());
    println!(
        "idle RSS: {idle:.1} MiB; target after each attack: under {:.1} MiB within {SETTLE:?}",
        2.0 * idle
    );

    const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
    let (code, _) = server
        .send("POST", CONFIGMAPS, "application/json", configmap("target", "v".into()))
        .await?;
    anyhow::ensure!(code == 201, "creating the target ConfigMap returned {code}");
    for copies in [16, 21] {
        // A 1 KiB field: 16 doublings of it are the 68 MB object of the report.
        let patch = doubling_patch(1024, copies);
        let (code, took) = server
            .send(
                "PATCH",
                &format!("{CONFIGMAPS}/target"),
                "application/json-patch+json",
                patch,
            )
            .await?;
        let outcome = format!("{code} in {:.1} ms", took.as_secs_f64() * 1e3);
        report(
            &server,
            idle,
            &format!("JSON patch, {copies} doubling copies"),
            &outcome,
        )
        .await?;
    }

    let (code, took) = server
        .send("POST", CONFIGMAPS, "application/yaml", aliased_yaml(2_000))
        .await?;
    let outcome = format!("{code} in {:.1} ms", took.as_secs_f64() * 1e3);
    report(&server, idle, "YAML, 1 MiB string aliased 2,000 times", &outcome).await?;

    let (code, _) = server
        .send(
            "POST",
            CONFIGMAPS,
            "application/json",
            configmap("big", "0".repeat(1000)),
        )
        .await?;
    anyhow::ensure!(code == 201, "creating the big ConfigMap returned {code}");
    let started = Instant::now();
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..400 {
        // Each PUT changes the value, so each is stored and retained in the history.
        let value = format!("{i:06}{}", "v".repeat(1_000_000 - 6));
        let (code, _) = server
            .send(
                "PUT",
                &format!("{CONFIGMAPS}/big"),
                "application/json",
                configmap("big", value),
            )
            .await?;
        *codes.entry(code).or_default() += 1;
    }
    let outcome = format!("{codes:?} in {:.1} s", started.elapsed().as_secs_f64());
    report(&server, idle, "400 PUTs of a 1 MB ConfigMap", &outcome).await?;

    let (data, port) = server.stop()?;
    let started = Instant::now();
    let server = Server::start(&bin, &data, port).await?;
    let outcome = format!("ready in {:.1} s", started.elapsed().as_secs_f64());
    report(&server, idle, "restart after the 400 PUTs", &outcome).await?;
    drop(server);
    Ok(())
}
