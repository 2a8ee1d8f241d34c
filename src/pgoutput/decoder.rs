//! The decoder: turns each XLogData payload into [`Change`] events, keeping
//! the state the protocol spreads across messages (the open transaction and
//! the relation cache) and checking the message order the protocol promises.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;

use crate::change::{Change, RowChange, Table, TxInfo};
use crate::lsn::Lsn;
use crate::pgoutput::message::{LogicalMessage, MessageKind, OldTuple, Tuple};
use crate::pgoutput::parse::{parse, parse_streamed, DecodeError};
use crate::pgoutput::relation::RelationCache;
use crate::pgoutput::streams::{Buffered, Replay, StreamBuffers};

/// Memory for streamed in-progress transactions unless configured otherwise.
const DEFAULT_STREAM_MEMORY: usize = 64 << 20;

/// Decodes a replication session's payloads, in the order the server sent them.
pub struct Decoder {
    relations: RelationCache,
    /// The transaction between its Begin and Commit, if one is open.
    tx: Option<TxInfo>,
    /// Streamed in-progress transactions (protocol version 2).
    streams: StreamBuffers,
    /// The transaction whose stream block is open (between Stream Start and Stop).
    in_stream: Option<u32>,
    /// A committed streamed transaction being handed out, and its end LSN.
    replay: Option<(Replay, Lsn)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_STREAM_MEMORY)
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("tx", &self.tx)
            .field("in_stream", &self.in_stream)
            .field("replaying", &self.replay.is_some())
            .finish_non_exhaustive()
    }
}

/// A payload that could not be turned into events; the stream cannot safely go on.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {kind} message at LSN {lsn}: {cause}")]
pub struct DecoderError {
    /// The WAL position the payload was received at.
    pub lsn: Lsn,
    /// The kind of the offending message.
    pub kind: MessageKind,
    /// What was wrong.
    pub cause: DecoderErrorCause,
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecoderErrorCause {
    /// The bytes are not a well-formed message.
    #[error("{0}")]
    Malformed(DecodeError),
    /// A change names a relation no Relation message described in this session.
    #[error("relation {0} was not described by an earlier Relation message")]
    UnknownRelation(u32),
    /// A change (or transactional message) arrived with no transaction open.
    #[error("no transaction is open (no Begin received)")]
    OutsideTransaction,
    /// A Begin arrived while another transaction was still open.
    #[error("transaction {open_xid} is still open (its Commit is missing)")]
    NestedBegin {
        /// Xid of the transaction still open.
        open_xid: u32,
    },
    /// A tuple's column count differs from its table's description.
    #[error("tuple has {got} columns but the table's Relation message described {expected}")]
    ColumnCount {
        /// Columns in the cached table.
        expected: usize,
        /// Columns in the tuple.
        got: usize,
    },
    /// A streaming message arrived out of order (a stream inside a transaction, a Stop without Start, ...).
    #[error("{0}")]
    StreamOrder(&'static str),
    /// A streamed transaction's spill file could not be written or read.
    #[error("streamed transaction spill file: {0}")]
    Spill(String),
    /// A Commit's LSN differs from the final LSN its Begin announced.
    #[error("Commit is for LSN {commit} but the open transaction's Begin announced {begin}")]
    CommitMismatch {
        /// Final LSN from the Begin.
        begin: Lsn,
        /// Commit LSN from the Commit.
        commit: Lsn,
    },
}

impl Decoder {
    /// A decoder keeping at most about `stream_memory` bytes of streamed
    /// in-progress transactions in memory (the rest in temporary files).
    pub fn new(stream_memory: usize) -> Self {
        Decoder {
            relations: RelationCache::default(),
            tx: None,
            streams: StreamBuffers::new(stream_memory),
            in_stream: None,
            replay: None,
        }
    }

    /// Decode one XLogData payload received at WAL position `lsn`, appending events to `out`.
    /// After a streamed transaction's commit, [`replay`](Self::replay) hands out its events.
    ///
    /// On error nothing is appended and the decoder's state is unchanged.
    pub fn decode(
        &mut self,
        lsn: Lsn,
        data: Bytes,
        out: &mut Vec<Change>,
    ) -> Result<(), DecoderError> {
        if let Some(xid) = self.in_stream {
            return self.buffer(xid, lsn, data);
        }
        let message = parse(data).map_err(malformed(lsn))?;
        self.apply_at(lsn, message, out)
    }

    fn apply_at(
        &mut self,
        lsn: Lsn,
        message: LogicalMessage,
        out: &mut Vec<Change>,
    ) -> Result<(), DecoderError> {
        let kind = message.kind();
        self.apply(lsn, message, out)
            .map_err(|cause| DecoderError { lsn, kind, cause })
    }

    /// Keep a message of the open stream block until its transaction ends.
    fn buffer(&mut self, xid: u32, lsn: Lsn, data: Bytes) -> Result<(), DecoderError> {
        let (subxid, message) = parse_streamed(data.clone()).map_err(malformed(lsn))?;
        let kind = message.kind();
        let error = |cause| DecoderError { lsn, kind, cause };
        match (message, subxid) {
            (LogicalMessage::StreamStop, _) => self.in_stream = None,
            (_, Some(subxid)) => self
                .streams
                .push(xid, Buffered { lsn, subxid, data })
                .map_err(|e| error(DecoderErrorCause::Spill(e.to_string())))?,
            // Replication origins carry nothing a consumer needs.
            (LogicalMessage::Origin(_), None) => {}
            (_, None) => {
                return Err(error(DecoderErrorCause::StreamOrder(
                    "a message that belongs to no transaction arrived inside a stream block",
                )))
            }
        }
        Ok(())
    }

    /// Whether a committed streamed transaction is being handed out.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// Append up to `max` more events of the committed streamed transaction,
    /// and its Commit after the last one.
    pub fn replay(&mut self, max: usize, out: &mut Vec<Change>) -> Result<(), DecoderError> {
        for _ in 0..max {
            let Some((replay, end_lsn)) = self.replay.as_mut() else {
                return Ok(());
            };
            let end_lsn = *end_lsn;
            let spill_error = |e: std::io::Error| DecoderError {
                lsn: end_lsn,
                kind: MessageKind::StreamCommit,
                cause: DecoderErrorCause::Spill(e.to_string()),
            };
            match replay.next_message().map_err(spill_error)? {
                Some(Buffered { lsn, data, .. }) => {
                    let (_, message) = parse_streamed(data).map_err(malformed(lsn))?;
                    self.apply_at(lsn, message, out)?;
                }
                None => {
                    self.replay = None;
                    if let Some(tx) = self.tx.take() {
                        out.push(Change::Commit { tx, end_lsn });
                    }
                }
            }
        }
        Ok(())
    }

    /// The relations described so far.
    pub fn relations(&self) -> &RelationCache {
        &self.relations
    }

    /// Whether a Begin was received whose Commit was not yet.
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    fn apply(
        &mut self,
        lsn: Lsn,
        message: LogicalMessage,
        out: &mut Vec<Change>,
    ) -> Result<(), DecoderErrorCause> {
        match message {
            LogicalMessage::Begin(begin) => {
                if let Some(open) = self.tx {
                    return Err(DecoderErrorCause::NestedBegin { open_xid: open.xid });
                }
                let tx = TxInfo {
                    xid: begin.xid,
                    commit_lsn: begin.final_lsn,
                    commit_ts: begin.commit_ts,
                };
                self.tx = Some(tx);
                out.push(Change::Begin(tx));
            }
            LogicalMessage::Commit(commit) => {
                let tx = self.tx()?;
                if commit.commit_lsn != tx.commit_lsn {
                    return Err(DecoderErrorCause::CommitMismatch {
                        begin: tx.commit_lsn,
                        commit: commit.commit_lsn,
                    });
                }
                self.tx = None;
                out.push(Change::Commit {
                    tx,
                    end_lsn: commit.end_lsn,
                });
            }
            // Replication origins matter only to multi-master setups; the
            // changes that follow carry everything a consumer needs.
            LogicalMessage::Origin(_) => {}
            LogicalMessage::Relation(relation) => {
                out.push(Change::Relation(self.relations.update(relation)));
            }
            LogicalMessage::Type(ty) => self.relations.record_type(ty),
            LogicalMessage::Insert(insert) => {
                let (tx, table) = self.row_target(insert.relation_id)?;
                check_columns(&table, &insert.new)?;
                out.push(Change::Insert(RowChange {
                    table,
                    lsn,
                    tx,
                    new: Some(insert.new),
                    old: None,
                }));
            }
            LogicalMessage::Update(update) => {
                let (tx, table) = self.row_target(update.relation_id)?;
                check_old(&table, update.old.as_ref())?;
                check_columns(&table, &update.new)?;
                out.push(Change::Update(RowChange {
                    table,
                    lsn,
                    tx,
                    new: Some(update.new),
                    old: update.old,
                }));
            }
            LogicalMessage::Delete(delete) => {
                let (tx, table) = self.row_target(delete.relation_id)?;
                check_old(&table, Some(&delete.old))?;
                out.push(Change::Delete(RowChange {
                    table,
                    lsn,
                    tx,
                    new: None,
                    old: Some(delete.old),
                }));
            }
            LogicalMessage::Truncate(truncate) => {
                let tx = self.tx()?;
                // Resolve every table first so an unknown id appends nothing.
                let tables = truncate
                    .relation_ids
                    .iter()
                    .map(|&id| self.table(id))
                    .collect::<Result<Vec<_>, _>>()?;
                out.extend(tables.into_iter().map(|table| Change::Truncate {
                    table,
                    lsn,
                    tx,
                    cascade: truncate.cascade,
                    restart_identity: truncate.restart_identity,
                }));
            }
            LogicalMessage::StreamStart(start) => {
                if self.tx.is_some() {
                    return Err(DecoderErrorCause::StreamOrder(
                        "Stream Start arrived inside a transaction",
                    ));
                }
                self.in_stream = Some(start.xid);
            }
            LogicalMessage::StreamStop => {
                return Err(DecoderErrorCause::StreamOrder(
                    "Stream Stop arrived with no stream block open",
                ))
            }
            LogicalMessage::StreamCommit(commit) => {
                if let Some(open) = self.tx {
                    return Err(DecoderErrorCause::NestedBegin { open_xid: open.xid });
                }
                let replay = self
                    .streams
                    .commit(commit.xid)
                    .map_err(|e| DecoderErrorCause::Spill(e.to_string()))?;
                let tx = TxInfo {
                    xid: commit.xid,
                    commit_lsn: commit.commit_lsn,
                    commit_ts: commit.commit_ts,
                };
                self.tx = Some(tx);
                self.replay = Some((replay, commit.end_lsn));
                out.push(Change::Begin(tx));
            }
            LogicalMessage::StreamAbort(abort) => self.streams.abort(abort.xid, abort.subxid),
            LogicalMessage::Message(message) => {
                let tx = if message.transactional {
                    Some(self.tx()?)
                } else {
                    None
                };
                out.push(Change::Message {
                    prefix: message.prefix,
                    content: message.content,
                    transactional: message.transactional,
                    lsn: message.lsn,
                    tx,
                });
            }
        }
        Ok(())
    }

    fn tx(&self) -> Result<TxInfo, DecoderErrorCause> {
        self.tx.ok_or(DecoderErrorCause::OutsideTransaction)
    }

    fn table(&self, relation_id: u32) -> Result<Arc<Table>, DecoderErrorCause> {
        self.relations
            .get(relation_id)
            .cloned()
            .ok_or(DecoderErrorCause::UnknownRelation(relation_id))
    }

    /// The open transaction and the cached table a row change applies to.
    fn row_target(&self, relation_id: u32) -> Result<(TxInfo, Arc<Table>), DecoderErrorCause> {
        Ok((self.tx()?, self.table(relation_id)?))
    }
}

fn malformed(lsn: Lsn) -> impl FnOnce(DecodeError) -> DecoderError {
    move |e| DecoderError {
        lsn,
        kind: e.kind,
        cause: DecoderErrorCause::Malformed(e),
    }
}

/// Consumers index row values by the table's columns, so the counts must agree.
fn check_columns(table: &Table, tuple: &Tuple) -> Result<(), DecoderErrorCause> {
    if tuple.len() == table.columns.len() {
        Ok(())
    } else {
        Err(DecoderErrorCause::ColumnCount {
            expected: table.columns.len(),
            got: tuple.len(),
        })
    }
}

fn check_old(table: &Table, old: Option<&OldTuple>) -> Result<(), DecoderErrorCause> {
    old.map_or(Ok(()), |old| check_columns(table, &old.tuple))
}
