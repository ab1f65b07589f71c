#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a while: `crates/fuzz/run.sh [SECONDS [TARGET...]]` (default 45 s,
# every target). CI calls it with a short time; `just fuzz TARGET SECONDS` runs one target longer. Installs
# cargo-fuzz if it is missing. The nightly-only flags cargo-fuzz passes are allowed on the stable toolchain with
# RUSTC_BOOTSTRAP=1, scoped to this script.
#
# The committed seeds in crates/fuzz/corpus/<target> are never written to: each run works on a copy that persists
# in crates/fuzz/target/corpus/<target>, so longer runs build on earlier ones. A crash, a budget overrun (see
# src/lib.rs) or an out-of-memory stops the run with a non-zero exit and leaves the input in
# crates/fuzz/artifacts/<target>/. Set FUZZ_KEEP_GOING=1 to carry on past findings and collect them all, and
# FUZZ_ARGS to pass more libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir="$PWD"
seconds="${1:-45}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(body patch selector quantity)

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    start=$SECONDS
    cargo install cargo-fuzz --version 0.13.2 --locked
    echo "installed cargo-fuzz in $((SECONDS - start))s"
fi

# -s none: safe Rust needs no AddressSanitizer, and without it the build is faster and the memory figures are the
# real allocator's. -a: debug assertions, so integer overflow panics instead of wrapping.
start=$SECONDS
cargo fuzz build --fuzz-dir "$fuzz_dir" -s none -a
echo "built fuzz targets in $((SECONDS - start))s"

status=0
for t in "${targets[@]}"; do
    work="$fuzz_dir/target/corpus/$t"
    mkdir -p "$work" "$fuzz_dir/artifacts/$t"
    extra=()
    if [[ "${FUZZ_KEEP_GOING:-}" == 1 ]]; then
        extra=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    fi
    # More libFuzzer flags, e.g. FUZZ_ARGS="-max_len=8192" for larger inputs than the seeds suggest.
    read -r -a more <<<"${FUZZ_ARGS:-}"
    extra+=("${more[@]}")
    echo "=== fuzz $t for ${seconds}s"
    # rss_limit_mb catches what the per-input budget cannot (memory outside Rust's allocator, slow leaks);
    # timeout catches inputs that take seconds.
    set +e
    cargo fuzz run --fuzz-dir "$fuzz_dir" -s none -a "$t" "$work" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$fuzz_dir/artifacts/$t/" -print_final_stats=1 "${extra[@]}" 2>&1 |
        grep --line-buffered -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)'
    rc=${PIPESTATUS[0]}
    set -e
    if [[ $rc -ne 0 ]]; then
        echo "fuzz $t: FOUND A PROBLEM (exit $rc; input saved under crates/fuzz/artifacts/$t/)"
        status=1
        # CI keeps no files: print each saved input so it can be reproduced from the log.
        for f in "$fuzz_dir/artifacts/$t"/*; do
            [[ -f "$f" ]] && echo "$f (base64, first 4 KiB): $(head -c 4096 "$f" | base64 -w0)"
        done
    fi
done
exit "$status"
