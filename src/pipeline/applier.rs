//! The applier: decodes queued payloads, hands each event (encoded once as
//! JSON) to the outputs, and records in the shared [`Checkpoint`] which units
//! were handed over and how far the outputs have durably taken them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::stream::{lock, TICK};
use super::{RunError, HEARTBEAT_PREFIX};
use crate::change::debezium::DebeziumEncoder;
use crate::change::{Change, PayloadEncoder};
use crate::checkpoint::Checkpoint;
use crate::filter::Filter;
use crate::lsn::Lsn;
use crate::metrics::{EventLabels, Metrics};
use crate::output::{Event, OutputTarget, Seq, SeqCounter};
use crate::pgoutput::decoder::Decoder;

pub(super) struct Applier<'a, O: OutputTarget + ?Sized> {
    pub(super) output: &'a mut O,
    decoder: Decoder,
    checkpoint: Arc<Mutex<Checkpoint>>,
    changes: Vec<Change>,
    json: Vec<u8>,
    counters: EventCounters,
    filter: Filter,
    encoder: PayloadEncoder,
    seqs: SeqCounter,
    /// The open transaction's begin and relation events, published only
    /// before its first published change: a transaction whose changes are all
    /// filtered out (or that has none) publishes nothing.
    held: Vec<(Change, Seq)>,
    /// Whether the open transaction has published anything.
    published: bool,
}

impl<'a, O: OutputTarget + ?Sized> Applier<'a, O> {
    pub(super) fn new(
        output: &'a mut O,
        checkpoint: Arc<Mutex<Checkpoint>>,
        metrics: Arc<Metrics>,
        rules: Rules,
    ) -> Self {
        Applier {
            output,
            decoder: Decoder::new(rules.stream_memory),
            checkpoint,
            changes: Vec::new(),
            json: Vec::with_capacity(4096),
            counters: EventCounters::new(metrics),
            filter: rules.filter,
            encoder: rules.payload.encoder(),
            seqs: SeqCounter::default(),
            held: Vec::new(),
            published: false,
        }
    }

    /// Apply payloads until the queue is closed and empty (Ok) or a failure.
    pub(super) async fn run(
        &mut self,
        mut payloads: mpsc::Receiver<(Lsn, Bytes)>,
    ) -> Result<(), RunError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                payload = payloads.recv() => match payload {
                    Some((lsn, data)) => {
                        self.apply(lsn, data).await?;
                        lock(&self.checkpoint).applied();
                        self.refresh_durable();
                    }
                    None => return Ok(()),
                },
                // Acks arrive while no payload does.
                _ = tick.tick() => self.refresh_durable(),
            }
        }
    }

    pub(super) fn refresh_durable(&self) {
        let durable = self.output.durable();
        lock(&self.checkpoint).durable(durable);
    }

    /// Decode one XLogData payload and hand its published events to the
    /// outputs; every unit's end goes to the outputs, filtered or not, so the
    /// slot moves past filtered changes too. A streamed transaction's commit
    /// hands out its events in batches, so memory stays bounded.
    async fn apply(&mut self, wal_start: Lsn, data: Bytes) -> Result<(), RunError> {
        self.decoder
            .decode(wal_start, data, &mut self.changes)
            .map_err(RunError::Decode)?;
        self.hand_over().await?;
        while self.decoder.replaying() {
            self.decoder
                .replay(REPLAY_BATCH, &mut self.changes)
                .map_err(RunError::Decode)?;
            self.hand_over().await?;
        }
        Ok(())
    }

    async fn hand_over(&mut self) -> Result<(), RunError> {
        let mut changes = std::mem::take(&mut self.changes);
        for change in changes.drain(..) {
            let seq = self.seqs.next(&change);
            let end = unit_end(&change);
            match change {
                Change::Begin(_) => {
                    lock(&self.checkpoint).begin();
                    self.held.clear();
                    self.held.push((change, seq));
                    self.published = false;
                }
                Change::Relation(_) if !self.published => {
                    // The filter decides a table again at each relation event (after a
                    // rename it may now be included), before the change that follows it.
                    self.filter.keeps(&change);
                    self.held.push((change, seq));
                }
                Change::Commit { .. } => {
                    self.held.clear();
                    if self.published && self.filter.transaction_events() {
                        self.publish(&change, seq).await?;
                    }
                    self.published = false;
                }
                _ if is_heartbeat(&change) => {}
                _ => {
                    if self.filter.keeps(&change) {
                        self.publish_held().await?;
                        self.publish(&change, seq).await?;
                    }
                }
            }
            if let Some(end) = end {
                self.output.commit(end).await.map_err(RunError::Output)?;
                lock(&self.checkpoint).handed(end);
            }
        }
        self.changes = changes;
        Ok(())
    }

    /// Before the open transaction's first published change: its begin and
    /// the relation events held back (those the filter keeps).
    async fn publish_held(&mut self) -> Result<(), RunError> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.published = true;
        let mut held = std::mem::take(&mut self.held);
        for (change, seq) in held.drain(..) {
            if self.filter.keeps(&change) {
                self.publish(&change, seq).await?;
            }
        }
        self.held = held;
        Ok(())
    }

    /// Publish one event that is not part of the pgoutput stream (a snapshot
    /// row or its table's relation event), if the filter keeps it.
    pub(super) async fn publish_row(&mut self, change: &Change, seq: Seq) -> Result<(), RunError> {
        if self.filter.keeps(change) {
            self.publish(change, seq).await?;
        }
        Ok(())
    }

    async fn publish(&mut self, change: &Change, seq: Seq) -> Result<(), RunError> {
        self.json.clear();
        if !self.encoder.write(change, &mut self.json) {
            return Ok(());
        }
        self.counters.count(change);
        self.output
            .write(Event {
                change,
                json: &self.json,
                seq,
            })
            .await
            .map_err(RunError::Output)
    }
}

/// Events of a committed streamed transaction decoded between two hand-overs.
const REPLAY_BATCH: usize = 256;

/// What is published and how: the same for every session and catch-up chunk of a run.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    pub(super) filter: Filter,
    pub(super) payload: Payload,
    /// Memory for streamed in-progress transactions (`--streaming-memory`).
    pub(super) stream_memory: usize,
}

/// The payload format.
#[derive(Debug, Clone)]
pub(super) enum Payload {
    Native,
    /// The Debezium envelope, with its `source.name` and `source.db`.
    Debezium {
        name: String,
        db: String,
    },
}

impl Payload {
    fn encoder(&self) -> PayloadEncoder {
        match self {
            Payload::Native => PayloadEncoder::Native,
            Payload::Debezium { name, db } => {
                PayloadEncoder::Debezium(DebeziumEncoder::new(name, db))
            }
        }
    }
}

/// Our own heartbeat messages move the slot but are not forwarded.
fn is_heartbeat(change: &Change) -> bool {
    matches!(change, Change::Message { transactional: false, prefix, .. } if prefix == HEARTBEAT_PREFIX)
}

/// The event counter of each (op, table), looked up once per table and op.
struct EventCounters {
    metrics: Arc<Metrics>,
    by_table: HashMap<(&'static str, u32), Counter>,
}

impl EventCounters {
    fn new(metrics: Arc<Metrics>) -> Self {
        EventCounters {
            metrics,
            by_table: HashMap::new(),
        }
    }

    fn count(&mut self, change: &Change) {
        let op = change.op();
        let table = change.table();
        let key = (op, table.map_or(0, |t| t.relation_id));
        let metrics = &self.metrics;
        let counter = self.by_table.entry(key).or_insert_with(|| {
            let labels = EventLabels {
                op,
                table: table.map_or_else(String::new, |t| format!("{}.{}", t.schema, t.name)),
            };
            metrics.events.get_or_create(&labels).clone()
        });
        metrics.event(counter);
    }
}

/// The position that acknowledges `change` once it is durable, if it ends a unit:
/// a transaction's end, or a non-transactional message's LSN. The server gives
/// such a message the end of its WAL record, where the next record (maybe a
/// commit) starts: confirming that position makes the server skip the message
/// but not that commit, while anything past it would lose the transaction.
fn unit_end(change: &Change) -> Option<Lsn> {
    match change {
        Change::Commit { end_lsn, .. } => Some(*end_lsn),
        Change::Message {
            transactional: false,
            lsn,
            ..
        } => Some(*lsn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::output::StdoutOutput;
    use crate::pgoutput::message::{Begin, Commit, LogicalMessage};
    use crate::pgoutput::parse::encode::encode;

    fn begin(final_lsn: u64, xid: u32) -> Bytes {
        encode(&LogicalMessage::Begin(Begin {
            final_lsn: Lsn(final_lsn),
            commit_ts: 0,
            xid,
        }))
        .into()
    }

    fn commit(commit_lsn: u64, end_lsn: u64) -> Bytes {
        encode(&LogicalMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(commit_lsn),
            end_lsn: Lsn(end_lsn),
            commit_ts: 0,
        }))
        .into()
    }

    /// Feed payloads to an applier writing JSON into memory; returns its result,
    /// the flush position it would confirm, and what it wrote.
    async fn apply(payloads: Vec<(u64, Bytes)>) -> (Result<(), RunError>, Lsn, String) {
        let mut output = StdoutOutput::new(Vec::new(), Format::Json);
        let checkpoint = Arc::new(Mutex::new(Checkpoint::new(Lsn(0x100))));
        let (tx, rx) = mpsc::channel(16);
        for (lsn, data) in payloads {
            lock(&checkpoint).queued(Lsn(lsn));
            tx.send((Lsn(lsn), data)).await.unwrap();
        }
        drop(tx);
        let mut applier = Applier {
            output: &mut output,
            decoder: Decoder::default(),
            checkpoint: checkpoint.clone(),
            changes: Vec::new(),
            json: Vec::new(),
            counters: EventCounters::new(Metrics::new(false)),
            filter: Filter::default(),
            encoder: PayloadEncoder::Native,
            seqs: SeqCounter::default(),
            held: Vec::new(),
            published: false,
        };
        let result = applier.run(rx).await;
        applier.refresh_durable();
        let flush = lock(&checkpoint).status().flush;
        let written = String::from_utf8(output.get_ref().clone()).unwrap();
        (result, flush, written)
    }

    #[tokio::test]
    async fn an_unknown_message_stops_with_its_lsn_and_kind_and_confirms_only_complete_transactions(
    ) {
        let (result, flush, written) = apply(vec![
            (0x200, begin(0x280, 7)),
            (0x200, commit(0x280, 0x2A0)),
            (0x300, begin(0x380, 8)),
            (0x340, Bytes::from_static(b"Zjunk")),
            (0x380, commit(0x380, 0x3A0)),
        ])
        .await;
        let err = result.expect_err("an unknown message must stop the applier");
        let text = err.to_string();
        assert!(text.contains("0/340"), "names the LSN: {text}");
        assert!(
            text.contains("unknown message 'Z'"),
            "names the kind: {text}"
        );
        assert_eq!(err.exit_code(), 1);
        assert_eq!(flush, Lsn(0x2A0), "only the first transaction is confirmed");
        // Both transactions are empty: nothing is published, but the first is confirmed.
        assert_eq!(written, "");
    }

    #[test]
    fn a_non_transactional_message_is_acknowledged_at_its_own_lsn_never_past_it() {
        let message = Change::Message {
            prefix: "p".into(),
            content: Bytes::new(),
            transactional: false,
            lsn: Lsn(0x500),
            tx: None,
        };
        assert_eq!(unit_end(&message), Some(Lsn(0x500)));
    }

    #[tokio::test]
    async fn a_truncated_message_is_an_error_not_a_panic() {
        let mut cut = begin(0x280, 7).to_vec();
        cut.truncate(9);
        let (result, flush, _) = apply(vec![(0x200, cut.into())]).await;
        let text = result.expect_err("truncated").to_string();
        assert!(text.contains("Begin") && text.contains("0/200"), "{text}");
        assert_eq!(flush, Lsn(0x100));
    }
}
