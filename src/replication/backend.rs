//! Backend message framing (tag byte + big-endian i32 length) and the few bodies we need.
//!
//! postgres-protocol's own backend parser does not know CopyBothResponse ('W'), which the
//! replication stream starts with, so framing is done here. Framing works on a `BytesMut` read
//! buffer and splits complete messages off it, so message bodies are zero-copy `Bytes` views.

use bytes::{Buf, Bytes, BytesMut};

use super::ReplicationError;

/// Largest message body we accept: PostgreSQL caps a message at 1 GB of payload; anything
/// beyond means the stream is out of sync, not a big row.
const MAX_MESSAGE_LEN: usize = 1 << 30;

/// One complete backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Message type byte, e.g. `b'd'` for CopyData.
    pub tag: u8,
    /// Message body without tag and length.
    pub body: Bytes,
}

/// Splits the next complete message off the front of `buf`, or returns how many more bytes
/// are needed at least (`Err(n)` inside `Ok`), so the reader can reserve space in one go.
pub(crate) fn try_frame(buf: &mut BytesMut) -> Result<Result<Frame, usize>, ReplicationError> {
    let Some(header) = buf.get(..5) else {
        return Ok(Err(5 - buf.len()));
    };
    let tag = header[0];
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (4..=MAX_MESSAGE_LEN).contains(l))
        .ok_or_else(|| {
            ReplicationError::Protocol(format!(
                "invalid length {len} for message type {:?}",
                char::from(tag)
            ))
        })?;
    let total = 1 + len;
    if buf.len() < total {
        return Ok(Err(total - buf.len()));
    }
    let mut frame = buf.split_to(total);
    frame.advance(5);
    Ok(Ok(Frame {
        tag,
        body: frame.freeze(),
    }))
}

/// The fields of an ErrorResponse or NoticeResponse that we report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorFields {
    /// Severity (`ERROR`, `FATAL`, `NOTICE`, ...).
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    /// Primary message, with detail and hint appended when present.
    pub message: String,
}

/// Parses the `(type byte, C string)*` list of an ErrorResponse/NoticeResponse.
pub(crate) fn error_fields(mut body: &[u8]) -> ErrorFields {
    let mut out = ErrorFields::default();
    let (mut detail, mut hint) = (String::new(), String::new());
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            break;
        }
        let (value, rest) = cstr(rest);
        body = rest;
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'V' => out.severity = value,
            b'S' if out.severity.is_empty() => out.severity = value,
            b'C' => out.code = value,
            b'M' => out.message = value,
            b'D' => detail = value,
            b'H' => hint = value,
            _ => {}
        }
    }
    if !detail.is_empty() {
        out.message = format!("{} (DETAIL: {detail})", out.message);
    }
    if !hint.is_empty() {
        out.message = format!("{} (HINT: {hint})", out.message);
    }
    out
}

/// Turns an ErrorResponse body into our error kind.
pub(crate) fn server_error(body: &[u8]) -> ReplicationError {
    let f = error_fields(body);
    ReplicationError::from_server(f.code, f.message)
}

/// Splits a NUL-terminated string off the front (all of it when the NUL is missing).
pub(crate) fn cstr(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// Parses a ParameterStatus body into `(name, value)`.
pub(crate) fn parameter_status(body: &[u8]) -> (String, String) {
    let (name, rest) = cstr(body);
    let (value, _) = cstr(rest);
    (
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    )
}

/// Parses a DataRow body (text format) into its column values.
pub(crate) fn data_row(mut body: &[u8]) -> Result<Vec<Option<String>>, ReplicationError> {
    let bad = || ReplicationError::Protocol("truncated DataRow message".into());
    if body.len() < 2 {
        return Err(bad());
    }
    let count = body.get_i16();
    let mut row = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        if body.len() < 4 {
            return Err(bad());
        }
        let len = body.get_i32();
        let Ok(len) = usize::try_from(len) else {
            row.push(None);
            continue;
        };
        let value = body.get(..len).ok_or_else(bad)?;
        let text = std::str::from_utf8(value)
            .map_err(|_| ReplicationError::Protocol("DataRow value is not UTF-8".into()))?;
        row.push(Some(text.to_string()));
        body.advance(len);
    }
    Ok(row)
}

/// `server_version` ("15.4 (Debian 15.4-1)", "9.6.24", "17devel") as `server_version_num`
/// (150004, 90624, 170000).
pub(crate) fn version_num(version: &str) -> u32 {
    let numeric: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    if major >= 10 {
        major * 10000 + minor
    } else {
        major * 10000 + minor * 100 + parts.next().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn frames_are_split_only_when_complete() {
        let mut wire = message(b'd', b"hello");
        wire.extend(message(b'Z', b"I"));
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let got = try_frame(&mut buf).unwrap();
            if i == 9 {
                let frame = got.unwrap();
                assert_eq!((frame.tag, &frame.body[..]), (b'd', &b"hello"[..]));
            } else if i == 15 {
                assert_eq!(got.unwrap().body, Bytes::from_static(b"I"));
            } else {
                assert!(got.is_err(), "byte {i}");
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn missing_byte_count_is_reported() {
        let mut buf = BytesMut::from(&message(b'd', b"hello")[..7]);
        assert_eq!(try_frame(&mut buf).unwrap(), Err(3));
        let mut buf = BytesMut::from(&b"d"[..]);
        assert_eq!(try_frame(&mut buf).unwrap(), Err(4));
    }

    #[test]
    fn absurd_lengths_are_protocol_errors() {
        let mut buf = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(matches!(
            try_frame(&mut buf),
            Err(ReplicationError::Protocol(_))
        ));
        let mut buf = BytesMut::from(&[b'd', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(try_frame(&mut buf).is_err());
    }

    #[test]
    fn error_response_fields_become_code_and_message() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"a\"\0Rauth_failed\0\0";
        let f = error_fields(body);
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "28P01");
        assert_eq!(f.message, "password authentication failed for user \"a\"");
        assert!(matches!(server_error(body), ReplicationError::Auth { .. }));
        let f = error_fields(b"C42704\0Mno slot\0Dsome detail\0Hdo this\0\0");
        assert_eq!(f.message, "no slot (DETAIL: some detail) (HINT: do this)");
    }

    #[test]
    fn data_rows_keep_nulls_and_reject_truncation() {
        let mut body = vec![0, 2];
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"ab");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(data_row(&body).unwrap(), vec![Some("ab".to_string()), None]);
        assert!(data_row(&body[..5]).is_err());
        assert!(data_row(&[0]).is_err());
    }

    #[test]
    fn server_versions_map_to_version_numbers() {
        assert_eq!(version_num("15.4 (Debian 15.4-1.pgdg120+1)"), 150004);
        assert_eq!(version_num("9.6.24"), 90624);
        assert_eq!(version_num("17devel"), 170000);
        assert_eq!(version_num("16beta1"), 160000);
        assert_eq!(version_num(""), 0);
    }

    #[test]
    fn parameter_status_splits_name_and_value() {
        assert_eq!(
            parameter_status(b"server_version\x0015.4\0"),
            ("server_version".to_string(), "15.4".to_string())
        );
    }
}
