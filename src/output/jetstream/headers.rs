//! Message headers, above all `Nats-Msg-Id`: stable for the same event across
//! restarts and replays, unique per event.
//!
//! Ids are `<slot>:<commit_lsn>:<n>`, n counting the transaction's events from
//! its begin (0) without relation events: the server sends a relation event
//! only before a table's first change in a session (and again after the
//! table's definition was invalidated), so after a restart the same
//! transaction may carry relation events at other places. A relation event is
//! named after the event it precedes: `<slot>:<commit_lsn>:<n>r<relation id>`
//! where n is the next event's number, so a replay that describes a table at
//! the same place gets the same id, and one that describes it at another place
//! (e.g. before its first change, as in every new session) a new one.
//! Non-transactional messages get `<slot>:<lsn>:m`.

use std::sync::Arc;

use async_nats::header::{HeaderName, NATS_MESSAGE_ID};
use async_nats::HeaderMap;

use super::subject::push_token;
use crate::change::json::{write_lsn, write_uint};
use crate::change::{time, Change, Table, TxInfo};
use crate::lsn::Lsn;

const PG_OP: HeaderName = HeaderName::from_static("Pg-Op");
const PG_SCHEMA: HeaderName = HeaderName::from_static("Pg-Schema");
const PG_TABLE: HeaderName = HeaderName::from_static("Pg-Table");
const PG_LSN: HeaderName = HeaderName::from_static("Pg-Lsn");
const PG_COMMIT_LSN: HeaderName = HeaderName::from_static("Pg-Commit-Lsn");
const PG_XID: HeaderName = HeaderName::from_static("Pg-Xid");
const PG_COMMIT_TS: HeaderName = HeaderName::from_static("Pg-Commit-Ts");

/// Numbers the events of the current transaction.
#[derive(Debug)]
pub struct MessageIds {
    slot: String,
    current: Option<TxInfo>,
    next_index: u32,
    /// Header tokens of the table of the previous event: rows of one table
    /// usually follow each other, so they are encoded once, not per event.
    last_table: Option<Arc<TableTokens>>,
}

/// A table's schema and name as they were and as header tokens.
#[derive(Debug)]
struct TableTokens {
    schema: String,
    name: String,
    schema_token: String,
    name_token: String,
}

/// What an event's headers are made of, kept (instead of a `HeaderMap`) with
/// each event awaiting its ack: the headers are built from it whenever the
/// event is published, the first time and on every retry, identically.
#[derive(Debug, Clone)]
pub struct HeaderFields {
    id: String,
    op: &'static str,
    table: Option<Arc<TableTokens>>,
    lsn: Option<Lsn>,
    tx: Option<TxInfo>,
}

impl HeaderFields {
    /// The message headers: `Nats-Msg-Id` and the `Pg-*` headers.
    pub fn to_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, self.id.as_str());
        headers.insert(PG_OP, self.op);
        if let Some(table) = &self.table {
            headers.insert(PG_SCHEMA, table.schema_token.as_str());
            headers.insert(PG_TABLE, table.name_token.as_str());
        }
        let mut buf = Vec::with_capacity(32);
        let mut text = |write: &dyn Fn(&mut Vec<u8>)| {
            buf.clear();
            write(&mut buf);
            // Only ASCII digits, letters and punctuation are ever written.
            String::from_utf8_lossy(&buf).into_owned()
        };
        if let Some(lsn) = self.lsn {
            headers.insert(PG_LSN, text(&|b| write_lsn(lsn, b)));
        }
        if let Some(tx) = self.tx {
            headers.insert(PG_COMMIT_LSN, text(&|b| write_lsn(tx.commit_lsn, b)));
            headers.insert(PG_XID, text(&|b| write_uint(u64::from(tx.xid), b)));
            headers.insert(
                PG_COMMIT_TS,
                text(&|b| time::write_rfc3339(tx.commit_ts, b)),
            );
        }
        headers
    }
}

impl MessageIds {
    pub fn new(slot: &str) -> Self {
        MessageIds {
            slot: slot.to_owned(),
            current: None,
            next_index: 0,
            last_table: None,
        }
    }

    /// The headers of `change`, which must be the next event of the stream.
    #[cfg(test)]
    pub fn headers(&mut self, change: &Change) -> HeaderMap {
        self.fields(change).to_headers()
    }

    /// What the headers of `change` are made of; `change` must be the next event of the stream.
    pub fn fields(&mut self, change: &Change) -> HeaderFields {
        HeaderFields {
            id: self.next_id(change),
            op: change.op(),
            table: change.table().map(|table| self.tokens(table)),
            lsn: event_lsn(change),
            tx: tx_of(change).copied(),
        }
    }

    fn tokens(&mut self, table: &Table) -> Arc<TableTokens> {
        match &self.last_table {
            Some(last) if last.schema == table.schema && last.name == table.name => last.clone(),
            _ => {
                let tokens = Arc::new(TableTokens {
                    schema: table.schema.clone(),
                    name: table.name.clone(),
                    schema_token: token(&table.schema),
                    name_token: token(&table.name),
                });
                self.last_table = Some(tokens.clone());
                tokens
            }
        }
    }

    fn next_id(&mut self, change: &Change) -> String {
        match change {
            Change::Relation(table) => {
                let commit_lsn = self.current.map_or(Lsn::ZERO, |tx| tx.commit_lsn);
                format!(
                    "{}:{commit_lsn}:{}r{}",
                    self.slot, self.next_index, table.relation_id
                )
            }
            Change::Message {
                transactional: false,
                lsn,
                ..
            } => format!("{}:{lsn}:m", self.slot),
            _ => {
                match change {
                    Change::Begin(tx) => {
                        self.current = Some(*tx);
                        self.next_index = 0;
                    }
                    Change::Commit { .. } => self.current = None,
                    _ => {}
                }
                let index = self.next_index;
                self.next_index += 1;
                let commit_lsn = tx_of(change).map_or(Lsn::ZERO, |tx| tx.commit_lsn);
                format!("{}:{commit_lsn}:{index}", self.slot)
            }
        }
    }
}

/// Header values must be one line: names use the subject token encoding.
fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_token(&mut out, name);
    out
}

/// The WAL position of the event itself.
pub fn event_lsn(change: &Change) -> Option<Lsn> {
    match change {
        Change::Begin(tx) => Some(tx.commit_lsn),
        Change::Commit { end_lsn, .. } => Some(*end_lsn),
        Change::Insert(row) | Change::Update(row) | Change::Delete(row) => Some(row.lsn),
        Change::Truncate { lsn, .. } | Change::Message { lsn, .. } => Some(*lsn),
        Change::Relation(_) => None,
    }
}

fn tx_of(change: &Change) -> Option<&TxInfo> {
    match change {
        Change::Begin(tx) | Change::Commit { tx, .. } | Change::Truncate { tx, .. } => Some(tx),
        Change::Insert(row) | Change::Update(row) | Change::Delete(row) => Some(&row.tx),
        Change::Message { tx, .. } => tx.as_ref(),
        Change::Relation(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::sample::{customers, row, tx};

    fn id(ids: &mut MessageIds, change: &Change) -> String {
        let headers = ids.headers(change);
        let value = headers.get(async_nats::header::NATS_MESSAGE_ID);
        value.map(|v| v.as_str().to_owned()).unwrap_or_default()
    }

    #[test]
    fn ids_number_events_within_the_transaction_without_relation_events() {
        let mut ids = MessageIds::new("shop");
        let commit = Change::Commit {
            tx: tx(),
            end_lsn: Lsn(0x16B_3778),
        };
        let sequence = [
            Change::Begin(tx()),
            Change::Relation(customers()),
            Change::Insert(row(None, None)),
            Change::Relation(customers()),
            Change::Delete(row(None, None)),
            commit,
        ];
        let got: Vec<String> = sequence.iter().map(|c| id(&mut ids, c)).collect();
        assert_eq!(
            got,
            [
                "shop:0/16B3748:0",
                "shop:0/16B3748:1r16384",
                "shop:0/16B3748:1",
                "shop:0/16B3748:2r16384",
                "shop:0/16B3748:2",
                "shop:0/16B3748:3",
            ]
        );
        // The same transaction again (a replay) gets the same ids, even without its relation events.
        let replay: Vec<String> = [&sequence[0], &sequence[2], &sequence[4], &sequence[5]]
            .into_iter()
            .map(|c| id(&mut ids, c))
            .collect();
        assert_eq!(
            replay,
            [
                "shop:0/16B3748:0",
                "shop:0/16B3748:1",
                "shop:0/16B3748:2",
                "shop:0/16B3748:3"
            ]
        );
    }

    #[test]
    fn headers_describe_the_event() {
        let mut ids = MessageIds::new("shop");
        ids.headers(&Change::Begin(tx()));
        let headers = ids.headers(&Change::Insert(row(None, None)));
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(get("Pg-Op").as_deref(), Some("insert"));
        assert_eq!(get("Pg-Schema").as_deref(), Some("public"));
        assert_eq!(get("Pg-Table").as_deref(), Some("customers"));
        assert_eq!(get("Pg-Lsn").as_deref(), Some("0/16B3700"));
        assert_eq!(get("Pg-Commit-Lsn").as_deref(), Some("0/16B3748"));
        assert_eq!(get("Pg-Xid").as_deref(), Some("734"));
        assert_eq!(
            get("Pg-Commit-Ts").as_deref(),
            Some("2024-02-29T13:14:15.123456Z")
        );
    }
}
