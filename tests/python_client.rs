//! Python client end-to-end test: runs `tests/python/client_test.py` with the official `kubernetes==35.0.0` client
//! against a real `berth server`. The script does the asserting (models must deserialize, errors must arrive as
//! `ApiException`s with the right status); this file only starts the server and reports the script's output.

// End-to-end tests are synchronous programs driving real processes in real time; the workspace ban on
// blocking sleeps and std Instant is for async code, whose time must be virtual.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;

use support::{python, repo_root, text, Server};

#[test]
fn the_python_client_can_create_list_patch_watch_and_delete() {
    let python = python();
    let s = Server::start();
    let script = repo_root().join("tests/python/client_test.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(s.kubeconfig_path())
        .output()
        .expect("run python");
    let report = format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "client_test.py failed ({}):\n{report}",
        out.status
    );
}
