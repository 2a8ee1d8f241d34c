#!/usr/bin/env bash
# A demo of the main job on a fresh machine: start a throwaway PostgreSQL with
# logical WAL and a throwaway nats-server with JetStream, create demo tables,
# run pgoutput-stream, make some changes, show the events it printed on stdout
# and the ones it published to JetStream, and clean everything up.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

ensure_postgres
ensure_nats_server
echo "== building pgoutput-stream" >&2
cargo build --quiet --locked --bin pgoutput-stream --example jetstream_tail
bin=target/debug/pgoutput-stream

work=$(mktemp -d /tmp/pgoutput-stream-demo.XXXXXX)
port=$(free_port)
nats_port=$(free_port)
daemon=
nats=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    [ -n "$nats" ] && kill "$nats" 2>/dev/null && wait "$nats" 2>/dev/null
    stop_postgres "$work"
    rm -rf "$work"
}
trap cleanup EXIT

echo "== starting a throwaway PostgreSQL on port $port" >&2
start_postgres "$work" "$port"
sql() { "$(pg_bindir)/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
sql <<'SQL'
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, email text, tags text[], profile jsonb);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers, total numeric(10,2), placed_at timestamptz DEFAULT now());
CREATE PUBLICATION demo_pub FOR TABLE customers, orders;
SQL

echo "== starting a throwaway nats-server with JetStream on port $nats_port" >&2
start_nats "$work" "$nats_port"
nats=$NATS_PID

echo "== running: pgoutput-stream --connection 'host=127.0.0.1 port=$port user=postgres dbname=postgres' --slot demo_slot --publication demo_pub --create-slot --nats-server nats://127.0.0.1:$nats_port" >&2
"$bin" --connection "host=127.0.0.1 port=$port user=postgres dbname=postgres" \
    --slot demo_slot --publication demo_pub --create-slot --status-interval 1s \
    --nats-server "nats://127.0.0.1:$nats_port" \
    >"$work/events.jsonl" 2>"$work/daemon.log" &
daemon=$!
wait_for_line "$work/daemon.log" "Streaming changes" "$daemon"

echo "== making changes" >&2
sql <<'SQL'
INSERT INTO customers (name, email, tags, profile) VALUES
  ('Ada Lovelace', 'ada@example.com', '{vip,"early adopter"}', '{"plan": "pro", "seats": 5}'),
  ('Alan Turing', NULL, '{}', '{"plan": "free"}');
BEGIN;
INSERT INTO orders (customer_id, total) VALUES (1, 99.90), (2, 12.50);
UPDATE customers SET email = 'alan@example.com' WHERE id = 2;
COMMIT;
DELETE FROM orders WHERE total < 20;
TRUNCATE orders;
SELECT pg_logical_emit_message(true, 'demo', 'hello from a transaction') \g /dev/null
SQL

# Wait until the last change (the message) has been printed.
wait_for_line "$work/events.jsonl" '"op":"message"'
kill -INT "$daemon"; wait "$daemon" || true; daemon=

echo "== events printed by pgoutput-stream (stdout, one JSON object per line):" >&2
if command -v jq >/dev/null 2>&1; then jq -c . "$work/events.jsonl"; else cat "$work/events.jsonl"; fi
echo "== the same events in JetStream stream postgres_replication (subject, Nats-Msg-Id, payload):" >&2
target/debug/examples/jetstream_tail "nats://127.0.0.1:$nats_port" postgres_replication | cut -c1-160
echo "== its log (stderr):" >&2
cat "$work/daemon.log" >&2
