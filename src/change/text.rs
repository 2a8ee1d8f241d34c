//! Events as one human-readable line each, for `--format text`:
//!
//! ```text
//! BEGIN xid=734 commit_lsn=0/16B3748 commit_ts=2024-02-29T13:14:15.123456Z
//! INSERT public.customers id=1 name='Ada' note=NULL
//! UPDATE public.customers id=1 name='Grace' note=<unchanged> (old: id=1)
//! DELETE public.customers (old: id=1)
//! TRUNCATE public.orders cascade=false restart_identity=false
//! RELATION public.customers id:int4* name:text note:text
//! MESSAGE prefix=audit transactional=true content='...'
//! COMMIT xid=734 end_lsn=0/16B3778
//! ```
//!
//! Numbers and booleans are bare; every other value is single-quoted SQL
//! style (`'` doubled). Control characters are escaped (`\n`, `\r`, `\t`,
//! `\xNN`) so that an event is always exactly one line. This form is for
//! reading, not parsing: use JSON for machines.

use crate::change::json::{write_lsn, write_uint};
use crate::change::time::write_rfc3339;
use crate::change::value::{class_of, ValueClass};
use crate::change::{Change, Column, RowChange, Table};
use crate::pgoutput::message::{OldKind, TupleValue};

/// Append a one-line human-readable form (no trailing newline) for `--format text`.
///
/// A message's content is quoted text when valid UTF-8, otherwise bytea hex (`'\x0aff'`).
pub fn write_text(change: &Change, out: &mut Vec<u8>) {
    match change {
        Change::Begin(tx) => {
            out.extend_from_slice(b"BEGIN xid=");
            write_uint(u64::from(tx.xid), out);
            out.extend_from_slice(b" commit_lsn=");
            write_lsn(tx.commit_lsn, out);
            out.extend_from_slice(b" commit_ts=");
            write_rfc3339(tx.commit_ts, out);
        }
        Change::Commit { tx, end_lsn } => {
            out.extend_from_slice(b"COMMIT xid=");
            write_uint(u64::from(tx.xid), out);
            out.extend_from_slice(b" end_lsn=");
            write_lsn(*end_lsn, out);
        }
        Change::Relation(table) => {
            write_op_table(b"RELATION", table, out);
            for col in &table.columns {
                out.push(b' ');
                write_escaped(col.name.as_bytes(), out);
                out.push(b':');
                write_escaped(col.type_name.as_bytes(), out);
                if col.key {
                    out.push(b'*');
                }
            }
        }
        Change::Insert(row) => {
            write_op_table(b"INSERT", &row.table, out);
            write_new(row, out);
        }
        Change::Read(row) => {
            write_op_table(b"READ", &row.table, out);
            write_new(row, out);
        }
        Change::Update(row) => {
            write_op_table(b"UPDATE", &row.table, out);
            write_new(row, out);
            write_old(row, out);
        }
        Change::Delete(row) => {
            write_op_table(b"DELETE", &row.table, out);
            write_old(row, out);
        }
        Change::Truncate {
            table,
            cascade,
            restart_identity,
            ..
        } => {
            write_op_table(b"TRUNCATE", table, out);
            out.extend_from_slice(b" cascade=");
            out.extend_from_slice(bool_word(*cascade));
            out.extend_from_slice(b" restart_identity=");
            out.extend_from_slice(bool_word(*restart_identity));
        }
        Change::Message {
            prefix,
            content,
            transactional,
            ..
        } => {
            out.extend_from_slice(b"MESSAGE prefix=");
            write_escaped(prefix.as_bytes(), out);
            out.extend_from_slice(b" transactional=");
            out.extend_from_slice(bool_word(*transactional));
            out.extend_from_slice(b" content=");
            if std::str::from_utf8(content).is_ok() {
                write_quoted(content, out);
            } else {
                out.extend_from_slice(b"'\\x");
                for b in content.iter() {
                    out.extend_from_slice(&hex_byte(*b));
                }
                out.push(b'\'');
            }
        }
    }
}

fn write_op_table(op: &[u8], table: &Table, out: &mut Vec<u8>) {
    out.extend_from_slice(op);
    out.push(b' ');
    write_escaped(table.schema.as_bytes(), out);
    out.push(b'.');
    write_escaped(table.name.as_bytes(), out);
}

fn write_new(row: &RowChange, out: &mut Vec<u8>) {
    let tuple = row.new.as_deref().unwrap_or_default();
    for (col, value) in row.table.columns.iter().zip(tuple) {
        out.push(b' ');
        write_assignment(col, value, out);
    }
}

/// ` (old: …)`: the key columns of a key image, every column of a full one.
fn write_old(row: &RowChange, out: &mut Vec<u8>) {
    let Some(old) = &row.old else { return };
    out.extend_from_slice(b" (old:");
    let columns = row.table.columns.iter().zip(&old.tuple);
    for (col, value) in columns.filter(|(c, _)| old.kind == OldKind::Full || c.key) {
        out.push(b' ');
        write_assignment(col, value, out);
    }
    out.push(b')');
}

/// `name=value`.
fn write_assignment(col: &Column, value: &TupleValue, out: &mut Vec<u8>) {
    write_escaped(col.name.as_bytes(), out);
    out.push(b'=');
    match value {
        TupleValue::Null => out.extend_from_slice(b"NULL"),
        TupleValue::UnchangedToast => out.extend_from_slice(b"<unchanged>"),
        TupleValue::Text(text) => match class_of(col.type_oid) {
            ValueClass::Bool if text.as_ref() == b"t" => out.extend_from_slice(b"true"),
            ValueClass::Bool if text.as_ref() == b"f" => out.extend_from_slice(b"false"),
            ValueClass::Int | ValueClass::Float | ValueClass::Numeric if is_bare_number(text) => {
                out.extend_from_slice(text)
            }
            _ => write_quoted(text, out),
        },
    }
}

/// Number text safe to print unquoted: non-empty, no spaces, quotes or control characters.
fn is_bare_number(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
}

/// `'text'` with `'` doubled and control characters escaped.
fn write_quoted(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'\'');
    let text = String::from_utf8_lossy(text);
    for &b in text.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"''");
        } else {
            push_escaped(b, out);
        }
    }
    out.push(b'\'');
}

/// A name or unquoted word, with control characters escaped so it stays on one line.
fn write_escaped(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        push_escaped(b, out);
    }
}

fn push_escaped(b: u8, out: &mut Vec<u8>) {
    match b {
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x00..=0x1f | 0x7f => {
            out.extend_from_slice(b"\\x");
            out.extend_from_slice(&hex_byte(b));
        }
        _ => out.push(b),
    }
}

fn hex_byte(b: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]
}

fn bool_word(b: bool) -> &'static [u8] {
    if b {
        b"true"
    } else {
        b"false"
    }
}

#[cfg(test)]
mod tests;
