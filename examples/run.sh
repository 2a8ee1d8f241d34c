#!/usr/bin/env bash
# Stream the demo schema (examples/setup.sql) of an existing server to stdout.
#   PGCONN='host=localhost user=postgres dbname=postgres' examples/run.sh | jq .
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PGCONN:=host=localhost user=postgres dbname=postgres}"
exec cargo run --quiet --release -- \
    --connection "$PGCONN" \
    --slot demo_slot \
    --publication demo_pub \
    --create-slot \
    "$@"
