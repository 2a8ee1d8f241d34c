//! A bounds-checked cursor over one payload: every read either succeeds or
//! returns a [`DecodeError`] naming the offset of the field that did not fit,
//! so malformed input can never panic.

use bytes::Bytes;

use super::DecodeError;
use crate::lsn::Lsn;
use crate::pgoutput::message::MessageKind;

/// Reads big-endian protocol fields from a payload, front to back.
pub(super) struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    kind: MessageKind,
}

impl<'a> Reader<'a> {
    /// A reader positioned at `pos` (just past the tag byte) of a message of `kind`.
    pub(super) fn new(data: &'a Bytes, pos: usize, kind: MessageKind) -> Self {
        Reader { data, pos, kind }
    }

    /// An error of this message at `offset`.
    pub(super) fn error_at(&self, offset: usize, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            kind: self.kind,
            offset,
            reason: reason.into(),
        }
    }

    /// The offset of the next unread byte.
    #[inline]
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, or an error at the current offset when fewer are left.
    #[inline]
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let data: &'a [u8] = self.data;
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| data.get(self.pos..end))
            .ok_or_else(|| {
                let left = self.remaining();
                self.error_at(
                    self.pos,
                    format!("{what} needs {n} bytes, only {left} left"),
                )
            })?;
        self.pos += n;
        Ok(slice)
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let at = self.pos;
        let slice = self.take(N, what)?;
        <[u8; N]>::try_from(slice).map_err(|_| self.error_at(at, "internal length mismatch"))
    }

    #[inline]
    pub(super) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    #[inline]
    pub(super) fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        self.array(what).map(i16::from_be_bytes)
    }

    #[inline]
    pub(super) fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        self.array(what).map(i32::from_be_bytes)
    }

    #[inline]
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    #[inline]
    pub(super) fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        self.array(what).map(i64::from_be_bytes)
    }

    #[inline]
    pub(super) fn lsn(&mut self, what: &str) -> Result<Lsn, DecodeError> {
        self.array(what).map(|b| Lsn(u64::from_be_bytes(b)))
    }

    /// A count or length field (Int16/Int32 on the wire) that must not be negative.
    #[inline]
    pub(super) fn count16(&mut self, what: &str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| self.error_at(at, format!("{what} is negative ({n})")))
    }

    /// Like [`Reader::count16`] for an Int32 field.
    #[inline]
    pub(super) fn count32(&mut self, what: &str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| self.error_at(at, format!("{what} is negative ({n})")))
    }

    /// A NUL-terminated UTF-8 string (the terminator is consumed, not returned).
    pub(super) fn cstr(&mut self, what: &str) -> Result<String, DecodeError> {
        let at = self.pos;
        let rest = self.data.get(at..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error_at(at, format!("{what}: no NUL terminator before the end")));
        };
        let raw = self.take(len, what)?;
        self.pos += 1; // the NUL found above
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|e| self.error_at(at, format!("{what} is not valid UTF-8: {e}")))
    }

    /// The next `n` bytes as a slice of the payload (shared, not copied).
    #[inline]
    pub(super) fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes, DecodeError> {
        let at = self.pos;
        self.take(n, what)?;
        Ok(self.data.slice(at..at + n))
    }

    /// Capacity to reserve for `count` items of at least `min_size` bytes each:
    /// never more than the bytes left could hold, so a forged count cannot
    /// make us allocate gigabytes before the truncation is noticed.
    #[inline]
    pub(super) fn capacity_for(&self, count: usize, min_size: usize) -> usize {
        count.min(self.remaining() / min_size.max(1))
    }

    /// Succeeds only if the whole payload was consumed.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error_at(
                self.pos,
                format!("{n} unexpected bytes after the end of the message"),
            )),
        }
    }
}
