//! Catching up through SQL. Streaming is bounded by the walsender, which sends
//! every pgoutput message with its own `send()`; when the slot is far behind
//! (after downtime, say), the server decodes the same changes several times
//! faster through `pg_logical_slot_peek_binary_changes`, whose rows hold the
//! exact payloads streaming would carry. So while the slot is at least
//! `--catch-up-threshold` behind, the backlog is read in chunks on an ordinary
//! SQL session and handed to the same [applier](super::applier); once the
//! outputs have durably taken a chunk, the slot is moved past it with
//! `pg_replication_slot_advance`. Peeking never moves the slot, so a crash
//! anywhere in between loses nothing: the next start reads the chunk again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{pin_mut, TryStreamExt};
use postgres_types::PgLsn;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::{debug, info, warn};

use super::applier::{Applier, Rules};
use super::stream::{lock, output_stop, Stop, QUEUE};
use super::RunError;
use crate::checkpoint::Checkpoint;
use crate::config::conninfo::{self, ConnInfo};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::output::OutputTarget;
use crate::shutdown::Shutdown;

/// Most pgoutput messages one chunk returns (the server stops after the
/// transaction that reaches it). The server keeps a chunk in a tuplestore
/// (spilled to its temporary files); the client holds at most `QUEUE` of them.
const CHUNK_MESSAGES: i32 = 100_000;
/// How often the durable position is looked at while the last acks of a chunk arrive.
const DURABLE_POLL: Duration = Duration::from_millis(2);

/// What catching up ended with.
pub(super) enum CatchUp {
    /// Close enough to the server's WAL (or nothing to catch up): stream from this position.
    Stream(Lsn),
    /// A stop was requested (the outputs are closed) or an output closed; the
    /// slot was advanced to `confirmed`.
    Stopped { stop: Stop, confirmed: Lsn },
}

/// How each chunk is applied.
pub(super) struct Chunk<'a> {
    pub(super) metrics: &'a Arc<Metrics>,
    pub(super) rules: &'a Rules,
    pub(super) shutdown_timeout: Duration,
}

/// The SQL side of catching up: one session, the slot and the pgoutput options.
pub(super) struct SqlSource<'a> {
    client: Client,
    slot: &'a str,
    options: Vec<String>,
}

impl<'a> SqlSource<'a> {
    /// Connect, or `None` (and a warning: streaming works without it) when that fails.
    pub(super) async fn connect(
        info: &ConnInfo,
        slot: &'a str,
        options: &[(&str, &str)],
    ) -> Option<SqlSource<'a>> {
        match conninfo::connect_sql(info).await {
            Ok(client) => Some(SqlSource {
                client,
                slot,
                options: options
                    .iter()
                    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
                    .collect(),
            }),
            Err(err) => {
                warn!(message = "Cannot open a SQL session to catch up; streaming instead.", error = %err);
                None
            }
        }
    }

    /// The slot's confirmed position and the server's flushed WAL end, or
    /// `None` on a standby (no WAL of its own to compare with).
    async fn positions(&self) -> Result<Option<(Lsn, Lsn)>, tokio_postgres::Error> {
        let row = self
            .client
            .query_opt(
                "SELECT confirmed_flush_lsn, pg_current_wal_flush_lsn() \
                 FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT pg_is_in_recovery()",
                &[&self.slot],
            )
            .await?;
        Ok(row.and_then(|row| {
            let confirmed: Option<PgLsn> = row.get(0);
            let end: PgLsn = row.get(1);
            confirmed.map(|c| (Lsn(u64::from(c)), Lsn(u64::from(end))))
        }))
    }

    /// Stream the payloads of one chunk (everything committed before `upto`,
    /// at most about `CHUNK_MESSAGES` messages) into `queue`; returns how many.
    async fn peek(
        &self,
        upto: Lsn,
        queue: mpsc::Sender<(Lsn, Bytes)>,
        metrics: &Metrics,
    ) -> Result<(u64, Option<Duration>), tokio_postgres::Error> {
        let started = Instant::now();
        let mut first_row = None;
        let upto = PgLsn::from(upto.0);
        let sql =
            "SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, $2, $3, VARIADIC $4)";
        let rows = self
            .client
            .query_raw(
                sql,
                [
                    &self.slot as &(dyn postgres_types::ToSql + Sync),
                    &upto,
                    &CHUNK_MESSAGES,
                    &self.options,
                ],
            )
            .await?;
        pin_mut!(rows);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            // The server decodes the whole chunk before it sends the first row.
            first_row.get_or_insert_with(|| started.elapsed());
            let lsn = Lsn(u64::from(row.get::<_, PgLsn>(0)));
            let data = Bytes::copy_from_slice(row.get::<_, &[u8]>(1));
            Metrics::set_lsn(&metrics.received_lsn, lsn);
            if queue.send((lsn, data)).await.is_err() {
                // The applier ended (failure or closed output); it reports why.
                break;
            }
            count += 1;
        }
        Ok((count, first_row))
    }

    async fn advance(&self, to: Lsn) -> Result<(), tokio_postgres::Error> {
        self.client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2)",
                &[&self.slot, &PgLsn::from(to.0)],
            )
            .await?;
        Ok(())
    }
}

/// Catch up from `confirmed` while the slot is at least `threshold` bytes
/// behind. A failure of the SQL session ends catching up (streaming picks up
/// from the last confirmed position); failures of the outputs or the decoder
/// are returned.
pub(super) async fn catch_up<O: OutputTarget + ?Sized>(
    source: &SqlSource<'_>,
    chunk: &Chunk<'_>,
    threshold: u64,
    output: &mut O,
    mut confirmed: Lsn,
    shutdown: &mut Shutdown,
) -> Result<CatchUp, RunError> {
    let Chunk {
        metrics,
        rules,
        shutdown_timeout,
    } = *chunk;
    let mut announced = false;
    loop {
        let (slot_confirmed, end) = match source.positions().await {
            Ok(Some(positions)) => positions,
            Ok(None) => return Ok(CatchUp::Stream(confirmed)),
            Err(err) => return Ok(sql_failed(err, confirmed)),
        };
        if slot_confirmed < confirmed {
            // A later start was asked for (`--start-lsn`), or the last status
            // update of a lost connection did not arrive: peeking starts at the slot's position.
            if let Err(err) = source.advance(confirmed).await {
                return Ok(sql_failed(err, confirmed));
            }
        }
        confirmed = confirmed.max(slot_confirmed);
        if end.0.saturating_sub(confirmed.0) < threshold {
            if announced {
                info!(message = "Caught up; streaming.", confirmed_lsn = %confirmed);
            }
            return Ok(CatchUp::Stream(confirmed));
        }
        if !announced {
            info!(
                message = "Slot is far behind; catching up through SQL.",
                confirmed_lsn = %confirmed,
                wal_end = %end,
                behind_bytes = end.0 - confirmed.0,
            );
            announced = true;
            // Ready: changes are flowing, only not through the replication protocol.
            metrics.set_postgres_streaming(true);
        }
        let checkpoint = Arc::new(Mutex::new(Checkpoint::new(confirmed)));
        let mut applier = Applier::new(
            &mut *output,
            checkpoint.clone(),
            metrics.clone(),
            rules.clone(),
        );
        let (queue, payloads) = mpsc::channel(QUEUE);
        let chunk_started = Instant::now();
        let chunk = async {
            let (peeked, applied) =
                tokio::join!(source.peek(end, queue, metrics), applier.run(payloads));
            applied?;
            Ok::<_, RunError>(peeked)
        };
        let peeked = tokio::select! {
            chunk = chunk => Some(chunk),
            _ = shutdown.wait() => None,
        };
        drop(applier);
        let Some(peeked) = peeked else {
            return Ok(stop_requested(source, output, confirmed, shutdown_timeout).await);
        };
        let peeked = match peeked {
            Ok(peeked) => peeked,
            Err(err) => {
                return match output_stop(Err(err)) {
                    Ok(stop) => Ok(CatchUp::Stopped { stop, confirmed }),
                    Err(err) => Err(err),
                }
            }
        };
        let (peeked, first_row) = match peeked {
            Ok(peeked) => peeked,
            Err(err) => {
                output.discard_uncommitted();
                return Ok(sql_failed(err, confirmed));
            }
        };
        let handed = chunk_started.elapsed();
        // A short chunk read everything committed before `end`: nothing before
        // it is left once the chunk is durable (as after a keepalive).
        if peeked < CHUNK_MESSAGES as u64 {
            lock(&checkpoint).keepalive(end);
        }
        let target = tokio::select! {
            target = durable(&*output, &checkpoint) => target,
            _ = shutdown.wait() => {
                return Ok(stop_requested(source, output, confirmed, shutdown_timeout).await);
            }
        };
        let durable_at = chunk_started.elapsed();
        if target > confirmed {
            if let Err(err) = source.advance(target).await {
                return Ok(sql_failed(err, confirmed));
            }
            confirmed = target;
            Metrics::set_lsn(&metrics.confirmed_lsn, confirmed);
        }
        // Where a chunk's time goes: the server decoding it (before the first
        // row), handing it over, the last acks, moving the slot.
        debug!(
            message = "Caught up one chunk.",
            messages = peeked,
            confirmed_lsn = %confirmed,
            server_decode_ms = first_row.unwrap_or_default().as_millis() as u64,
            handed_ms = handed.as_millis() as u64,
            durable_ms = durable_at.as_millis() as u64,
            advanced_ms = chunk_started.elapsed().as_millis() as u64,
        );
    }
}

/// Wait until everything the chunk handed over is durable; the position to confirm.
async fn durable<O: OutputTarget + ?Sized>(output: &O, checkpoint: &Mutex<Checkpoint>) -> Lsn {
    loop {
        let done = {
            let mut checkpoint = lock(checkpoint);
            checkpoint.durable(output.durable());
            checkpoint.is_idle().then(|| checkpoint.status().flush)
        };
        if let Some(flush) = done {
            return flush;
        }
        tokio::time::sleep(DURABLE_POLL).await;
    }
}

/// A stop was requested while catching up: let the outputs finish what they
/// hold (within `timeout`), then move the slot past what they took.
async fn stop_requested<O: OutputTarget + ?Sized>(
    source: &SqlSource<'_>,
    output: &mut O,
    confirmed: Lsn,
    timeout: Duration,
) -> CatchUp {
    info!(message = "Stop requested; finishing.");
    output.discard_uncommitted();
    super::close_outputs(output, timeout).await;
    let durable = output.durable();
    let confirmed = if durable > confirmed {
        match source.advance(durable).await {
            Ok(()) => durable,
            Err(err) => {
                warn!(message = "Could not confirm the last position.", error = %err);
                confirmed
            }
        }
    } else {
        confirmed
    };
    CatchUp::Stopped {
        stop: Stop::Requested,
        confirmed,
    }
}

fn sql_failed(err: tokio_postgres::Error, confirmed: Lsn) -> CatchUp {
    warn!(message = "Catching up through SQL failed; streaming instead.", error = %err);
    CatchUp::Stream(confirmed)
}
