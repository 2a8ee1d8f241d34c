#!/usr/bin/env bash
# End-to-end benchmark on one machine (see docs/performance.md): a throwaway
# PostgreSQL and nats-server, N prefilled rows of a 5-column table in
# 1,000-row transactions, identical slots at the same LSN, then
#   (a) pg_recvlogical (pgoutput) reading the slot to the end LSN into /dev/null,
#   (b) a raw async-nats publisher (examples/bench_nats.rs) storing N messages
#       of our events' average size in JetStream, with async acks,
#   (b2) the same messages as one fast-ingest batch (flow acks),
#   (c) pgoutput-stream, stdout to /dev/null,
#   (d) pgoutput-stream --no-stdout to JetStream,
# and one table of rows/s, MB/s, CPU seconds and peak RSS, with the ratios
# c/a, d/a, d/b; then commit-to-JetStream latency at a steady rate of
# single-row transactions (p50/p99 from commit_ts to the stream's timestamp).
#
#   scripts/bench.sh [--rows N] [--latency-seconds S] [--latency-rate R]
#                    [--daemon-args "ARGS"] [--daemon-env "K=V ..."] [--unix-socket] [--profile DIR]
#                    [--logs DIR] [--timeline FILE] [--debug]
#
# --debug uses the debug build (target/debug, as `cargo test --all-targets`
# leaves it) instead of building a release: only for the smoke run in
# scripts/test.sh, which checks that the script works, not the numbers.
#
# --unix-socket makes (a), (c) and (d) reach PostgreSQL through its Unix
# socket instead of TCP on 127.0.0.1.
#
# --daemon-args "ARGS" adds flags to the daemon in (c) and (d), for
# experiments (e.g. "--nats-max-inflight 16384"); --daemon-env "K=V ..."
# sets environment variables for it (e.g. "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2").
# --profile DIR records the daemon of (c) and (d) with `perf record -g` into
# DIR/c.perf.data and DIR/d.perf.data, and the whole machine during (a) into
# DIR/a.perf.data (read them with `perf report -i`); (a)'s CPU figures then include perf.
# --logs DIR keeps the daemon's log of (c) and (d) as DIR/c.log and DIR/d.log
# (with --daemon-args "--log-level info,pgoutput_stream::pipeline::catchup=debug",
# one line per catch-up chunk with its timings).
# --timeline FILE samples, every 50 ms, the CPU of nats-server, PostgreSQL, the
# daemon and the clients (pg_recvlogical, bench_nats) and the machine's idle
# time, and writes for each run the cores each used per 0.25 s to FILE
# (scripts/lib/timeline.py; processes counted by name, machine-wide).
# Not a test: numbers are noisy on shared machines. `--rows 2000
# --latency-seconds 2 --debug` is the smoke run scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

rows=500000
latency_seconds=10
latency_rate=1000
profile=
logs=
timeline=
daemon_args=
daemon_env=
unix_socket=
build=release
while [ $# -gt 0 ]; do
    case $1 in
        --rows) rows=$2; shift 2 ;;
        --latency-seconds) latency_seconds=$2; shift 2 ;;
        --latency-rate) latency_rate=$2; shift 2 ;;
        --daemon-args) daemon_args=$2; shift 2 ;;
        --daemon-env) daemon_env=$2; shift 2 ;;
        --unix-socket) unix_socket=1; shift ;;
        --debug) build=debug; shift ;;
        --profile) profile=$(realpath -m "$2"); mkdir -p "$profile"; shift 2 ;;
        --logs) logs=$(realpath -m "$2"); mkdir -p "$logs"; shift 2 ;;
        --timeline) timeline=$(realpath -m "$2"); mkdir -p "$(dirname "$timeline")"; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $rows in ''|*[!0-9]*|0) echo "--rows must be a positive integer" >&2; exit 2 ;; esac

ensure_postgres
ensure_nats_server
for tool in /usr/bin/time:time bc:bc pgrep:procps; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
        echo "Installing ${tool#*:} (apt-get)..." >&2
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${tool#*:}" >/dev/null
    fi
done
echo "== building ($build)" >&2
if [ "$build" = release ]; then
    cargo build --quiet --release --locked --bin pgoutput-stream --example bench_nats
else
    cargo build --quiet --locked --bin pgoutput-stream --example bench_nats
fi
bin=$PWD/target/$build/pgoutput-stream
bench_nats=$PWD/target/$build/examples/bench_nats
bindir=$(pg_bindir)

work=$(mktemp -d /tmp/pgoutput-stream-bench.XXXXXX)
chmod 755 "$work"
port=$(free_port)
nats_port=$(free_port)
nats=
timed=
sampler=
# Each step may fail (a process already gone, `wait` reporting the signal):
# none may keep the others from running.
cleanup() {
    [ -n "$timed" ] && kill "$timed" 2>/dev/null && wait "$timed" 2>/dev/null || true
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null || true
    [ -n "$nats" ] && kill "$nats" 2>/dev/null && wait "$nats" 2>/dev/null || true
    stop_postgres "$work" || true
    rm -rf "$work"
}
trap cleanup EXIT

start_postgres "$work/pg" "$port"
pg_host=127.0.0.1
[ -z "$unix_socket" ] || pg_host=$work/pg
conn="host=$pg_host port=$port user=postgres dbname=postgres"
sql() { "$bindir/psql" -X -q -A -t -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
sql -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "SELECT pg_reload_conf()" >/dev/null

nats_url=nats://127.0.0.1:$nats_port
# fresh_nats: (re)start nats-server on an empty store, so that each NATS run
# starts from the same server: one that still holds an earlier run's stream
# (and its message-id dedup state, 2 minutes of it) spends more CPU per message.
fresh_nats() {
    if [ -n "$nats" ]; then
        kill "$nats" && wait "$nats" 2>/dev/null || true
        rm -rf "$work/nats"
    fi
    start_nats "$work" "$nats_port"
    nats=$NATS_PID
}
fresh_nats

echo "== prefilling $rows rows in 1,000-row transactions" >&2
sql <<'SQL'
CREATE TABLE bench_rows (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    amount numeric(12,2) NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE PUBLICATION bench_pub FOR TABLE bench_rows;
SELECT 1 FROM pg_create_logical_replication_slot('bench_a', 'pgoutput') \g /dev/null
-- Copies start at exactly the same LSN as the original.
SELECT 1 FROM pg_copy_logical_replication_slot('bench_a', 'bench_c') \g /dev/null
SELECT 1 FROM pg_copy_logical_replication_slot('bench_a', 'bench_d') \g /dev/null
SELECT 1 FROM pg_copy_logical_replication_slot('bench_a', 'bench_bytes') \g /dev/null
SQL
start_fill=$(date +%s.%N)
sql -v rows="$rows" <<'SQL'
CREATE PROCEDURE bench_fill(total bigint) LANGUAGE plpgsql AS $$
DECLARE first bigint := 1;
BEGIN
    WHILE first <= total LOOP
        INSERT INTO bench_rows
        SELECT i,
               'customer-' || lpad(i::text, 8, '0') || '-with-a-name-of-usual-length',
               (i % 100000) / 7.0,
               jsonb_build_object('kind', 'order', 'items', jsonb_build_array(i % 7, i % 11, i % 13),
                                  'flags', jsonb_build_object('paid', i % 2 = 0, 'gift', false),
                                  'note', rpad('note ' || i, 120, ' lorem ipsum')),
               timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second'
        FROM generate_series(first, least(first + 999, total)) AS i;
        COMMIT;
        first := first + 1000;
    END LOOP;
END $$;
CALL bench_fill(:rows);
SQL
end_lsn=$(sql -c "SELECT pg_current_wal_lsn()")
row_text_bytes=$(sql -c "SELECT avg(octet_length(t::text))::int FROM bench_rows t")
echo "   prefilled in $(echo "$(date +%s.%N) - $start_fill" | bc) s; end LSN $end_lsn; $row_text_bytes bytes per row as text" >&2

# servers_ticks: CPU clock ticks (user + system) used so far by this benchmark's
# PostgreSQL (the postmaster, its live children, and the children that ended,
# counted in the postmaster's) and by nats-server, as "PG NATS".
servers_ticks() {
    local postmaster pg=0 p
    postmaster=$(head -1 "$work/pg/data/postmaster.pid")
    for p in "$postmaster" $(pgrep -P "$postmaster"); do
        [ -r "/proc/$p/stat" ] || continue
        pg=$((pg + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 + $14 + $15 }')))
    done
    echo "$pg $(sed 's/.*) //' "/proc/$nats/stat" | awk '{ print $12 + $13 }')"
}
ticks_per_second=$(getconf CLK_TCK)
# servers_cpu_since "PG NATS": sets pg_cpu and nats_cpu, in seconds, since those ticks
# (after a short pause, so that the run's backends have ended and been counted).
servers_cpu_since() {
    local before_pg before_nats now_pg now_nats
    sleep 0.3
    read -r before_pg before_nats <<<"$1"
    read -r now_pg now_nats < <(servers_ticks)
    pg_cpu=$(echo "scale=2; ($now_pg - $before_pg) / $ticks_per_second" | bc)
    nats_cpu=$(echo "scale=2; ($now_nats - $before_nats) / $ticks_per_second" | bc)
}

# record KEY: keep the figures of the run just measured (elapsed, cpu, rss_kb
# from run_timed or run_daemon, and the servers' CPU since the ticks in $before).
record() {
    servers_cpu_since "$before"
    R_ELAPSED[$1]=$elapsed R_CPU[$1]=$cpu R_RSS[$1]=$rss_kb R_PG[$1]=$pg_cpu R_NATS[$1]=$nats_cpu
}

# run_timed NAME CMD...: run CMD under GNU time; sets elapsed, cpu, rss_kb;
# returns CMD's status.
run_timed() {
    local name=$1; shift
    local start end status=0
    start=$(date +%s.%N)
    /usr/bin/time -f '%U %S %M' -o "$work/$name.time" "$@" || status=$?
    [ "$status" = 0 ] || return "$status"
    end=$(date +%s.%N)
    echo "$name $start $end" >>"$work/marks"
    elapsed=$(echo "$end - $start" | bc)
    read -r user sys rss_kb <"$work/$name.time"
    cpu=$(echo "$user + $sys" | bc)
}

# run_daemon NAME SLOT ARGS...: run pgoutput-stream on SLOT until the slot's
# confirmed position reaches the end LSN, then SIGINT it; sets elapsed, cpu, rss_kb.
run_daemon() {
    local name=$1 slot=$2; shift 2
    local start end child level="--log-level info"
    case " $daemon_args " in *" --log-level "*) level= ;; esac
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # word splitting of the experiment options is wanted
    /usr/bin/time -f '%U %S %M' -o "$work/$name.time" \
        env $daemon_env "$bin" --connection "$conn" --slot "$slot" --publication bench_pub \
        --status-interval 1s $level $daemon_args "$@" >/dev/null 2>"$work/$name.log" &
    timed=$!
    local perf=
    if [ -n "$profile" ]; then
        sleep 0.2
        perf record -q -F 1999 -g -o "$profile/$name.perf.data" -p "$(pgrep -P "$timed")" 2>"$profile/$name.perf.log" &
        perf=$!
    fi
    # Wait server-side (one backend, no client polling loop) for the confirmation.
    sql -c "DO \$\$ BEGIN
        WHILE (SELECT coalesce(confirmed_flush_lsn < '$end_lsn', true) FROM pg_replication_slots WHERE slot_name = '$slot') LOOP
            PERFORM pg_sleep(0.01);
        END LOOP; END \$\$" &
    local waiter=$!
    # Generous: a stuck run must not hang the test suite's smoke run.
    local deadline=$((SECONDS + 120 + rows / 1000))
    while kill -0 "$waiter" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill "$waiter" 2>/dev/null || true
            cat "$work/$name.log" >&2
            echo "pgoutput-stream ($name) did not confirm $end_lsn in time" >&2
            exit 1
        fi
        if ! kill -0 "$timed" 2>/dev/null; then
            kill "$waiter" 2>/dev/null || true
            cat "$work/$name.log" >&2
            echo "pgoutput-stream ($name) ended before reaching $end_lsn" >&2
            exit 1
        fi
        sleep 0.05
    done
    wait "$waiter"
    end=$(date +%s.%N)
    child=$(pgrep -P "$timed" || true)
    [ -n "$child" ] && kill -INT "$child"
    wait "$timed" || { cat "$work/$name.log" >&2; exit 1; }
    timed=
    [ -z "$logs" ] || cp "$work/$name.log" "$work/$name.time" "$logs/"
    [ -z "$perf" ] || wait "$perf" || true
    echo "$name $start $end" >>"$work/marks"
    elapsed=$(echo "$end - $start" | bc)
    read -r user sys rss_kb <"$work/$name.time"
    cpu=$(echo "$user + $sys" | bc)
}

declare -A R_ELAPSED R_CPU R_RSS R_BYTES R_PG R_NATS

if [ -n "$timeline" ]; then
    python3 scripts/lib/timeline.py sample "$work/samples" &
    sampler=$!
fi

echo "== (a) pg_recvlogical" >&2
before=$(servers_ticks)
# With --profile, the whole machine is recorded during (a) (the walsender is the interesting part).
a_prefix=()
[ -z "$profile" ] || a_prefix=(perf record -q -a -g -o "$profile/a.perf.data" --)
run_timed a "${a_prefix[@]}" "$bindir/pg_recvlogical" -h "$pg_host" -p "$port" -U postgres -d postgres \
    --slot bench_a --start --endpos "$end_lsn" --no-loop \
    -o proto_version=1 -o publication_names=bench_pub -f /dev/null
record a

echo "== (c) pgoutput-stream > /dev/null" >&2
before=$(servers_ticks)
run_daemon c bench_c
record c

echo "== (d) pgoutput-stream --no-stdout --nats-server" >&2
before=$(servers_ticks)
run_daemon d bench_d --no-stdout --nats-server "$nats_url" \
    --nats-max-msgs $((rows * 2 + 10000)) --nats-max-bytes $((rows * 4096 + 100000000))
record d

# Sizes, outside the timed runs: the events (JSON, as stored by (d); stdout
# adds a newline each) and the pgoutput payloads pg_recvlogical received.
read -r events json_bytes < <("$bench_nats" sizes "$nats_url" postgres_replication)
R_BYTES[c]=$((json_bytes + events))
R_BYTES[d]=$json_bytes
# Timed too: decoding inside one backend with no client at all, the server's own limit.
peek_start=$(date +%s.%N)
R_BYTES[a]=$(sql -c "SELECT sum(octet_length(data) + 1) FROM pg_logical_slot_peek_binary_changes('bench_bytes', '$end_lsn', NULL, 'proto_version', '1', 'publication_names', 'bench_pub')")
peek_seconds=$(echo "$(date +%s.%N) - $peek_start" | bc)
avg_event=$((json_bytes / events))

echo "== (b) raw JetStream publisher: $rows messages of $avg_event bytes" >&2
fresh_nats
before=$(servers_ticks)
run_timed b "$bench_nats" publish "$nats_url" bench_raw "$rows" "$avg_event" >/dev/null
record b
R_BYTES[b]=$((rows * avg_event))

echo "== (b2) raw JetStream publisher, one fast-ingest batch" >&2
fresh_nats
before=$(servers_ticks)
# nats-server before 2.14 has no batches: the row is left out.
if run_timed b2 "$bench_nats" publish-batched "$nats_url" bench_batch "$rows" "$avg_event" >/dev/null; then
    record b2
    R_BYTES[b2]=$((rows * avg_event))
else
    echo "   (b2) left out: this nats-server does not take fast-ingest batches" >&2
fi

echo "== latency: $latency_rate single-row transactions/s for $latency_seconds s" >&2
sql -c "SELECT 1 FROM pg_create_logical_replication_slot('bench_latency', 'pgoutput')" >/dev/null
"$bin" --connection "$conn" --slot bench_latency --publication bench_pub --no-stdout \
    --nats-server "$nats_url" --nats-stream bench_latency --nats-subject-prefix latency \
    --log-level info >/dev/null 2>"$work/latency.log" &
timed=$!
wait_for_line "$work/latency.log" "Streaming changes"
sql -c "CREATE SEQUENCE latency_ids START $((rows + 1))" >/dev/null
cat >"$work/latency.sql" <<'PGB'
INSERT INTO bench_rows SELECT nextval('latency_ids'), 'latency-probe', 1.5, '{"note": "probe"}', now();
PGB
"$bindir/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c 4 -j 2 -R "$latency_rate" -T "$latency_seconds" \
    -f "$work/latency.sql" postgres >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log" >&2; exit 1; }
sleep 1
kill -INT "$timed"; wait "$timed" || true; timed=
read -r commits p50 p99 pmax < <("$bench_nats" latency "$nats_url" bench_latency)

if [ -n "$timeline" ]; then
    kill "$sampler" && wait "$sampler" 2>/dev/null || true
    sampler=
    if python3 scripts/lib/timeline.py report "$work/samples" "$work/marks" >"$timeline"; then
        echo "== timeline written to $timeline" >&2
    else
        echo "== the timeline report failed; the results follow" >&2
    fi
fi

mb() { echo "scale=1; $1 / 1000000" | bc; }
rate() { echo "$1 / $2" | bc; }
printf '\n%s rows (~%s bytes per row as text), %s events, %s bytes per event on average\n\n' \
    "$rows" "$row_text_bytes" "$events" "$avg_event"
printf '| %-38s | %9s | %7s | %6s | %8s | %8s | %11s | %11s |\n' run "rows/s" "MB/s" "wall s" "CPU s" "peak RSS" \
    "postgres s" "nats-srv s"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..40})" ----------- --------- -------- ---------- ---------- \
    ------------- -------------
for k in a b b2 c d; do
    [ -n "${R_ELAPSED[$k]:-}" ] || continue
    case $k in
        a) label="(a) pg_recvlogical > /dev/null" ;;
        b) label="(b) raw async-nats publisher" ;;
        b2) label="(b2) raw publisher, fast-ingest batch" ;;
        c) label="(c) pgoutput-stream > /dev/null" ;;
        d) label="(d) pgoutput-stream --no-stdout, NATS" ;;
    esac
    printf '| %-38s | %9s | %7s | %6.2f | %8.2f | %5d MB | %11.2f | %11.2f |\n' "$label" \
        "$(rate "$rows" "${R_ELAPSED[$k]}")" "$(mb "$(rate "${R_BYTES[$k]}" "${R_ELAPSED[$k]}")")" \
        "${R_ELAPSED[$k]}" "${R_CPU[$k]}" "$((R_RSS[$k] / 1024))" "${R_PG[$k]}" "${R_NATS[$k]}"
done
ratio() { printf '%.2f' "$(echo "scale=4; ${R_ELAPSED[$2]} / ${R_ELAPSED[$1]}" | bc)"; }
printf '\nrows/s ratios: c/a = %s (target >= 1.3), d/a = %s (>= 1.0), d/b = %s (>= 0.6)\n' \
    "$(ratio c a)" "$(ratio d a)" "$(ratio d b)"
[ -z "${R_ELAPSED[b2]:-}" ] ||
    printf 'd/b2 = %s ((d) against the store limit with batches, which (d) uses for a backlog)\n' "$(ratio d b2)"
printf 'server-side decoding alone (pg_logical_slot_peek_binary_changes, no client): %.2f s, %s rows/s\n' \
    "$peek_seconds" "$(rate "$rows" "$peek_seconds")"
printf 'daemon CPU per 100,000 events in (c): %s core-seconds (target <= 0.5)\n' \
    "$(printf '%.2f' "$(echo "scale=4; ${R_CPU[c]} * 100000 / $events" | bc)")"
printf 'latency at %s tx/s for %s s, commit_ts to JetStream timestamp of the commit event: p50 %s ms, p99 %s ms, max %s ms over %s transactions (targets p50 <= 5, p99 <= 25)\n' \
    "$latency_rate" "$latency_seconds" "$p50" "$p99" "$pmax" "$commits"
