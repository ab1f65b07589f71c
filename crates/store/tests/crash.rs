//! Crash safety of the sled backend: a writer killed with SIGKILL mid-stream loses no acknowledged write, and
//! revisions never go backwards after recovery.
//!
//! The test re-executes its own binary as the child (selected by an environment variable): the child writes as fast
//! as it can from many tasks and prints every acknowledged `(key, revision)`; the parent kills it with SIGKILL
//! part-way, reopens the database and checks every acknowledgement against what survived. This file does not test
//! the store's API in general: the conformance suite does that.

// A test file throughout (its helpers are not `#[test]` functions, which clippy's test exemption looks for): a
// failed unwrap here is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_store::{Revision, SledStore, Store};
use bytes::Bytes;

/// Set in the child: the database path and the key prefix for this round.
const CHILD_DB: &str = "BERTH_STORE_CRASH_CHILD_DB";
const CHILD_ROUND: &str = "BERTH_STORE_CRASH_CHILD_ROUND";
const TEST_NAME: &str = "acknowledged_writes_survive_kill_9";
/// How many acknowledgements the parent waits for before killing the child.
const ACKS_BEFORE_KILL: usize = 3000;

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let (Ok(db), Ok(round)) = (std::env::var(CHILD_DB), std::env::var(CHILD_ROUND)) {
        child(Path::new(&db), &round);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut floor = Revision(0);
    for round in ["first", "second"] {
        let (acked, count) = run_and_kill_child(&db, round);
        assert!(
            count >= ACKS_BEFORE_KILL,
            "round {round}: only {count} acknowledgements"
        );
        let lowest = acked.values().min().copied().unwrap();
        assert!(
            lowest > floor,
            "round {round}: revision {lowest} reused after recovery at {floor}"
        );
        floor = verify(&db, &acked);
    }
}

/// Runs one child to the kill and returns every write it acknowledged (key → highest acknowledged revision) and how
/// many acknowledgements there were.
fn run_and_kill_child(db: &Path, round: &str) -> (HashMap<String, Revision>, usize) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, db)
        .env(CHILD_ROUND, round)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = HashMap::new();
    let mut count = 0;
    let mut record = |line: &str| {
        if let Some(rest) = line.strip_prefix("ack ") {
            count += 1;
            let (key, revision) = rest.split_once(' ').unwrap();
            let revision = Revision(revision.parse().unwrap());
            let highest = acked.entry(key.to_string()).or_insert(revision);
            *highest = (*highest).max(revision);
        }
    };
    let mut seen = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen += usize::from(line.starts_with("ack "));
        record(&line);
        if seen >= ACKS_BEFORE_KILL {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flush-on-drop
                           // Whatever the child printed before dying was acknowledged too.
    for line in lines {
        record(&line.unwrap());
    }
    child.wait().unwrap();
    (acked, count)
}

/// Reopens the database and checks it against the acknowledgements; returns the recovered revision.
fn verify(db: &Path, acked: &HashMap<String, Revision>) -> Revision {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = SledStore::open(db).unwrap();
        let highest = acked.values().max().copied().unwrap();
        assert!(
            store.current_revision() >= highest,
            "recovered {} < acknowledged {highest}",
            store.current_revision()
        );
        for (key, revision) in acked {
            let kv = store.get(key).await.unwrap();
            let kv = kv.unwrap_or_else(|| panic!("acknowledged key {key} at {revision} is missing"));
            assert!(
                kv.mod_revision >= *revision,
                "{key}: acknowledged {revision}, recovered {}",
                kv.mod_revision
            );
        }
        store.current_revision()
    })
}

/// The child: 16 tasks creating and updating keys as fast as the store allows, printing each acknowledgement.
/// Bounded in time in case the parent dies without killing it.
fn child(db: &Path, round: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = std::sync::Arc::new(SledStore::open(db).unwrap());
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let store = store.clone();
                let round = round.to_string();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        // Mostly creates, with updates of this task's earlier keys mixed in.
                        let key = format!("/crash/{round}/{task}/{}", if i % 4 == 3 { i / 2 } else { i });
                        let value = Bytes::from(format!("{round}-{task}-{i}"));
                        let kv = match store.get(&key).await.unwrap() {
                            Some(current) => store.update(&key, value, Some(current.mod_revision)).await.unwrap(),
                            None => store.create(&key, value).await.unwrap(),
                        };
                        println!("ack {key} {}", kv.mod_revision);
                    }
                })
            })
            .collect();
        let _ = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks)).await;
    });
}
