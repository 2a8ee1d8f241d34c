//! The pgoutput logical replication messages (protocol version 1, and the
//! streaming messages of version 2) and logical decoding messages, as parsed
//! from one XLogData payload.
//!
//! Reference: "Logical Replication Message Formats" in the PostgreSQL docs.
//! Column values borrow the received buffer (`Bytes`), so a row is never copied.

use bytes::Bytes;

use crate::lsn::Lsn;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum LogicalMessage {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(TypeInfo),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Message(Message),
    /// Version 2: a block of an in-progress transaction's changes starts.
    StreamStart(StreamStart),
    /// Version 2: the block ends.
    StreamStop,
    /// Version 2: a streamed transaction committed.
    StreamCommit(StreamCommit),
    /// Version 2: a streamed transaction (`xid == subxid`) or one of its subtransactions aborted.
    StreamAbort(StreamAbort),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    pub xid: u32,
    pub first_segment: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamCommit {
    pub xid: u32,
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_ts: PgTimestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamAbort {
    pub xid: u32,
    pub subxid: u32,
}

impl LogicalMessage {
    /// The message kind as the protocol names it (`Begin`, `Insert`, ...).
    pub fn kind(&self) -> MessageKind {
        match self {
            LogicalMessage::Begin(_) => MessageKind::Begin,
            LogicalMessage::Commit(_) => MessageKind::Commit,
            LogicalMessage::Origin(_) => MessageKind::Origin,
            LogicalMessage::Relation(_) => MessageKind::Relation,
            LogicalMessage::Type(_) => MessageKind::Type,
            LogicalMessage::Insert(_) => MessageKind::Insert,
            LogicalMessage::Update(_) => MessageKind::Update,
            LogicalMessage::Delete(_) => MessageKind::Delete,
            LogicalMessage::Truncate(_) => MessageKind::Truncate,
            LogicalMessage::Message(_) => MessageKind::Message,
            LogicalMessage::StreamStart(_) => MessageKind::StreamStart,
            LogicalMessage::StreamStop => MessageKind::StreamStop,
            LogicalMessage::StreamCommit(_) => MessageKind::StreamCommit,
            LogicalMessage::StreamAbort(_) => MessageKind::StreamAbort,
        }
    }
}

/// The kind of a message, known from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Begin,
    Commit,
    Origin,
    Relation,
    Type,
    Insert,
    Update,
    Delete,
    Truncate,
    Message,
    StreamStart,
    StreamStop,
    StreamCommit,
    StreamAbort,
    /// A tag byte this decoder does not know.
    Unknown(u8),
    /// An empty payload: there is no tag byte at all.
    Empty,
}

impl MessageKind {
    /// The kind named by a tag byte.
    pub fn from_tag(tag: u8) -> MessageKind {
        match tag {
            b'B' => MessageKind::Begin,
            b'C' => MessageKind::Commit,
            b'O' => MessageKind::Origin,
            b'R' => MessageKind::Relation,
            b'Y' => MessageKind::Type,
            b'I' => MessageKind::Insert,
            b'U' => MessageKind::Update,
            b'D' => MessageKind::Delete,
            b'T' => MessageKind::Truncate,
            b'M' => MessageKind::Message,
            b'S' => MessageKind::StreamStart,
            b'E' => MessageKind::StreamStop,
            b'c' => MessageKind::StreamCommit,
            b'A' => MessageKind::StreamAbort,
            other => MessageKind::Unknown(other),
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageKind::Unknown(tag) if tag.is_ascii_graphic() => {
                write!(f, "unknown message '{}'", *tag as char)
            }
            MessageKind::Unknown(tag) => write!(f, "unknown message 0x{tag:02x}"),
            MessageKind::Empty => f.write_str("empty message"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Microseconds since 2000-01-01 00:00:00 UTC, the Postgres epoch.
pub type PgTimestamp = i64;

#[derive(Debug, Clone, PartialEq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    pub commit_ts: PgTimestamp,
    pub xid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record: the position to confirm once the transaction is durable.
    pub end_lsn: Lsn,
    pub commit_ts: PgTimestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub commit_lsn: Lsn,
    pub name: String,
}

/// Replica identity setting of a relation (`relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: no identity.
    Nothing,
    /// `f`: the whole row.
    Full,
    /// `i`: a unique index.
    Index,
}

impl ReplicaIdentity {
    /// The identity named by `relreplident`, if it is one of the four.
    pub fn from_byte(b: u8) -> Option<ReplicaIdentity> {
        match b {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }

    /// Lower-case name used in JSON (`default`, `nothing`, `full`, `index`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaIdentity::Default => "default",
            ReplicaIdentity::Nothing => "nothing",
            ReplicaIdentity::Full => "full",
            ReplicaIdentity::Index => "index",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub relation_id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Bit 1 set: the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn {
    pub fn is_key(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// A `Type` message: names a non-built-in data type used by a following Relation.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    pub type_oid: u32,
    pub namespace: String,
    pub name: String,
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that the server did not send.
    UnchangedToast,
    /// `t`: the value in the type's text output format.
    Text(Bytes),
}

/// The column values of a row, in relation column order.
pub type Tuple = Vec<TupleValue>;

/// Which old row image an Update or Delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// `K`: only the replica identity key columns are set (others are null).
    Key,
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OldTuple {
    pub kind: OldKind,
    pub tuple: Tuple,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub relation_id: u32,
    pub new: Tuple,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub relation_id: u32,
    pub old: Option<OldTuple>,
    pub new: Tuple,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub relation_id: u32,
    pub old: OldTuple,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Truncate {
    pub cascade: bool,
    pub restart_identity: bool,
    pub relation_ids: Vec<u32>,
}

/// A logical decoding message written with `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub transactional: bool,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Bytes,
}
