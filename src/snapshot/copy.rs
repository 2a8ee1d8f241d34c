//! Rows of `COPY ... TO STDOUT` in text format, split into column values.
//!
//! Each row is one line, columns are separated by tabs, `\N` is NULL, and
//! backslash escapes stand for the bytes the type's output function wrote
//! (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`, octal `\123`, hex `\x7f`).
//! Unescaped, a value is exactly the text pgoutput sends for it, so snapshot
//! rows and streamed rows are encoded alike.

use bytes::{Bytes, BytesMut};

use crate::pgoutput::message::{Tuple, TupleValue};

/// Splits a COPY stream, arriving in chunks of any size, into rows.
#[derive(Debug, Default)]
pub struct CopyRows {
    /// The start of a row whose end has not arrived yet.
    partial: BytesMut,
}

/// A row with another number of columns than the table has.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("COPY row has {got} columns, the table {expected}")]
pub struct ColumnCountError {
    pub got: usize,
    pub expected: usize,
}

impl CopyRows {
    /// Append the complete rows in `chunk` (plus what was left over before) to `rows`.
    pub fn push(
        &mut self,
        chunk: &[u8],
        columns: usize,
        rows: &mut Vec<Tuple>,
    ) -> Result<(), ColumnCountError> {
        self.partial.extend_from_slice(chunk);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line = self.partial.split_to(end + 1).freeze();
            rows.push(parse_row(&line[..end], columns)?);
        }
        Ok(())
    }

    /// True when no incomplete row is pending (the stream ended cleanly).
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }
}

/// One line (without its newline) as column values.
pub fn parse_row(line: &[u8], columns: usize) -> Result<Tuple, ColumnCountError> {
    let mut tuple = Vec::with_capacity(columns);
    for field in line.split(|&b| b == b'\t') {
        tuple.push(if field == b"\\N" {
            TupleValue::Null
        } else {
            TupleValue::Text(unescape(field))
        });
    }
    // An empty line is one empty value for a one-column table, none for a zero-column one.
    if columns == 0 && line.is_empty() {
        tuple.clear();
    }
    if tuple.len() != columns {
        return Err(ColumnCountError {
            got: tuple.len(),
            expected: columns,
        });
    }
    Ok(tuple)
}

fn unescape(field: &[u8]) -> Bytes {
    if !field.contains(&b'\\') {
        return Bytes::copy_from_slice(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            // Any other escaped character stands for itself (`\\`, `\.`, ...).
            other => out.push(other),
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &[u8]) -> TupleValue {
        TupleValue::Text(Bytes::copy_from_slice(s))
    }

    #[test]
    fn rows_split_on_tabs_with_null_and_escapes() {
        let row = parse_row(b"1\t\\N\ta\\tb\\nc\\\\d\t\\101\\x42", 4).unwrap();
        assert_eq!(
            row,
            vec![
                text(b"1"),
                TupleValue::Null,
                text(b"a\tb\nc\\d"),
                text(b"AB")
            ]
        );
        assert_eq!(parse_row(b"", 1).unwrap(), vec![text(b"")]);
        assert_eq!(
            parse_row(b"1\t2", 3),
            Err(ColumnCountError {
                got: 2,
                expected: 3
            })
        );
    }

    #[test]
    fn rows_may_span_chunks() {
        let mut copy = CopyRows::default();
        let mut rows = Vec::new();
        copy.push(b"1\ta\n2\t", 2, &mut rows).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(!copy.is_empty());
        copy.push(b"b\n", 2, &mut rows).unwrap();
        assert_eq!(rows[1], vec![text(b"2"), text(b"b")]);
        assert!(copy.is_empty());
    }

    proptest::proptest! {
        /// Escaping as COPY does, then parsing, gives the values back.
        #[test]
        fn escaped_values_come_back(values in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..20)), 1..6)
        ) {
            let mut line = Vec::new();
            for (i, value) in values.iter().enumerate() {
                if i > 0 { line.push(b'\t'); }
                match value {
                    None => line.extend_from_slice(b"\\N"),
                    Some(bytes) => for &b in bytes {
                        match b {
                            b'\\' => line.extend_from_slice(b"\\\\"),
                            b'\t' => line.extend_from_slice(b"\\t"),
                            b'\n' => line.extend_from_slice(b"\\n"),
                            b'\r' => line.extend_from_slice(b"\\r"),
                            _ => line.push(b),
                        }
                    },
                }
            }
            let row = parse_row(&line, values.len()).unwrap();
            let expected: Vec<TupleValue> = values.iter().map(|v| match v {
                None => TupleValue::Null,
                Some(bytes) => text(bytes),
            }).collect();
            proptest::prop_assert_eq!(row, expected);
        }

        #[test]
        fn any_bytes_never_panic(line in proptest::collection::vec(proptest::num::u8::ANY, 0..64), columns in 0usize..4) {
            let _ = parse_row(&line, columns);
        }
    }
}
