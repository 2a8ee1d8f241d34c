//! The publishing task: keeps up to `max_inflight` events published and
//! awaiting their JetStream ack, retries failed ones with the same message id,
//! and advances the durable position once every event before a commit marker
//! is acknowledged.
//!
//! Events are published with core NATS, each with a reply subject of our own
//! (`<inbox>.<n>`, n numbering the events), and the stream's acks arrive on one
//! subscription to `<inbox>.*`; one timer watches the oldest event awaiting
//! its ack. This is what a JetStream publish does, without a oneshot channel,
//! a semaphore permit, a timer and a map entry per event (async-nats's
//! JetStream context costs the publishing path more than twice the CPU).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subject, Subscriber};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::batch::{self, Batch, Op, Reply, State as BatchState};
use super::headers::HeaderFields;
use crate::change::json::{into_string, write_uint};
use crate::lsn::Lsn;
use crate::metrics::Metrics;

/// First delay before re-publishing after consecutive failures; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An event without its ack this long after it was published is published again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Payload bytes in flight at most (besides the count limit), so large rows
/// cannot make the window hold gigabytes.
const MAX_INFLIGHT_BYTES: usize = 64 << 20;
/// How long the open batch waits for more events once the queue is empty
/// before it is committed: a backlog arrives in bursts, and every batch costs
/// a round trip to start and one ack to end.
const LINGER: Duration = Duration::from_millis(2);
/// A first failure is logged only if none was in this long.
const QUIET: Duration = Duration::from_secs(10);

/// The smallest `--nats-max-inflight` that publishes backlogs in batches
/// (flows of 64 messages).
const MIN_BATCHED_WINDOW: usize = 256;

/// Most events the output hands over in one batch.
pub const BATCH: usize = 64;

/// One event ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Cheap to clone (shared bytes), as the payload is.
    pub subject: Subject,
    /// The headers are built from these at each publish, so a retry sends the same ones.
    pub headers: HeaderFields,
    pub payload: Bytes,
}

/// What the output hands to the task, in order.
#[derive(Debug)]
pub enum Item {
    Publish(Outgoing),
    /// Everything before this is one unit acknowledged by the position.
    Commit(Lsn),
}

/// State shared between the task and the output.
#[derive(Debug, Default)]
pub struct Shared {
    /// Highest position whose events are all acknowledged.
    pub durable: AtomicU64,
    /// Events published and not yet acknowledged.
    pub inflight: AtomicU64,
}

/// An event published and not yet acknowledged (or acknowledged out of order).
struct Pending {
    message: Outgoing,
    sent_at: Instant,
    ack: AckState,
    /// Published again on its own, so its batch's refusals no longer concern it.
    alone: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum AckState {
    Waiting,
    Stored,
    /// The stream refused it or no stream listened: published again.
    Failed(String),
}

/// The events in flight, numbered consecutively from `first`, and the commit
/// markers between them.
struct Window {
    inbox: String,
    pending: VecDeque<Pending>,
    /// Number of `pending[0]`; the next event gets `first + pending.len()`.
    first: u64,
    /// (number of the last event of the unit, its position).
    commits: VecDeque<(u64, Lsn)>,
    bytes: usize,
    /// Fast-ingest batches with events not yet settled, oldest first; an open
    /// one is the last.
    batches: VecDeque<Batch>,
    next_batch: u64,
    /// Messages per flow ack to ask for; 0 when events are not batched (the
    /// stream does not allow it, or refused a batch).
    flow: u64,
}

/// Where the next event goes.
#[derive(Debug, PartialEq)]
enum Route {
    /// Published with an ack of its own.
    Single,
    /// The first message of a new batch.
    Start,
    /// The next message of the open batch.
    Append,
    /// Nothing until the open batch hears from the server.
    Wait,
}

/// What a reply to a batch message changed.
#[derive(Debug, Default, PartialEq)]
struct Heard {
    /// Some event is newly known stored.
    stored: bool,
    /// The stream refused batched publishing.
    disabled: bool,
}

/// The subject the ack of event `number` comes back on.
fn reply_subject(inbox: &str, number: u64) -> String {
    let mut out = Vec::with_capacity(inbox.len() + 21);
    out.extend_from_slice(inbox.as_bytes());
    out.push(b'.');
    write_uint(number, &mut out);
    into_string(out)
}

impl Window {
    fn next_number(&self) -> u64 {
        self.first + self.pending.len() as u64
    }

    /// Record the ack carried by `message`.
    fn acked(&mut self, message: &Message) -> Option<&AckState> {
        let number: u64 = message.subject.rsplit('.').next()?.parse().ok()?;
        let index = usize::try_from(number.checked_sub(self.first)?).ok()?;
        let pending = self.pending.get_mut(index)?;
        pending.ack = ack_state(message);
        Some(&pending.ack)
    }

    /// Set the ack state of events `numbers` from a batch reply; a refusal
    /// changes only events still waiting for the batch (it neither undoes an
    /// ack, nor hides an earlier reason, nor fails a later publish of its own).
    fn mark(&mut self, numbers: impl IntoIterator<Item = u64>, state: &AckState) -> bool {
        let mut changed = false;
        for number in numbers {
            let index = number.checked_sub(self.first).map(usize::try_from);
            let Some(pending) = index
                .and_then(Result::ok)
                .and_then(|i| self.pending.get_mut(i))
            else {
                continue;
            };
            let waiting_in_batch = pending.ack == AckState::Waiting && !pending.alone;
            if waiting_in_batch || *state == AckState::Stored {
                changed |= pending.ack != *state;
                pending.ack = state.clone();
            }
        }
        changed
    }

    /// The batch that takes the next events, while it does.
    fn open_batch(&self) -> Option<&Batch> {
        self.batches
            .back()
            .filter(|b| matches!(b.state, BatchState::Starting | BatchState::Open))
    }

    /// Where the next event goes; `backlog`: whether more events are queued
    /// than a batch's start and commit are worth.
    fn route(&self, backlog: bool) -> Route {
        match self.batches.back() {
            // Its second message must wait for the first one's reply; what
            // comes meanwhile goes out with acks of its own (still in order).
            Some(b) if b.state == BatchState::Starting => Route::Single,
            Some(b) if b.state == BatchState::Open => {
                if b.can_append() {
                    Route::Append
                } else {
                    Route::Wait
                }
            }
            _ if self.flow > 0 && backlog => Route::Start,
            _ => Route::Single,
        }
    }

    /// Record a reply to a batch message.
    fn batch_replied(&mut self, message: &Message) -> Heard {
        let mut heard = Heard::default();
        let Some((number, seq)) = batch::addressee(&self.inbox, &message.subject) else {
            return heard;
        };
        let Some(batch) = self.batches.iter_mut().find(|b| b.number == number) else {
            return heard;
        };
        if batch.state == BatchState::Ended {
            // Late replies (the server refuses what followed the end).
            return heard;
        }
        let (sent, acked) = (batch.sent, batch.acked);
        let mut failed = None;
        // An event stored on its own, outside the batch's stored prefix.
        let mut only = None;
        match batch::parse_reply(message) {
            Reply::Flow { seq, msgs } => {
                if batch.state == BatchState::Starting {
                    debug!(message = "Batch started.", batch = number, flow = msgs);
                    batch.state = BatchState::Open;
                }
                if msgs > 0 {
                    batch.flow = msgs;
                }
                batch.acked = acked.max(seq.min(sent));
            }
            Reply::Gap => {}
            Reply::Final { count } => {
                debug!(
                    message = "Batch ended.",
                    batch = number,
                    events = sent,
                    stored = count
                );
                batch.acked = acked.max(count.min(sent));
                batch.state = BatchState::Ended;
                failed = Some((
                    batch.acked + 1,
                    "the stream ended the batch before storing this event".to_owned(),
                ));
            }
            Reply::Plain => {
                // Stored as an ordinary publish (a server that does not
                // batch): that message only. No more go into the batch; the
                // others are settled by their own replies or time out.
                if matches!(batch.state, BatchState::Starting | BatchState::Open) {
                    batch.state = BatchState::Committed;
                }
                heard.disabled = true;
                only = batch.number_of(seq);
            }
            Reply::Refused { code, why } => {
                heard.disabled = code == Some(batch::DISABLED);
                let over = heard.disabled
                    || batch.state == BatchState::Starting
                    || matches!(code, Some(batch::UNKNOWN_BATCH));
                if over {
                    // Nothing more is stored in it: whatever is not known
                    // stored goes again.
                    batch.state = BatchState::Ended;
                    failed = Some((acked + 1, why));
                } else if let Some(number) = batch.number_of(seq) {
                    self.mark([number], &AckState::Failed(why));
                    return heard;
                }
            }
        }
        let stored: Vec<u64> = batch.numbers(acked + 1, batch.acked).chain(only).collect();
        let lost: Vec<u64> = match &failed {
            Some((from, _)) => batch.numbers(*from, batch.sent).collect(),
            None => Vec::new(),
        };
        if heard.disabled {
            self.flow = 0;
        }
        heard.stored = self.mark(stored, &AckState::Stored);
        if let Some((_, why)) = failed {
            self.mark(lost, &AckState::Failed(why));
        }
        heard
    }

    /// Drop the acknowledged prefix; returns the position of the last unit
    /// now completely acknowledged, if one is.
    fn settle(&mut self) -> Option<Lsn> {
        while self
            .pending
            .front()
            .is_some_and(|p| p.ack == AckState::Stored)
        {
            if let Some(done) = self.pending.pop_front() {
                self.bytes -= done.message.payload.len();
            }
            self.first += 1;
        }
        let mut durable = None;
        while let Some(&(last, lsn)) = self.commits.front() {
            if last >= self.first {
                break;
            }
            durable = Some(lsn);
            self.commits.pop_front();
        }
        while self.batches.front().is_some_and(|b| {
            !matches!(b.state, BatchState::Starting | BatchState::Open) && b.end() <= self.first
        }) {
            self.batches.pop_front();
        }
        durable
    }

    /// When the oldest event awaiting its ack times out.
    fn deadline(&self) -> Option<Instant> {
        self.pending
            .front()
            .filter(|p| p.ack != AckState::Stored)
            .map(|p| p.sent_at + ACK_TIMEOUT)
    }

    /// Whether the oldest event needs publishing again (refused or timed out).
    fn front_failed(&self, now: Instant) -> Option<String> {
        let front = self.pending.front()?;
        match &front.ack {
            AckState::Failed(why) => Some(why.clone()),
            AckState::Waiting if now >= front.sent_at + ACK_TIMEOUT => {
                Some("no acknowledgement within 5 s".to_owned())
            }
            _ => None,
        }
    }
}

/// Stored, or why not: only a JetStream publish acknowledgement (a stream and
/// a sequence, no error) counts as stored.
fn ack_state(message: &Message) -> AckState {
    if let Some(status) = message.status.filter(|status| !status.is_success()) {
        return AckState::Failed(refusal(message, status));
    }
    let payload = &message.payload[..];
    let has = |needle: &[u8]| payload.windows(needle.len()).any(|w| w == needle);
    // As nats-server writes it: `{"stream":"…","seq":…[,"duplicate":true]}`.
    if payload.starts_with(b"{\"stream\":") && has(b"\"seq\":") && !has(b"\"error\"") {
        return AckState::Stored;
    }
    // Anything else is read in full: `{"error":{"code":…,"description":"…"}}`, or not an ack.
    #[derive(serde::Deserialize)]
    struct Reply {
        error: Option<serde_json::Value>,
        stream: Option<String>,
        seq: Option<u64>,
    }
    match serde_json::from_slice::<Reply>(payload) {
        Ok(Reply {
            error: None,
            stream: Some(_),
            seq: Some(_),
        }) => AckState::Stored,
        _ => AckState::Failed(String::from_utf8_lossy(payload).into_owned()),
    }
}

/// Why a reply with a status other than success is not an ack.
pub(super) fn refusal(message: &Message, status: async_nats::StatusCode) -> String {
    match (&message.description, status.as_u16()) {
        (Some(description), _) => description.clone(),
        // No stream captures the subject any more (deleted, or its subjects changed).
        (None, 503) => "no responders (status 503): no JetStream stream captures the subject; was the stream deleted or its subjects changed?".to_owned(),
        (None, _) => format!("status {status}"),
    }
}

/// Run until the sender side is dropped and every queued event is acknowledged.
///
/// Items arrive in batches (the output sends one per transaction, or per
/// [`BATCH`] events of a large one) so that the two tasks wake each other once
/// per batch rather than once per event; a batch is published as the window
/// allows.
pub async fn run(
    client: Client,
    mut items: mpsc::Receiver<Vec<Item>>,
    max_inflight: usize,
    batched: bool,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) {
    let inbox = client.new_inbox();
    let subscribed = async {
        let acks = client.subscribe(format!("{inbox}.*")).await?;
        let replies = match batched {
            true => Some(client.subscribe(batch::REPLIES).await?),
            false => None,
        };
        Ok::<_, async_nats::SubscribeError>((acks, replies))
    };
    let (mut acks, mut replies) = match subscribed.await {
        Ok(subscriptions) => subscriptions,
        Err(err) => {
            warn!(
                message = "Cannot subscribe to JetStream acknowledgements.",
                error = err.to_string()
            );
            return;
        }
    };
    let mut window = Window {
        inbox,
        pending: VecDeque::new(),
        first: 1,
        commits: VecDeque::new(),
        bytes: 0,
        batches: VecDeque::new(),
        next_batch: 1,
        // Two flows in flight leave room in the window for the tail of the previous batch.
        // A window too small for flows of some size is not worth batching.
        flow: match batched && max_inflight >= MIN_BATCHED_WINDOW {
            true => (max_inflight as u64 / 4).min(batch::FLOW),
            false => 0,
        },
    };
    let mut staged: VecDeque<Item> = VecDeque::new();
    let mut failures = 0u32;
    let mut last_warning: Option<Instant> = None;
    let mut open = true;
    // When the open batch is committed if no more events come.
    let mut linger: Option<Instant> = None;
    loop {
        // Received items, in order, as far as the window has room. One clock
        // reading for the burst (a reading per event was 3% of the daemon's CPU);
        // the ack deadline is seconds away.
        let now = Instant::now();
        // What the last wake-up acknowledged makes room first (a final ack
        // can settle the whole window at once).
        settle(&mut window, &shared);
        // A batch pays off for a backlog, not for a few small transactions
        // in a row (its tail waits for the commit's ack): a full hand-over
        // of events, or the channel full.
        let backlog = staged.len() >= BATCH || items.capacity() == 0;
        while (window.pending.len() < max_inflight && window.bytes < MAX_INFLIGHT_BYTES)
            || matches!(staged.front(), Some(Item::Commit(_)))
        {
            let route = match staged.front() {
                Some(Item::Publish(_)) => window.route(backlog),
                _ => Route::Single,
            };
            match staged.pop_front() {
                Some(Item::Publish(message)) => {
                    let number = window.next_number();
                    let reply = match (route, window.batches.back_mut()) {
                        (Route::Wait, _) => {
                            staged.push_front(Item::Publish(message));
                            break;
                        }
                        (Route::Start, _) => {
                            metrics.batches.inc();
                            let mut batch = Batch::new(
                                window.next_batch,
                                number,
                                message.subject.clone(),
                                window.flow,
                            );
                            window.next_batch += 1;
                            let reply = batch.next_reply(&window.inbox, Op::Start, number);
                            window.batches.push_back(batch);
                            reply
                        }
                        (Route::Append, Some(batch)) => {
                            batch.next_reply(&window.inbox, Op::Append, number)
                        }
                        _ => reply_subject(&window.inbox, number),
                    };
                    metrics.bytes_published.inc_by(message.payload.len() as u64);
                    publish(&client, &message, reply).await;
                    window.bytes += message.payload.len();
                    window.pending.push_back(Pending {
                        message,
                        sent_at: now,
                        ack: AckState::Waiting,
                        alone: false,
                    });
                }
                Some(Item::Commit(end)) => {
                    let last = window.next_number() - 1;
                    window.commits.push_back((last, end));
                }
                None => break,
            }
        }
        // The open batch is committed once the queue is drained (so its tail
        // is acknowledged now, not when more events come), or when the window
        // is full and no flow ack is coming to make room.
        let room = window.pending.len() < max_inflight && window.bytes < MAX_INFLIGHT_BYTES;
        let drained = staged.is_empty() && items.is_empty();
        match window.open_batch() {
            Some(batch) if batch.state == BatchState::Open => {
                let stuck = !room && !batch.expects_flow_ack();
                let lingered = linger.is_some_and(|at| Instant::now() >= at);
                if stuck || (drained && lingered) {
                    commit_open(&client, &mut window).await;
                    linger = None;
                } else if !drained {
                    linger = None;
                } else if linger.is_none() {
                    linger = Some(now + LINGER);
                }
            }
            _ => linger = None,
        }
        settle(&mut window, &shared);
        let inflight = window.pending.len();
        shared.inflight.store(inflight as u64, Ordering::Relaxed);
        metrics.inflight.set(inflight as i64);
        if !open && window.pending.is_empty() && staged.is_empty() {
            return;
        }
        if let Some(why) = window.front_failed(Instant::now()) {
            // Immediately the first time (later events of the window failed
            // together with it and usually succeed at once), then backing off.
            let delay = if failures == 0 {
                Duration::ZERO
            } else {
                backoff(failures)
            };
            // One line per backoff step, not one per event of the window.
            if failures > 0 || last_warning.is_none_or(|at| at.elapsed() > QUIET) {
                let subject = window.pending.front().map(|p| p.message.subject.clone());
                warn!(
                    message = "Publishing to JetStream failed; retrying with the same message id.",
                    error = why.as_str(),
                    subject = subject.as_deref().unwrap_or_default(),
                    retry_in_ms = delay.as_millis() as u64,
                );
                last_warning = Some(Instant::now());
            }
            tokio::time::sleep(delay).await;
            failures = failures.saturating_add(1);
            metrics.publish_failures.inc();
            // Retries go out with acks of their own, after the open batch is
            // committed (its final ack settles what it stored).
            commit_open(&client, &mut window).await;
            republish_failed(&client, &mut window, &metrics).await;
            continue;
        }
        let can_take = open && staged.is_empty();
        let deadline = window.deadline().into_iter().chain(linger).min();
        let waiting = !window.pending.is_empty();
        tokio::select! {
            batch = items.recv(), if can_take => match batch {
                Some(batch) => staged.extend(batch),
                None => open = false,
            },
            ack = acks.next(), if waiting => match ack {
                Some(ack) => {
                    if window.acked(&ack) == Some(&AckState::Stored) && failures > 0 {
                        info!(message = "JetStream publishing recovered.");
                        failures = 0;
                    }
                    // Acks that arrived meanwhile, without another wake-up.
                    drain_ready(&mut acks, &mut window);
                }
                None => {
                    warn!(message = "The NATS connection closed; stopping publishing.");
                    return;
                }
            },
            // Always read, so that replies never pile up in the subscription
            // (it also hears other publishers' batches, dropped by addressee).
            reply = next_reply(&mut replies) => {
                let mut heard = window.batch_replied(&reply);
                // Replies that arrived meanwhile, without another wake-up.
                if let Some(replies) = replies.as_mut() {
                    while let Some(Some(reply)) = replies.next().now_or_never() {
                        let more = window.batch_replied(&reply);
                        heard.stored |= more.stored;
                        heard.disabled |= more.disabled;
                    }
                }
                if heard.disabled {
                    info!(message = "The stream does not take batched publishes; every event is acknowledged on its own from now on.");
                }
                if heard.stored && failures > 0 {
                    info!(message = "JetStream publishing recovered.");
                    failures = 0;
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
    }
}

/// Drop the acknowledged prefix of the window, and advance the durable position.
fn settle(window: &mut Window, shared: &Shared) {
    if let Some(durable) = window.settle() {
        shared.durable.fetch_max(durable.0, Ordering::Release);
    }
}

/// Take the acks already received without waiting.
fn drain_ready(acks: &mut Subscriber, window: &mut Window) {
    while let Some(Some(ack)) = acks.next().now_or_never() {
        window.acked(&ack);
    }
}

/// The next reply to a batch message; never, without batches.
async fn next_reply(replies: &mut Option<Subscriber>) -> Message {
    match replies {
        Some(replies) => match replies.next().await {
            Some(reply) => reply,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Commit the open batch (end of batch, storing nothing), so that its final
/// ack settles what it stored; a batch still waiting for its first reply is
/// dropped instead (its one event is retried if it was not stored).
async fn commit_open(client: &Client, window: &mut Window) {
    let Window { batches, inbox, .. } = window;
    let Some(batch) = batches
        .back_mut()
        .filter(|b| matches!(b.state, BatchState::Starting | BatchState::Open))
    else {
        return;
    };
    if batch.state == BatchState::Starting {
        // Its reply is not heard any more: the event goes again now (its id
        // makes that safe) rather than after the ack timeout.
        batch.state = BatchState::Ended;
        let first = batch.first;
        let why = AckState::Failed("its batch was dropped before it started".to_owned());
        window.mark([first], &why);
        return;
    }
    batch.state = BatchState::Committed;
    let subject = batch.subject.clone();
    let reply = batch.next_reply(inbox, Op::Commit, 0);
    if let Err(err) = client
        .publish_with_reply(subject, reply, Bytes::new())
        .await
    {
        warn!(
            message = "Could not hand a batch commit to the NATS connection.",
            error = err.to_string()
        );
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Publish again, in order, every event whose ack failed or timed out.
async fn republish_failed(client: &Client, window: &mut Window, metrics: &Metrics) {
    let now = Instant::now();
    let first = window.first;
    let inbox = &window.inbox;
    for (i, pending) in window.pending.iter_mut().enumerate() {
        let again = match pending.ack {
            AckState::Failed(_) => true,
            AckState::Waiting => now >= pending.sent_at + ACK_TIMEOUT,
            AckState::Stored => false,
        };
        if again {
            metrics.publish_retries.inc();
            let reply = reply_subject(inbox, first + i as u64);
            publish(client, &pending.message, reply).await;
            pending.sent_at = Instant::now();
            pending.ack = AckState::Waiting;
            pending.alone = true;
        }
    }
}

/// Publish one event with `reply` as the subject its ack goes to. A failure to
/// hand it to the connection shows up as a missing ack and is retried.
async fn publish(client: &Client, message: &Outgoing, reply: String) {
    let result = client
        .publish_with_reply_and_headers(
            message.subject.clone(),
            reply,
            message.headers.to_headers(),
            message.payload.clone(),
        )
        .await;
    if let Err(err) = result {
        warn!(
            message = "Could not hand an event to the NATS connection.",
            error = err.to_string()
        );
    }
}

/// Delay before the `failures`-th consecutive re-publish.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(number: u64, payload: &'static [u8], status: Option<u16>) -> Message {
        batch::server_message(&format!("_INBOX.x.{number}"), payload, status)
    }

    fn window(events: u64) -> Window {
        let message = Outgoing {
            subject: "s.t".into(),
            headers: super::super::headers::MessageIds::new("slot").fields(
                &crate::change::Change::Begin(crate::change::sample::tx()),
                Default::default(),
                None,
            ),
            payload: Bytes::from_static(b"{}"),
        };
        Window {
            inbox: "_INBOX.x".into(),
            pending: (0..events)
                .map(|_| Pending {
                    message: message.clone(),
                    sent_at: Instant::now(),
                    ack: AckState::Waiting,
                    alone: false,
                })
                .collect(),
            first: 1,
            commits: VecDeque::new(),
            bytes: 2 * events as usize,
            batches: VecDeque::new(),
            next_batch: 1,
            flow: 10,
        }
    }

    /// A window whose `events` events are batch 1, open, ack expected every 10.
    fn batched(events: u64) -> Window {
        let mut w = window(events);
        let mut batch = Batch::new(1, 1, "s.t".into(), 10);
        for number in 1..=events {
            batch.next_reply(&w.inbox, Op::Append, number);
        }
        batch.state = BatchState::Open;
        w.batches.push_back(batch);
        w
    }

    /// A window of `events` events, the first of which starts batch 1.
    fn starting(events: u64) -> Window {
        let mut w = window(events);
        let mut batch = Batch::new(1, 1, "s.t".into(), 10);
        batch.next_reply(&w.inbox, Op::Start, 1);
        w.batches.push_back(batch);
        w
    }

    /// The server's `payload` in reply to message `seq` of batch 1.
    fn batch_reply(seq: u64, payload: &'static [u8], status: Option<u16>) -> Message {
        let mut message = ack(0, payload, status);
        message.subject = batch::reply_subject("_INBOX.x", 1, 10, seq, Op::Append).into();
        message
    }

    #[test]
    fn a_flow_ack_stores_the_batch_up_to_it_and_the_final_ack_the_rest() {
        let mut w = batched(5);
        w.commits.extend([(2, Lsn(20)), (5, Lsn(50))]);
        let heard = w.batch_replied(&batch_reply(
            3,
            b"{\"type\":\"ack\",\"seq\":3,\"msgs\":10}",
            None,
        ));
        assert_eq!(
            heard,
            Heard {
                stored: true,
                disabled: false
            }
        );
        assert_eq!(w.settle(), Some(Lsn(20)));
        assert_eq!(w.first, 4);
        // Another publisher's batch changes nothing.
        let mut other = batch_reply(5, b"{\"type\":\"ack\",\"seq\":5,\"msgs\":10}", None);
        other.subject = "_INBOX.y1.10.fail.5.1.$FI".into();
        assert_eq!(w.batch_replied(&other), Heard::default());
        assert_eq!(w.settle(), None);
        let last = b"{\"stream\":\"S\",\"seq\":5,\"batch\":\"x1\",\"count\":5}";
        assert!(w.batch_replied(&batch_reply(6, last, None)).stored);
        assert_eq!(w.settle(), Some(Lsn(50)));
        assert!(w.pending.is_empty() && w.batches.is_empty());
    }

    #[test]
    fn events_a_failed_batch_did_not_store_are_retried_once() {
        let mut w = batched(5);
        w.commits.push_back((5, Lsn(50)));
        let too_large = b"{\"error\":{\"code\":400,\"err_code\":10054,\"description\":\"message size exceeds maximum allowed\"},\"stream\":\"S\",\"seq\":0}";
        w.batch_replied(&batch_reply(3, too_large, None));
        w.batch_replied(&batch_reply(
            4,
            b"{\"type\":\"gap\",\"last_seq\":3,\"seq\":4}",
            None,
        ));
        let last = b"{\"stream\":\"S\",\"seq\":2,\"batch\":\"x1\",\"count\":2}";
        w.batch_replied(&batch_reply(4, last, None));
        assert_eq!(w.settle(), None);
        assert_eq!(w.first, 3);
        assert!(w
            .front_failed(Instant::now())
            .unwrap()
            .contains("size exceeds"));
        let states: Vec<_> = w
            .pending
            .iter()
            .map(|p| matches!(p.ack, AckState::Failed(_)))
            .collect();
        assert_eq!(states, [true, true, true]);
        // Retried with acks of their own; one is stored before the server's
        // late refusal of it (the batch is over), which changes nothing.
        w.acked(&ack(4, b"{\"stream\":\"s\",\"seq\":9}", None));
        let unknown = b"{\"error\":{\"code\":400,\"err_code\":10208,\"description\":\"batch publish ID unknown\"},\"stream\":\"S\",\"seq\":0}";
        assert_eq!(
            w.batch_replied(&batch_reply(4, unknown, None)),
            Heard::default()
        );
        assert_eq!(w.pending[1].ack, AckState::Stored);
        // A batch the server forgot: what no flow ack covered goes again.
        let mut w = batched(5);
        w.batch_replied(&batch_reply(
            2,
            b"{\"type\":\"ack\",\"seq\":2,\"msgs\":10}",
            None,
        ));
        w.batch_replied(&batch_reply(5, unknown, None));
        w.settle();
        assert_eq!((w.first, w.batches[0].state), (3, BatchState::Ended));
        assert!(w
            .pending
            .iter()
            .all(|p| matches!(p.ack, AckState::Failed(_))));
    }

    #[test]
    fn events_sent_on_their_own_while_a_batch_starts_are_settled_by_their_own_acks() {
        // Event 1 starts the batch, 2 and 3 go out on their own before its
        // first reply, 4 and 5 are the batch's messages 2 and 3.
        let mut w = starting(5);
        w.batch_replied(&batch_reply(
            1,
            b"{\"type\":\"ack\",\"seq\":0,\"msgs\":10}",
            None,
        ));
        for number in [4, 5] {
            w.batches[0].next_reply(&w.inbox, Op::Append, number);
        }
        let last = b"{\"stream\":\"S\",\"seq\":3,\"batch\":\"x1\",\"count\":3}";
        w.batch_replied(&batch_reply(4, last, None));
        let stored: Vec<bool> = w
            .pending
            .iter()
            .map(|p| p.ack == AckState::Stored)
            .collect();
        assert_eq!(stored, [true, false, false, true, true]);
        w.acked(&ack(2, b"{\"stream\":\"s\",\"seq\":2}", None));
        w.acked(&ack(3, b"{\"stream\":\"s\",\"seq\":3}", None));
        w.settle();
        assert!(w.pending.is_empty() && w.batches.is_empty());
    }

    #[test]
    fn a_stream_refusing_batches_turns_them_off() {
        let mut w = window(1);
        assert_eq!(
            w.route(false),
            Route::Single,
            "a short run is not worth a batch"
        );
        assert_eq!(w.route(true), Route::Start);
        let mut batch = Batch::new(1, 1, "s.t".into(), 10);
        batch.next_reply(&w.inbox, Op::Start, 1);
        w.batches.push_back(batch);
        assert_eq!(
            w.route(true),
            Route::Single,
            "nothing of the batch before the first reply"
        );
        let disabled = b"{\"error\":{\"code\":400,\"err_code\":10205,\"description\":\"batch publish is disabled\"},\"stream\":\"S\",\"seq\":0}";
        let heard = w.batch_replied(&batch_reply(1, disabled, None));
        assert!(heard.disabled);
        assert_eq!(w.flow, 0);
        assert!(matches!(&w.pending[0].ack, AckState::Failed(why) if why.contains("disabled")));
        assert_eq!(w.route(true), Route::Single);
        // The first reply opens a batch; flow control then holds it at two flows.
        let mut w = starting(1);
        w.batch_replied(&batch_reply(
            1,
            b"{\"type\":\"ack\",\"seq\":0,\"msgs\":4}",
            None,
        ));
        assert_eq!(w.route(false), Route::Append);
        assert_eq!(w.batches[0].flow, 4);
        w.batches[0].sent = 7;
        assert_eq!(w.route(false), Route::Wait);
    }

    #[test]
    fn the_final_ack_of_a_committed_batch_does_not_fail_events_published_again_meanwhile() {
        let mut w = batched(5);
        let too_large = b"{\"error\":{\"code\":400,\"err_code\":10054,\"description\":\"message size exceeds maximum allowed\"},\"stream\":\"S\",\"seq\":0}";
        w.batch_replied(&batch_reply(3, too_large, None));
        // The batch is committed and event 3 goes again on its own before the final ack.
        w.batches[0].state = BatchState::Committed;
        w.pending[2].ack = AckState::Waiting;
        w.pending[2].alone = true;
        let last = b"{\"stream\":\"S\",\"seq\":2,\"batch\":\"x1\",\"count\":2}";
        w.batch_replied(&batch_reply(6, last, None));
        let states: Vec<&AckState> = w.pending.iter().map(|p| &p.ack).collect();
        assert_eq!(
            states[..3],
            [&AckState::Stored, &AckState::Stored, &AckState::Waiting]
        );
        assert!(matches!(states[3], AckState::Failed(_)));
    }

    #[test]
    fn a_batch_that_stored_nothing_stores_none_of_its_events() {
        let mut w = batched(5);
        w.commits.push_back((5, Lsn(50)));
        // The final ack of an empty stored prefix has no count; it may be
        // addressed to any message, here the commit after the last one.
        let nothing = b"{\"stream\":\"S\",\"seq\":7,\"batch\":\"x1\"}";
        let heard = w.batch_replied(&batch_reply(6, nothing, None));
        assert!(!heard.stored);
        assert_eq!(w.settle(), None);
        assert!(w
            .pending
            .iter()
            .all(|p| matches!(p.ack, AckState::Failed(_))));
    }

    #[test]
    fn a_plain_ack_to_a_batch_message_stores_that_message_only() {
        let mut w = starting(3);
        let heard = w.batch_replied(&batch_reply(1, b"{\"stream\":\"S\",\"seq\":9}", None));
        assert!(heard.stored && heard.disabled);
        assert_eq!(w.flow, 0);
        assert_eq!(w.pending[0].ack, AckState::Stored);
        assert_eq!(w.pending[1].ack, AckState::Waiting);
        assert_eq!(w.route(true), Route::Single, "no batch takes more events");
        // On an open batch, a plain ack to message 3 is no news about 1 and 2.
        let mut w = batched(5);
        w.batch_replied(&batch_reply(3, b"{\"stream\":\"S\",\"seq\":9}", None));
        let stored: Vec<bool> = w
            .pending
            .iter()
            .map(|p| p.ack == AckState::Stored)
            .collect();
        assert_eq!(stored, [false, false, true, false, false]);
    }

    #[test]
    fn a_unit_is_durable_once_every_event_before_its_marker_is_stored_in_any_order() {
        let mut w = window(3);
        w.commits.extend([(1, Lsn(10)), (3, Lsn(30))]);
        assert_eq!(
            w.acked(&ack(2, b"{\"stream\":\"s\",\"seq\":2}", None)),
            Some(&AckState::Stored)
        );
        assert_eq!(w.settle(), None, "event 1 is not acknowledged yet");
        w.acked(&ack(1, b"{\"stream\":\"s\",\"seq\":1}", None));
        assert_eq!(w.settle(), Some(Lsn(10)));
        assert_eq!((w.first, w.pending.len()), (3, 1));
        w.acked(&ack(
            3,
            b"{\"stream\":\"s\",\"seq\":3,\"duplicate\":true}",
            None,
        ));
        assert_eq!(w.settle(), Some(Lsn(30)));
        assert!(w.pending.is_empty() && w.commits.is_empty());
        assert_eq!(w.bytes, 0);
        // An ack for a number no longer (or never) in the window is ignored.
        assert_eq!(w.acked(&ack(1, b"{}", None)), None);
        assert_eq!(w.acked(&ack(99, b"{}", None)), None);
    }

    #[test]
    fn refusals_and_missing_streams_are_failures_to_retry() {
        let mut w = window(2);
        let refused = ack(
            1,
            b"{\"error\":{\"code\":503,\"description\":\"insufficient resources\"}}",
            None,
        );
        assert!(
            matches!(w.acked(&refused), Some(AckState::Failed(why)) if why.contains("insufficient"))
        );
        assert!(w.front_failed(Instant::now()).is_some());
        let no_responders = ack(2, b"", Some(503));
        assert!(
            matches!(w.acked(&no_responders), Some(AckState::Failed(why)) if why.contains("no JetStream stream captures"))
        );
        assert_eq!(w.settle(), None);
        // Only an acknowledgement with a stream and a sequence is one.
        let stored = |payload: &'static [u8]| ack_state(&ack(1, payload, None)) == AckState::Stored;
        assert!(stored(b"{\"stream\":\"s\",\"seq\":7}"));
        assert!(stored(b"{\"stream\":\"s\",\"domain\":\"hub\",\"seq\":7}"));
        assert!(stored(b"{\"seq\":7,\"stream\":\"s\"}"));
        assert!(!stored(b"{}"));
        assert!(!stored(b"{\"stream\":\"s\"}"));
        assert!(!stored(
            b"{\"stream\":\"s\",\"seq\":7,\"error\":{\"code\":500}}"
        ));
        assert!(!stored(
            b"{\"type\":\"io.nats.jetstream.api.v1.consumer_info\"}"
        ));
        assert!(!stored(b"{\"stream\""));
        assert!(!stored(b"+OK"));
        assert!(!stored(b""));
        assert_ne!(ack_state(&ack(1, b"", Some(200))), AckState::Stored);
        // An event without its ack times out.
        let w = window(1);
        assert!(w.front_failed(Instant::now()).is_none());
        assert!(w.front_failed(Instant::now() + ACK_TIMEOUT).is_some());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
