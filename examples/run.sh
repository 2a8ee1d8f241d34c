#!/usr/bin/env bash
# Stream the demo schema (examples/setup.sql) of an existing server to stdout.
#   psql -f examples/setup.sql                      # once
#   PGCONN='host=localhost user=postgres dbname=postgres' examples/run.sh | jq .
# Extra arguments go to pgoutput-stream (e.g. --format text). The slot demo_slot
# is created on the first run; drop it when done, or the server keeps WAL for it:
#   psql -c "SELECT pg_drop_replication_slot('demo_slot')"
# PGOUTPUT_STREAM_BIN=path/to/pgoutput-stream runs that binary instead of
# building one with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PGCONN:=host=localhost user=postgres dbname=postgres}"
if [ -n "${PGOUTPUT_STREAM_BIN:-}" ]; then
    command=("$PGOUTPUT_STREAM_BIN")
else
    command=(cargo run --quiet --release --)
fi
exec "${command[@]}" \
    --connection "$PGCONN" \
    --slot demo_slot \
    --publication demo_pub \
    --create-slot \
    "$@"
