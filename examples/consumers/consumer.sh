#!/usr/bin/env bash
# Read pgoutput-stream events from JetStream with the `nats` CLI and print one
# line per event: `<subject> <op> <row>`, like consumer.py and consumer.mjs.
#
#   consumer.sh ['postgres.>'] [--max-events N] [--idle-timeout SECONDS]
#   pgoutput-stream ... | consumer.sh --stdin     # the same lines from stdout's JSON
#
# Needs the `nats` CLI (natscli) and jq. The server comes from NATS_URL (as
# for every nats command; default nats://127.0.0.1:4222), the stream from
# STREAM (default postgres_replication), the durable consumer's name from
# DURABLE (default pgoutput-example-sh): the first run reads the stream from
# its start, later runs continue after the last acknowledged event.
#
# `nats consumer next --raw` prints the payload only, so the subject is rebuilt
# from the event as pgoutput-stream builds it (prefix from PREFIX, default
# postgres); it differs from the real one only for names that subjects
# percent-encode (dots, spaces, `*`, `>`). Each event is acknowledged by the
# CLI once fetched (--ack), one request per event: fine for a look at the
# stream, use a client library for throughput.
set -euo pipefail

subject='postgres.>'
max_events=0
idle_timeout=0
from_stdin=false
while [ $# -gt 0 ]; do
    case $1 in
        --max-events) max_events=$2; shift 2 ;;
        --idle-timeout) idle_timeout=$2; shift 2 ;;
        --stdin) from_stdin=true; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) subject=$1; shift ;;
    esac
done
stream=${STREAM:-postgres_replication}
durable=${DURABLE:-pgoutput-example-sh}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
export PREFIX=${PREFIX:-postgres}
command -v jq >/dev/null || { echo "consumer.sh: jq is not installed" >&2; exit 1; }

# The line for one event (a JSON payload on stdin).
describe() {
    jq -r --arg prefix "$PREFIX" '
        (if .op == "begin" or .op == "commit" then "\($prefix).transactions.\(.op).event"
         elif .op == "message" then "\($prefix).messages.\(.prefix)"
         else "\($prefix).\(.schema).\(.table).\(.op)" end) as $subject
        | ([.new, .old, .content] | map(select(. != null)) | first) as $row
        | if $row == null then "\($subject) \(.op)" else "\($subject) \(.op) \($row | tojson)" end'
}

if $from_stdin; then
    # JSON events as pgoutput-stream prints them (--format json or json-pretty).
    describe
    exit 0
fi

command -v nats >/dev/null || { echo "consumer.sh: the nats CLI is not installed" >&2; exit 1; }
# A durable pull consumer: all messages from the stream's start, explicit acks.
if ! nats consumer info "$stream" "$durable" >/dev/null 2>&1; then
    nats consumer add "$stream" "$durable" --filter "$subject" --pull --deliver all \
        --ack explicit --replay instant --max-deliver=-1 --defaults >/dev/null
fi

printed=0
wait=${idle_timeout%.*}
[ "$wait" -gt 0 ] 2>/dev/null || wait=30
while [ "$max_events" = 0 ] || [ "$printed" -lt "$max_events" ]; do
    if payload=$(nats consumer next "$stream" "$durable" --count 1 --raw --ack --wait "${wait}s" 2>/dev/null) \
        && [ -n "$payload" ]; then
        printf '%s\n' "$payload" | describe
        printed=$((printed + 1))
    elif [ "$idle_timeout" != 0 ]; then
        break # nothing arrived within the idle timeout
    else
        sleep 1 # nothing yet, or the server is unreachable: ask again
    fi
done
