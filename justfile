# kwik tasks. fmt, lint, test and bench-build are exactly the commands CI (.ci/run) runs.

# List the recipes.
default:
    @just --list

# Run every test of the workspace (the README's test command).
test:
    cargo test --workspace --locked

# Lint: clippy on every target, warnings are errors.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Check formatting (run `cargo fmt --all` to fix).
fmt:
    cargo fmt --all -- --check

# Compile every benchmark in the test profile, as CI does (fast; catches rot).
bench-build:
    cargo test --workspace --benches --no-run --locked

# Run every criterion suite with the bench profile (one: `cargo bench -p kwik-benches --bench <area>`).
bench:
    cargo bench --workspace --locked

# The whole CI pipeline: fmt, lint, test, bench (installs promtool when missing).
ci:
    bash .ci/run

# Check the shipped configurations with the kwik binary.
config-check:
    cargo run --locked -p kwik-cli -- config check configs/performance.toml configs/low-latency.toml configs/high-throughput.toml

# Run `kwik serve` on 127.0.0.1:4433 with a throw-away self-signed certificate (development
# only), serving the files under `root`; metrics on 127.0.0.1:2112. Stop with Ctrl-C.
serve root=".":
    cargo run --locked -p kwik-cli -- serve --insecure-dev-self-signed --listen 127.0.0.1:4433 --root {{root}}

# The seed's load scenario (1000 sessions, 10,000 msg/s, 64 B echoes, 10 s) on kwik with every
# dispatch and on raw quinn, side by side; add e.g. `--mode connect --connections 50`.
loadtest *ARGS:
    cargo run --release --locked -p kwik-cli -- loadtest --dispatch all --baseline quic {{ARGS}}

# Run the five examples of crates/kwik/examples (README there), each with its defaults: client
# and servers in one process on ephemeral 127.0.0.1 ports.
examples:
    cargo run --locked -p kwik --example pingpong
    cargo run --locked -p kwik --example closure
    cargo run --locked -p kwik --example file_transfer
    cargo run --locked -p kwik --example http
    cargo run --locked -p kwik --example worker_pool
