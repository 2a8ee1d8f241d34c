//! The publishing task: keeps up to `max_inflight` events published and
//! awaiting their JetStream ack, retries failed ones with the same message id,
//! and advances the durable position once every event before a commit marker
//! is acknowledged.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::Context;
use async_nats::Subject;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::headers::HeaderFields;
use crate::lsn::Lsn;
use crate::metrics::Metrics;

/// First delay before re-publishing after consecutive failures; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
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

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

enum Slot {
    Pending { message: Outgoing, ack: AckFuture },
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

/// Run until the sender side is dropped and every queued event is acknowledged.
///
/// Items arrive in batches (the output sends one per transaction, or per
/// [`BATCH`] events of a large one) so that the two tasks wake each other once
/// per batch rather than once per event; a batch is published as the window
/// allows.
pub async fn run(
    context: Context,
    mut items: mpsc::Receiver<Vec<Item>>,
    max_inflight: usize,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) {
    let mut staged: VecDeque<Item> = VecDeque::new();
    let mut window: VecDeque<Slot> = VecDeque::new();
    let mut pending = 0usize;
    let mut pending_bytes = 0usize;
    let mut failures = 0u32;
    let mut last_warning: Option<Instant> = None;
    let mut open = true;
    loop {
        // Received items, in order, as far as the window has room.
        while (pending < max_inflight && pending_bytes < MAX_INFLIGHT_BYTES)
            || matches!(staged.front(), Some(Item::Commit(_)))
        {
            match staged.pop_front() {
                Some(Item::Publish(message)) => {
                    metrics.bytes_published.inc_by(message.payload.len() as u64);
                    let ack = publish(&context, &message).await;
                    pending_bytes += message.payload.len();
                    window.push_back(Slot::Pending { message, ack });
                    pending += 1;
                }
                Some(Item::Commit(end)) => window.push_back(Slot::Commit(end)),
                None => break,
            }
        }
        // Commit markers at the front are fully acknowledged.
        while let Some(Slot::Commit(end)) = window.front() {
            shared.durable.fetch_max(end.0, Ordering::Release);
            window.pop_front();
        }
        shared.inflight.store(pending as u64, Ordering::Relaxed);
        metrics.inflight.set(pending as i64);
        if !open && window.is_empty() && staged.is_empty() {
            return;
        }
        let can_take = open && staged.is_empty();
        tokio::select! {
            batch = items.recv(), if can_take => match batch {
                Some(batch) => staged.extend(batch),
                None => open = false,
            },
            result = front_ack(&mut window), if pending > 0 => match result {
                Ok(_) => {
                    if failures > 0 {
                        info!(message = "JetStream publishing recovered.");
                        failures = 0;
                    }
                    if let Some(Slot::Pending { message, .. }) = window.pop_front() {
                        pending_bytes -= message.payload.len();
                    }
                    pending -= 1;
                }
                Err(error) => {
                    // Immediately the first time (later events of the window failed
                    // together with it and usually succeed at once), then backing off.
                    let delay = if failures == 0 { Duration::ZERO } else { backoff(failures) };
                    // One line per backoff step, not one per event of the window.
                    if failures > 0 || last_warning.is_none_or(|at| at.elapsed() > QUIET) {
                        warn!(
                            message = "Publishing to JetStream failed; retrying with the same message id.",
                            %error,
                            retry_in_ms = delay.as_millis() as u64,
                        );
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(delay).await;
                    failures = failures.saturating_add(1);
                    metrics.publish_failures.inc();
                    republish_failed(&context, &mut window, &metrics).await;
                }
            },
        }
    }
}

/// Publish the front event again (its ack failed) and every later one whose
/// ack has already failed too, in order, so that recovering from an outage
/// takes one round trip rather than one per event of the window.
async fn republish_failed(context: &Context, window: &mut VecDeque<Slot>, metrics: &Metrics) {
    let mut front = true;
    for slot in window.iter_mut() {
        let Slot::Pending { message, ack } = slot else {
            continue;
        };
        let failed = if std::mem::take(&mut front) {
            true
        } else {
            match ack.as_mut().now_or_never() {
                None => false,
                Some(Ok(done)) => {
                    // Keep the result for when this event reaches the front.
                    *ack = Box::pin(std::future::ready(Ok(done)));
                    false
                }
                Some(Err(_)) => {
                    metrics.publish_failures.inc();
                    true
                }
            }
        };
        if failed {
            metrics.publish_retries.inc();
            *ack = publish(context, message).await;
        }
    }
}

/// The ack of the oldest published event (the front of the window).
async fn front_ack(window: &mut VecDeque<Slot>) -> Result<PublishAck, PublishError> {
    match window.front_mut() {
        Some(Slot::Pending { ack, .. }) => ack.await,
        // The loop pops leading commit markers before it waits.
        _ => std::future::pending().await,
    }
}

async fn publish(context: &Context, message: &Outgoing) -> AckFuture {
    let result = context
        .publish_with_headers(
            message.subject.clone(),
            message.headers.to_headers(),
            message.payload.clone(),
        )
        .await;
    match result {
        Ok(ack) => Box::pin(std::future::IntoFuture::into_future(ack)),
        Err(err) => Box::pin(std::future::ready(Err(err))),
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

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
