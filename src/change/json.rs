//! Events as JSON: one compact line per event for stdout and JetStream, and an
//! indented form for people.
//!
//! The compact form is written byte by byte into the caller's buffer (no
//! intermediate `serde_json::Value`), in a fixed key order, because it runs for
//! every event on the hot path.

use crate::change::time::{write_rfc3339, MICROS_1970_TO_2000};
use crate::change::value::{write_json_string, write_value};
use crate::change::{Change, Column, RowChange, Table, TxInfo};
use crate::lsn::Lsn;
use crate::pgoutput::message::{OldKind, OldTuple, TupleValue};

/// Append the compact one-line JSON of an event (no trailing newline).
///
/// Key order is fixed per op (the unit tests pin every op's exact form). Row
/// values follow [`write_value`]. A message's `content` is the UTF-8 string
/// when it is valid UTF-8, otherwise Postgres' bytea hex form (`"\\x0aff"`).
/// A key column whose value is unknown (unchanged TOAST in the new row and no
/// old row sent) is left out of `key` rather than reported as null.
pub fn write_json(change: &Change, out: &mut Vec<u8>) {
    match change {
        Change::Begin(tx) => {
            out.extend_from_slice(b"{\"op\":\"begin\"");
            write_tx(tx, out);
        }
        Change::Commit { tx, end_lsn } => {
            out.extend_from_slice(b"{\"op\":\"commit\",\"xid\":");
            write_uint(u64::from(tx.xid), out);
            out.extend_from_slice(b",\"commit_lsn\":");
            write_lsn_string(tx.commit_lsn, out);
            out.extend_from_slice(b",\"end_lsn\":");
            write_lsn_string(*end_lsn, out);
            out.extend_from_slice(b",\"commit_ts\":");
            write_ts_string(tx, out);
        }
        Change::Relation(table) => write_relation(table, out),
        Change::Insert(row) => {
            write_head("insert", &row.table, row.lsn, &row.tx, out);
            out.extend_from_slice(b",\"new\":");
            write_new(row, out);
            write_key(row, Source::New, out);
        }
        Change::Read(row) => {
            out.extend_from_slice(b"{\"op\":\"read\",\"schema\":");
            write_json_string(row.table.schema.as_bytes(), out);
            out.extend_from_slice(b",\"table\":");
            write_json_string(row.table.name.as_bytes(), out);
            out.extend_from_slice(b",\"lsn\":");
            write_lsn_string(row.lsn, out);
            out.extend_from_slice(b",\"snapshot_ts\":");
            write_ts_string(&row.tx, out);
            out.extend_from_slice(b",\"new\":");
            write_new(row, out);
            write_key(row, Source::New, out);
        }
        Change::Update(row) => {
            write_head("update", &row.table, row.lsn, &row.tx, out);
            out.extend_from_slice(b",\"new\":");
            write_new(row, out);
            write_old(row, out);
            write_key(row, Source::New, out);
            write_unchanged_toast(row, out);
        }
        Change::Delete(row) => {
            write_head("delete", &row.table, row.lsn, &row.tx, out);
            write_old(row, out);
            write_key(row, Source::Old, out);
        }
        Change::Truncate {
            table,
            lsn,
            tx,
            cascade,
            restart_identity,
        } => {
            write_head("truncate", table, *lsn, tx, out);
            out.extend_from_slice(b",\"cascade\":");
            write_bool(*cascade, out);
            out.extend_from_slice(b",\"restart_identity\":");
            write_bool(*restart_identity, out);
        }
        Change::Message {
            prefix,
            content,
            transactional,
            lsn,
            tx,
        } => {
            out.extend_from_slice(b"{\"op\":\"message\",\"prefix\":");
            write_json_string(prefix.as_bytes(), out);
            out.extend_from_slice(b",\"content\":");
            if std::str::from_utf8(content).is_ok() {
                write_json_string(content, out);
            } else {
                out.extend_from_slice(b"\"\\\\x");
                write_hex(content, out);
                out.push(b'"');
            }
            out.extend_from_slice(b",\"transactional\":");
            write_bool(*transactional, out);
            out.extend_from_slice(b",\"lsn\":");
            write_lsn_string(*lsn, out);
            if let Some(tx) = tx {
                write_tx(tx, out);
            }
        }
    }
    out.push(b'}');
}

/// Same event, indented with two spaces (no trailing newline); same keys in the same order.
pub fn write_json_pretty(change: &Change, out: &mut Vec<u8>) {
    let mut compact = Vec::with_capacity(256);
    write_json(change, &mut compact);
    reindent(&compact, out);
}

/// Indent compact JSON (no whitespace outside strings, as [`write_json`]
/// writes it) in serde_json's pretty style, which keeps key order for free.
fn reindent(compact: &[u8], out: &mut Vec<u8>) {
    let newline = |depth: usize, out: &mut Vec<u8>| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut bytes = compact.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                let close = if b == b'{' { b'}' } else { b']' };
                if bytes.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(depth, out);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(depth, out);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(depth, out);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
}

/// `{"op":…,"schema":…,"table":…,"lsn":…,"xid":…,"commit_lsn":…,"commit_ts":…` of row and truncate events.
fn write_head(op: &str, table: &Table, lsn: Lsn, tx: &TxInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(op.as_bytes());
    out.extend_from_slice(b"\",\"schema\":");
    write_json_string(table.schema.as_bytes(), out);
    out.extend_from_slice(b",\"table\":");
    write_json_string(table.name.as_bytes(), out);
    out.extend_from_slice(b",\"lsn\":");
    write_lsn_string(lsn, out);
    write_tx(tx, out);
}

/// The `xid`, `commit_lsn` and `commit_ts` fields of an event inside a transaction.
fn write_tx(tx: &TxInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"xid\":");
    write_uint(u64::from(tx.xid), out);
    out.extend_from_slice(b",\"commit_lsn\":");
    write_lsn_string(tx.commit_lsn, out);
    out.extend_from_slice(b",\"commit_ts\":");
    write_ts_string(tx, out);
}

fn write_relation(table: &Table, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"op\":\"relation\",\"schema\":");
    write_json_string(table.schema.as_bytes(), out);
    out.extend_from_slice(b",\"table\":");
    write_json_string(table.name.as_bytes(), out);
    out.extend_from_slice(b",\"relation_id\":");
    write_uint(u64::from(table.relation_id), out);
    out.extend_from_slice(b",\"replica_identity\":\"");
    out.extend_from_slice(table.replica_identity.as_str().as_bytes());
    out.extend_from_slice(b"\",\"columns\":[");
    for (i, col) in table.columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_json_string(col.name.as_bytes(), out);
        out.extend_from_slice(b",\"type\":");
        write_json_string(col.type_name.as_bytes(), out);
        out.extend_from_slice(b",\"type_oid\":");
        write_uint(u64::from(col.type_oid), out);
        out.extend_from_slice(b",\"key\":");
        write_bool(col.key, out);
        out.push(b'}');
    }
    out.push(b']');
}

/// The new row; unchanged TOAST columns are left out (listed in `unchanged_toast`).
fn write_new(row: &RowChange, out: &mut Vec<u8>) {
    match &row.new {
        Some(tuple) => write_object(
            row.table
                .columns
                .iter()
                .zip(tuple)
                .map(|(c, v)| (c, Some(v))),
            out,
        ),
        None => out.extend_from_slice(b"null"),
    }
}

/// `,"old":…`: null when not sent, only the key columns for a key image, else every column.
fn write_old(row: &RowChange, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"old\":");
    match &row.old {
        Some(OldTuple { kind, tuple }) => write_object(
            row.table
                .columns
                .iter()
                .zip(tuple)
                .filter(|(c, _)| *kind == OldKind::Full || c.key)
                .map(|(c, v)| (c, Some(v))),
            out,
        ),
        None => out.extend_from_slice(b"null"),
    }
}

/// Which row image the key is read from first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    New,
    Old,
}

/// `,"key":{…}`: the replica identity columns' values.
fn write_key(row: &RowChange, source: Source, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"key\":");
    let new = row.new.as_deref().filter(|_| source == Source::New);
    let old = row.old.as_ref().map(|o| o.tuple.as_slice());
    let keys = row.table.columns.iter().enumerate().filter(|(_, c)| c.key);
    write_object(
        keys.map(|(i, col)| {
            let value = match source {
                Source::New => known(new, i).or_else(|| known(old, i)),
                Source::Old => known(old, i),
            };
            (col, value)
        }),
        out,
    );
}

/// Column `i` of a row image, if the image and the value were sent.
fn known(tuple: Option<&[TupleValue]>, i: usize) -> Option<&TupleValue> {
    tuple
        .and_then(|t| t.get(i))
        .filter(|v| **v != TupleValue::UnchangedToast)
}

/// `,"unchanged_toast":[…]`: the columns an update did not resend.
fn write_unchanged_toast(row: &RowChange, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"unchanged_toast\":[");
    let mut first = true;
    let tuple = row.new.as_deref().unwrap_or_default();
    for (col, value) in row.table.columns.iter().zip(tuple) {
        if *value == TupleValue::UnchangedToast {
            if !first {
                out.push(b',');
            }
            first = false;
            write_json_string(col.name.as_bytes(), out);
        }
    }
    out.push(b']');
}

/// `{"name":value,…}`, skipping unknown values (`None` or unchanged TOAST).
fn write_object<'a>(
    fields: impl Iterator<Item = (&'a Column, Option<&'a TupleValue>)>,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    let mut first = true;
    for (col, value) in fields {
        let value = match value {
            Some(TupleValue::Text(text)) => Some(text),
            Some(TupleValue::Null) => None,
            Some(TupleValue::UnchangedToast) | None => continue,
        };
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_string(col.name.as_bytes(), out);
        out.push(b':');
        match value {
            Some(text) => write_value(col.type_oid, text, out),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

fn write_ts_string(tx: &TxInfo, out: &mut Vec<u8>) {
    out.push(b'"');
    write_rfc3339(tx.commit_ts, out);
    out.push(b'"');
}

fn write_lsn_string(lsn: Lsn, out: &mut Vec<u8>) {
    out.push(b'"');
    write_lsn(lsn, out);
    out.push(b'"');
}

fn write_bool(b: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// The text these writers produced (ids, numbers, positions, times: ASCII).
pub(crate) fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// An LSN as `Lsn`'s `Display` prints it (`16/B374D848`), without `fmt`.
pub(crate) fn write_lsn(lsn: Lsn, out: &mut Vec<u8>) {
    write_upper_hex(lsn.0 >> 32, out);
    out.push(b'/');
    write_upper_hex(lsn.0 & 0xFFFF_FFFF, out);
}

fn write_upper_hex(n: u64, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(HEX[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Lower-case hex of bytes, as in bytea's `\x` output.
fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// A PostgreSQL timestamp (µs since 2000-01-01) as milliseconds since 1970.
pub(crate) fn write_ts_ms(ts: crate::pgoutput::message::PgTimestamp, out: &mut Vec<u8>) {
    let ms = ts
        .div_euclid(1000)
        .saturating_add(MICROS_1970_TO_2000 / 1000);
    write_int(ms, out);
}

/// Decimal digits of `n` with a leading `-` when negative, without `fmt`.
pub(crate) fn write_int(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    write_uint(n.unsigned_abs(), out);
}

/// Decimal digits of `n`, without `fmt`.
pub(crate) fn write_uint(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        start -= 1;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests;
