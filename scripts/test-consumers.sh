#!/usr/bin/env bash
# Run the example JetStream consumers (examples/consumers/consumer.py and
# consumer.mjs) against a real run of the daemon and check what they print, so
# the examples cannot rot. Starts a throwaway PostgreSQL and nats-server, loads
# examples/setup.sql, streams it with examples/run_with_nats.sh using the
# already built target/debug/pgoutput-stream (no cargo build here), makes known
# changes, then runs each consumer and compares its lines with the expected ones.
# Installs nats-py (pip) and the nats npm package (examples/consumers/node_modules)
# when missing. The Bash consumer (examples/consumers/consumer.sh) needs the nats
# CLI, which cannot be installed here: only its formatting of events is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

bin=${PGOUTPUT_STREAM_BIN:-target/debug/pgoutput-stream}
[ -x "$bin" ] || { echo "$bin not built: run cargo build first" >&2; exit 1; }
bin=$(realpath "$bin")
ensure_postgres
ensure_nats_server
if ! python3 -c 'import nats.js' 2>/dev/null; then
    echo "Installing nats-py (pip)..." >&2
    python3 -m pip install --quiet nats-py >&2
fi
if ! command -v jq >/dev/null 2>&1; then
    echo "Installing jq (apt-get)..." >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq jq >/dev/null
fi
if [ ! -d examples/consumers/node_modules/nats ]; then
    echo "Installing the nats npm package into examples/consumers/node_modules..." >&2
    (cd examples/consumers && npm install --no-audit --no-fund --no-package-lock --loglevel=error >&2)
fi

work=$(mktemp -d /tmp/pgoutput-stream-consumers.XXXXXX)
port=$(free_port)
nats_port=$(free_port)
daemon=
nats=
cleanup() {
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; fi
    if [ -n "$nats" ]; then kill "$nats" 2>/dev/null; wait "$nats" 2>/dev/null || true; fi
    stop_postgres "$work"
    rm -rf "$work"
}
trap cleanup EXIT

start_postgres "$work" "$port"
sql() { PGOPTIONS="-c client_min_messages=warning" "$(pg_bindir)/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
# Timestamps are printed in the server's TimeZone: fix it so the expected lines hold.
sql -c "ALTER SYSTEM SET timezone = 'UTC'" -c "SELECT pg_reload_conf()" >/dev/null
sql -f examples/setup.sql
sql -f examples/setup.sql # it must be safe to run twice

start_nats "$work" "$nats_port"
nats=$NATS_PID
nats_url="nats://127.0.0.1:$nats_port"

PGOUTPUT_STREAM_BIN=$bin PGCONN="host=127.0.0.1 port=$port user=postgres dbname=postgres" NATS_URL=$nats_url \
    examples/run_with_nats.sh --status-interval 1s >"$work/events.jsonl" 2>"$work/daemon.log" &
daemon=$!
wait_for_line "$work/daemon.log" "Streaming changes" "$daemon" 200

sql <<'SQL'
INSERT INTO customers (name, email, tags, profile)
    VALUES ('Ada Lovelace', 'ada@example.com', '{vip,"early adopter"}', '{"plan": "pro", "seats": 5}');
BEGIN;
INSERT INTO orders (customer_id, total, placed_at) VALUES (1, 99.90, '2026-01-02 03:04:05+00');
UPDATE customers SET email = 'ada@lovelace.example', tags = NULL WHERE id = 1;
COMMIT;
DELETE FROM orders WHERE id = 1;
SELECT pg_logical_emit_message(true, 'demo', 'héllo') \g /dev/null
SQL
wait_for_line "$work/events.jsonl" '"op":"message"'
# SIGINT: the daemon waits for JetStream's acks before it exits, so every event is stored.
kill -INT "$daemon"; wait "$daemon" || true; daemon=

cat >"$work/expected-all.txt" <<'EOF_EXPECTED'
postgres.transactions.begin.event begin
postgres.public.customers.relation relation
postgres.public.customers.insert insert {"id":1,"name":"Ada Lovelace","email":"ada@example.com","tags":["vip","early adopter"],"profile":{"plan":"pro","seats":5}}
postgres.transactions.commit.event commit
postgres.transactions.begin.event begin
postgres.public.orders.relation relation
postgres.public.orders.insert insert {"id":1,"customer_id":1,"total":"99.90","placed_at":"2026-01-02 03:04:05+00"}
postgres.public.customers.update update {"id":1,"name":"Ada Lovelace","email":"ada@lovelace.example","tags":null,"profile":{"plan":"pro","seats":5}}
postgres.transactions.commit.event commit
postgres.transactions.begin.event begin
postgres.public.orders.delete delete {"id":1,"customer_id":1,"total":"99.90","placed_at":"2026-01-02 03:04:05+00"}
postgres.transactions.commit.event commit
postgres.transactions.begin.event begin
postgres.messages.demo message "héllo"
postgres.transactions.commit.event commit
EOF_EXPECTED
grep "^postgres\.public\.orders\." "$work/expected-all.txt" >"$work/expected-orders.txt"
expected_count=$(wc -l <"$work/expected-all.txt")

failures=0
passes=0
# check NAME EXPECTED_FILE COMMAND...: run a consumer and compare its stdout with the file.
check() {
    local name=$1 expected=$2
    shift 2
    local started=$SECONDS
    if ! "$@" >"$work/$name.out" 2>"$work/$name.err"; then
        echo "FAIL $name: exited with an error" >&2; cat "$work/$name.err" >&2
        failures=$((failures + 1)); return
    fi
    if diff -u "$expected" "$work/$name.out" >"$work/$name.diff"; then
        echo "ok   $name ($(wc -l <"$work/$name.out") lines, $((SECONDS - started))s)"
        passes=$((passes + 1))
    else
        echo "FAIL $name: output differs from the expected lines" >&2; cat "$work/$name.diff" >&2
        failures=$((failures + 1))
    fi
}
py=(python3 examples/consumers/consumer.py --server "$nats_url")
node=(node examples/consumers/consumer.mjs --server "$nats_url")
: >"$work/empty.txt"

echo "== example consumers against stream postgres_replication"
# Every event, stopping when idle.
check python-all "$work/expected-all.txt" "${py[@]}" 'postgres.>' --durable py-all --idle-timeout 3
# Every event, stopping after exactly that many.
check node-all "$work/expected-all.txt" "${node[@]}" 'postgres.>' --durable node-all --max-events "$expected_count" --idle-timeout 30
# A subject filter from the argument.
check python-orders "$work/expected-orders.txt" "${py[@]}" 'postgres.public.orders.*' --durable py-orders --idle-timeout 3
check node-orders "$work/expected-orders.txt" "${node[@]}" 'postgres.public.orders.*' --durable node-orders --idle-timeout 3
# Durable consumers acknowledged everything: a second run has nothing left to print.
check python-acked "$work/empty.txt" "${py[@]}" 'postgres.>' --durable py-all --idle-timeout 2
check node-acked "$work/empty.txt" "${node[@]}" 'postgres.>' --durable node-all --idle-timeout 2
# The Bash consumer needs the nats CLI, which no reachable registry ships: only its
# formatting is checked, on the daemon's stdout (the same JSON as the payloads).
check bash-format "$work/expected-all.txt" examples/consumers/consumer.sh --stdin <"$work/events.jsonl"
bash -n examples/consumers/consumer.sh
# Stopping after N events leaves the rest for the next run of the same durable consumer.
head -n 2 "$work/expected-all.txt" >"$work/expected-first.txt"
tail -n +3 "$work/expected-all.txt" >"$work/expected-rest.txt"
check python-first "$work/expected-first.txt" "${py[@]}" 'postgres.>' --durable py-split --max-events 2
check python-rest "$work/expected-rest.txt" "${py[@]}" 'postgres.>' --durable py-split --idle-timeout 3

echo "consumers: $passes passed, $failures failed"
[ "$failures" = 0 ]
