//! Micro benchmark of durable creates through the store, the number that bounds the API server's write rate.
//!
//! For 1, 16 and 64 concurrent writers it opens a fresh sled store in a temporary directory, lets every writer
//! create keys (about 1 KiB values, like a small object's JSON) for a fixed time, and reports creates per second and
//! the mean group-commit batch size, as medians over a few runs. An in-memory run is printed alongside as the
//! engine's ceiling without disk. It measures the store alone, not HTTP or JSON handling.
//!
//! Usage: `cargo run --release -p berth-store --example store_bench -- [runs=5] [seconds=2]`

use std::sync::Arc;
use std::time::Duration;

use berth_store::{CommitStats, Engine, MemoryStore, SledStore, Store};
use bytes::Bytes;
use tokio::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let seconds: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2.0);
    let duration = Duration::from_secs_f64(seconds);
    println!("durable creates/s, median of {runs} runs of {seconds} s each");
    println!(
        "{:<8} {:>8} {:>12} {:>12}",
        "backend", "writers", "creates/s", "mean batch"
    );
    for backend in ["sled", "memory"] {
        for writers in [1, 16, 64] {
            let mut rates = Vec::new();
            let mut batches = Vec::new();
            for _ in 0..runs {
                let dir = tempfile::tempdir()?;
                let (rate, stats) = match backend {
                    "sled" => run(SledStore::open(dir.path().join("db"))?, writers, duration).await?,
                    _ => run(MemoryStore::new(), writers, duration).await?,
                };
                rates.push(rate);
                batches.push(stats.writes as f64 / stats.batches.max(1) as f64);
            }
            println!(
                "{backend:<8} {writers:>8} {:>12.0} {:>12.1}",
                median(&mut rates),
                median(&mut batches)
            );
        }
    }
    Ok(())
}

/// Runs `writers` tasks creating keys for `duration`; returns creates per second and the commit counters.
async fn run<B: 'static>(store: Engine<B>, writers: usize, duration: Duration) -> anyhow::Result<(f64, CommitStats)> {
    let store = Arc::new(store);
    let value = Bytes::from(format!(
        "{{\"metadata\":{{\"name\":\"x\"}},\"spec\":\"{}\"}}",
        "x".repeat(1000)
    ));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut created = 0u64;
                while Instant::now() < deadline {
                    store
                        .create(&format!("/registry/bench/w{writer}/{created}"), value.clone())
                        .await?;
                    created += 1;
                }
                anyhow::Ok(created)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((total as f64 / elapsed, store.commit_stats()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
