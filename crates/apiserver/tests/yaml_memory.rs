//! Peak heap while decoding YAML bodies, for the shapes that made serde_yaml cost ~100 × a body's size without
//! a single alias (it kept every parser event before building the value). The heap is counted by a wrapping
//! global allocator (the `cap` crate, so this file needs no `unsafe`); its peak cannot be reset, so each shape is
//! parsed in a child process of this test binary, alone. It checks memory only, not what the shapes decode to
//! (`body.rs`'s tests do that).

use std::alloc::System;
use std::process::Command;

use cap::Cap;

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

/// Set in the child: which shape to parse, and with which decoder.
const SHAPE: &str = "BERTH_YAML_MEMORY_SHAPE";
const DECODER: &str = "BERTH_YAML_MEMORY_DECODER";

/// Body size for each shape: large enough that fixed costs vanish, small enough to be quick.
const SIZE: usize = 140_000;

/// What parsing may allocate beyond the value it returns (plus a quarter, for `Vec`s growing): the parser's own
/// buffers, the open-collection stack. serde_yaml's event list alone was ~100 × the body (13 MB here), so each
/// shape failed this bound before (peak 17–26 MB for values of 4–14 MB).
const MAX_OVERHEAD: usize = 1024 * 1024;

/// The four amplifying shapes, `SIZE` bytes or a little more, built with no allocation beyond the body.
fn shape(name: &str) -> Vec<u8> {
    let (open, item, sep, close): (&str, &str, &str, &str) = match name {
        "scalars" => ("[", "a", ",", "]"),
        "block-maps" => ("", "- a: 0", "\n", "\n"),
        "flow-maps" => ("[", "{a: 0}", ",", "]"),
        "nested-seqs" => ("[", "[[]]", ",", "]"),
        other => panic!("unknown shape {other}"),
    };
    let mut body = Vec::with_capacity(SIZE + 64);
    body.extend_from_slice(open.as_bytes());
    while body.len() < SIZE {
        if body.len() > open.len() {
            body.extend_from_slice(sep.as_bytes());
        }
        body.extend_from_slice(item.as_bytes());
    }
    body.extend_from_slice(close.as_bytes());
    body
}

/// The child's half: parses the shape named in the environment and prints the peak heap growth. Does nothing
/// when run as an ordinary test.
#[test]
fn child_measures_one_shape() {
    let Ok(name) = std::env::var(SHAPE) else {
        return;
    };
    let serde_yaml = std::env::var(DECODER).as_deref() == Ok("serde_yaml");
    let body = shape(&name);
    let before = HEAP.allocated();
    let value = if serde_yaml {
        serde_yaml::from_slice::<serde_json::Value>(&body).ok()
    } else {
        berth_apiserver::body::parse_yaml(&body).ok()
    };
    // An upper bound: the peak may predate `before` (the body, the harness), never the other way.
    let peak = HEAP.max_allocated().saturating_sub(before);
    let kept = HEAP.allocated().saturating_sub(before);
    assert!(value.is_some(), "{name} did not decode");
    println!("BERTH-PEAK {peak} {kept} {}", body.len());
}

/// Runs the child for one shape and decoder; returns (peak bytes, bytes the value holds, body bytes).
fn measure(name: &str, decoder: &str) -> (usize, usize, usize) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args(["--exact", "child_measures_one_shape", "--nocapture", "--test-threads=1"])
        .env(SHAPE, name)
        .env(DECODER, decoder)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child for {name} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("BERTH-PEAK ").map(|(_, figures)| figures))
        .unwrap_or_else(|| panic!("no figure from the child for {name}: {stdout}"));
    let mut figures = line.split(' ').map(|n| n.parse::<usize>().expect("a number"));
    let mut next = || figures.next().expect("three figures");
    (next(), next(), next())
}

/// What is left of the ~100 × that serde_yaml cost is the decoded value itself: a `serde_json::Value` is 32
/// bytes, and a one-entry map a whole B-tree leaf (~600 bytes), as when the same value arrives as JSON. So the
/// bound is on the parse's overhead over its result, plus a check against the old figures.
#[test]
fn alias_free_yaml_bodies_cost_little_more_than_their_value() {
    for name in ["scalars", "block-maps", "flow-maps", "nested-seqs"] {
        let (peak, kept, size) = measure(name, "berth");
        let (old, _, _) = measure(name, "serde_yaml");
        eprintln!(
            "{name}: {size} bytes peaked at {peak} ({} x), the value holds {kept}; serde_yaml peaked at {old} ({} x)",
            peak / size,
            old / size
        );
        assert!(
            peak <= kept + kept / 4 + MAX_OVERHEAD,
            "{name}: peak {peak} for a value of {kept}"
        );
        assert!(
            peak * 3 / 2 < old,
            "{name}: peak {peak}, no better than serde_yaml's {old}"
        );
    }
}
