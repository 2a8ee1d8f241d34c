//! JetStream fast-ingest batches (nats-server 2.14+, on streams with
//! `allow_batched`): a run of events is published as one batch, and the stream
//! acknowledges it with a flow ack every `flow` messages and a final ack when
//! the batch is committed, instead of one ack per event.
//!
//! The batch runs in `gap: fail` mode, where a flow ack for batch message N
//! means every message up to N is stored (or was a duplicate of a stored
//! `Nats-Msg-Id`), and a failure ends the batch with a final ack counting the
//! stored prefix. The rest is published again, each event with its own ack;
//! the message ids make that safe.
//!
//! On the wire every message of a batch is a core publish whose reply subject
//! is `_INBOX.<batch id>.<flow>.fail.<seq>.<op>.$FI`; the server sends its
//! replies to the reply subject of the message that caused them. The batch id
//! is the publisher's inbox token followed by the batch number, so one
//! subscription to `_INBOX.*.*.*.*.*.$FI` hears every batch and the batches of
//! other publishers are told apart by their id.

use async_nats::{Message, Subject};

use crate::change::json::{into_string, write_uint};

/// Messages per flow ack asked of the server (it may choose fewer).
pub const FLOW: u64 = 1000;
/// Batch messages published beyond the last flow ack at most, in flows
/// (ADR-50's recommended two outstanding acks).
const OUTSTANDING_FLOWS: u64 = 2;
/// The subject every batch reply of the connection matches.
pub const REPLIES: &str = "_INBOX.*.*.*.*.*.$FI";

/// Error code of a stream without `allow_batched`.
pub const DISABLED: u64 = 10205;
/// Error code of a batch the server no longer knows (ended, failed or idle for 10 s).
pub const UNKNOWN_BATCH: u64 = 10208;

/// What a batch message's `op` token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start = 0,
    Append = 1,
    /// End of batch: a commit that stores nothing.
    Commit = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The first message is published; nothing more until its reply.
    Starting,
    Open,
    /// The end-of-batch commit is published; the final ack settles the tail.
    Committed,
    /// The server ended it (final ack or error), or it was abandoned.
    Ended,
}

/// One batch: messages `1..=sent`. The first is the window's event `first`;
/// events published while the batch waits for its first reply go out on
/// their own, so messages 2.. are the events from `rest` on.
#[derive(Debug)]
pub struct Batch {
    pub number: u64,
    pub first: u64,
    rest: u64,
    pub sent: u64,
    /// Batch messages known stored: `1..=acked`.
    pub acked: u64,
    /// Messages per flow ack, as the server last said.
    pub flow: u64,
    /// Messages per flow ack asked for (part of every reply subject).
    asked: u64,
    pub state: State,
    /// The first message's subject: the commit goes there (a subject of the stream).
    pub subject: Subject,
}

impl Batch {
    pub fn new(number: u64, first: u64, subject: Subject, flow: u64) -> Batch {
        Batch {
            number,
            first,
            rest: first + 1,
            sent: 0,
            acked: 0,
            flow,
            asked: flow,
            state: State::Starting,
            subject,
        }
    }

    /// Whether the batch can take another event now.
    pub fn can_append(&self) -> bool {
        self.state == State::Open && self.sent + 1 < self.acked + self.flow * OUTSTANDING_FLOWS
    }

    /// Whether a flow ack is still to come for what is published (if not,
    /// only a commit settles the tail).
    pub fn expects_flow_ack(&self) -> bool {
        self.sent - self.acked >= self.flow
    }

    /// The reply subject of the batch's next message; an event (not a
    /// commit) counts as one of its messages.
    /// `number`: the event's number in the window (ignored for a commit).
    pub fn next_reply(&mut self, inbox: &str, op: Op, number: u64) -> String {
        let seq = self.sent + 1;
        if op != Op::Commit {
            if seq == 2 {
                self.rest = number;
            }
            self.sent = seq;
        }
        reply_subject(inbox, self.number, self.asked, seq, op)
    }

    /// The window number of batch message `seq` (from 1).
    pub fn number_of(&self, seq: u64) -> Option<u64> {
        match seq {
            1 if self.sent >= 1 => Some(self.first),
            2.. if seq <= self.sent => Some(self.rest + seq - 2),
            _ => None,
        }
    }

    /// The window numbers of batch messages `from..=to`.
    pub fn numbers(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        (from..=to).filter_map(|seq| self.number_of(seq))
    }

    /// The window number after the batch's last message.
    pub fn end(&self) -> u64 {
        self.number_of(self.sent)
            .map_or(self.first, |last| last + 1)
    }
}

/// The reply subject of message `seq` of batch `number`; `inbox` is the
/// publisher's `_INBOX.<token>`.
pub fn reply_subject(inbox: &str, number: u64, flow: u64, seq: u64, op: Op) -> String {
    let mut out = Vec::with_capacity(inbox.len() + 48);
    out.extend_from_slice(inbox.as_bytes());
    write_uint(number, &mut out);
    out.push(b'.');
    write_uint(flow, &mut out);
    out.extend_from_slice(b".fail.");
    write_uint(seq, &mut out);
    out.push(b'.');
    write_uint(op as u64, &mut out);
    out.extend_from_slice(b".$FI");
    into_string(out)
}

/// The batch number and message sequence a reply is about, if it is a reply
/// to one of the batches of the publisher with `inbox`.
pub fn addressee(inbox: &str, subject: &str) -> Option<(u64, u64)> {
    let (prefix, token) = inbox.split_once('.')?;
    let mut tokens = subject.split('.');
    if tokens.next()? != prefix {
        return None;
    }
    let number = tokens.next()?.strip_prefix(token)?.parse().ok()?;
    let seq = tokens.nth(2)?.parse().ok()?;
    Some((number, seq))
}

/// What the server says in a reply to a batch message.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Batch messages `1..=seq` are stored; the server acks every `msgs` from now on.
    Flow { seq: u64, msgs: u64 },
    /// The server missed a message; the final ack follows.
    Gap,
    /// The batch is over and messages `1..=count` of it are stored.
    Final { count: u64 },
    /// The message was refused.
    Refused { code: Option<u64>, why: String },
    /// A plain publish ack: the server stored the message as an ordinary
    /// publish, as one without fast ingest does.
    Plain,
}

pub fn parse_reply(message: &Message) -> Reply {
    if let Some(status) = message.status.filter(|status| !status.is_success()) {
        return Reply::Refused {
            code: None,
            why: super::publisher::refusal(message, status),
        };
    }
    #[derive(serde::Deserialize)]
    struct Wire {
        #[serde(rename = "type")]
        kind: Option<String>,
        seq: Option<u64>,
        msgs: Option<u64>,
        batch: Option<String>,
        count: Option<u64>,
        stream: Option<String>,
        error: Option<WireError>,
    }
    #[derive(serde::Deserialize)]
    struct WireError {
        err_code: Option<u64>,
        description: Option<String>,
    }
    let Ok(wire) = serde_json::from_slice::<Wire>(&message.payload) else {
        return Reply::Refused {
            code: None,
            why: String::from_utf8_lossy(&message.payload).into_owned(),
        };
    };
    match wire {
        Wire {
            error: Some(error), ..
        } => Reply::Refused {
            code: error.err_code,
            why: error
                .description
                .unwrap_or_else(|| String::from_utf8_lossy(&message.payload).into_owned()),
        },
        Wire {
            kind: Some(kind), ..
        } if kind == "gap" => Reply::Gap,
        Wire {
            kind: Some(kind),
            seq: Some(seq),
            msgs,
            ..
        } if kind == "ack" => Reply::Flow {
            seq,
            msgs: msgs.unwrap_or(0),
        },
        // nats-server leaves `count` out when it is 0.
        Wire {
            batch: Some(_),
            count,
            ..
        } => Reply::Final {
            count: count.unwrap_or(0),
        },
        Wire {
            kind: None,
            stream: Some(_),
            seq: Some(_),
            ..
        } => Reply::Plain,
        _ => Reply::Refused {
            code: None,
            why: String::from_utf8_lossy(&message.payload).into_owned(),
        },
    }
}

/// A message from the server on `subject`, for the tests here and in the publisher.
#[cfg(test)]
pub(super) fn server_message(
    subject: &str,
    payload: &'static [u8],
    status: Option<u16>,
) -> Message {
    Message {
        subject: subject.into(),
        reply: None,
        payload: bytes::Bytes::from_static(payload),
        headers: None,
        status: status.map(|s| async_nats::StatusCode::from_u16(s).unwrap()),
        description: None,
        length: payload.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(payload: &'static [u8], status: Option<u16>) -> Reply {
        parse_reply(&server_message(
            "_INBOX.x1.1000.fail.1.0.$FI",
            payload,
            status,
        ))
    }

    #[test]
    fn replies_are_read_as_nats_server_writes_them() {
        assert_eq!(
            reply(b"{\"type\":\"ack\",\"seq\":0,\"msgs\":1000}", None),
            Reply::Flow { seq: 0, msgs: 1000 }
        );
        assert_eq!(
            reply(b"{\"type\":\"gap\",\"last_seq\":4,\"seq\":5}", None),
            Reply::Gap
        );
        assert_eq!(
            reply(
                b"{\"stream\":\"S\",\"seq\":3,\"batch\":\"x1\",\"count\":3}",
                None
            ),
            Reply::Final { count: 3 }
        );
        let disabled = reply(b"{\"error\":{\"code\":400,\"err_code\":10205,\"description\":\"batch publish is disabled\"},\"stream\":\"S\",\"seq\":0}", None);
        assert_eq!(
            disabled,
            Reply::Refused {
                code: Some(DISABLED),
                why: "batch publish is disabled".into()
            }
        );
        assert!(matches!(
            reply(b"{\"error\":{\"code\":400,\"err_code\":10208,\"description\":\"batch publish ID unknown\"},\"stream\":\"S\",\"seq\":0}", None),
            Reply::Refused { code: Some(UNKNOWN_BATCH), .. }
        ));
        assert_eq!(reply(b"{\"stream\":\"S\",\"seq\":9}", None), Reply::Plain);
        // A batch that stored nothing: no count at all.
        assert_eq!(
            reply(b"{\"stream\":\"S\",\"seq\":5,\"batch\":\"x1\"}", None),
            Reply::Final { count: 0 }
        );
        assert!(matches!(
            reply(b"", Some(503)),
            Reply::Refused { code: None, why } if why.contains("no JetStream stream captures")
        ));
        assert!(matches!(reply(b"+OK", None), Reply::Refused { .. }));
        assert!(matches!(reply(b"{}", None), Reply::Refused { .. }));
    }

    #[test]
    fn reply_subjects_name_the_batch_and_the_message() {
        let subject = reply_subject("_INBOX.abc", 7, 1000, 42, Op::Append);
        assert_eq!(subject, "_INBOX.abc7.1000.fail.42.1.$FI");
        assert_eq!(addressee("_INBOX.abc", &subject), Some((7, 42)));
        assert_eq!(
            addressee(
                "_INBOX.abc",
                &reply_subject("_INBOX.abc", 0, 10, 1, Op::Commit)
            ),
            Some((0, 1))
        );
        // Another publisher's batch, and subjects of another shape.
        assert_eq!(
            addressee("_INBOX.abc", "_INBOX.xyz7.1000.fail.42.1.$FI"),
            None
        );
        assert_eq!(addressee("_INBOX.abc", "_INBOX.abc.7"), None);
        assert_eq!(
            addressee("_INBOX.abc", "OTHER.abc7.1000.fail.42.1.$FI"),
            None
        );
        assert_eq!(
            addressee("_INBOX.abc", "_INBOX.abcx.1000.fail.42.1.$FI"),
            None
        );
    }

    #[test]
    fn a_batch_keeps_at_most_two_flows_beyond_its_last_ack() {
        let mut batch = Batch::new(1, 101, "s.t".into(), 10);
        assert!(!batch.can_append(), "not before the first reply");
        batch.state = State::Open;
        batch.sent = 18;
        assert!(batch.can_append());
        batch.sent = 19;
        assert!(!batch.can_append());
        assert!(batch.expects_flow_ack());
        batch.acked = 10;
        assert!(batch.can_append());
        assert!(!batch.expects_flow_ack());
        assert_eq!(batch.number_of(1), Some(101));
        assert_eq!(batch.number_of(19), Some(119));
        assert_eq!(batch.number_of(20), None);
        assert_eq!(batch.number_of(0), None);
        assert_eq!(batch.end(), 120);
    }

    #[test]
    fn events_published_on_their_own_before_the_first_reply_are_not_in_the_batch() {
        let mut batch = Batch::new(1, 101, "s.t".into(), 10);
        assert_eq!(batch.end(), 101);
        batch.next_reply("_INBOX.x", Op::Start, 101);
        // 102..=104 went out on their own; the batch goes on with 105.
        let reply = batch.next_reply("_INBOX.x", Op::Append, 105);
        assert!(reply.ends_with(".2.1.$FI"), "{reply}");
        batch.next_reply("_INBOX.x", Op::Append, 106);
        let commit = batch.next_reply("_INBOX.x", Op::Commit, 0);
        assert!(commit.ends_with(".4.3.$FI"), "{commit}");
        assert_eq!(batch.numbers(1, 3).collect::<Vec<_>>(), [101, 105, 106]);
        assert_eq!(batch.numbers(3, 4).collect::<Vec<_>>(), [106]);
        assert_eq!(batch.end(), 107);
    }
}
