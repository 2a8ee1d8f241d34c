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
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

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
/// A first failure is logged only if none was in this long.
const QUIET: Duration = Duration::from_secs(10);

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
        let why = match (&message.description, status.as_u16()) {
            (Some(description), _) => description.clone(),
            // No stream captures the subject any more (deleted, or its subjects changed).
            (None, 503) => "no responders (status 503): no JetStream stream captures the subject; was the stream deleted or its subjects changed?".to_owned(),
            (None, _) => format!("status {status}"),
        };
        return AckState::Failed(why);
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
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) {
    let inbox = client.new_inbox();
    let mut acks = match client.subscribe(format!("{inbox}.*")).await {
        Ok(acks) => acks,
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
    };
    let mut staged: VecDeque<Item> = VecDeque::new();
    let mut failures = 0u32;
    let mut last_warning: Option<Instant> = None;
    let mut open = true;
    loop {
        // Received items, in order, as far as the window has room. One clock
        // reading for the burst (a reading per event was 3% of the daemon's CPU);
        // the ack deadline is seconds away.
        let now = Instant::now();
        while (window.pending.len() < max_inflight && window.bytes < MAX_INFLIGHT_BYTES)
            || matches!(staged.front(), Some(Item::Commit(_)))
        {
            match staged.pop_front() {
                Some(Item::Publish(message)) => {
                    let number = window.next_number();
                    metrics.bytes_published.inc_by(message.payload.len() as u64);
                    publish(&client, &message, reply_subject(&window.inbox, number)).await;
                    window.bytes += message.payload.len();
                    window.pending.push_back(Pending {
                        message,
                        sent_at: now,
                        ack: AckState::Waiting,
                    });
                }
                Some(Item::Commit(end)) => {
                    let last = window.next_number() - 1;
                    window.commits.push_back((last, end));
                }
                None => break,
            }
        }
        if let Some(durable) = window.settle() {
            shared.durable.fetch_max(durable.0, Ordering::Release);
        }
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
            republish_failed(&client, &mut window, &metrics).await;
            continue;
        }
        let can_take = open && staged.is_empty();
        let deadline = window.deadline();
        tokio::select! {
            batch = items.recv(), if can_take => match batch {
                Some(batch) => staged.extend(batch),
                None => open = false,
            },
            ack = acks.next(), if !window.pending.is_empty() => match ack {
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
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
    }
}

/// Take the acks already received without waiting.
fn drain_ready(acks: &mut Subscriber, window: &mut Window) {
    use futures_util::FutureExt;
    while let Some(Some(ack)) = acks.next().now_or_never() {
        window.acked(&ack);
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
        Message {
            subject: format!("_INBOX.x.{number}").into(),
            reply: None,
            payload: Bytes::from_static(payload),
            headers: None,
            status: status.map(|s| async_nats::StatusCode::from_u16(s).unwrap()),
            description: None,
            length: payload.len(),
        }
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
                })
                .collect(),
            first: 1,
            commits: VecDeque::new(),
            bytes: 2 * events as usize,
        }
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
