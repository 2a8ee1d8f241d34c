#!/usr/bin/env bash
# The whole test suite: installs what is missing (PostgreSQL server binaries,
# nats-server), then checks formatting, runs clippy, and runs every test against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

ensure_postgres
export PG_BINDIR="$(pg_bindir)"
ensure_nats_server
export NATS_SERVER_BIN="$(command -v nats-server)"
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked
echo "== container files (Dockerfile, docker-compose.yml)"
scripts/check-containers.sh
echo "== example consumers against a real run (target/debug/pgoutput-stream from cargo test)"
scripts/test-consumers.sh
echo "== benchmark smoke run (scripts/bench.sh with tiny N on the debug build; numbers not checked)"
scripts/bench.sh --rows 2000 --latency-seconds 2 --debug
