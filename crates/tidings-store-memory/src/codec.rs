//! A small binary encoding for the store's state and the journal's records: little-endian
//! fixed-width integers, LEB128 varints, length-prefixed strings.
//!
//! Decoding never panics and never allocates more than the input holds: every length is
//! checked against the bytes left, so a corrupt or hostile file gives a [`DecodeError`].

use std::fmt;

use bytes::Bytes;
use tidings_core::store::{MessageId, SubscriptionName, Topic};

/// The input is not what the encoder writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte position in the input where decoding failed.
    pub at: usize,
    /// What was expected there.
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.at, self.what)
    }
}

impl std::error::Error for DecodeError {}

/// Appends encoded values to a buffer.
#[derive(Debug)]
pub struct Encoder<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Encoder<'a> {
    /// Writes to the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Encoder { buf }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A varint (1 byte below 128, at most 10).
    pub fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A varint.
    pub fn u32(&mut self, v: u32) {
        self.u64(u64::from(v));
    }

    /// A length as a varint.
    pub fn count(&mut self, v: usize) {
        self.u64(v as u64);
    }

    /// 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.count(v.len());
        self.buf.extend_from_slice(v);
    }

    /// Length-prefixed UTF-8.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// An optional string: a flag byte, then the string.
    pub fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }

    /// A message's binary attachments: a count, then each as length-prefixed bytes.
    pub fn attachments(&mut self, v: &[Bytes]) {
        self.count(v.len());
        for a in v {
            self.bytes(a);
        }
    }

    /// 16 bytes, little-endian.
    pub fn message_id(&mut self, id: MessageId) {
        self.buf.extend_from_slice(&id.0.to_le_bytes());
    }

    /// A topic name.
    pub fn topic(&mut self, t: &Topic) {
        self.str(t.as_str());
    }

    /// A subscription, as its key (`id:…` or `group:…`).
    pub fn subscription(&mut self, s: &SubscriptionName) {
        self.str(&s.key());
    }
}

/// Reads values written by [`Encoder`].
#[derive(Debug)]
pub struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Reads `input` from its start.
    pub fn new(input: &'a [u8]) -> Self {
        Decoder { input, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// A decoding error at the current position.
    pub fn error(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            at: self.pos,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.error(format!(
                "{what}: {n} bytes needed, {} left",
                self.remaining()
            )));
        }
        let out = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1, "a byte")?[0])
    }

    /// A varint.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error("a varint longer than 10 bytes"))
    }

    /// A varint that fits 32 bits.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let v = self.u64()?;
        u32::try_from(v).map_err(|_| self.error(format!("{v} does not fit 32 bits")))
    }

    /// A count of items that each take at least one byte: never more than the bytes left, so
    /// a corrupt count cannot make the caller allocate more than the input.
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let v = self.u64()?;
        match usize::try_from(v) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(self.error(format!(
                "a length of {v} with {} bytes left",
                self.remaining()
            ))),
        }
    }

    /// Attachments written by [`Encoder::attachments`].
    pub fn attachments(&mut self) -> Result<Vec<Bytes>, DecodeError> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Bytes::copy_from_slice(self.bytes()?));
        }
        Ok(out)
    }

    /// 0 or 1.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.error(format!("a flag of {b}"))),
        }
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.count()?;
        self.take(n, "bytes")
    }

    /// Length-prefixed UTF-8.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError {
            at,
            what: "a string that is not UTF-8".to_owned(),
        })
    }

    /// An owned string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    /// An optional string.
    pub fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(if self.bool()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    /// 16 bytes, little-endian.
    pub fn message_id(&mut self) -> Result<MessageId, DecodeError> {
        let bytes = self.take(16, "a message id")?;
        let mut raw = [0u8; 16];
        raw.copy_from_slice(bytes);
        Ok(MessageId(u128::from_le_bytes(raw)))
    }

    /// A valid topic name.
    pub fn topic(&mut self) -> Result<Topic, DecodeError> {
        let at = self.pos;
        let s = self.str()?;
        Topic::new(s).map_err(|e| DecodeError {
            at,
            what: e.to_string(),
        })
    }

    /// A valid subscription key.
    pub fn subscription(&mut self) -> Result<SubscriptionName, DecodeError> {
        let at = self.pos;
        let s = self.str()?;
        SubscriptionName::from_key(s).map_err(|e| DecodeError {
            at,
            what: e.to_string(),
        })
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.error(format!("{} bytes after the end", self.remaining())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut buf = Vec::new();
        let mut e = Encoder::new(&mut buf);
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            e.u64(v);
        }
        e.str("héllo");
        e.opt_str(None);
        e.opt_str(Some(""));
        e.message_id(MessageId(u128::MAX - 7));
        e.bool(true);
        let mut d = Decoder::new(&buf);
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(d.u64().unwrap(), v);
        }
        assert_eq!(d.str().unwrap(), "héllo");
        assert_eq!(d.opt_string().unwrap(), None);
        assert_eq!(d.opt_string().unwrap(), Some(String::new()));
        assert_eq!(d.message_id().unwrap(), MessageId(u128::MAX - 7));
        assert!(d.bool().unwrap());
        d.finish().unwrap();
    }

    #[test]
    fn a_length_beyond_the_input_is_an_error_not_an_allocation() {
        let mut buf = Vec::new();
        Encoder::new(&mut buf).u64(u64::MAX / 2);
        let err = Decoder::new(&buf).bytes().unwrap_err();
        assert!(err.what.contains("length"), "{err}");
    }

    #[test]
    fn truncated_and_overlong_varints_are_errors() {
        assert!(Decoder::new(&[0x80]).u64().is_err());
        assert!(Decoder::new(&[0xff; 11]).u64().is_err());
        assert!(Decoder::new(&[2, 0xff, 0xfe]).str().is_err());
    }
}
