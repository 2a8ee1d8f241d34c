//! Column values: the Postgres text output of one value, mapped to JSON by
//! its type OID and appended straight to the output buffer.
//!
//! Numbers and booleans become JSON numbers and booleans, json/jsonb is
//! embedded, arrays of those become JSON arrays; everything else, including
//! `numeric` (whose precision JSON parsers would lose), is the exact Postgres
//! text as a JSON string. Whatever the bytes, the output is valid JSON: a
//! value that does not look as its type promises falls back to a string.

mod embedded;

use postgres_types::{Kind, Type};

const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const JSON: u32 = 114;
const BOX: u32 = 603;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const VARCHAR: u32 = 1043;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;

/// Postgres' own limit on array dimensions (MAXDIM); also bounds our recursion.
const MAX_ARRAY_DIMS: usize = 6;

/// How values of one scalar type are mapped to JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueClass {
    Int,
    Float,
    Numeric,
    Bool,
    Json,
    Str,
}

/// The mapping for a scalar (non-array) type OID.
pub(crate) fn class_of(type_oid: u32) -> ValueClass {
    match type_oid {
        INT2 | INT4 | INT8 | OID => ValueClass::Int,
        FLOAT4 | FLOAT8 => ValueClass::Float,
        NUMERIC => ValueClass::Numeric,
        BOOL => ValueClass::Bool,
        JSON | JSONB => ValueClass::Json,
        _ => ValueClass::Str,
    }
}

/// Append the JSON for one column value given in Postgres text output format.
///
/// SQL NULL never gets here (the caller writes `null`). Arrays whose element
/// type Postgres does not know built in (enum or domain arrays) are strings,
/// as are malformed array literals and invalid json.
pub fn write_value(type_oid: u32, text: &[u8], out: &mut Vec<u8>) {
    match type_oid {
        // The common scalar types skip the catalogue lookup.
        TEXT | VARCHAR => write_json_string(text, out),
        BOOL | INT2 | INT4 | INT8 | OID | JSON | FLOAT4 | FLOAT8 | NUMERIC | JSONB => {
            write_scalar(class_of(type_oid), text, out)
        }
        _ => match Type::from_oid(type_oid).as_ref().map(Type::kind) {
            Some(Kind::Array(elem)) => write_array(elem.oid(), text, out),
            _ => write_json_string(text, out),
        },
    }
}

/// Append `text` as a JSON string (quoted, escaped). Invalid UTF-8 is
/// replaced by U+FFFD, as the database encoding is expected to be UTF-8.
pub fn write_json_string(text: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    if !write_escaped(text, false, out) {
        out.truncate(start);
        write_escaped(String::from_utf8_lossy(text).as_bytes(), true, out);
    }
}

/// What [`write_escaped`] does with each byte: copy it (0), check the rest
/// is UTF-8 ([`NON_ASCII`]), write `\u00XX` (`u`) or the two-byte escape `\x`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => b'u',
            0x80..=0xff => NON_ASCII,
            _ => 0,
        };
        b += 1;
    }
    table
};
const NON_ASCII: u8 = 1;

/// Quote and escape `s`, copying runs that need no escape in one go.
/// UTF-8 is validated only from the first non-ASCII byte on (most values are
/// ASCII); returns false, having written garbage, when `s` is not UTF-8.
fn write_escaped(s: &[u8], mut utf8_checked: bool, out: &mut Vec<u8>) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    let clean = clean_prefix_len(s);
    for (i, &b) in s.iter().enumerate().skip(clean) {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        if escape == NON_ASCII {
            if !utf8_checked {
                let rest = s.get(i..).unwrap_or_default();
                if std::str::from_utf8(rest).is_err() {
                    return false;
                }
                utf8_checked = true;
            }
            continue;
        }
        out.extend_from_slice(s.get(run_start..i).unwrap_or_default());
        run_start = i + 1;
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(s.get(run_start..).unwrap_or_default());
    out.push(b'"');
    true
}

/// Length of the leading whole 8-byte words that are plain ASCII needing no
/// escape, found a word at a time (most names and values are all such bytes).
fn clean_prefix_len(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `w` is zero (the classic borrow trick; exact for "any").
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let mut len = 0;
    for chunk in s.chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_ne_bytes(bytes);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
        if control
            || w & HIGHS != 0
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        len += 8;
    }
    len
}

/// One scalar value (a column or an array element) of the given class.
fn write_scalar(class: ValueClass, text: &[u8], out: &mut Vec<u8>) {
    match class {
        ValueClass::Int if is_json_integer(text) => out.extend_from_slice(text),
        // NaN and the infinities fail the syntax check and become strings.
        ValueClass::Float if is_json_number(text) => out.extend_from_slice(text),
        ValueClass::Bool if text == b"t" => out.extend_from_slice(b"true"),
        ValueClass::Bool if text == b"f" => out.extend_from_slice(b"false"),
        ValueClass::Json => write_embedded_json(text, out),
        _ => write_json_string(text, out),
    }
}

/// `-?(0|[1-9][0-9]*)`: an integer as JSON allows it.
fn is_json_integer(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    match digits {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(text: &[u8]) -> bool {
    let mut rest = text.strip_prefix(b"-").unwrap_or(text);
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int, after) = rest.split_at(int_len);
    if !(int == b"0" || matches!(int, [b'1'..=b'9', ..])) {
        return false;
    }
    rest = after;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = frac.get(n..).unwrap_or_default();
    }
    if let Some(exp) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exp = exp
            .strip_prefix(b"+")
            .or_else(|| exp.strip_prefix(b"-"))
            .unwrap_or(exp);
        return !exp.is_empty() && exp.iter().all(u8::is_ascii_digit);
    }
    rest.is_empty()
}

/// json/jsonb text embedded as JSON on one line, or a string if it is not JSON.
///
/// Whitespace outside strings is dropped instead of re-serializing through a
/// `serde_json::Value`, so key order, duplicate keys and number precision stay
/// exactly as stored. Raw newlines cannot occur inside valid JSON strings.
fn write_embedded_json(text: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    if !embedded::minify(text, out) {
        out.truncate(start);
        write_json_string(text, out);
    }
}

/// An array literal (`{1,2}`, `{{"a",NULL}}`, `[0:1]={7,8}`) as a JSON array,
/// or the whole text as a string when it is malformed.
fn write_array(elem_oid: u32, text: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let mut parser = ArrayParser {
        text,
        pos: 0,
        // box is the one built-in type whose text contains commas.
        delimiter: if elem_oid == BOX { b';' } else { b',' },
        class: class_of(elem_oid),
        scratch: Vec::new(),
    };
    if parser.parse(out).is_none() {
        out.truncate(start);
        write_json_string(text, out);
    }
}

/// Recursive-descent reader of Postgres' array text format (`array_out`),
/// lenient about whitespace as `array_in` is. `None` means malformed.
struct ArrayParser<'a> {
    text: &'a [u8],
    pos: usize,
    delimiter: u8,
    class: ValueClass,
    /// One element with its quoting and escapes removed.
    scratch: Vec<u8>,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn parse(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.skip_whitespace();
        if self.peek() == Some(b'[') {
            self.skip_dimensions()?;
        }
        self.skip_whitespace();
        self.parse_array(out, 1)?;
        self.skip_whitespace();
        (self.pos == self.text.len()).then_some(())
    }

    /// `[lo:hi][lo:hi]=`: the bounds of a non-1-based array; JSON has no place for them.
    fn skip_dimensions(&mut self) -> Option<()> {
        while self.peek() == Some(b'[') {
            self.pos += 1;
            loop {
                match self.next()? {
                    b']' => break,
                    b'0'..=b'9' | b'-' | b'+' | b':' => {}
                    _ => return None,
                }
            }
            self.skip_whitespace();
        }
        (self.next()? == b'=').then_some(())
    }

    fn parse_array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_ARRAY_DIMS || self.next()? != b'{' {
            return None;
        }
        out.push(b'[');
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.pos += 1;
            out.push(b']');
            return Some(());
        }
        // All items of one level are sub-arrays or all are elements.
        let mut nested = None;
        loop {
            self.skip_whitespace();
            let is_sub_array = self.peek()? == b'{';
            if *nested.get_or_insert(is_sub_array) != is_sub_array {
                return None;
            }
            if is_sub_array {
                self.parse_array(out, depth + 1)?;
            } else {
                self.parse_element(out)?;
            }
            self.skip_whitespace();
            match self.next()? {
                b'}' => {
                    out.push(b']');
                    return Some(());
                }
                d if d == self.delimiter => out.push(b','),
                _ => return None,
            }
        }
    }

    fn parse_element(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.scratch.clear();
        if self.peek()? == b'"' {
            self.pos += 1;
            loop {
                match self.next()? {
                    b'"' => break,
                    b'\\' => {
                        let b = self.next()?;
                        self.scratch.push(b);
                    }
                    b => self.scratch.push(b),
                }
            }
        } else {
            // Unquoted: ends at a delimiter or brace; surrounding whitespace is
            // not part of it, but escaped characters always are.
            let mut kept = 0;
            let mut had_escape = false;
            loop {
                match self.peek()? {
                    b'}' | b'{' | b'"' => break,
                    d if d == self.delimiter => break,
                    b'\\' => {
                        self.pos += 1;
                        let b = self.next()?;
                        self.scratch.push(b);
                        kept = self.scratch.len();
                        had_escape = true;
                    }
                    b => {
                        self.pos += 1;
                        self.scratch.push(b);
                        if !b.is_ascii_whitespace() {
                            kept = self.scratch.len();
                        }
                    }
                }
            }
            self.scratch.truncate(kept);
            if self.scratch.is_empty()
                || self.peek() != Some(b'}') && self.peek() != Some(self.delimiter)
            {
                return None;
            }
            if !had_escape && self.scratch.eq_ignore_ascii_case(b"NULL") {
                out.extend_from_slice(b"null");
                return Some(());
            }
        }
        write_scalar(self.class, &self.scratch, out);
        Some(())
    }
}

#[cfg(test)]
mod tests;
