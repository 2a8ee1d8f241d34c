//! Catching up through SQL. Streaming is bounded by the walsender, which sends
//! every pgoutput message with its own `send()`; when the slot is far behind
//! (after downtime, say), the server decodes the same changes several times
//! faster through `pg_logical_slot_get_binary_changes`, whose rows hold the
//! exact payloads streaming would carry. So while the slot is at least
//! `--catch-up-threshold` behind, the backlog is read in chunks on SQL
//! sessions and handed to the same [applier](super::applier).
//!
//! The server decodes a whole chunk before it sends its first row. So that
//! it decodes the next chunk while the outputs take the current one, two
//! sessions read in turns, each on a temporary copy of the slot
//! ([`Cursor`]): a session's copy is made from the other's once that one has
//! decoded its chunk, and so starts right after it. The slot itself only
//! moves, with `pg_replication_slot_advance` on a third session, once the
//! outputs have durably taken a chunk; the copies vanish with their sessions.
//! So a crash anywhere in between loses nothing: the next start reads from
//! the slot's position again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use postgres_types::{PgLsn, ToSql};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, RowStream};
use tracing::{debug, info, warn};

use super::applier::{Applier, Rules};
use super::stream::{lock, output_stop, Stop, QUEUE};
use super::RunError;
use crate::checkpoint::Checkpoint;
use crate::config::conninfo::{self, ConnInfo, SqlError};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::output::OutputTarget;
use crate::shutdown::Shutdown;

/// How much WAL one chunk spans, to begin with: the first chunk of a round
/// is small, as nothing overlaps its decoding, and each next one up to
/// `CHUNK_GROWTH` times larger. The server decodes about four times faster
/// than the outputs take events, so a chunk four times the one being handed
/// over is decoded about when that one is through; and fewer, larger chunks
/// read less WAL again (below).
const FIRST_CHUNK_WAL: u64 = 4 << 20;
const CHUNK_GROWTH: u64 = 4;
/// Every chunk is decoded from the copy's `restart_lsn`, which only moves at
/// the server's running-transactions records (every 15 s while it writes):
/// the WAL between it and the chunk's start is read again, without output,
/// each time. So a chunk spans at least that much WAL, which keeps the
/// re-reading below the decoding itself (it costs about a fifth as much per
/// byte) instead of growing with the square of the backlog; but no more than
/// this, as the server keeps a chunk's rows in a temporary file while the
/// query runs (two chunks at a time: one decoded, one handed over).
const MAX_CHUNK_WAL: u64 = 256 << 20;
/// How often the durable position is looked at while chunks are taken.
const DURABLE_POLL: Duration = Duration::from_millis(2);

/// What catching up ended with.
pub(super) enum CatchUp {
    /// Close enough to the server's WAL (or nothing to catch up): stream from this position.
    Stream(Lsn),
    /// A stop was requested (the outputs are closed) or an output closed; the
    /// slot was advanced to `confirmed`.
    Stopped { stop: Stop, confirmed: Lsn },
}

/// How the chunks are applied.
pub(super) struct Chunk<'a> {
    pub(super) metrics: &'a Arc<Metrics>,
    pub(super) rules: &'a Rules,
    pub(super) shutdown_timeout: Duration,
}

/// The SQL side of catching up: the session that watches and moves the slot,
/// the slot and the pgoutput options.
pub(super) struct SqlSource<'a> {
    client: Client,
    info: &'a ConnInfo,
    slot: &'a str,
    options: Vec<String>,
}

impl<'a> SqlSource<'a> {
    /// Connect, or `None` (and a warning: streaming works without it) when that fails.
    pub(super) async fn connect(
        info: &'a ConnInfo,
        slot: &'a str,
        options: &[(&str, &str)],
    ) -> Option<SqlSource<'a>> {
        match conninfo::connect_sql(info).await {
            Ok(client) => Some(SqlSource {
                client,
                info,
                slot,
                options: options
                    .iter()
                    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
                    .collect(),
            }),
            Err(err) => {
                warn!(
                    message = "Cannot open a SQL session to catch up; streaming instead.",
                    error = err.to_string()
                );
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

    async fn advance(&self, to: Lsn) -> Result<(), tokio_postgres::Error> {
        self.client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2)",
                &[&self.slot, &PgLsn::from(to.0)],
            )
            .await?;
        Ok(())
    }

    /// The two reading sessions, each with its copy of the slot already made,
    /// so that a lack of free slots shows before anything is read.
    async fn cursors(&self) -> Result<[Cursor; 2], CursorError> {
        let mut cursors = [
            Cursor::open(self.info).await?,
            Cursor::open(self.info).await?,
        ];
        for cursor in &mut cursors {
            cursor.copy(self.slot).await?;
        }
        Ok(cursors)
    }
}

/// Why the reading sessions could not be opened.
enum CursorError {
    Connect(conninfo::ConnectError),
    Sql(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for CursorError {
    fn from(err: tokio_postgres::Error) -> Self {
        CursorError::Sql(err)
    }
}

/// A SQL session that reads chunks from its own temporary copy of the slot.
struct Cursor {
    client: Client,
    /// Its copy's name, unique while the session lives (it holds the backend's pid).
    name: String,
    /// Whether the copy exists now.
    copied: bool,
}

impl Cursor {
    async fn open(info: &ConnInfo) -> Result<Cursor, CursorError> {
        let client = conninfo::connect_sql(info)
            .await
            .map_err(CursorError::Connect)?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        Ok(Cursor {
            client,
            name: format!("pgoutput_stream_ahead_{pid}"),
            copied: false,
        })
    }

    /// The confirmed and restart positions of the slot `name`.
    async fn position(&self, name: &str) -> Result<(Lsn, Lsn), tokio_postgres::Error> {
        let row = self
            .client
            .query_one(
                "SELECT confirmed_flush_lsn, restart_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await?;
        let lsn = |i| {
            row.get::<_, Option<PgLsn>>(i)
                .map_or(Lsn::ZERO, |l| Lsn(u64::from(l)))
        };
        Ok((lsn(0), lsn(1)))
    }

    /// Make this cursor's copy start where the slot `from` is now (its confirmed position).
    async fn copy(&mut self, from: &str) -> Result<(), tokio_postgres::Error> {
        if self.copied {
            self.client
                .execute("SELECT pg_drop_replication_slot($1)", &[&self.name])
                .await?;
            self.copied = false;
        }
        self.client
            .execute(
                "SELECT 1 FROM pg_copy_logical_replication_slot($1, $2, true)",
                &[&from, &self.name],
            )
            .await?;
        self.copied = true;
        Ok(())
    }

    /// Copy the slot `from` and have the server decode the chunk that starts
    /// where it is, about `span` bytes of WAL (see [`chunk_end`]); `None` when
    /// `from` has been read up to `end`. Returns the chunk and its span.
    async fn next_chunk(
        &mut self,
        from: &str,
        span: u64,
        end: Lsn,
        options: &[String],
    ) -> Result<Option<(Decoded, u64)>, tokio_postgres::Error> {
        let (start, restart) = self.position(from).await?;
        if start >= end {
            return Ok(None);
        }
        let (upto, span) = chunk_end(start, restart, span, end);
        self.copy(from).await?;
        let decoded = self.decode(upto, options).await?;
        Ok(Some((decoded, span)))
    }

    /// Have the server decode the copy's next chunk (everything committed
    /// before `upto`), which moves the copy past it; returns once the chunk
    /// is decoded.
    async fn decode(
        &self,
        upto: Lsn,
        options: &[String],
    ) -> Result<Decoded, tokio_postgres::Error> {
        let started = Instant::now();
        let upto = PgLsn::from(upto.0);
        let no_limit: Option<i32> = None;
        let params: [&(dyn ToSql + Sync); 4] = [&self.name, &upto, &no_limit, &options];
        let rows = self
            .client
            .query_raw(
                "SELECT lsn, data FROM pg_logical_slot_get_binary_changes($1, $2, $3, VARIADIC $4)",
                params,
            )
            .await?;
        let mut rows = Box::pin(rows);
        // The server decodes the whole chunk (and moves the copy) before it sends the first row.
        let first = rows.try_next().await?;
        Ok(Decoded {
            rows,
            first,
            took: started.elapsed(),
        })
    }
}

/// Where the chunk starting at `start` ends: `span` bytes of WAL, at least
/// as much as will be read again from `restart`, within the limits; never past
/// `end`. A rest under half a span is taken into the chunk (within the
/// limit): as a chunk of its own it would cost a whole reading again of the
/// WAL before it, and a round trip, for little; beyond the limit, the rest
/// is read in two halves. The span returned sizes the next chunk; after a
/// chunk that reaches `end` there is none.
fn chunk_end(start: Lsn, restart: Lsn, span: u64, end: Lsn) -> (Lsn, u64) {
    let again = start.0.saturating_sub(restart.0);
    let span = span.max(again).clamp(1, MAX_CHUNK_WAL);
    let left = end.0.saturating_sub(start.0);
    if left.saturating_sub(span) < span / 2 {
        if left <= MAX_CHUNK_WAL {
            return (end, span);
        }
        let half = left.div_ceil(2);
        return (Lsn(start.0 + half), half);
    }
    (Lsn(start.0.saturating_add(span).min(end.0)), span)
}

/// A chunk the server has decoded, its rows on their way.
struct Decoded {
    rows: Pin<Box<RowStream>>,
    first: Option<Row>,
    took: Duration,
}

impl Decoded {
    /// Hand the chunk's payloads to `queue`: how many and the position of the
    /// last, or `None` when the queue closed (the applier ended and reports why).
    async fn forward(
        mut self,
        queue: &mpsc::Sender<(Lsn, Bytes)>,
        relations: &mut Relations,
        metrics: &Metrics,
    ) -> Result<Option<(u64, Lsn)>, tokio_postgres::Error> {
        relations.chunk_starts();
        let mut count = 0;
        let mut last = Lsn::ZERO;
        let mut next = self.first.take();
        while let Some(row) = next {
            last = Lsn(u64::from(row.get::<_, PgLsn>(0)));
            let data = row.get::<_, &[u8]>(1);
            Metrics::set_lsn(&metrics.received_lsn, last);
            count += 1;
            if !relations.repeated(data)
                && queue
                    .send((last, Bytes::copy_from_slice(data)))
                    .await
                    .is_err()
            {
                return Ok(None);
            }
            next = self.rows.try_next().await?;
        }
        Ok(Some((count, last)))
    }
}

/// The server describes each table again in every chunk (each is a decoding
/// session of its own); streaming describes it once per session. So a
/// table's first Relation message in a chunk, when byte for byte the one
/// already passed on, is not passed on again: the events are the ones
/// streaming would deliver.
#[derive(Default)]
struct Relations {
    /// The last Relation message passed on, per relation id.
    last: HashMap<u32, Vec<u8>>,
    /// Relations described in the current chunk so far.
    in_chunk: HashSet<u32>,
}

impl Relations {
    fn chunk_starts(&mut self) {
        self.in_chunk.clear();
    }

    /// Whether `payload` repeats, at the start of a chunk, a description already passed on.
    fn repeated(&mut self, payload: &[u8]) -> bool {
        let Some((b'R', rest)) = payload.split_first() else {
            return false;
        };
        let Some(id) = rest.get(..4) else {
            return false;
        };
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let first_in_chunk = self.in_chunk.insert(id);
        if first_in_chunk && self.last.get(&id).is_some_and(|last| last == payload) {
            return true;
        }
        self.last.insert(id, payload.to_vec());
        false
    }
}

/// One chunk handed over, for the advancing side and the debug log.
struct ChunkRead {
    messages: u64,
    /// Position of its last message (a commit's end).
    last: Lsn,
    /// How long the server took to decode it.
    decode: Duration,
    /// How long the hand-over waited for that decoding (not overlapped with the chunk before).
    waited: Duration,
    /// How long handing it over took.
    handed: Duration,
}

/// Read everything committed before `end` into `queue`, chunk by chunk, the
/// next chunk decoded on one cursor while the current one is handed over from
/// the other. Reports each chunk to `chunks`; returns whether everything
/// before `end` was read (not the case if the queue closed).
async fn read_ahead(
    cursors: &mut [Cursor; 2],
    slot: &str,
    options: &[String],
    end: Lsn,
    queue: mpsc::Sender<(Lsn, Bytes)>,
    chunks: mpsc::UnboundedSender<ChunkRead>,
    metrics: &Metrics,
) -> Result<bool, tokio_postgres::Error> {
    let [first, second] = cursors;
    let (mut current, mut next) = (first, second);
    let started = Instant::now();
    let Some((mut decoded, mut span)) = current
        .next_chunk(slot, FIRST_CHUNK_WAL, end, options)
        .await?
    else {
        return Ok(true);
    };
    let mut waited = started.elapsed();
    let mut relations = Relations::default();
    loop {
        let decode = decoded.took;
        let forwarding = Instant::now();
        let mut handed = Duration::ZERO;
        let forward = async {
            let forwarded = decoded.forward(&queue, &mut relations, metrics).await;
            handed = forwarding.elapsed();
            forwarded
        };
        let source = current.name.as_str();
        let ahead = next.next_chunk(source, span.saturating_mul(CHUNK_GROWTH), end, options);
        let (forwarded, ahead) = tokio::join!(forward, ahead);
        let Some((messages, last)) = forwarded? else {
            return Ok(false);
        };
        if messages > 0 {
            let _ = chunks.send(ChunkRead {
                messages,
                last,
                decode,
                waited,
                handed,
            });
        }
        waited = forwarding.elapsed().saturating_sub(handed);
        match ahead? {
            Some((ahead, ahead_span)) => (decoded, span) = (ahead, ahead_span),
            None => return Ok(true),
        }
        std::mem::swap(&mut current, &mut next);
    }
}

/// Move the slot past each chunk once the outputs have durably taken it,
/// while the reading goes on; `advanced` holds the slot's position. Ends when
/// the reading does.
async fn advance_durable(
    source: &SqlSource<'_>,
    checkpoint: &Mutex<Checkpoint>,
    mut chunks: mpsc::UnboundedReceiver<ChunkRead>,
    advanced: &AtomicU64,
    metrics: &Metrics,
) -> Result<(), tokio_postgres::Error> {
    let mut pending = VecDeque::new();
    loop {
        tokio::select! {
            chunk = chunks.recv() => {
                let Some(chunk) = chunk else { return Ok(()) };
                // Where a chunk's time goes: the server decoding it, the part
                // of that the hand-over waited for, the hand-over itself.
                debug!(
                    message = "Read one chunk.",
                    messages = chunk.messages,
                    last_lsn = %chunk.last,
                    server_decode_ms = chunk.decode.as_millis() as u64,
                    waited_ms = chunk.waited.as_millis() as u64,
                    handed_ms = chunk.handed.as_millis() as u64,
                );
                pending.push_back(chunk.last);
            }
            _ = tokio::time::sleep(DURABLE_POLL), if !pending.is_empty() => {
                let flush = lock(checkpoint).status().flush;
                if pending.front().is_some_and(|&last| last <= flush) {
                    pending.retain(|&last| last > flush);
                    source.advance(flush).await?;
                    advanced.store(flush.0, Ordering::Relaxed);
                    Metrics::set_lsn(&metrics.confirmed_lsn, flush);
                    debug!(message = "Advanced the slot past a durable chunk.", confirmed_lsn = %flush);
                }
            }
        }
    }
}

/// Catch up from `confirmed` while the slot is at least `threshold` bytes
/// behind. A failure of the SQL sessions ends catching up (streaming picks up
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
    let mut cursors = None;
    loop {
        let (slot_confirmed, end) = match source.positions().await {
            Ok(Some(positions)) => positions,
            Ok(None) => return Ok(CatchUp::Stream(confirmed)),
            Err(err) => return Ok(sql_failed(err, confirmed)),
        };
        if slot_confirmed < confirmed {
            // A later start was asked for (`--start-lsn`), or the last status
            // update of a lost connection did not arrive: reading starts at the slot's position.
            if let Err(err) = source.advance(confirmed).await {
                return Ok(sql_failed(err, confirmed));
            }
        }
        confirmed = confirmed.max(slot_confirmed);
        if end.0.saturating_sub(confirmed.0) < threshold {
            if cursors.is_some() {
                info!(message = "Caught up; streaming.", confirmed_lsn = %confirmed);
            }
            return Ok(CatchUp::Stream(confirmed));
        }
        let cursors = match &mut cursors {
            Some(cursors) => cursors,
            None => {
                info!(
                    message = "Slot is far behind; catching up through SQL.",
                    confirmed_lsn = %confirmed,
                    wal_end = %end,
                    behind_bytes = end.0 - confirmed.0,
                );
                match source.cursors().await {
                    Ok(opened) => {
                        // Ready: changes are flowing, only not through the replication protocol.
                        metrics.set_postgres_streaming(true);
                        cursors.insert(opened)
                    }
                    Err(CursorError::Connect(err)) => {
                        warn!(
                            message =
                                "Cannot open the SQL sessions to catch up; streaming instead.",
                            error = err.to_string()
                        );
                        return Ok(CatchUp::Stream(confirmed));
                    }
                    Err(CursorError::Sql(err)) => return Ok(sql_failed(err, confirmed)),
                }
            }
        };
        let checkpoint = Arc::new(Mutex::new(Checkpoint::new(confirmed)));
        let advanced = AtomicU64::new(confirmed.0);
        let mut applier = Applier::new(
            &mut *output,
            checkpoint.clone(),
            metrics.clone(),
            rules.clone(),
        );
        let (queue, payloads) = mpsc::channel(QUEUE);
        let (chunks, chunks_read) = mpsc::unbounded_channel();
        let round = async {
            let (read, applied, moved) = tokio::join!(
                read_ahead(
                    cursors,
                    source.slot,
                    &source.options,
                    end,
                    queue,
                    chunks,
                    metrics
                ),
                applier.run(payloads),
                advance_durable(source, &checkpoint, chunks_read, &advanced, metrics),
            );
            applied?;
            Ok::<_, RunError>(read.and_then(|read| moved.map(|()| read)))
        };
        let round = tokio::select! {
            round = round => Some(round),
            _ = shutdown.wait() => None,
        };
        drop(applier);
        confirmed = Lsn(advanced.load(Ordering::Relaxed));
        let Some(round) = round else {
            return Ok(stop_requested(source, output, confirmed, shutdown_timeout).await);
        };
        let read_all = match round {
            Ok(Ok(read_all)) => read_all,
            Ok(Err(err)) => {
                output.discard_uncommitted();
                return Ok(sql_failed(err, confirmed));
            }
            Err(err) => {
                return match output_stop(Err(err)) {
                    Ok(stop) => Ok(CatchUp::Stopped { stop, confirmed }),
                    Err(err) => Err(err),
                }
            }
        };
        // Everything committed before `end` was read: nothing before it is
        // left once the last chunk is durable (as after a keepalive).
        if read_all {
            lock(&checkpoint).keepalive(end);
        }
        let target = tokio::select! {
            target = durable(&*output, &checkpoint) => target,
            _ = shutdown.wait() => {
                return Ok(stop_requested(source, output, confirmed, shutdown_timeout).await);
            }
        };
        if target > confirmed {
            if let Err(err) = source.advance(target).await {
                return Ok(sql_failed(err, confirmed));
            }
            confirmed = target;
            Metrics::set_lsn(&metrics.confirmed_lsn, confirmed);
        }
        debug!(message = "Caught up to the WAL end of this round.", confirmed_lsn = %confirmed);
    }
}

/// Wait until everything handed over is durable; the position to confirm.
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
                warn!(
                    message = "Could not confirm the last position.",
                    error = SqlError(&err).to_string()
                );
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
    if err.code() == Some(&SqlState::CONFIGURATION_LIMIT_EXCEEDED) {
        warn!(
            message = "Catching up through SQL needs two free replication slots for its temporary copies; raise max_replication_slots. Streaming instead.",
            error = SqlError(&err).to_string()
        );
    } else {
        warn!(
            message = "Catching up through SQL failed; streaming instead.",
            error = SqlError(&err).to_string()
        );
    }
    CatchUp::Stream(confirmed)
}

#[cfg(test)]
mod tests {
    use super::{chunk_end, Relations, MAX_CHUNK_WAL};
    use crate::lsn::Lsn;

    const MB: u64 = 1 << 20;
    const CHUNK_WAL: u64 = 32 * MB;

    #[test]
    fn a_chunk_spans_at_least_the_wal_read_again_within_the_limit() {
        let end = Lsn(10_000 * MB);
        // Nothing to read again: the asked span.
        assert_eq!(
            chunk_end(Lsn(100 * MB), Lsn(100 * MB), CHUNK_WAL, end),
            (Lsn(100 * MB + CHUNK_WAL), CHUNK_WAL)
        );
        // 90 MB read again from the restart position: a chunk of 90 MB.
        assert_eq!(
            chunk_end(Lsn(100 * MB), Lsn(10 * MB), CHUNK_WAL, end),
            (Lsn(190 * MB), 90 * MB)
        );
        // But never more than the limit, nor past the end.
        assert_eq!(
            chunk_end(Lsn(2000 * MB), Lsn(0), CHUNK_WAL, end),
            (Lsn(2000 * MB + MAX_CHUNK_WAL), MAX_CHUNK_WAL)
        );
        assert_eq!(
            chunk_end(Lsn(9_990 * MB), Lsn(9_990 * MB), CHUNK_WAL, end),
            (end, CHUNK_WAL)
        );
    }

    #[test]
    fn a_small_rest_is_taken_into_the_chunk_before_it() {
        let end = Lsn(1000 * MB);
        // 40 MB left after a 32 MB chunk would be a chunk of its own...
        assert_eq!(
            chunk_end(Lsn(928 * MB), Lsn(928 * MB), CHUNK_WAL, end),
            (Lsn(960 * MB), CHUNK_WAL)
        );
        // ...but 8 MB would not: the chunk reaches the end.
        assert_eq!(
            chunk_end(Lsn(960 * MB), Lsn(960 * MB), CHUNK_WAL, end),
            (end, CHUNK_WAL)
        );
        // Never beyond the limit: a rest just over it is read in two halves
        // (not the limit and then 8 MB that would read everything again).
        let far = Lsn(MAX_CHUNK_WAL + 8 * MB);
        let half = (MAX_CHUNK_WAL + 8 * MB) / 2;
        assert_eq!(
            chunk_end(Lsn(0), Lsn(0), MAX_CHUNK_WAL, far),
            (Lsn(half), half)
        );
        assert_eq!(
            chunk_end(Lsn(half), Lsn(0), half * 4, far),
            (far, MAX_CHUNK_WAL)
        );
    }

    fn relation(id: u32, name: &str) -> Vec<u8> {
        let mut payload = vec![b'R'];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(b"public\0");
        payload.extend_from_slice(name.as_bytes());
        payload.push(0);
        payload
    }

    #[test]
    fn only_an_unchanged_description_at_the_start_of_a_later_chunk_is_dropped() {
        let mut relations = Relations::default();
        relations.chunk_starts();
        assert!(!relations.repeated(&relation(1, "a")));
        // Within a chunk the server describes a table again only for a reason.
        assert!(!relations.repeated(&relation(1, "a")));
        assert!(!relations.repeated(b"I\0\0\0\x01"));

        relations.chunk_starts();
        assert!(relations.repeated(&relation(1, "a")));
        assert!(!relations.repeated(&relation(1, "a")));
        assert!(!relations.repeated(&relation(2, "b")));

        relations.chunk_starts();
        assert!(!relations.repeated(&relation(1, "renamed")));
        relations.chunk_starts();
        assert!(relations.repeated(&relation(1, "renamed")));
        assert!(relations.repeated(&relation(2, "b")));
        // Too short to be a Relation message: passed on (the decoder reports it).
        assert!(!relations.repeated(b"R\0\0"));
    }
}
