//! json/jsonb values embedded in the event as JSON, in a single pass that
//! validates the text and drops the whitespace outside strings.
//!
//! Checking with a full parser first, then for lone surrogate escapes, then
//! copying without whitespace took three passes over every jsonb value and
//! was the largest cost of encoding a typical row; this does all three at
//! once. What is accepted is exactly what `serde_json` accepts (RFC 8259,
//! any nesting depth) minus lone `\uD800`..`\uDFFF` escapes, which most
//! parsers reject; anything else makes the caller fall back to a string.

use super::clean_prefix_len;

/// Where the value just written sits: the containers around it, innermost last.
/// The first 128 levels are bits of a `u128` (1 = object), deeper ones spill
/// into a vector, so the common case never allocates.
struct Nesting {
    depth: usize,
    bits: u128,
    deeper: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            self.bits = (self.bits & !(1 << self.depth)) | (u128::from(object) << self.depth);
        } else {
            self.deeper.push(object);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        if self.depth > 128 {
            self.deeper.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }

    /// Whether the innermost container is an object; `None` at the top level.
    fn in_object(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d if d <= 128 => Some(self.bits >> (d - 1) & 1 == 1),
            _ => self.deeper.last().copied(),
        }
    }
}

/// Append `text`, a JSON document, without insignificant whitespace.
/// Returns false (having written a partial copy) when it is not valid JSON.
pub(super) fn minify(text: &[u8], out: &mut Vec<u8>) -> bool {
    out.reserve(text.len());
    let mut m = Minifier {
        text,
        pos: 0,
        out,
        nesting: Nesting {
            depth: 0,
            bits: 0,
            deeper: Vec::new(),
        },
    };
    m.document().is_some()
}

struct Minifier<'a, 'o> {
    text: &'a [u8],
    pos: usize,
    out: &'o mut Vec<u8>,
    nesting: Nesting,
}

impl Minifier<'_, '_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// The next byte after whitespace, consumed.
    fn next_token(&mut self) -> Option<u8> {
        while let Some(b) = self.peek() {
            self.pos += 1;
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
        }
        None
    }

    fn document(&mut self) -> Option<()> {
        loop {
            // A value is expected.
            match self.next_token()? {
                b'{' => {
                    self.out.push(b'{');
                    match self.next_token()? {
                        b'}' => self.out.push(b'}'),
                        b'"' => {
                            self.nesting.push(true);
                            self.member_key()?;
                            continue;
                        }
                        _ => return None,
                    }
                }
                b'[' => {
                    self.out.push(b'[');
                    let save = self.pos;
                    if self.next_token() == Some(b']') {
                        self.out.push(b']');
                    } else {
                        self.pos = save;
                        self.nesting.push(false);
                        continue;
                    }
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b @ (b'-' | b'0'..=b'9') => self.number(b)?,
                _ => return None,
            }
            // A value is complete: close containers until one takes another.
            loop {
                match (self.nesting.in_object(), self.next_token()) {
                    (None, None) => return Some(()),
                    (Some(object), Some(b',')) => {
                        self.out.push(b',');
                        if object {
                            (self.next_token()? == b'"').then_some(())?;
                            self.member_key()?;
                        }
                        break;
                    }
                    (Some(true), Some(b'}')) | (Some(false), Some(b']')) => {
                        self.out.push(if self.nesting.in_object() == Some(true) {
                            b'}'
                        } else {
                            b']'
                        });
                        self.nesting.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A member's key (its opening quote consumed) and the colon after it.
    fn member_key(&mut self) -> Option<()> {
        self.string()?;
        (self.next_token()? == b':').then_some(())?;
        self.out.push(b':');
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let rest = word.get(1..)?;
        let end = self.pos + rest.len();
        (self.text.get(self.pos..end)? == rest).then_some(())?;
        self.pos = end;
        self.out.extend_from_slice(word);
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, first byte consumed.
    fn number(&mut self, first: u8) -> Option<()> {
        let start = self.pos - 1;
        let lead = if first == b'-' { self.bump()? } else { first };
        match lead {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.at_least_one_digit()?;
        }
        self.out.extend_from_slice(self.text.get(start..self.pos)?);
        Some(())
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        self.bump().filter(u8::is_ascii_digit)?;
        self.digits();
        Some(())
    }

    /// A string, opening quote consumed, copied as is once its escapes and
    /// (if it has non-ASCII bytes) its UTF-8 are checked. A high surrogate
    /// escape must be followed at once by a low one, and a low one must
    /// follow a high one. Outside strings only ASCII is valid at all.
    fn string(&mut self) -> Option<()> {
        let start = self.pos - 1;
        let mut high_pending = false;
        let mut non_ascii = false;
        loop {
            if !high_pending {
                // Plain ASCII runs go a word at a time.
                self.pos += clean_prefix_len(self.text.get(self.pos..).unwrap_or_default());
            }
            let b = self.bump()?;
            match b {
                b'"' if !high_pending => break,
                b'\\' => {
                    let escape = self.bump()?;
                    if escape == b'u' {
                        let hex = self.text.get(self.pos..self.pos + 4)?;
                        let unit = std::str::from_utf8(hex)
                            .ok()
                            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                            .and_then(|h| u16::from_str_radix(h, 16).ok())?;
                        self.pos += 4;
                        let is_low = (0xDC00..=0xDFFF).contains(&unit);
                        if high_pending != is_low {
                            return None;
                        }
                        high_pending = (0xD800..=0xDBFF).contains(&unit);
                    } else if high_pending
                        || !matches!(
                            escape,
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'
                        )
                    {
                        return None;
                    }
                }
                0x00..=0x1f => return None,
                _ if high_pending => return None,
                0x80..=0xff => non_ascii = true,
                _ => {}
            }
        }
        let string = self.text.get(start..self.pos)?;
        if non_ascii && std::str::from_utf8(string).is_err() {
            return None;
        }
        self.out.extend_from_slice(string);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::minify;

    /// The former three-pass implementation, as the reference.
    fn reference(text: &[u8]) -> Option<Vec<u8>> {
        let s = std::str::from_utf8(text).ok()?;
        serde_json::from_str::<serde::de::IgnoredAny>(s).ok()?;
        let mut high_pending = false;
        let mut i = 0;
        while let Some(&b) = text.get(i) {
            let unit = (b == b'\\' && text.get(i + 1) == Some(&b'u'))
                .then(|| text.get(i + 2..i + 6))
                .flatten()
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            let is_low = unit.is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
            if high_pending != is_low {
                return None;
            }
            high_pending = unit.is_some_and(|u| (0xD800..=0xDBFF).contains(&u));
            i += match (b, unit) {
                (_, Some(_)) => 6,
                (b'\\', None) => 2,
                _ => 1,
            };
        }
        if high_pending {
            return None;
        }
        let mut out = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        for &b in text {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                continue;
            } else if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
        Some(out)
    }

    fn ours(text: &[u8]) -> Option<Vec<u8>> {
        let mut out = b"prefix".to_vec();
        minify(text, &mut out).then(|| out.split_off(6))
    }

    #[test]
    fn minifies_like_the_reference_on_typical_and_edge_documents() {
        let cases: &[&[u8]] = &[
            br#"{"kind": "order", "items": [1, 2, 3], "flags": {"paid": true, "gift": false}, "note": "a b"}"#,
            b" [ ] ",
            b"{ }",
            b"[{}, [], [[]], {\"a\": [ {} ]}]",
            b"-0.5e+10",
            b"1e999",
            br#""\ud83d\ude00 \u00e9 \" \\ \/ \b \f \n \r \t""#,
            "\"é€😀\"".as_bytes(),
            b"",
            b"  ",
            b"01",
            b"1.",
            b"-",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1 2]",
            b"tru",
            b"nulls",
            b"\"\x01\"",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            br#"["\ud800"]"#,
            br#"["\udc00x"]"#,
            br#"["\ud800\n"]"#,
            br#"["\ud800\ud800"]"#,
            b"[\"a\"]]",
            b"\"\xff\"",
        ];
        for case in cases {
            assert_eq!(
                ours(case),
                reference(case),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn nesting_deeper_than_128_levels_is_handled_like_the_reference() {
        for depth in [127, 128, 129, 200, 1000] {
            let doc = format!("{}1{}", "[{\"k\": ".repeat(depth), "}]".repeat(depth));
            assert_eq!(ours(doc.as_bytes()), reference(doc.as_bytes()), "{depth}");
            assert!(ours(doc.as_bytes()).is_some(), "any depth is embedded");
            let unbalanced = format!("{}1{}]", "[".repeat(depth), "]".repeat(depth - 1));
            assert_eq!(
                ours(unbalanced.as_bytes()),
                reference(unbalanced.as_bytes())
            );
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_on_json_like_noise(
            parts in proptest::collection::vec(prop_oneof![
                Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"), Just(" "),
                Just("\n"), Just("\""), Just("\\"), Just("\\u"), Just("d800"), Just("dc00"),
                Just("00e9"), Just("a"), Just("0"), Just("1"), Just("-"), Just("."), Just("e"),
                Just("+"), Just("true"), Just("null"), Just("\"k\""), Just("é"), Just("\u{1}"),
            ], 0..24)
        ) {
            let text = parts.concat();
            prop_assert_eq!(ours(text.as_bytes()), reference(text.as_bytes()), "{}", text);
        }

        #[test]
        fn agrees_with_the_reference_on_serialized_values(
            v in proptest::arbitrary::any::<Vec<(String, Option<i64>, bool)>>()
        ) {
            let value = serde_json::json!(v);
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
            prop_assert_eq!(ours(pretty.as_bytes()), reference(pretty.as_bytes()));
        }
    }
}
