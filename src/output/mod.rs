//! Output targets: where events go.
//!
//! The pipeline hands every event to one [`OutputTarget`] (usually a
//! [`CompositeOutput`] fanning out to several) in commit order, and marks the
//! end of each transaction with [`OutputTarget::commit`]. A target reports
//! through [`OutputTarget::durable`] how far it has durably taken events; only
//! that position is ever confirmed to the server.

pub mod composite;
pub mod jetstream;
pub mod stdout;

use async_trait::async_trait;

use crate::change::Change;
use crate::lsn::Lsn;

pub use composite::CompositeOutput;
pub use jetstream::JetStreamOutput;
pub use stdout::StdoutOutput;

/// One event as handed to targets: the change, its payload (compact JSON in the
/// configured format, computed once, used as is by every JSON target), and its
/// place in the stream.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub change: &'a Change,
    pub json: &'a [u8],
    pub seq: Seq,
}

/// Where an event stands in its transaction: the transaction's commit LSN and
/// the event's number counted from the begin (0), without relation events, on
/// the stream as the server sent it, before any filter. Identifiers built from
/// it (JetStream message ids) stay the same whatever is filtered or replayed.
/// A relation event carries the number of the event it precedes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seq {
    pub commit_lsn: Lsn,
    pub index: u64,
}

/// Numbers the events of the stream; see [`Seq`].
#[derive(Debug, Default)]
pub struct SeqCounter {
    current: Seq,
}

impl SeqCounter {
    /// The place of `change`, which must be the next event of the stream.
    pub fn next(&mut self, change: &Change) -> Seq {
        match change {
            Change::Relation(_) => self.current,
            Change::Message {
                transactional: false,
                lsn,
                ..
            } => Seq {
                commit_lsn: *lsn,
                index: 0,
            },
            _ => {
                if let Change::Begin(tx) = change {
                    self.current = Seq {
                        commit_lsn: tx.commit_lsn,
                        index: 0,
                    };
                }
                let seq = self.current;
                self.current.index += 1;
                seq
            }
        }
    }
}

/// Why a target could not take events.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The consumer went away (e.g. the reader of a pipe exited). Not a failure
    /// of the daemon: it stops cleanly without confirming what was not taken.
    #[error("{target} was closed by its reader")]
    Closed { target: &'static str },
    /// Writing failed.
    #[error("cannot write to {target}: {source}")]
    Io {
        target: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The target stopped working and cannot go on (its task ended).
    #[error("{target} failed: {message}")]
    Failed {
        target: &'static str,
        message: String,
    },
}

/// A destination for change events.
///
/// Contract:
/// - events arrive in commit order; after the last event of a transaction (its
///   `commit` event) or of a non-transactional message, [`commit`](Self::commit)
///   is called with the position that acknowledges it;
/// - [`durable`](Self::durable) reports the highest such position whose events,
///   and all before it, the target has durably taken (stdout: written and
///   flushed; a broker: acknowledged). It may lag behind `commit` and move later;
/// - delivery is at-least-once: after a crash or reconnect the events after the
///   last confirmed position are sent again, so a target must tolerate
///   duplicates (or remove them, as the JetStream dedup window does).
#[async_trait]
pub trait OutputTarget: Send {
    /// Short name used in logs and errors.
    fn name(&self) -> &'static str;

    /// Take one event; it may be buffered.
    async fn write(&mut self, event: Event<'_>) -> Result<(), OutputError>;

    /// Everything written so far ends a unit acknowledged by `end`.
    async fn commit(&mut self, end: Lsn) -> Result<(), OutputError>;

    /// Everything up to this position has been durably taken.
    fn durable(&self) -> Lsn;

    /// The unit being written will not be completed (the connection was lost and
    /// it will be sent again from its start): drop what of it is still buffered.
    fn discard_uncommitted(&mut self) {}

    /// Wait until everything committed is durable and release resources.
    async fn close(&mut self) -> Result<(), OutputError>;
}
