//! Parsing one XLogData payload into a [`LogicalMessage`] (pgoutput protocol
//! version 1, plus logical decoding messages).
//!
//! Every field is bounds-checked: malformed or truncated input yields a
//! [`DecodeError`] with the offset of the offending field, never a panic.
//! Column values and message contents are slices of the input buffer.

mod reader;

#[cfg(test)]
pub(crate) mod arbitrary;
#[cfg(test)]
pub(crate) mod encode;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use self::reader::Reader;
use crate::pgoutput::message::{
    Begin, Commit, Delete, Insert, LogicalMessage, Message, MessageKind, OldKind, OldTuple, Origin,
    Relation, RelationColumn, ReplicaIdentity, StreamAbort, StreamCommit, StreamStart, Truncate,
    Tuple, TupleValue, TypeInfo, Update,
};

/// Why a payload is not a well-formed pgoutput message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed {kind} message at byte {offset}: {reason}")]
pub struct DecodeError {
    /// The message kind from the tag byte ([`MessageKind::Empty`] for an empty payload).
    pub kind: MessageKind,
    /// Offset into the payload of the field that could not be read.
    pub offset: usize,
    /// What was wrong with it.
    pub reason: String,
}

/// Truncate option bit: `TRUNCATE ... CASCADE`.
const TRUNCATE_CASCADE: u8 = 1;
/// Truncate option bit: `TRUNCATE ... RESTART IDENTITY`.
const TRUNCATE_RESTART_IDENTITY: u8 = 2;
/// Message flag bit: the logical decoding message is transactional.
const MESSAGE_TRANSACTIONAL: u8 = 1;

/// Parses one complete pgoutput message; the payload must hold exactly one.
pub fn parse(data: Bytes) -> Result<LogicalMessage, DecodeError> {
    parse_inner(data, false).map(|(_, message)| message)
}

/// Parses a message sent inside a stream block (protocol version 2), where
/// relation, type, row, truncate and message messages carry the xid of their
/// (sub)transaction after the tag; other messages have none (`None`).
pub fn parse_streamed(data: Bytes) -> Result<(Option<u32>, LogicalMessage), DecodeError> {
    parse_inner(data, true)
}

fn parse_inner(data: Bytes, streamed: bool) -> Result<(Option<u32>, LogicalMessage), DecodeError> {
    let Some(&tag) = data.first() else {
        return Err(DecodeError {
            kind: MessageKind::Empty,
            offset: 0,
            reason: "the payload is empty".to_owned(),
        });
    };
    let kind = MessageKind::from_tag(tag);
    let mut r = Reader::new(&data, 1, kind);
    let carries_xid = matches!(
        kind,
        MessageKind::Relation
            | MessageKind::Type
            | MessageKind::Insert
            | MessageKind::Update
            | MessageKind::Delete
            | MessageKind::Truncate
            | MessageKind::Message
    );
    let xid = if streamed && carries_xid {
        Some(r.u32("xid")?)
    } else {
        None
    };
    let message = match kind {
        MessageKind::Begin => LogicalMessage::Begin(Begin {
            final_lsn: r.lsn("final LSN")?,
            commit_ts: r.i64("commit timestamp")?,
            xid: r.u32("xid")?,
        }),
        MessageKind::Commit => LogicalMessage::Commit(Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_ts: r.i64("commit timestamp")?,
        }),
        MessageKind::Origin => LogicalMessage::Origin(Origin {
            commit_lsn: r.lsn("origin commit LSN")?,
            name: r.cstr("origin name")?,
        }),
        MessageKind::Relation => LogicalMessage::Relation(relation(&mut r)?),
        MessageKind::Type => LogicalMessage::Type(TypeInfo {
            type_oid: r.u32("type OID")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        }),
        MessageKind::Insert => {
            let relation_id = r.u32("relation id")?;
            expect_new_marker(&mut r)?;
            LogicalMessage::Insert(Insert {
                relation_id,
                new: tuple(&mut r)?,
            })
        }
        MessageKind::Update => LogicalMessage::Update(update(&mut r)?),
        MessageKind::Delete => {
            let relation_id = r.u32("relation id")?;
            let at = r.pos();
            let old = match old_kind(r.u8("old tuple marker")?) {
                Some(kind) => OldTuple {
                    kind,
                    tuple: tuple(&mut r)?,
                },
                None => return Err(r.error_at(at, "expected old tuple marker 'K' or 'O'")),
            };
            LogicalMessage::Delete(Delete { relation_id, old })
        }
        MessageKind::Truncate => LogicalMessage::Truncate(truncate(&mut r)?),
        MessageKind::Message => LogicalMessage::Message(message(&mut r)?),
        MessageKind::StreamStart => LogicalMessage::StreamStart(StreamStart {
            xid: r.u32("xid")?,
            first_segment: r.u8("first segment")? == 1,
        }),
        MessageKind::StreamStop => LogicalMessage::StreamStop,
        MessageKind::StreamCommit => LogicalMessage::StreamCommit(StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_ts: r.i64("commit timestamp")?,
        }),
        MessageKind::StreamAbort => LogicalMessage::StreamAbort(StreamAbort {
            xid: r.u32("xid")?,
            subxid: r.u32("subtransaction xid")?,
        }),
        MessageKind::Unknown(_) | MessageKind::Empty => {
            return Err(r.error_at(0, "not a pgoutput protocol version 1 or 2 message tag"));
        }
    };
    r.finish()?;
    Ok((xid, message))
}

fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let relation_id = r.u32("relation id")?;
    let namespace = r.cstr("namespace")?;
    let name = r.cstr("relation name")?;
    let at = r.pos();
    let identity = r.u8("replica identity")?;
    let replica_identity = ReplicaIdentity::from_byte(identity).ok_or_else(|| {
        r.error_at(
            at,
            format!("replica identity {identity:#04x} is none of d, n, f, i"),
        )
    })?;
    let count = r.count16("column count")?;
    // flags + NUL + type OID + typmod: 10 bytes at least per column.
    let mut columns = Vec::with_capacity(r.capacity_for(count, 10));
    for _ in 0..count {
        columns.push(RelationColumn {
            flags: r.u8("column flags")?,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        relation_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn update(r: &mut Reader<'_>) -> Result<Update, DecodeError> {
    let relation_id = r.u32("relation id")?;
    let at = r.pos();
    let marker = r.u8("tuple marker")?;
    let old = match (marker, old_kind(marker)) {
        (b'N', _) => None,
        (_, Some(kind)) => {
            let tuple = tuple(r)?;
            expect_new_marker(r)?;
            Some(OldTuple { kind, tuple })
        }
        (_, None) => return Err(r.error_at(at, "expected tuple marker 'K', 'O' or 'N'")),
    };
    Ok(Update {
        relation_id,
        old,
        new: tuple(r)?,
    })
}

fn truncate(r: &mut Reader<'_>) -> Result<Truncate, DecodeError> {
    let count = r.count32("relation count")?;
    let options = r.u8("options")?;
    let mut relation_ids = Vec::with_capacity(r.capacity_for(count, 4));
    for _ in 0..count {
        relation_ids.push(r.u32("relation id")?);
    }
    Ok(Truncate {
        cascade: options & TRUNCATE_CASCADE != 0,
        restart_identity: options & TRUNCATE_RESTART_IDENTITY != 0,
        relation_ids,
    })
}

fn message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let flags = r.u8("flags")?;
    let lsn = r.lsn("message LSN")?;
    let prefix = r.cstr("prefix")?;
    let len = r.count32("content length")?;
    Ok(Message {
        transactional: flags & MESSAGE_TRANSACTIONAL != 0,
        lsn,
        prefix,
        content: r.bytes(len, "content")?,
    })
}

fn old_kind(marker: u8) -> Option<OldKind> {
    match marker {
        b'K' => Some(OldKind::Key),
        b'O' => Some(OldKind::Full),
        _ => None,
    }
}

fn expect_new_marker(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let at = r.pos();
    match r.u8("new tuple marker")? {
        b'N' => Ok(()),
        other => Err(r.error_at(
            at,
            format!("expected new tuple marker 'N', found {other:#04x}"),
        )),
    }
}

/// A TupleData part: column count, then one value per column.
fn tuple(r: &mut Reader<'_>) -> Result<Tuple, DecodeError> {
    let count = r.count16("tuple column count")?;
    let mut values = Vec::with_capacity(r.capacity_for(count, 1));
    for _ in 0..count {
        let at = r.pos();
        let value = match r.u8("column value kind")? {
            b'n' => TupleValue::Null,
            b'u' => TupleValue::UnchangedToast,
            b't' => {
                let len = r.count32("column value length")?;
                TupleValue::Text(r.bytes(len, "column value")?)
            }
            // Binary values only appear when the subscriber asks for them
            // (`binary 'true'`); this decoder keeps the text format throughout.
            b'b' => return Err(r.error_at(at, "binary column values are not supported")),
            other => return Err(r.error_at(at, format!("unknown column value kind {other:#04x}"))),
        };
        values.push(value);
    }
    Ok(values)
}
