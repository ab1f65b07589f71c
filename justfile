# Everyday recipes. `just --list` shows them. README's two commands do not need just.

# Build and start the all-in-one server (kubeconfig in ~/.berth/kubeconfig).
run:
    cargo run --release -p berth -- server

# The whole test suite, exactly as CI runs it.
test:
    cargo test --workspace

# Format, lint, test.
check:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace

# Durable creates/s, create latency at 500/s and watch fan-out (see docs/PERFORMANCE.md).
bench-api:
    cargo run --release -p berth --example bench-api

# The server's RSS under the memory attacks of issue 8 (patch copies, aliased YAML, 400 PUTs of 1 MB, restart).
bench-attacks:
    cargo build --release -p berth --bin berth
    cargo run --release -p berth --example bench-attacks

# Pod create → Running/Ready against raw Docker create+start, and container exit → status (needs Docker).
bench-pods:
    cargo run --release -p berth --example bench-pods

# The store alone: durable creates/s with 1, 16 and 64 writers.
bench-store:
    cargo run --release -p berth-store --example store_bench

# Fuzz one target (body, patch, selector, quantity) for SECONDS, e.g. `just fuzz patch 600`; every target for 45 s
# without arguments (CI runs each for 30 s). Findings land in crates/fuzz/artifacts/ (see crates/fuzz/README.md).
fuzz target="" seconds="45":
    nice -n 10 crates/fuzz/run.sh {{seconds}} {{target}}

# Regenerate the checked-in OpenAPI documents after changing the resource table.
openapi:
    BERTH_UPDATE_OPENAPI=1 cargo test -p berth-apiserver openapi

# Fetch the pinned kubectl and the Python client the tests use (into .cache/).
tools:
    python3 tests/tools/fetch-kubectl.py
    python3 tests/tools/python-env.py

# Remove local test caches and build output.
clean:
    rm -rf .cache target
