//! The streaming loop, in two halves joined by a bounded queue:
//!
//! - the reader owns the replication connection: it reads payloads into the
//!   queue, answers keepalives and sends status updates on a timer, so the
//!   server never times the connection out even while an output applies
//!   backpressure (a full queue only stops the reading);
//! - the applier decodes payloads, hands events to the outputs and records in
//!   the shared [`Checkpoint`] what they have durably taken.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use prometheus_client::metrics::counter::Counter;

use super::{RunError, HEARTBEAT_PREFIX};
use crate::change::{json, Change};
use crate::checkpoint::Checkpoint;
use crate::lsn::Lsn;
use crate::metrics::{EventLabels, Metrics};
use crate::output::{Event, OutputError, OutputTarget};
use crate::pgoutput::decoder::Decoder;
use crate::replication::{ReplicationMessage, ReplicationStream};
use crate::shutdown::Shutdown;

/// How often the reader looks at whether a status update is due.
const TICK: Duration = Duration::from_millis(500);
/// Payloads received and not yet decoded; bounds memory together with the outputs' windows.
const QUEUE: usize = 1024;

/// Why streaming stopped without a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT/SIGTERM (or a test's trigger).
    Requested,
    /// An output's reader went away (`| head`).
    OutputClosed,
}

/// Moves events from one replication stream to the outputs.
pub struct Streamer<'a, O: OutputTarget + ?Sized> {
    reader: Reader,
    applier: Applier<'a, O>,
    /// When a stop was requested: draining and closing share one time budget.
    stop_requested: Option<Instant>,
}

impl<'a, O: OutputTarget + ?Sized> Streamer<'a, O> {
    /// Stream from `start`, the slot's confirmed position (or a later one asked for).
    pub fn new(
        stream: ReplicationStream,
        output: &'a mut O,
        start: Lsn,
        status_interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let checkpoint = Arc::new(Mutex::new(Checkpoint::new(start)));
        Streamer {
            reader: Reader {
                stream,
                checkpoint: checkpoint.clone(),
                status_interval,
                last_status: Instant::now(),
                last_flush_sent: start,
                metrics: metrics.clone(),
            },
            applier: Applier {
                output,
                decoder: Decoder::default(),
                checkpoint,
                changes: Vec::new(),
                json: Vec::with_capacity(4096),
                counters: EventCounters::new(metrics),
            },
            stop_requested: None,
        }
    }

    /// Stream until a stop is requested, an output closes, or something fails.
    /// After a stop request the payloads already read are handed to the
    /// outputs, for at most `drain_timeout`.
    pub async fn run(
        &mut self,
        mut shutdown: Shutdown,
        drain_timeout: Duration,
    ) -> Result<Stop, RunError> {
        let (queue, payloads) = mpsc::channel(QUEUE);
        let reader = &mut self.reader;
        let apply = self.applier.run(payloads);
        tokio::pin!(apply);
        let read = reader.run(queue, &mut shutdown);
        tokio::pin!(read);
        tokio::select! {
            // The applier ends first only on a failure or a closed output.
            stop = &mut apply => output_stop(stop),
            read = &mut read => {
                let stop = read?;
                self.stop_requested = Some(Instant::now());
                // The reader dropped the queue: let the applier take what was read, within bounds.
                match tokio::time::timeout(drain_timeout, &mut apply).await {
                    Ok(result) => output_stop(result).map(|_| stop),
                    Err(_) => {
                        warn!(message = "Outputs did not take the queued events in time; they will be sent again on restart.");
                        Ok(stop)
                    }
                }
            }
        }
    }

    /// After streaming stopped: when `close_outputs`, let the outputs finish
    /// (within `timeout`; not if they closed or failed), confirm what is
    /// durable, and end the replication connection. Returns the position last
    /// confirmed. Without `close_outputs` (a reconnect follows) the outputs
    /// stay open.
    pub async fn finish(
        self,
        result: &Result<Stop, RunError>,
        close_outputs: bool,
        timeout: Duration,
    ) -> Lsn {
        let Streamer {
            mut reader,
            applier,
            stop_requested,
        } = self;
        let timeout = stop_requested.map_or(timeout, |at| timeout.saturating_sub(at.elapsed()));
        let outputs_usable = !matches!(result, Ok(Stop::OutputClosed) | Err(RunError::Output(_)));
        if close_outputs && outputs_usable {
            match tokio::time::timeout(timeout, applier.output.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    warn!(message = "Could not flush outputs while stopping.", error = %err)
                }
                Err(_) => warn!(
                    message = "Outputs did not finish within the shutdown timeout; the rest is sent again on restart."
                ),
            }
        }
        if outputs_usable {
            applier.refresh_durable();
        }
        let connection_usable = !matches!(
            result,
            Err(RunError::Replication(_)) | Err(RunError::StreamEnded)
        );
        if connection_usable {
            if let Err(err) = reader.send_status(false).await {
                warn!(message = "Could not send the last status update.", error = %err);
            }
            if let Err(err) = reader.stream.close().await {
                debug!(message = "Replication connection did not close cleanly.", error = %err);
            }
        }
        reader.last_flush_sent
    }
}

/// The applier ended: a closed output is a clean stop.
fn output_stop(result: Result<(), RunError>) -> Result<Stop, RunError> {
    match result {
        Ok(()) => Ok(Stop::Requested),
        Err(RunError::Output(OutputError::Closed { target })) => {
            info!(message = "Output closed by its reader; stopping.", target);
            Ok(Stop::OutputClosed)
        }
        Err(other) => Err(other),
    }
}

fn lock(checkpoint: &Mutex<Checkpoint>) -> MutexGuard<'_, Checkpoint> {
    // A panic while holding this lock would already have ended the task; keep going with its state.
    checkpoint
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Reader {
    stream: ReplicationStream,
    checkpoint: Arc<Mutex<Checkpoint>>,
    status_interval: Duration,
    last_status: Instant,
    last_flush_sent: Lsn,
    metrics: Arc<Metrics>,
}

impl Reader {
    /// Read until a stop request (Ok) or a failure; dropping `queue` tells the applier to finish.
    async fn run(
        &mut self,
        queue: mpsc::Sender<(Lsn, Bytes)>,
        shutdown: &mut Shutdown,
    ) -> Result<Stop, RunError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut permit = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => {
                    info!(message = "Stop requested; finishing.");
                    return Ok(Stop::Requested);
                }
                _ = tick.tick() => self.status_if_due().await?,
                reserved = queue.reserve(), if permit.is_none() => match reserved {
                    Ok(reserved) => permit = Some(reserved),
                    // The applier ended; the caller reports why.
                    Err(_) => return std::future::pending().await,
                },
                message = self.stream.next_message(), if permit.is_some() => {
                    match message.map_err(RunError::Replication)? {
                        Some(ReplicationMessage::XLogData { wal_start, data, .. }) => {
                            lock(&self.checkpoint).queued(wal_start);
                            Metrics::set_lsn(&self.metrics.received_lsn, wal_start);
                            if let Some(permit) = permit.take() {
                                permit.send((wal_start, data));
                            }
                        }
                        Some(ReplicationMessage::Keepalive { wal_end, reply_requested, .. }) => {
                            lock(&self.checkpoint).keepalive(wal_end);
                            Metrics::set_lsn(&self.metrics.received_lsn, wal_end);
                            if reply_requested {
                                self.send_status(false).await?;
                            }
                        }
                        None => return Err(RunError::StreamEnded),
                    }
                }
            }
        }
    }

    async fn status_if_due(&mut self) -> Result<(), RunError> {
        let flush = lock(&self.checkpoint).status().flush;
        // Confirm progress promptly; otherwise only as often as configured.
        if flush != self.last_flush_sent || self.last_status.elapsed() >= self.status_interval {
            self.send_status(false).await?;
        }
        Ok(())
    }

    async fn send_status(&mut self, reply: bool) -> Result<(), RunError> {
        let status = lock(&self.checkpoint).status();
        self.stream
            .send_status(status.write, status.flush, status.flush, reply)
            .await
            .map_err(RunError::Replication)?;
        if status.flush != self.last_flush_sent {
            debug!(message = "Confirmed position.", flush_lsn = %status.flush);
        }
        self.last_flush_sent = status.flush;
        self.last_status = Instant::now();
        Metrics::set_lsn(&self.metrics.confirmed_lsn, status.flush);
        Ok(())
    }
}

struct Applier<'a, O: OutputTarget + ?Sized> {
    output: &'a mut O,
    decoder: Decoder,
    checkpoint: Arc<Mutex<Checkpoint>>,
    changes: Vec<Change>,
    json: Vec<u8>,
    counters: EventCounters,
}

impl<O: OutputTarget + ?Sized> Applier<'_, O> {
    /// Apply payloads until the queue is closed and empty (Ok) or a failure.
    async fn run(&mut self, mut payloads: mpsc::Receiver<(Lsn, Bytes)>) -> Result<(), RunError> {
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

    fn refresh_durable(&self) {
        let durable = self.output.durable();
        lock(&self.checkpoint).durable(durable);
    }

    /// Decode one XLogData payload and hand its events to the outputs.
    async fn apply(&mut self, wal_start: Lsn, data: Bytes) -> Result<(), RunError> {
        self.decoder
            .decode(wal_start, data, &mut self.changes)
            .map_err(RunError::Decode)?;
        let mut changes = std::mem::take(&mut self.changes);
        for change in changes.drain(..) {
            if let Change::Begin(_) = change {
                lock(&self.checkpoint).begin();
            }
            if !is_heartbeat(&change) {
                self.counters.count(&change);
                self.json.clear();
                json::write_json(&change, &mut self.json);
                self.output
                    .write(Event {
                        change: &change,
                        json: &self.json,
                    })
                    .await
                    .map_err(RunError::Output)?;
            }
            if let Some(end) = unit_end(&change) {
                self.output.commit(end).await.map_err(RunError::Output)?;
                lock(&self.checkpoint).handed(end);
            }
        }
        self.changes = changes;
        Ok(())
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
        // The second begin waits in the stdout buffer for its commit, which never comes.
        assert_eq!(written.lines().count(), 2, "begin, commit: {written}");
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
