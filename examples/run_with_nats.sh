#!/usr/bin/env bash
# Stream the demo schema (examples/setup.sql) of an existing server to NATS
# JetStream (stream postgres_replication, subjects postgres.<schema>.<table>.<op>)
# as well as to stdout. Needs a nats-server with JetStream (`nats-server -js`).
#   psql -f examples/setup.sql                      # once
#   PGCONN='host=localhost user=postgres dbname=postgres' NATS_URL=nats://127.0.0.1:4222 \
#       examples/run_with_nats.sh --no-stdout
# then read the events with a consumer from examples/consumers/ (see
# examples/NATS_CONSUMERS.md). Extra arguments go to pgoutput-stream.
# PGOUTPUT_STREAM_BIN=path/to/pgoutput-stream runs that binary instead of
# building one with cargo.
set -euo pipefail
: "${NATS_URL:=nats://127.0.0.1:4222}"
# examples/run.sh with the JetStream flags added.
exec "$(dirname "$0")/run.sh" \
    --nats-server "$NATS_URL" \
    --nats-stream postgres_replication \
    --nats-subject-prefix postgres \
    "$@"
