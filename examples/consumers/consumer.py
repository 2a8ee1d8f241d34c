#!/usr/bin/env python3
"""Read pgoutput-stream events from JetStream with nats-py and print one line per event.

    pip install nats-py
    python3 consumer.py 'postgres.>'                               # follow forever
    python3 consumer.py 'postgres.public.orders.*' --max-events 10 --idle-timeout 5

Each line is `<subject> <op> <row>`, where <row> is the event's `new` row
(insert, update), its `old` row (delete: the key, or the whole row with
REPLICA IDENTITY FULL) or the `content` of a logical message, as compact JSON;
other events (begin, commit, relation, truncate) print the subject and op only.

The consumer is durable (`--durable`, default `pgoutput-example-py`): it starts
at the beginning of the stream the first time, and after a restart continues
after the last event it acknowledged. Every event is acknowledged only after
its line has been printed, so a crash can repeat an event but not lose one.
"""

import argparse
import asyncio
import json
import sys
import time

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


def describe(subject, payload):
    """The printed line for one message: subject, op, and the row as compact JSON."""
    event = json.loads(payload)
    op = event.get("op", "?")
    for field in ("new", "old", "content"):
        if event.get(field) is not None:
            # Same text as JSON.stringify in the Node.js example: no spaces, UTF-8 kept.
            row = json.dumps(event[field], separators=(",", ":"), ensure_ascii=False)
            return f"{subject} {op} {row}"
    return f"{subject} {op}"


async def run(args):
    nc = await nats.connect(args.server, name="pgoutput-stream example (python)")
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            # A message not acknowledged within this time (e.g. the consumer
            # died while printing it) is delivered again.
            ack_wait=30,
        )
        sub = await js.pull_subscribe(
            args.subject, durable=args.durable, stream=args.stream, config=config
        )
        printed = 0
        last_event = time.monotonic()
        while args.max_events == 0 or printed < args.max_events:
            if args.idle_timeout and time.monotonic() - last_event >= args.idle_timeout:
                break
            batch = 100 if args.max_events == 0 else min(100, args.max_events - printed)
            try:
                messages = await sub.fetch(batch, timeout=1)
            except asyncio.TimeoutError:
                # No message within the second (nats-py raises its own subclass
                # of this, or, on some paths, asyncio's own).
                continue
            for message in messages:
                print(describe(message.subject, message.data), flush=True)
                await message.ack()
                printed += 1
            last_event = time.monotonic()
    finally:
        # Send the acknowledgements still buffered, then close. (Not drain():
        # draining a pull subscription whose last fetch timed out can hang.)
        if nc.is_connected:
            await nc.flush(timeout=5)
        await nc.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("subject", nargs="?", default="postgres.>",
                        help="subject filter (default postgres.>)")
    parser.add_argument("--server", default="nats://127.0.0.1:4222", help="NATS URL")
    parser.add_argument("--stream", default="postgres_replication", help="JetStream stream")
    parser.add_argument("--durable", default="pgoutput-example-py",
                        help="durable consumer name (remembers the position between runs)")
    parser.add_argument("--max-events", type=int, default=0,
                        help="stop after this many events (0: never)")
    parser.add_argument("--idle-timeout", type=float, default=0,
                        help="stop after this many seconds without an event (0: never)")
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass
    except Exception as error:  # one readable line instead of a traceback
        print(f"consumer.py: {error.__class__.__name__}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
