//! The event model: a [`Change`] is one thing that happened in the database,
//! in commit order, ready to be encoded for an output target.
//!
//! Rows keep the column values exactly as the server sent them (text format,
//! borrowed from the received buffer); they are mapped to JSON types only when
//! encoded, so a change that no target wants costs nothing.

pub mod debezium;
pub mod json;
#[cfg(test)]
pub(crate) mod sample;
pub mod text;
pub mod time;
pub mod value;

use std::sync::Arc;

use bytes::Bytes;

use crate::lsn::Lsn;
use crate::pgoutput::message::{OldTuple, PgTimestamp, ReplicaIdentity, Tuple};

/// How events become payloads: the compact JSON lines of stdout and the
/// JetStream messages.
#[derive(Debug)]
pub enum PayloadEncoder {
    /// This program's own JSON ([`json::write_json`], docs/events.md).
    Native,
    /// The Debezium envelope ([`debezium`], docs/formats.md).
    Debezium(debezium::DebeziumEncoder),
}

impl PayloadEncoder {
    /// Append the payload of `change`; false when the format has no form for it.
    pub fn write(&mut self, change: &Change, out: &mut Vec<u8>) -> bool {
        match self {
            PayloadEncoder::Native => {
                json::write_json(change, out);
                true
            }
            PayloadEncoder::Debezium(encoder) => encoder.write(change, out),
        }
    }
}

/// A table as last described by the server, shared by every row change of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub relation_id: u32,
    pub schema: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<Column>,
    /// The key columns identify a row: the whole primary key or replica
    /// identity index is among the columns. Known only when the snapshot
    /// describes the table from the catalog (a relation message does not say;
    /// false there); snapshot rows are then named by their key.
    pub key_identifies_row: bool,
}

/// A column of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// The type's name as in `pg_type.typname` (`int4`, `_text`, `my_enum`), or its OID as text when unknown.
    pub type_name: String,
    pub type_oid: u32,
    /// Part of the replica identity key.
    pub key: bool,
}

/// The transaction a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxInfo {
    pub xid: u32,
    /// LSN of the transaction's commit record.
    pub commit_lsn: Lsn,
    pub commit_ts: PgTimestamp,
}

/// An insert, update or delete of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: Arc<Table>,
    /// LSN of the change's WAL record.
    pub lsn: Lsn,
    pub tx: TxInfo,
    /// The new row (insert, update); unchanged TOAST columns are marked as such.
    pub new: Option<Tuple>,
    /// The old row or its key (update under a changed key or REPLICA IDENTITY FULL, delete).
    pub old: Option<OldTuple>,
}

/// One event of the change stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Begin(TxInfo),
    Commit {
        tx: TxInfo,
        /// LSN just past the commit record: confirming it acknowledges the whole transaction.
        end_lsn: Lsn,
    },
    /// A table's description, sent before its first change in a session and after each schema change.
    Relation(Arc<Table>),
    Insert(RowChange),
    /// A row as the initial snapshot read it (`--snapshot initial`): `lsn` and
    /// `tx.commit_lsn` are the slot's consistent point, `tx.commit_ts` the
    /// time the snapshot was taken, `tx.xid` 0.
    Read(RowChange),
    Update(RowChange),
    Delete(RowChange),
    /// One event per truncated table.
    Truncate {
        table: Arc<Table>,
        lsn: Lsn,
        tx: TxInfo,
        cascade: bool,
        restart_identity: bool,
    },
    /// A logical decoding message (`pg_logical_emit_message`).
    Message {
        prefix: String,
        content: Bytes,
        transactional: bool,
        lsn: Lsn,
        /// The enclosing transaction, for transactional messages.
        tx: Option<TxInfo>,
    },
}

impl Change {
    /// The `op` field of the event's JSON.
    pub fn op(&self) -> &'static str {
        match self {
            Change::Begin(_) => "begin",
            Change::Commit { .. } => "commit",
            Change::Relation(_) => "relation",
            Change::Insert(_) => "insert",
            Change::Read(_) => "read",
            Change::Update(_) => "update",
            Change::Delete(_) => "delete",
            Change::Truncate { .. } => "truncate",
            Change::Message { .. } => "message",
        }
    }

    /// The table the event is about, if any.
    pub fn table(&self) -> Option<&Table> {
        match self {
            Change::Relation(t) | Change::Truncate { table: t, .. } => Some(t),
            Change::Insert(r) | Change::Read(r) | Change::Update(r) | Change::Delete(r) => {
                Some(&r.table)
            }
            _ => None,
        }
    }
}
