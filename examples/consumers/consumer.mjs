#!/usr/bin/env node
// Read pgoutput-stream events from JetStream with the `nats` npm package and
// print one line per event.
//
//   npm install            # in examples/consumers (installs nats)
//   node consumer.mjs 'postgres.>'                                 # follow forever
//   node consumer.mjs 'postgres.public.orders.*' --max-events 10 --idle-timeout 5
//
// Each line is `<subject> <op> <row>`, where <row> is the event's `new` row
// (insert, update), its `old` row (delete) or the `content` of a logical
// message, as compact JSON; other events (begin, commit, relation, truncate)
// print the subject and op only. The same lines as consumer.py.
//
// The consumer is durable (--durable, default pgoutput-example-node): the first
// run starts at the beginning of the stream, later runs continue after the last
// acknowledged event. An event is acknowledged only after its line is printed.

import { AckPolicy, DeliverPolicy, connect } from "nats";
import { parseArgs } from "node:util";

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    server: { type: "string", default: "nats://127.0.0.1:4222" },
    stream: { type: "string", default: "postgres_replication" },
    durable: { type: "string", default: "pgoutput-example-node" },
    "max-events": { type: "string", default: "0" },
    "idle-timeout": { type: "string", default: "0" },
  },
});
const subject = positionals[0] ?? "postgres.>";
const maxEvents = Number(opts["max-events"]);
const idleTimeoutMs = Number(opts["idle-timeout"]) * 1000;

// The printed line for one message: subject, op, and the row as compact JSON.
function describe(subjectOfMessage, event) {
  const op = event.op ?? "?";
  for (const field of ["new", "old", "content"]) {
    if (event[field] !== undefined && event[field] !== null) {
      return `${subjectOfMessage} ${op} ${JSON.stringify(event[field])}`;
    }
  }
  return `${subjectOfMessage} ${op}`;
}

async function main() {
  const nc = await connect({ servers: opts.server, name: "pgoutput-stream example (node)" });
  try {
    const jsm = await nc.jetstreamManager();
    const config = {
      durable_name: opts.durable,
      filter_subject: subject,
      deliver_policy: DeliverPolicy.All,
      ack_policy: AckPolicy.Explicit,
      // Redelivered when not acknowledged within 30 s (in nanoseconds).
      ack_wait: 30_000_000_000,
    };
    try {
      await jsm.consumers.info(opts.stream, opts.durable);
      await jsm.consumers.update(opts.stream, opts.durable, { filter_subject: subject });
    } catch {
      await jsm.consumers.add(opts.stream, config);
    }
    const consumer = await nc.jetstream().consumers.get(opts.stream, opts.durable);

    let printed = 0;
    let lastEvent = Date.now();
    while (maxEvents === 0 || printed < maxEvents) {
      if (idleTimeoutMs > 0 && Date.now() - lastEvent >= idleTimeoutMs) break;
      const batch = maxEvents === 0 ? 100 : Math.min(100, maxEvents - printed);
      const messages = await consumer.fetch({ max_messages: batch, expires: 1000 });
      for await (const message of messages) {
        const event = JSON.parse(new TextDecoder().decode(message.data));
        process.stdout.write(describe(message.subject, event) + "\n");
        message.ack();
        printed += 1;
        lastEvent = Date.now();
      }
    }
  } finally {
    // Flushes the acknowledgements before closing.
    await nc.drain();
  }
}

main().catch((error) => {
  process.stderr.write(`consumer.mjs: ${error.message ?? error}\n`);
  process.exit(1);
});
