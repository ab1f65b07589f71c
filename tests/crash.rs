//! The durability test: concurrent writers, `kill -9` of the server mid-stream, restart on the same data dir, and
//! then every write the server acknowledged must still be there (with that value or a later one), every
//! acknowledged delete must still be gone, and revisions must never go back. Several cycles, so recovery is
//! itself recovered from.
//!
//! The writers are `tests/python/crash_writer.py` (the official client, in threads). This file only orchestrates
//! and checks; it does not measure performance.

// End-to-end tests are synchronous programs driving real processes in real time; the workspace ban on
// blocking sleeps and std Instant is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{eventually, python, repo_root, Server};

const CYCLES: u64 = 5;
const WRITER_THREADS: &str = "4";
/// Acknowledged writes to wait for in each cycle before pulling the plug.
const ACKS_PER_CYCLE: usize = 150;

/// What the writers' log says the server acknowledged.
#[derive(Default)]
struct Acks {
    /// Per configmap: the highest value acknowledged and the resourceVersion it was acknowledged at.
    latest: BTreeMap<String, (u64, u64)>,
    /// Configmaps whose delete was acknowledged.
    deleted: BTreeSet<String>,
    /// The highest resourceVersion any acknowledged write returned.
    max_rv: u64,
    lines: usize,
}

fn read_acks(path: &std::path::Path) -> Acks {
    let mut acks = Acks::default();
    let raw = fs::read_to_string(path).unwrap_or_default();
    // Only complete lines count: the writer may have been mid-line when it stopped.
    for line in raw.lines().take(raw.matches('\n').count()) {
        let parts: Vec<&str> = line.split(' ').collect();
        acks.lines += 1;
        match parts.as_slice() {
            ["SET", name, value, rv] => {
                let value: u64 = value.parse().expect("value is an integer");
                let rv: u64 = rv
                    .parse()
                    .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not an integer"));
                let entry = acks.latest.entry(name.to_string()).or_insert((0, 0));
                if value > entry.0 {
                    *entry = (value, rv);
                }
                acks.max_rv = acks.max_rv.max(rv);
            }
            ["DEL", name, _] => {
                acks.deleted.insert(name.to_string());
            }
            _ => panic!("unexpected writer log line {line:?}"),
        }
    }
    acks
}

fn rv_of(v: &Value) -> u64 {
    let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    rv.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not an integer in {v}"))
}

/// Checks the restarted server against everything acknowledged so far.
fn verify(s: &Server, acks: &Acks, cycle: u64) {
    let list: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"])).expect("json");
    let stored: BTreeMap<String, &Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["metadata"]["name"].as_str().unwrap_or_default().to_string(), i))
        .collect();
    for (name, (value, rv)) in &acks.latest {
        let obj = stored
            .get(name)
            .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged {name}={value} is lost"));
        let got: u64 = obj["data"]["v"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("data.v is an integer");
        assert!(
            got >= *value,
            "cycle {cycle}: {name} went back from acknowledged {value} to {got}"
        );
        assert!(
            rv_of(obj) >= *rv,
            "cycle {cycle}: {name}'s resourceVersion went back below acknowledged {rv}"
        );
    }
    for name in &acks.deleted {
        assert!(
            !stored.contains_key(name),
            "cycle {cycle}: {name} was deleted (acknowledged) but is back"
        );
    }
    assert!(
        rv_of(&list) >= acks.max_rv,
        "cycle {cycle}: list resourceVersion below an acknowledged one"
    );

    let probe: Value =
        serde_json::from_str(&s.kubectl_ok(&["create", "configmap", &format!("probe-{cycle}"), "-o", "json"]))
            .expect("json");
    assert!(
        rv_of(&probe) > acks.max_rv,
        "cycle {cycle}: a new write got resourceVersion {} but {} was already acknowledged before the crash",
        rv_of(&probe),
        acks.max_rv
    );
}

#[test]
fn acknowledged_writes_survive_kill_9_and_revisions_never_go_back() {
    let python = python();
    let mut s = Server::start();
    let log = s.scratch("acks.log");
    let script = repo_root().join("tests/python/crash_writer.py");
    for cycle in 0..CYCLES {
        let before = read_acks(&log).lines;
        let writer_err = s.scratch(&format!("writer-{cycle}.err"));
        let mut writer = Command::new(python)
            .arg(&script)
            .arg(s.kubeconfig_path())
            .arg(&log)
            .arg(WRITER_THREADS)
            .arg((cycle * 1_000_000).to_string())
            .stderr(File::create(&writer_err).expect("create writer stderr"))
            .spawn()
            .expect("spawn writer");
        let enough = eventually(Duration::from_secs(60), || {
            (read_acks(&log).lines >= before + ACKS_PER_CYCLE).then_some(())
        });
        if enough.is_none() {
            let _ = writer.kill();
            let _ = writer.wait();
            panic!(
                "cycle {cycle}: writers made only {} acknowledged writes in 60s\n--- writer stderr ---\n{}",
                read_acks(&log).lines - before,
                fs::read_to_string(&writer_err).unwrap_or_default()
            );
        }
        s.kill9();
        let deadline = Instant::now() + Duration::from_secs(60);
        while writer.try_wait().expect("poll writer").is_none() {
            if Instant::now() > deadline {
                let _ = writer.kill();
                panic!("cycle {cycle}: writers did not stop within 60s of the server dying");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let acks = read_acks(&log);
        eprintln!(
            "cycle {cycle}: {} acknowledged writes in total, max resourceVersion {}",
            acks.lines, acks.max_rv
        );
        s.start_again();
        verify(&s, &acks, cycle);
    }
}

/// Every directory and file under `dir` with a group or other permission bit, as `path mode` lines.
fn readable_by_others(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("read data dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.permissions().mode() & 0o077 != 0 {
                found.push(format!(
                    "{} {:o}",
                    entry.path().display(),
                    meta.permissions().mode() & 0o777
                ));
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn the_data_dir_is_private_to_the_server_and_repaired_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start();
    server.kubectl_ok(&["create", "secret", "generic", "s", "--from-literal=password=hunter2"]);
    let data = server.data_dir();
    let mode = |p: &std::path::Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    // The store holds every Secret: nobody but the server's user may read it, or even look into the directory.
    assert_eq!(mode(&data), 0o700, "data dir");
    let open = readable_by_others(&data);
    assert!(open.is_empty(), "{open:?}");

    // An install from before this rule (0755 directory, 0644 store files) is repaired at the next start.
    server.kill9();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut pending = vec![data.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read") {
            let path = entry.expect("entry").path();
            let loose = if path.is_dir() { 0o755 } else { 0o644 };
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).expect("chmod");
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    server.start_again();
    server.kubectl_ok(&["get", "secret", "s"]);
    assert_eq!(mode(&data), 0o700, "data dir");
    let open = readable_by_others(&data);
    assert!(open.is_empty(), "{open:?}");
}
