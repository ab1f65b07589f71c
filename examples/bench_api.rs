//! `just bench-api`: the API server's durability-bound figures on this machine, measured end to end over
//! HTTPS against an in-process `berth server` on a temporary data directory.
//!
//! 1. Baseline: durable creates/s straight into the sled store (no HTTP), the ceiling the API can approach.
//! 2. Durable creates/s through the API with N concurrent clients (each its own connection).
//! 3. Create latency p50/p99 at a fixed open-loop rate of 500 creates/s.
//! 4. Watch fan-out: 100 watchers, each must receive every event of a 1,000 events/s writer; reports loss and
//!    lag (receive time minus acknowledge time).
//!
//! Each figure is the median of several runs; the API/store ratio is computed within the same run, which
//! cancels most machine noise. Not a test: it asserts nothing, it reports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_store::Store;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

const RUNS: usize = 3;
const WINDOW: Duration = Duration::from_secs(4);

struct Api {
    base: String,
    token: String,
    ca: reqwest::Certificate,
}

impl Api {
    fn client(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(self.ca.clone())
            .pool_max_idle_per_host(1)
            .build()?)
    }

    async fn create(&self, c: &reqwest::Client, ns: &str, name: &str) -> Result<Value> {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
        let resp = c
            .post(format!("{}/api/v1/namespaces/{ns}/configmaps", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(resp.status().as_u16() == 201, "create returned {}", resp.status());
        Ok(resp.json().await?)
    }

    async fn create_ns(&self, c: &reqwest::Client, ns: &str) -> Result<()> {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let resp = c
            .post(format!("{}/api/v1/namespaces", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "namespace create returned {}",
            resp.status()
        );
        Ok(())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn store_baseline(dir: &Path, writers: usize) -> Result<f64> {
    let store = Arc::new(berth_store::SledStore::open(dir)?);
    let deadline = Instant::now() + WINDOW;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let key = format!("/bench/{w}/{n}");
                store
                    .create(&key, bytes::Bytes::from_static(b"{\"data\":{\"k\":\"v\"}}"))
                    .await?;
                n += 1;
            }
            Ok::<u64, berth_store::StoreError>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / WINDOW.as_secs_f64())
}

async fn api_throughput(api: &Arc<Api>, ns: &str, clients: usize, run: usize) -> Result<f64> {
    let deadline = Instant::now() + WINDOW;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api = api.clone();
        let ns = ns.to_string();
        let client = api.client()?;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                api.create(&client, &ns, &format!("t{clients}-{run}-{c}-{n}")).await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / WINDOW.as_secs_f64())
}

/// Open loop: one create every `1/rate` seconds regardless of how long earlier ones take.
async fn fixed_rate_latency(api: &Arc<Api>, ns: &str, rate: u64, secs: u64) -> Result<Vec<f64>> {
    let clients: Vec<reqwest::Client> = (0..32).map(|_| api.client()).collect::<Result<_>>()?;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..rate * secs {
        ticker.tick().await;
        let api = api.clone();
        let client = clients[i as usize % clients.len()].clone();
        let ns = ns.to_string();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            api.create(&client, &ns, &format!("lat-{i}")).await?;
            Ok::<f64, anyhow::Error>(start.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await??);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(lat)
}

struct FanOut {
    received_min: usize,
    received_max: usize,
    sent: usize,
    lag_ms: Vec<f64>,
}

async fn watch_fanout(api: &Arc<Api>, ns: &str, watchers: usize, rate: u64, secs: u64) -> Result<FanOut> {
    let client = api.client()?;
    api.create_ns(&client, ns).await?;
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut handles = Vec::new();
    // Start every watcher from "now" so each must see exactly the events written below.
    let list: Value = client
        .get(format!("{}/api/v1/namespaces/{ns}/configmaps", api.base))
        .bearer_auth(&api.token)
        .send()
        .await?
        .json()
        .await?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let total = (rate * secs) as usize;
    for _ in 0..watchers {
        let c = api.client()?;
        let url = format!(
            "{}/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}",
            api.base
        );
        let token = api.token.clone();
        let acked = acked.clone();
        handles.push(tokio::spawn(async move {
            let resp = c.get(url).bearer_auth(token).send().await?;
            let mut stream = resp.bytes_stream();
            let mut buf = Vec::new();
            let mut got = 0usize;
            let mut lags = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(secs + 10);
            while got < total {
                let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(c)) => c?,
                    _ => break,
                };
                let now = Instant::now();
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let ev: Value = serde_json::from_slice(&line)?;
                    if ev["type"] == "ADDED" {
                        got += 1;
                        let name = ev["object"]["metadata"]["name"].as_str().unwrap_or("").to_string();
                        if let Some(t) = acked.lock().await.get(&name) {
                            lags.push(now.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                        }
                    }
                }
            }
            Ok::<(usize, Vec<f64>), anyhow::Error>((got, lags))
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writers: Vec<reqwest::Client> = (0..16).map(|_| api.client()).collect::<Result<_>>()?;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let api = api.clone();
        let c = writers[i % writers.len()].clone();
        let ns = ns.to_string();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("ev-{i}");
            api.create(&c, &ns, &name).await?;
            acked.lock().await.insert(name, Instant::now());
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut out = FanOut {
        received_min: usize::MAX,
        received_max: 0,
        sent: total,
        lag_ms: Vec::new(),
    };
    for h in handles {
        let (got, lags) = h.await??;
        out.received_min = out.received_min.min(got);
        out.received_max = out.received_max.max(got);
        out.lag_ms.extend(lags);
    }
    out.lag_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[tokio::main]
async fn main() -> Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("crypto provider already installed"))?;
    let tmp = tempfile::tempdir()?;

    println!(
        "# berth API benchmark ({} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let mut base_rates = Vec::new();
    for run in 0..RUNS {
        base_rates.push(store_baseline(&tmp.path().join(format!("store{run}")), 64).await?);
    }
    let baseline = median(base_rates);
    println!("store baseline (sled, 64 writers, no HTTP): {baseline:.0} durable creates/s");

    let data = tmp.path().join("server");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let config = berth_apiserver::Config::new(data.clone(), addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_apiserver::run(config, async move {
        let _ = stop_rx.await;
    }));
    let kubeconfig = data.join("kubeconfig");
    let started = Instant::now();
    while !kubeconfig.exists() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = std::fs::read(data.join("ca.crt")).context("reading ca.crt")?;
    let api = Arc::new(Api {
        base: format!("https://{addr}"),
        token: std::fs::read_to_string(data.join("token"))?.trim().to_string(),
        ca: reqwest::Certificate::from_pem(&ca)?,
    });

    let setup = api.client()?;
    for clients in [1usize, 8, 32, 64] {
        let ns = format!("bench-{clients}");
        api.create_ns(&setup, &ns).await?;
        let mut rates = Vec::new();
        for run in 0..RUNS {
            rates.push(api_throughput(&api, &ns, clients, run).await?);
        }
        let m = median(rates);
        println!(
            "API durable creates/s, {clients:>2} concurrent clients: {m:>6.0}   ({:.2} x store baseline)",
            m / baseline
        );
    }

    api.create_ns(&setup, "latency").await?;
    let lat = fixed_rate_latency(&api, "latency", 500, 10).await?;
    println!(
        "create latency at 500/s over {} creates: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    let fan = watch_fanout(&api, "fanout", 100, 1000, 5).await?;
    println!(
        "watch fan-out, 100 watchers x {} events at 1000/s: each watcher received {}..{} (loss: {}), lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        fan.sent,
        fan.received_min,
        fan.received_max,
        if fan.received_min == fan.sent { "none" } else { "YES" },
        percentile(&fan.lag_ms, 0.5),
        percentile(&fan.lag_ms, 0.99),
        fan.lag_ms.last().copied().unwrap_or(f64::NAN)
    );

    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}
