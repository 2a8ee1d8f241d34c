//! Events in the Debezium PostgreSQL connector's JSON value envelope
//! (`--format debezium`), as its JSON converter writes them with
//! `value.converter.schemas.enable=false`, so consumers written for Debezium
//! can read them. docs/formats.md shows both formats side by side.
//!
//! Row events: `{"before":…,"after":…,"source":{…},"op":"c|u|d|t","ts_ms":…,"transaction":{…}}`;
//! logical decoding messages: `"op":"m"` with `message.prefix` and base64
//! `message.content`; begin and commit: Debezium's transaction metadata
//! records (`"status":"BEGIN"`, `"status":"END"` with event counts). Relation
//! events have no Debezium form and are not published in this format.
//!
//! Values follow the connector with `decimal.handling.mode=string`,
//! `time.precision.mode=adaptive`, `binary.handling.mode=base64` and
//! `interval.handling.mode=string`: numeric and money as strings, `date` as
//! days since the epoch, `time` as microseconds since midnight, `timestamp`
//! as microseconds since the epoch, `timestamptz` as an ISO 8601 UTC string,
//! `bytea` as base64, json/jsonb as a string holding the document, an
//! unchanged TOAST value as `__debezium_unavailable_value`. A value that does
//! not parse as its type promises (or is ±infinity) is its PostgreSQL text.

use base64::Engine;

use crate::change::json::{write_int, write_ts_ms, write_uint};
use crate::change::time::{days_from_civil, MICROS_1970_TO_2000};
use crate::change::value::{class_of, write_json_string, write_value, ValueClass};
use crate::change::{Change, Column, RowChange, Table, TxInfo};
use crate::lsn::Lsn;
use crate::pgoutput::message::{Tuple, TupleValue};

const BYTEA: u32 = 17;
const MONEY: u32 = 790;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;

/// Debezium's placeholder for a value the server did not send (unchanged TOAST).
const UNAVAILABLE: &[u8] = b"\"__debezium_unavailable_value\"";

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Writes Debezium envelopes; keeps the per-transaction counters of the
/// `transaction` blocks and END records, and the previous commit for `source.sequence`.
#[derive(Debug)]
pub struct DebeziumEncoder {
    /// `source.name`: the logical server name (the NATS subject prefix).
    name: String,
    /// `source.db`.
    db: String,
    tx: Option<TxCounts>,
    last_commit: Option<Lsn>,
}

#[derive(Debug)]
struct TxCounts {
    xid: u32,
    commit_lsn: Lsn,
    total: u64,
    /// Schema, table and its count, in order of first appearance.
    tables: Vec<(String, String, u64)>,
}

impl DebeziumEncoder {
    pub fn new(name: &str, db: &str) -> Self {
        DebeziumEncoder {
            name: name.to_owned(),
            db: db.to_owned(),
            tx: None,
            last_commit: None,
        }
    }

    /// Append the event's Debezium form; false (nothing written) for events
    /// that have none (relation events).
    pub fn write(&mut self, change: &Change, out: &mut Vec<u8>) -> bool {
        match change {
            Change::Relation(_) => return false,
            Change::Begin(tx) => {
                self.counts(tx);
                write_tx_record("BEGIN", tx, out);
                out.extend_from_slice(b",\"event_count\":null,\"data_collections\":null}");
            }
            Change::Commit { tx, .. } => {
                let counts = self.counts(tx);
                let (total, tables) = (counts.total, std::mem::take(&mut counts.tables));
                write_tx_record("END", tx, out);
                out.extend_from_slice(b",\"event_count\":");
                write_uint(total, out);
                out.extend_from_slice(b",\"data_collections\":[");
                for (i, (schema, table, count)) in tables.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"data_collection\":");
                    write_json_string(format!("{schema}.{table}").as_bytes(), out);
                    out.extend_from_slice(b",\"event_count\":");
                    write_uint(*count, out);
                    out.push(b'}');
                }
                out.extend_from_slice(b"]}");
                self.tx = None;
                self.last_commit = Some(tx.commit_lsn);
            }
            Change::Insert(row) => self.write_row(row, None, Some(&row.new), "c", out),
            Change::Read(row) => self.write_row(row, None, Some(&row.new), "r", out),
            Change::Update(row) => {
                let before = row.old.as_ref().map(|old| &old.tuple);
                self.write_row(row, Some(before), Some(&row.new), "u", out)
            }
            Change::Delete(row) => {
                let before = row.old.as_ref().map(|old| &old.tuple);
                self.write_row(row, Some(before), None, "d", out)
            }
            Change::Truncate { table, lsn, tx, .. } => {
                out.extend_from_slice(b"{\"before\":null,\"after\":null,\"source\":");
                self.write_source(Some(table), *lsn, Some(tx), false, out);
                out.extend_from_slice(b",\"op\":\"t\",\"ts_ms\":");
                write_now_ms(out);
                self.write_transaction(table, tx, out);
                out.push(b'}');
            }
            Change::Message {
                prefix,
                content,
                lsn,
                tx,
                ..
            } => {
                out.extend_from_slice(b"{\"op\":\"m\",\"ts_ms\":");
                write_now_ms(out);
                out.extend_from_slice(b",\"source\":");
                self.write_source(None, *lsn, tx.as_ref(), false, out);
                out.extend_from_slice(b",\"message\":{\"prefix\":");
                write_json_string(prefix.as_bytes(), out);
                out.extend_from_slice(b",\"content\":\"");
                write_base64(content, out);
                out.extend_from_slice(b"\"}}");
            }
        }
        true
    }

    /// `before` is `None` for inserts (no `before` at all is written as null),
    /// `Some(None)` for an update or delete without an old row image.
    fn write_row(
        &mut self,
        row: &RowChange,
        before: Option<Option<&Tuple>>,
        after: Option<&Option<Tuple>>,
        op: &str,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"{\"before\":");
        match before.flatten() {
            Some(tuple) => write_row_object(&row.table.columns, tuple, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"after\":");
        match after.and_then(Option::as_ref) {
            Some(tuple) => write_row_object(&row.table.columns, tuple, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"source\":");
        self.write_source(Some(&row.table), row.lsn, Some(&row.tx), op == "r", out);
        out.extend_from_slice(b",\"op\":\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\",\"ts_ms\":");
        write_now_ms(out);
        self.write_transaction(&row.table, &row.tx, out);
        out.push(b'}');
    }

    fn write_source(
        &self,
        table: Option<&Table>,
        lsn: Lsn,
        tx: Option<&TxInfo>,
        snapshot: bool,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"{\"version\":\"");
        out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        out.extend_from_slice(b"\",\"connector\":\"postgresql\",\"name\":");
        write_json_string(self.name.as_bytes(), out);
        out.extend_from_slice(b",\"ts_ms\":");
        match tx {
            Some(tx) => write_ts_ms(tx.commit_ts, out),
            None => write_now_ms(out),
        }
        out.extend_from_slice(if snapshot {
            b",\"snapshot\":\"true\",\"db\":"
        } else {
            b",\"snapshot\":\"false\",\"db\":"
        });
        write_json_string(self.db.as_bytes(), out);
        out.extend_from_slice(b",\"sequence\":\"[");
        match self.last_commit {
            Some(lsn) => {
                out.extend_from_slice(b"\\\"");
                write_uint(lsn.0, out);
                out.extend_from_slice(b"\\\"");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\\\"");
        write_uint(lsn.0, out);
        out.extend_from_slice(b"\\\"]\",\"schema\":");
        write_json_string(table.map_or("", |t| t.schema.as_str()).as_bytes(), out);
        out.extend_from_slice(b",\"table\":");
        write_json_string(table.map_or("", |t| t.name.as_str()).as_bytes(), out);
        out.extend_from_slice(b",\"txId\":");
        match tx {
            Some(tx) => write_uint(u64::from(tx.xid), out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"lsn\":");
        write_uint(lsn.0, out);
        out.extend_from_slice(b",\"xmin\":null}");
    }

    /// `,"transaction":{"id":…,"total_order":…,"data_collection_order":…}`, counting the event.
    fn write_transaction(&mut self, table: &Table, tx: &TxInfo, out: &mut Vec<u8>) {
        let counts = self.counts(tx);
        counts.total += 1;
        // Compared in place: no name is built per event.
        let seen = counts
            .tables
            .iter_mut()
            .find(|(schema, name, _)| *schema == table.schema && *name == table.name);
        let order = match seen {
            Some((_, _, count)) => {
                *count += 1;
                *count
            }
            None => {
                counts
                    .tables
                    .push((table.schema.clone(), table.name.clone(), 1));
                1
            }
        };
        let total = counts.total;
        out.extend_from_slice(b",\"transaction\":{\"id\":\"");
        write_tx_id(tx, out);
        out.extend_from_slice(b"\",\"total_order\":");
        write_uint(total, out);
        out.extend_from_slice(b",\"data_collection_order\":");
        write_uint(order, out);
        out.push(b'}');
    }

    /// The counters of `tx`, started afresh when a new transaction shows up
    /// (its begin may not be published, with `--no-transaction-events`).
    fn counts(&mut self, tx: &TxInfo) -> &mut TxCounts {
        if !self
            .tx
            .as_ref()
            .is_some_and(|c| c.xid == tx.xid && c.commit_lsn == tx.commit_lsn)
        {
            self.tx = None;
        }
        self.tx.get_or_insert_with(|| TxCounts {
            xid: tx.xid,
            commit_lsn: tx.commit_lsn,
            total: 0,
            tables: Vec::new(),
        })
    }
}

/// Debezium's transaction id for PostgreSQL: `<txId>:<commit LSN as a number>`.
fn write_tx_id(tx: &TxInfo, out: &mut Vec<u8>) {
    write_uint(u64::from(tx.xid), out);
    out.push(b':');
    write_uint(tx.commit_lsn.0, out);
}

/// `{"status":"BEGIN","id":"…","ts_ms":…` (the caller closes it).
fn write_tx_record(status: &str, tx: &TxInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"id\":\"");
    write_tx_id(tx, out);
    out.extend_from_slice(b"\",\"ts_ms\":");
    write_ts_ms(tx.commit_ts, out);
}

/// Every column of the table: its value, null, or the unavailable placeholder.
fn write_row_object(columns: &[Column], tuple: &Tuple, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, col) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(col.name.as_bytes(), out);
        out.push(b':');
        match tuple.get(i) {
            Some(TupleValue::Text(text)) => write_debezium_value(col.type_oid, text, out),
            Some(TupleValue::UnchangedToast) => out.extend_from_slice(UNAVAILABLE),
            Some(TupleValue::Null) | None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// One value as the Debezium connector encodes it (see the module docs).
pub fn write_debezium_value(type_oid: u32, text: &[u8], out: &mut Vec<u8>) {
    let converted = match type_oid {
        DATE => parse_date(text).map(|days| write_int(days, out)),
        TIME => parse_time(text).map(|micros| write_int(micros, out)),
        TIMESTAMP => parse_timestamp(text).map(|(micros, _)| write_int(micros, out)),
        TIMESTAMPTZ => parse_timestamp(text).map(|(micros, offset)| {
            out.push(b'"');
            write_utc_iso(micros - offset, out);
            out.push(b'"');
        }),
        BYTEA => text.strip_prefix(b"\\x").and_then(decode_hex).map(|bytes| {
            out.push(b'"');
            write_base64(&bytes, out);
            out.push(b'"');
        }),
        MONEY => None,
        _ if class_of(type_oid) == ValueClass::Json => None,
        _ => {
            write_value(type_oid, text, out);
            Some(())
        }
    };
    // Strings: money, json/jsonb (the document as text), and whatever did not parse.
    if converted.is_none() {
        write_json_string(text, out);
    }
}

fn write_now_ms(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    write_uint(now, out);
}

fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    hex.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// A UTC instant (µs since 1970) as ISO 8601 with the fraction's trailing zeros
/// dropped, as Java's `ISO_OFFSET_DATE_TIME` prints it: `2024-02-29T13:14:15.12Z`.
fn write_utc_iso(micros: i64, out: &mut Vec<u8>) {
    // The RFC 3339 writer counts from 2000-01-01 as PostgreSQL does.
    let start = out.len();
    crate::change::time::write_rfc3339(micros - MICROS_1970_TO_2000, out);
    // `….123400Z` → `….1234Z`, `….000000Z` → `Z`.
    if out.last() == Some(&b'Z') {
        out.pop();
        while out.len() > start && out.last() == Some(&b'0') {
            out.pop();
        }
        if out.last() == Some(&b'.') {
            out.pop();
        }
        out.push(b'Z');
    }
}

/// A cursor over PostgreSQL's ISO date/time output.
struct Cursor<'a> {
    s: &'a [u8],
}

impl Cursor<'_> {
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let n = self
            .s
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let (digits, rest) = self.s.split_at(n);
        self.s = rest;
        digits.iter().try_fold(0i64, |acc, d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.first() == Some(&b) {
            self.s = &self.s[1..];
            true
        } else {
            false
        }
    }

    /// `YYYY-MM-DD` (the year may have more digits); days since 1970 before any ` BC`.
    fn date(&mut self) -> Option<(i64, i64, i64)> {
        let year = self.digits(4, 9)?;
        self.eat(b'-').then_some(())?;
        let month = self.digits(2, 2)?;
        self.eat(b'-').then_some(())?;
        let day = self.digits(2, 2)?;
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month, day))
    }

    /// `HH:MM:SS[.ffffff]` in µs.
    fn time(&mut self) -> Option<i64> {
        let hours = self.digits(2, 2)?;
        self.eat(b':').then_some(())?;
        let minutes = self.digits(2, 2)?;
        self.eat(b':').then_some(())?;
        let seconds = self.digits(2, 2)?;
        let mut micros = 0;
        if self.eat(b'.') {
            let before = self.s.len();
            let fraction = self.digits(1, 6)?;
            let width = before - self.s.len();
            micros = fraction * 10i64.pow(6 - width as u32);
        }
        (hours <= 24 && minutes < 60 && seconds < 61)
            .then_some(((hours * 60 + minutes) * 60 + seconds) * MICROS_PER_SECOND + micros)
    }

    /// `+HH[:MM[:SS]]` / `-…` in µs east of UTC.
    fn offset(&mut self) -> Option<i64> {
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let mut seconds = self.digits(2, 2)? * 3600;
        if self.eat(b':') {
            seconds += self.digits(2, 2)? * 60;
            if self.eat(b':') {
                seconds += self.digits(2, 2)?;
            }
        }
        Some(sign * seconds * MICROS_PER_SECOND)
    }

    /// ` BC` makes the year astronomical (1 BC is year 0).
    fn era(&mut self, year: i64) -> Option<i64> {
        match self.s {
            b"" => Some(year),
            b" BC" => Some(1 - year),
            _ => None,
        }
    }
}

fn parse_date(text: &[u8]) -> Option<i64> {
    let mut c = Cursor { s: text };
    let (year, month, day) = c.date()?;
    let year = c.era(year)?;
    Some(days_from_civil(year, month, day))
}

fn parse_time(text: &[u8]) -> Option<i64> {
    let mut c = Cursor { s: text };
    let micros = c.time()?;
    c.s.is_empty().then_some(micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]][ BC]`: µs since 1970 as written
/// (local to the offset) and the offset in µs (0 without one).
fn parse_timestamp(text: &[u8]) -> Option<(i64, i64)> {
    let mut c = Cursor { s: text };
    let (year, month, day) = c.date()?;
    c.eat(b' ').then_some(())?;
    let time = c.time()?;
    let offset = if matches!(c.s.first(), Some(b'+' | b'-')) {
        c.offset()?
    } else {
        0
    };
    let year = c.era(year)?;
    let days = days_from_civil(year, month, day);
    Some((days.checked_mul(MICROS_PER_DAY)?.checked_add(time)?, offset))
}

#[cfg(test)]
mod tests;
