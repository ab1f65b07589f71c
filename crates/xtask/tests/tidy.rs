//! Tidy tests: the architecture invariants a machine can check, after rust-analyzer's `tidy.rs`. Which berth
//! crate may depend on which (read from `cargo metadata`), which crates may link bollard, sled and friends, that
//! `berth-api`, `berth-machinery` and `berth-protobuf` read no clock and do no I/O (a source scan), that every Rust
//! file opens with a `//!` paragraph, and that `clippy.toml` still bans the blocking calls STYLE.md says it bans.
//! Each failure names the crate or file and the invariant it broke. These tests read the tree; they change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The berth crates each berth crate may depend on (normal dependencies; dev-dependencies are free). From
/// docs/ARCHITECTURE.md: machinery depends on no berth crate, api only on machinery, only apiserver (and the
/// binary, for `examples/bench_api.rs`) on store, only the agent and the binary on runtime; the binary also uses serve to raise the
/// open-file limit and size connection caps. A new crate must be
/// added here, which is the moment to decide where it sits.
const ALLOWED_BERTH_DEPS: &[(&str, &[&str])] = &[
    ("berth-machinery", &[]),
    ("berth-api", &["berth-machinery"]),
    ("berth-protobuf", &[]),
    ("berth-store", &[]),
    ("berth-serve", &[]),
    ("berth-runtime", &[]),
    ("berth-image", &[]),
    ("berth-workload", &[]),
    ("berth-xtask", &[]),
    (
        "berth-apiserver",
        &[
            "berth-api",
            "berth-machinery",
            "berth-protobuf",
            "berth-serve",
            "berth-store",
        ],
    ),
    (
        "berth-agent",
        &["berth-api", "berth-image", "berth-runtime", "berth-serve"],
    ),
    (
        "berth",
        &[
            "berth-agent",
            "berth-api",
            "berth-apiserver",
            "berth-image",
            "berth-runtime",
            "berth-serve",
            "berth-store",
        ],
    ),
];

/// External crates that only the named workspace crates may depend on directly.
const EXCLUSIVE_DEPS: &[(&str, &[&str], &str)] = &[
    ("bollard", &["berth-runtime"], "only `runtime` links bollard"),
    ("sled", &["berth-store"], "only `store` knows the storage engine"),
    ("syn", &["berth-xtask"], "only the code generator parses Rust"),
    (
        "tracing-subscriber",
        &["berth"],
        "only the binary installs a tracing subscriber",
    ),
    (
        "tikv-jemallocator",
        &["berth"],
        "only the binary chooses the global allocator",
    ),
];

/// The crates that are pure functions over data.
const PURE_CRATES: &[&str] = &["berth-api", "berth-machinery", "berth-protobuf"];

/// Crates that mean an async runtime, sockets, storage or containers; none may be in a pure crate's dependency
/// tree, however indirectly.
const IMPURE_DEPS: &[&str] = &[
    "tokio", "mio", "socket2", "hyper", "axum", "reqwest", "kube", "sled", "bollard", "rustls", "tracing",
];

/// Source patterns that mean a clock or I/O. `std::net` address types (`Ipv4Addr` parsing) are pure and allowed,
/// so the socket types are listed instead of the module.
const IMPURE_PATTERNS: &[(&str, &str)] = &[
    ("std::fs", "file system access"),
    ("File::open", "file system access"),
    ("File::create", "file system access"),
    ("TcpStream", "network I/O"),
    ("TcpListener", "network I/O"),
    ("UdpSocket", "network I/O"),
    ("ToSocketAddrs", "name resolution"),
    ("std::process", "running processes"),
    ("Command::new", "running processes"),
    ("std::env", "reading the environment"),
    ("env::var", "reading the environment"),
    ("SystemTime", "reading the clock"),
    ("Instant", "reading the clock"),
    ("Utc::now", "reading the clock"),
    ("Local::now", "reading the clock"),
    ("chrono::Local", "reading the local time zone"),
    ("tokio", "an async runtime"),
    ("thread::sleep", "sleeping"),
    ("stdin()", "reading standard input"),
    ("println!", "writing to standard output"),
    ("eprintln!", "writing to standard error"),
    ("dbg!", "writing to standard error"),
];

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().expect("repository root")
}

/// The workspace's packages and resolved dependency graph, from `cargo metadata`.
struct Graph {
    /// Package id → name.
    names: BTreeMap<String, String>,
    /// Workspace member names.
    members: BTreeSet<String>,
    /// Package name → names of its normal (non-dev, non-build) dependencies.
    normal: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn load() -> Graph {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(repo_root())
            .output()
            .expect("running cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata output is JSON");
        let mut names = BTreeMap::new();
        for p in meta["packages"].as_array().expect("packages") {
            names.insert(str_of(&p["id"]), str_of(&p["name"]));
        }
        let members = meta["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| names[&str_of(id)].clone())
            .collect();
        let mut normal: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
            let name = names[&str_of(&node["id"])].clone();
            let deps = normal.entry(name).or_default();
            for dep in node["deps"].as_array().expect("deps") {
                let is_normal = dep["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].is_null());
                if is_normal {
                    deps.insert(names[&str_of(&dep["pkg"])].clone());
                }
            }
        }
        Graph { names, members, normal }
    }

    /// Every crate `name` links, directly or not (normal dependencies only).
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(n) = todo.pop() {
            for d in self.normal.get(&n).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    }

    /// One path from `from` to `to` through normal dependencies, for the failure message.
    fn path(&self, from: &str, to: &str) -> Vec<String> {
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        let mut todo = std::collections::VecDeque::from([from.to_owned()]);
        while let Some(n) = todo.pop_front() {
            if n == to {
                let mut path = vec![n.clone()];
                let mut cur = n;
                while let Some(p) = parent.get(&cur) {
                    path.push(p.clone());
                    cur = p.clone();
                }
                path.reverse();
                return path;
            }
            for d in self.normal.get(&n).into_iter().flatten() {
                if d != from && !parent.contains_key(d) {
                    parent.insert(d.clone(), n.clone());
                    todo.push_back(d.clone());
                }
            }
        }
        Vec::new()
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().expect("a string in cargo metadata").to_owned()
}

fn fail_if_any(invariant: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "invariant broken: {invariant}\n  - {}\n",
        violations.join("\n  - ")
    );
}

#[test]
fn berth_crates_depend_only_on_the_berth_crates_the_architecture_allows() {
    let graph = Graph::load();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED_BERTH_DEPS.iter().copied().collect();
    let mut violations = Vec::new();
    for member in &graph.members {
        let Some(ok) = allowed.get(member.as_str()) else {
            violations.push(format!(
                "workspace crate {member} is not listed in ALLOWED_BERTH_DEPS (crates/xtask/tests/tidy.rs): \
                 decide which berth crates it may use, and add it"
            ));
            continue;
        };
        for dep in graph.normal.get(member).into_iter().flatten() {
            if graph.members.contains(dep) && !ok.contains(&dep.as_str()) {
                violations.push(format!(
                    "{member} depends on {dep}, which docs/ARCHITECTURE.md does not allow (allowed: {ok:?})"
                ));
            }
        }
    }
    fail_if_any("each berth crate depends only on the berth crates it may", violations);
}

#[test]
fn bollard_sled_syn_and_the_tracing_subscriber_each_have_one_owner() {
    let graph = Graph::load();
    let mut violations = Vec::new();
    for (external, owners, why) in EXCLUSIVE_DEPS {
        for member in &graph.members {
            let direct = graph.normal.get(member).is_some_and(|d| d.contains(*external));
            if direct && !owners.contains(&member.as_str()) {
                violations.push(format!(
                    "{member} depends on {external} directly, but {why} ({owners:?})"
                ));
            }
        }
    }
    fail_if_any("external crates with one owner", violations);
}

#[test]
fn pure_crates_link_no_async_runtime_network_storage_or_container_crate() {
    let graph = Graph::load();
    let mut violations = Vec::new();
    for krate in PURE_CRATES {
        assert!(
            graph.names.values().any(|n| n == krate),
            "{krate} is not in the workspace any more; update PURE_CRATES"
        );
        let closure = graph.closure(krate);
        for bad in IMPURE_DEPS {
            if closure.contains(*bad) {
                violations.push(format!(
                    "{krate} links {bad} (via {}); it must stay pure functions over data",
                    graph.path(krate, bad).join(" -> ")
                ));
            }
        }
    }
    fail_if_any("berth-api, berth-machinery and berth-protobuf do no I/O", violations);
}

#[test]
fn only_apiserver_and_the_store_benchmark_touch_the_store() {
    let root = repo_root();
    let allowed = [
        root.join("crates/store"),
        root.join("crates/apiserver"),
        root.join("examples/bench_api.rs"),
    ];
    // Built at run time so that this file does not match itself.
    let needle = ["berth", "_store"].concat();
    let mut violations = Vec::new();
    for file in rust_files(&root) {
        if allowed.iter().any(|a| file.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source file");
        for (n, line) in code_lines(&text) {
            if line.contains(&needle) {
                violations.push(format!("{}:{n} uses {needle}: {}", rel(&root, &file), line.trim()));
            }
        }
    }
    fail_if_any("only apiserver touches store (docs/ARCHITECTURE.md)", violations);
}

#[test]
fn pure_crates_read_no_clock_and_do_no_io() {
    let root = repo_root();
    let mut violations = Vec::new();
    for dir in ["crates/api", "crates/machinery", "crates/protobuf"] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).expect("readable source file");
            for (n, line) in code_lines(&text) {
                for (pattern, what) in IMPURE_PATTERNS {
                    if line.contains(pattern) {
                        violations.push(format!(
                            "{}:{n} uses `{pattern}` ({what}): {}",
                            rel(&root, &file),
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    fail_if_any(
        "berth-api, berth-machinery and berth-protobuf read no clock and do no I/O (take `now` and data as \
         arguments instead)",
        violations,
    );
}

#[test]
fn every_rust_file_opens_with_a_doc_paragraph() {
    let root = repo_root();
    let mut violations = Vec::new();
    for dir in ["crates", "tests", "examples"] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).expect("readable source file");
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                violations.push(format!(
                    "{} opens with {first:?}, not a `//!` paragraph saying its one job",
                    rel(&root, &file)
                ));
            }
        }
    }
    fail_if_any("every Rust file opens with a //! doc paragraph (STYLE.md)", violations);
}

#[test]
fn clippy_toml_bans_blocking_sleep_and_the_unvirtualised_clock() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("clippy.toml")).unwrap_or_default();
    let mut violations = Vec::new();
    if !text.contains("disallowed-methods") {
        violations.push("clippy.toml has no disallowed-methods list".to_owned());
    }
    for path in ["std::thread::sleep", "std::time::Instant::now"] {
        let entry = text.lines().find(|l| l.contains(&format!("path = \"{path}\"")));
        match entry {
            None => violations.push(format!("clippy.toml's disallowed-methods does not ban {path}")),
            Some(line) if !line.contains("reason = \"") => {
                violations.push(format!("clippy.toml bans {path} without a reason"))
            }
            Some(_) => {}
        }
    }
    fail_if_any(
        "clippy.toml bans std::thread::sleep and std::time::Instant::now, with reasons (STYLE.md)",
        violations,
    );
}

/// Every `.rs` file under `dir`, skipping build output (`target`) and hidden directories.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        if d.is_file() {
            out.push(d);
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The lines of a source file with `//` comments cut off (doc comments may name what the code must not do),
/// numbered from 1. Naive about `//` inside string literals, which can only hide a match, never invent one.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

fn rel(root: &Path, file: &Path) -> String {
    file.strip_prefix(root).unwrap_or(file).display().to_string()
}
