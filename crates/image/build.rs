//! Compiles the workload program (crates/workload/src/main.rs) with plain rustc into a statically linked binary
//! in OUT_DIR, which src/workload.rs embeds into the workload image. It does not build anything else.
//!
//! Why bare rustc rather than a cargo artifact dependency: the binary must be linked statically (the image has no
//! C library or dynamic loader), which needs `-C target-feature=+crt-static` and an explicit `--target`; passing
//! those through cargo would mean a second profile or an unstable feature. The workload uses std only, so one
//! rustc invocation builds it, and the `berth` binary carries its image with no network and no base image.
//!
//! Also exports BERTH_IMAGE_ARCH, the target's architecture in the Go/OCI spelling Docker expects (`amd64`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workload_src = manifest_dir.join("../workload/src");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");

    // A directory here makes cargo re-run this script when any file below it changes.
    println!("cargo:rerun-if-changed={}", workload_src.display());
    println!("cargo:rerun-if-changed=build.rs");

    let output = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "berth_workload",
        ])
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["--target", &target])
        .arg("-o")
        .arg(out_dir.join("berth-workload"))
        .arg(workload_src.join("main.rs"))
        .output()
        .expect("cannot run rustc to build the workload");
    if !output.status.success() {
        panic!(
            "building the workload with {} failed ({}):\n{}",
            rustc.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Docker names architectures as Go does.
    let arch = match target_arch.as_str() {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => panic!("no Docker architecture name known for target architecture {other}"),
    };
    println!("cargo:rustc-env=BERTH_IMAGE_ARCH={arch}");
}
