//! The streaming loop, in two halves joined by a bounded queue:
//!
//! - the reader owns the replication connection: it reads payloads into the
//!   queue, answers keepalives and sends status updates on a timer, so the
//!   server never times the connection out even while an output applies
//!   backpressure (a full queue only stops the reading);
//! - the [applier](super::applier) decodes payloads, hands events to the
//!   outputs and records in the shared [`Checkpoint`] what they have durably taken.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::applier::{Applier, Rules};
use super::RunError;
use crate::checkpoint::Checkpoint;
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::output::{OutputError, OutputTarget};
use crate::replication::{ReplicationMessage, ReplicationStream};
use crate::shutdown::Shutdown;

/// How often the reader looks at whether a status update is due.
pub(super) const TICK: Duration = Duration::from_millis(500);
/// Payloads received and not yet decoded; bounds memory together with the outputs' windows.
pub(super) const QUEUE: usize = 1024;

/// Why streaming stopped without a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT/SIGTERM (or a test's trigger).
    Requested,
    /// An output's reader went away (`| head`).
    OutputClosed,
}

/// Moves events from one replication stream to the outputs.
pub(super) struct Streamer<'a, O: OutputTarget + ?Sized> {
    reader: Reader,
    applier: Applier<'a, O>,
    /// When a stop was requested: draining and closing share one time budget.
    stop_requested: Option<Instant>,
}

impl<'a, O: OutputTarget + ?Sized> Streamer<'a, O> {
    /// Stream from `start`, the slot's confirmed position (or a later one asked for).
    pub(super) fn new(
        stream: ReplicationStream,
        output: &'a mut O,
        start: Lsn,
        status_interval: Duration,
        metrics: Arc<Metrics>,
        rules: Rules,
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
            applier: Applier::new(output, checkpoint, metrics, rules),
            stop_requested: None,
        }
    }

    /// Stream until a stop is requested, an output closes, or something fails.
    /// After a stop request the payloads already read are handed to the
    /// outputs, for at most `drain_timeout`.
    pub(super) async fn run(
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
    pub(super) async fn finish(
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
                    warn!(message = "Could not flush outputs while stopping.", error = err.to_string())
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
                warn!(
                    message = "Could not send the last status update.",
                    error = err.to_string()
                );
            }
            if let Err(err) = reader.stream.close().await {
                debug!(
                    message = "Replication connection did not close cleanly.",
                    error = err.to_string()
                );
            }
        }
        reader.last_flush_sent
    }
}

/// The applier ended: a closed output is a clean stop.
pub(super) fn output_stop(result: Result<(), RunError>) -> Result<Stop, RunError> {
    match result {
        Ok(()) => Ok(Stop::Requested),
        Err(RunError::Output(OutputError::Closed { target })) => {
            info!(message = "Output closed by its reader; stopping.", target);
            Ok(Stop::OutputClosed)
        }
        Err(other) => Err(other),
    }
}

pub(super) fn lock(checkpoint: &Mutex<Checkpoint>) -> MutexGuard<'_, Checkpoint> {
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
