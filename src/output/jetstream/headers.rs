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
//!
//! Snapshot rows get `<slot>:<consistent_point>:s<relation id>:<row>`, where
//! the row is named by its key (`k…` or `h…`) when the table's key identifies
//! a row: a resumed snapshot reads the table again from a newer snapshot, in
//! which rows may have moved, gone or come, and a row gets the same id in each
//! read. Without such a key it is `t<when the read began>:<n>`: the n-th row of
//! that read, so a resume publishes the table again (duplicates, never a row
//! taken for another one).

use std::sync::Arc;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::HeaderMap;
use sha2::{Digest, Sha256};

use super::subject::TableTokens;
use crate::change::json::{into_string, write_lsn, write_uint};
use crate::change::{time, Change, RowChange, TxInfo};
use crate::lsn::Lsn;
use crate::output::Seq;
use crate::pgoutput::message::TupleValue;

const PG_OP: &str = "Pg-Op";
const PG_SCHEMA: &str = "Pg-Schema";
const PG_TABLE: &str = "Pg-Table";
const PG_LSN: &str = "Pg-Lsn";
const PG_COMMIT_LSN: &str = "Pg-Commit-Lsn";
const PG_XID: &str = "Pg-Xid";
const PG_COMMIT_TS: &str = "Pg-Commit-Ts";

/// Builds the headers of each event from its [`Seq`].
#[derive(Debug)]
pub struct MessageIds {
    slot: String,
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
    ///
    /// async-nats keeps headers in a hash map of vectors of strings (an
    /// allocation per header, a map insert and a rehash per message: a fifth
    /// of the publishing path's CPU with eight headers) and writes each value
    /// verbatim after `Name: `. So the `Pg-*` lines are carried in the one
    /// `Nats-Msg-Id` value, separated by CRLF: on the wire the message has
    /// exactly the eight headers, built into one string. tests/jetstream.rs
    /// reads every header back from the server; if the client ever escaped or
    /// rejected such a value, those tests fail.
    pub fn to_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, self.wire_value());
        headers
    }

    /// The `Nats-Msg-Id` value followed by `\r\n<Pg-Header>: <value>` for each `Pg-*` header.
    fn wire_value(&self) -> String {
        let mut out = Vec::with_capacity(self.id.len() + 192);
        out.extend_from_slice(self.id.as_bytes());
        let mut header = |name: &str, value: &dyn Fn(&mut Vec<u8>)| {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            value(&mut out);
        };
        header(PG_OP, &|b| b.extend_from_slice(self.op.as_bytes()));
        if let Some(table) = &self.table {
            header(PG_SCHEMA, &|b| {
                b.extend_from_slice(table.schema_token.as_bytes())
            });
            header(PG_TABLE, &|b| {
                b.extend_from_slice(table.name_token.as_bytes())
            });
        }
        if let Some(lsn) = self.lsn {
            header(PG_LSN, &|b| write_lsn(lsn, b));
        }
        if let Some(tx) = self.tx {
            header(PG_COMMIT_LSN, &|b| write_lsn(tx.commit_lsn, b));
            header(PG_XID, &|b| write_uint(u64::from(tx.xid), b));
            header(PG_COMMIT_TS, &|b| time::write_rfc3339(tx.commit_ts, b));
        }
        // Only ASCII is ever written: ids, op names, tokens, numbers and times.
        into_string(out)
    }
}

impl MessageIds {
    pub fn new(slot: &str) -> Self {
        MessageIds {
            slot: slot.to_owned(),
        }
    }

    /// The headers of `change`, at `seq` in the stream.
    #[cfg(test)]
    pub fn headers(&self, change: &Change, seq: Seq) -> HeaderMap {
        let table = change.table().map(|t| Arc::new(TableTokens::new(t)));
        self.fields(change, seq, table).to_headers()
    }

    /// What the headers of `change`, at `seq` in the stream, are made of;
    /// `table` holds the tokens of its table (see [`super::subject::EventNames`]).
    pub fn fields(
        &self,
        change: &Change,
        seq: Seq,
        table: Option<Arc<TableTokens>>,
    ) -> HeaderFields {
        HeaderFields {
            id: self.id(change, seq),
            op: change.op(),
            table,
            lsn: event_lsn(change),
            tx: tx_of(change).copied(),
        }
    }

    /// Written without `fmt` (formatting the positions was a tenth of the publishing path's CPU).
    fn id(&self, change: &Change, seq: Seq) -> String {
        let Seq { commit_lsn, index } = seq;
        let mut out = Vec::with_capacity(self.slot.len() + 40);
        out.extend_from_slice(self.slot.as_bytes());
        out.push(b':');
        match change {
            Change::Relation(table) => {
                write_lsn(commit_lsn, &mut out);
                out.push(b':');
                write_uint(index, &mut out);
                out.push(b'r');
                write_uint(u64::from(table.relation_id), &mut out);
            }
            Change::Message {
                transactional: false,
                lsn,
                ..
            } => {
                write_lsn(*lsn, &mut out);
                out.extend_from_slice(b":m");
            }
            Change::Read(row) => {
                write_lsn(commit_lsn, &mut out);
                out.extend_from_slice(b":s");
                write_uint(u64::from(row.table.relation_id), &mut out);
                out.push(b':');
                if !write_row_key(row, &mut out) {
                    // The n-th row of this read (`taken_at`: when the read began).
                    out.push(b't');
                    write_uint(row.tx.commit_ts as u64, &mut out);
                    out.push(b':');
                    write_uint(index, &mut out);
                }
            }
            _ => {
                write_lsn(commit_lsn, &mut out);
                out.push(b':');
                write_uint(index, &mut out);
            }
        }
        into_string(out)
    }
}

/// Longest key written as it is into a snapshot row's id; longer ones are hashed.
const MAX_PLAIN_KEY: usize = 64;

/// A snapshot row's key when its table's key identifies a row: `k<values>`
/// (joined with `,`) when each is short and made of letters, digits, `-`, `_`
/// and `.`, else `h<hash>`, 128 bits of the SHA-256 of the values. False, and
/// nothing written, when the key does not identify the row.
fn write_row_key(row: &RowChange, out: &mut Vec<u8>) -> bool {
    let Some(values) = &row.new else {
        return false;
    };
    if !row.table.key_identifies_row {
        return false;
    }
    let key = || {
        row.table
            .columns
            .iter()
            .zip(values)
            .filter(|(column, _)| column.key)
            .map(|(_, value)| value)
    };
    let plain_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let mut plain_len = 0;
    let mut plain = true;
    for value in key() {
        match value {
            TupleValue::Text(bytes) if bytes.iter().all(plain_byte) => plain_len += bytes.len() + 1,
            TupleValue::Text(_) | TupleValue::Null => plain = false,
            TupleValue::UnchangedToast => return false,
        }
    }
    if plain && plain_len <= MAX_PLAIN_KEY + 1 {
        out.push(b'k');
        for (i, value) in key().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if let TupleValue::Text(bytes) = value {
                out.extend_from_slice(bytes);
            }
        }
    } else {
        let mut hash = Sha256::new();
        for value in key() {
            match value {
                TupleValue::Text(bytes) => {
                    hash.update([b't']);
                    hash.update((bytes.len() as u64).to_be_bytes());
                    hash.update(bytes);
                }
                _ => hash.update([b'n']),
            }
        }
        out.push(b'h');
        for byte in &hash.finalize()[..16] {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xF)]);
        }
    }
    true
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The WAL position of the event itself.
pub fn event_lsn(change: &Change) -> Option<Lsn> {
    match change {
        Change::Begin(tx) => Some(tx.commit_lsn),
        Change::Commit { end_lsn, .. } => Some(*end_lsn),
        Change::Insert(row) | Change::Read(row) | Change::Update(row) | Change::Delete(row) => {
            Some(row.lsn)
        }
        Change::Truncate { lsn, .. } | Change::Message { lsn, .. } => Some(*lsn),
        Change::Relation(_) => None,
    }
}

fn tx_of(change: &Change) -> Option<&TxInfo> {
    match change {
        Change::Begin(tx) | Change::Commit { tx, .. } | Change::Truncate { tx, .. } => Some(tx),
        Change::Insert(row) | Change::Update(row) | Change::Delete(row) => Some(&row.tx),
        Change::Read(_) => None,
        Change::Message { tx, .. } => tx.as_ref(),
        Change::Relation(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::sample::{customers, row, text, tx};
    use crate::change::Table;
    use crate::output::SeqCounter;

    /// The headers as the server receives them: (name, value) in wire order.
    fn wire(headers: &HeaderMap) -> Vec<(String, String)> {
        assert_eq!(headers.len(), 1, "one map entry carries every header");
        let value = headers.get(NATS_MESSAGE_ID).expect("Nats-Msg-Id").as_str();
        let mut lines = value.split("\r\n");
        let mut out = vec![("Nats-Msg-Id".to_owned(), lines.next().unwrap().to_owned())];
        for line in lines {
            let (name, value) = line.split_once(": ").expect("Name: value");
            out.push((name.to_owned(), value.to_owned()));
        }
        out
    }

    fn id(ids: &MessageIds, seqs: &mut SeqCounter, change: &Change) -> String {
        let seq = seqs.next(change);
        wire(&ids.headers(change, seq)).swap_remove(0).1
    }

    #[test]
    fn ids_number_events_within_the_transaction_without_relation_events() {
        let ids = MessageIds::new("shop");
        let mut seqs = SeqCounter::default();
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
        let got: Vec<String> = sequence.iter().map(|c| id(&ids, &mut seqs, c)).collect();
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
            .map(|c| id(&ids, &mut seqs, c))
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
        let ids = MessageIds::new("shop");
        let mut seqs = SeqCounter::default();
        seqs.next(&Change::Begin(tx()));
        let insert = Change::Insert(row(None, None));
        let headers = wire(&ids.headers(&insert, seqs.next(&insert)));
        let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Nats-Msg-Id",
                "Pg-Op",
                "Pg-Schema",
                "Pg-Table",
                "Pg-Lsn",
                "Pg-Commit-Lsn",
                "Pg-Xid",
                "Pg-Commit-Ts"
            ]
        );
        let get = |name: &str| {
            let found = headers.iter().find(|(n, _)| n == name);
            found.map(|(_, value)| value.clone())
        };
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("shop:0/16B3748:1"));
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

    /// A snapshot row of `table` with `new`, read by the attempt begun at `taken_at`.
    fn read(table: Table, new: Vec<TupleValue>, taken_at: i64) -> Change {
        let mut r = row(Some(new), None);
        r.table = Arc::new(table);
        r.tx.commit_ts = taken_at;
        Change::Read(r)
    }

    fn read_id(change: &Change, n: u64) -> String {
        let seq = Seq {
            commit_lsn: Lsn(0x16B_3748),
            index: n,
        };
        wire(&MessageIds::new("shop").headers(change, seq))
            .swap_remove(0)
            .1
    }

    fn keyed() -> Table {
        let mut table = (*customers()).clone();
        table.key_identifies_row = true;
        table
    }

    #[test]
    fn snapshot_rows_with_an_identifying_key_are_named_by_it_in_every_read() {
        let a = read(keyed(), vec![text("42"), text("Ann"), text("x")], 1_000);
        // Another read (a resume), where the row came at another place with other values.
        let again = read(keyed(), vec![text("42"), text("Anne"), text("y")], 2_000);
        assert_eq!(read_id(&a, 7), "shop:0/16B3748:s16384:k42");
        assert_eq!(read_id(&again, 3), read_id(&a, 7));
        assert_eq!(
            read_id(
                &read(keyed(), vec![text("43"), text("Ann"), text("x")], 1_000),
                7
            ),
            "shop:0/16B3748:s16384:k43"
        );

        // Several key columns, joined.
        let mut two = keyed();
        two.columns[1].key = true;
        let row = read(two.clone(), vec![text("7"), text("b-2_x.y"), text("")], 1);
        assert_eq!(read_id(&row, 0), "shop:0/16B3748:s16384:k7,b-2_x.y");

        // Values that are not plain, or too long, are hashed; distinct keys stay distinct.
        let hashed =
            |a: &str, b: &str| read_id(&read(two.clone(), vec![text(a), text(b), text("")], 1), 0);
        let comma = hashed("1,2", "3");
        assert!(comma.starts_with("shop:0/16B3748:s16384:h"), "{comma}");
        assert_eq!(comma.len(), "shop:0/16B3748:s16384:h".len() + 32);
        assert_ne!(comma, hashed("1", "2,3"));
        assert_eq!(comma, hashed("1,2", "3"));
        let long = "9".repeat(70);
        assert!(hashed(&long, "1").contains(":h"));
        assert!(hashed("a b", "1").contains(":h"));
        assert!(hashed(&"9".repeat(60), "1").contains(":k"));
    }

    #[test]
    fn snapshot_rows_without_an_identifying_key_are_named_by_their_place_in_the_read() {
        // A key that may not identify the row (REPLICA IDENTITY FULL, part of an index published, no key).
        let table = (*customers()).clone();
        let first = read(
            table.clone(),
            vec![text("42"), text("Ann"), text("x")],
            1_000,
        );
        assert_eq!(read_id(&first, 7), "shop:0/16B3748:s16384:t1000:7");
        // A resume reads from a new snapshot: its rows get other ids, never those of the first read.
        let resumed = read(table, vec![text("42"), text("Ann"), text("x")], 2_000);
        assert_eq!(read_id(&resumed, 7), "shop:0/16B3748:s16384:t2000:7");
    }
}
