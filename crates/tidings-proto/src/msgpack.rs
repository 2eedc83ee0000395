//! The `socket.io-msgpack-parser` encoding: one Socket.IO packet is one binary Engine.IO
//! message holding the MessagePack of the packet object `{type, data, nsp, id}`.
//!
//! The npm package (3.x) encodes with `notepack.io` 2.2 and decodes with `checkPacket`:
//! `type` an integer `0..=4` (there are no binary kinds: binary values travel inside `data` as
//! MessagePack `bin`), `nsp` a string, `data` shaped per type like the default parser's, `id`
//! absent or an integer. Other keys (socket.io-client adds `options`) are ignored.
//!
//! Inside tidings a packet has one shape whatever its encoding: a [`Packet`] whose JSON holds
//! placeholders `{"_placeholder":true,"num":N}` plus its binary attachments. [`decode`] turns
//! every binary value into an attachment (numbered depth-first, as the default parser
//! numbers them) and [`encode`] puts attachments back in place of their placeholders, so the
//! io layer, the recovery log and the cluster need not know which parser a server speaks.
//!
//! notepack's extensions, and what they become here (what `JSON.stringify` would make of them,
//! so that a packet relayed to the default parser reads the same):
//! - `bin` (a Node `Buffer`) and `ext` type 0 of any length (an `ArrayBuffer` or a typed
//!   array) — a binary attachment; tidings always sends `bin`;
//! - `fixext 1` type 0 (`undefined`) — `null` in an array, left out in a map;
//! - `fixext 8` type 0 (a `Date`) — its ISO 8601 string (`2026-12-06T10:00:00.000Z`);
//! - any other extension — `[type, <binary>]`, as notepack decodes it.
//!
//! A packet's `data` of nil counts as absent: python-socketio's msgpack serializer writes a
//! CONNECT without auth and every DISCONNECT that way.
//!
//! Map keys that are numbers, booleans or nil become strings, as they would as JavaScript
//! object keys. Nesting is limited to [`MAX_DEPTH`] levels (serde_json's own limit), and no
//! allocation is sized by a length the input announces before those bytes are present.
//!
//! ```
//! use serde_json::json;
//! use tidings_proto::Bytes;
//! use tidings_proto::msgpack;
//! use tidings_proto::packet::{placeholder, Packet, PacketKind};
//!
//! // socket.emit("file", Buffer.from([1, 2]), ack) with socket.io-msgpack-parser, on "/":
//! // {type: 2, data: ["file", <bin 0102>], options: {compress: true}, nsp: "/", id: 0}
//! let wire = b"\x85\xa4type\x02\xa4data\x92\xa4file\xc4\x02\x01\x02\
//!     \xa7options\x81\xa8compress\xc3\xa3nsp\xa1/\xa2id\x00";
//! let (packet, attachments) = msgpack::decode(&Bytes::from_static(wire))?;
//! assert_eq!(packet, Packet::event("/", "file", vec![placeholder(0)], Some(0), 1));
//! assert_eq!(packet.kind, PacketKind::BinaryEvent);
//! assert_eq!(attachments, vec![Bytes::from_static(&[1, 2])]);
//!
//! // And back: the placeholder becomes `bin` again.
//! let (again, _) = msgpack::decode(&Bytes::from(msgpack::encode(&packet, &attachments)))?;
//! assert_eq!(again, packet);
//! # Ok::<(), tidings_proto::msgpack::MsgpackError>(())
//! ```

use bytes::Bytes;
use rmp::Marker;
use serde_json::{Map, Number, Value};

use crate::packet::{self, DecodeError, MAX_ATTACHMENTS, Packet, PacketKind};

/// The deepest nesting of arrays and maps accepted in a packet (the packet map included).
pub const MAX_DEPTH: usize = 128;

/// Why a binary message is not a `socket.io-msgpack-parser` packet.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// The message ends inside a value.
    #[error("truncated msgpack")]
    Truncated,
    /// Bytes follow the packet.
    #[error("trailing bytes after the msgpack packet")]
    TrailingBytes,
    /// The reserved marker `0xc1`.
    #[error("invalid msgpack marker")]
    InvalidMarker,
    /// A string that is not UTF-8.
    #[error("msgpack string is not utf-8")]
    InvalidUtf8,
    /// A map key that is an array, a map or binary.
    #[error("msgpack map key is not a string or a number")]
    InvalidKey,
    /// Deeper than [`MAX_DEPTH`].
    #[error("msgpack nesting too deep")]
    TooDeep,
    /// The message is not a map (`{type, data, nsp, id}`).
    #[error("msgpack packet is not a map")]
    NotAMap,
    /// `type` missing or not an integer `0..=4`.
    #[error("invalid packet type")]
    InvalidType,
    /// `nsp` missing or not a string.
    #[error("missing namespace")]
    MissingNamespace,
    /// `id` not a non-negative integer.
    #[error("invalid packet id")]
    InvalidId,
    /// Binary data in a packet that cannot carry it (`CONNECT`, `CONNECT_ERROR`).
    #[error("binary data in a packet that cannot carry it")]
    UnexpectedBinary,
    /// The packet breaks a rule of the default parser's model (namespace, payload shape,
    /// attachment count): see [`Packet::decode`].
    #[error(transparent)]
    Packet(#[from] DecodeError),
}

/// Decodes one binary Engine.IO message as a `socket.io-msgpack-parser` packet: the packet,
/// with a placeholder for each binary value, and those values in placeholder order (slices of
/// `message`, not copies).
///
/// # Errors
///
/// A [`MsgpackError`] naming the first rule broken.
pub fn decode(message: &Bytes) -> Result<(Packet, Vec<Bytes>), MsgpackError> {
    let mut reader = Reader {
        input: message,
        pos: 0,
        attachments: Vec::new(),
    };
    let marker = Marker::from_u8(reader.byte()?);
    let len = match marker {
        Marker::FixMap(len) => usize::from(len),
        Marker::Map16 => usize::from(reader.be_u16()?),
        Marker::Map32 => reader.len32()?,
        _ => return Err(MsgpackError::NotAMap),
    };
    let (mut kind, mut namespace, mut id, mut data) = (None, None, None, None);
    for _ in 0..len {
        let key = reader.key()?;
        let value = reader.value(1)?;
        match key.as_str() {
            "type" => kind = value,
            "nsp" => namespace = value,
            "id" => id = value,
            // python-socketio writes an absent payload (`None`) as nil.
            "data" => data = value.filter(|v| !v.is_null()),
            _ => {}
        }
    }
    if reader.pos != message.len() {
        return Err(MsgpackError::TrailingBytes);
    }
    let attachments = reader.attachments;
    let kind = match kind.as_ref().and_then(Value::as_u64) {
        Some(0) => PacketKind::Connect,
        Some(1) => PacketKind::Disconnect,
        Some(2) if attachments.is_empty() => PacketKind::Event,
        Some(2) => PacketKind::BinaryEvent,
        Some(3) if attachments.is_empty() => PacketKind::Ack,
        Some(3) => PacketKind::BinaryAck,
        Some(4) => PacketKind::ConnectError,
        _ => return Err(MsgpackError::InvalidType),
    };
    if !attachments.is_empty() && !kind.is_binary() {
        return Err(MsgpackError::UnexpectedBinary);
    }
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(DecodeError::TooManyAttachments.into());
    }
    let Some(Value::String(namespace)) = namespace else {
        return Err(MsgpackError::MissingNamespace);
    };
    packet::check_namespace(&namespace)?;
    let id = match id {
        None => None,
        Some(id) => Some(id.as_u64().ok_or(MsgpackError::InvalidId)?),
    };
    packet::validate_payload(kind, id, data.as_ref())?;
    if let (true, Some(data)) = (kind.is_binary(), &data) {
        // An object shaped like a placeholder among real binary values would be taken for one
        // of them: refused, as the default parser refuses placeholders that do not add up.
        packet::validate_placeholders(data, attachments.len())?;
    }
    Ok((
        Packet {
            kind,
            namespace,
            id,
            data,
            attachments: attachments.len(),
        },
        attachments,
    ))
}

/// Encodes `packet` as `socket.io-msgpack-parser` does: the map `{type, data, nsp, id}`
/// (`data` and `id` only when present), binary kinds written as `EVENT`/`ACK` with each
/// placeholder replaced by its attachment as `bin`.
///
/// A placeholder whose `num` has no attachment is written as the object it is.
pub fn encode(packet: &Packet, attachments: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + attachments.iter().map(Bytes::len).sum::<usize>());
    let kind: u64 = match packet.kind {
        PacketKind::Connect => 0,
        PacketKind::Disconnect => 1,
        PacketKind::Event | PacketKind::BinaryEvent => 2,
        PacketKind::Ack | PacketKind::BinaryAck => 3,
        PacketKind::ConnectError => 4,
    };
    let entries = 2 + u32::from(packet.data.is_some()) + u32::from(packet.id.is_some());
    let binary = if packet.kind.is_binary() {
        attachments
    } else {
        &[]
    };
    // Writing into a `Vec` cannot fail: every `let _` below drops an `Ok`.
    let _ = rmp::encode::write_map_len(&mut out, entries);
    let _ = rmp::encode::write_str(&mut out, "type");
    let _ = rmp::encode::write_uint(&mut out, kind);
    if let Some(data) = &packet.data {
        let _ = rmp::encode::write_str(&mut out, "data");
        write_value(&mut out, data, binary);
    }
    let _ = rmp::encode::write_str(&mut out, "nsp");
    let namespace = if packet.namespace.is_empty() {
        packet::DEFAULT_NAMESPACE
    } else {
        &packet.namespace
    };
    let _ = rmp::encode::write_str(&mut out, namespace);
    if let Some(id) = packet.id {
        let _ = rmp::encode::write_str(&mut out, "id");
        let _ = rmp::encode::write_uint(&mut out, id);
    }
    out
}

/// Whether `message` starts like a `socket.io-msgpack-parser` packet: a map whose first key
/// is one of the packet's. Used for the hint when a server on the default parser receives one.
pub fn looks_like_msgpack(message: &[u8]) -> bool {
    let Some((&first, rest)) = message.split_first() else {
        return false;
    };
    let rest = match Marker::from_u8(first) {
        Marker::FixMap(n) if n > 0 => rest,
        Marker::Map16 => rest.get(2..).unwrap_or_default(),
        _ => return false,
    };
    [
        &b"\xa4type"[..],
        &b"\xa4data"[..],
        &b"\xa3nsp"[..],
        &b"\xa2id"[..],
    ]
    .iter()
    .any(|key| rest.starts_with(key))
}

fn write_value(out: &mut Vec<u8>, value: &Value, attachments: &[Bytes]) {
    match value {
        Value::Null => {
            let _ = rmp::encode::write_nil(out);
        }
        Value::Bool(b) => {
            let _ = rmp::encode::write_bool(out, *b);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let _ = rmp::encode::write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                let _ = rmp::encode::write_sint(out, i);
            } else {
                let _ = rmp::encode::write_f64(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        Value::String(s) => {
            let _ = rmp::encode::write_str(out, s);
        }
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(out, len32(items.len()));
            for item in items {
                write_value(out, item, attachments);
            }
        }
        Value::Object(map) => {
            if let Some(bytes) = placeholder_target(map, attachments) {
                let _ = rmp::encode::write_bin(out, bytes);
                return;
            }
            let _ = rmp::encode::write_map_len(out, len32(map.len()));
            for (key, item) in map {
                let _ = rmp::encode::write_str(out, key);
                write_value(out, item, attachments);
            }
        }
    }
}

/// A packet is at most `max_payload` bytes, far below 4 GiB; saturating keeps this total.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn placeholder_target<'a>(map: &Map<String, Value>, attachments: &'a [Bytes]) -> Option<&'a [u8]> {
    if attachments.is_empty() || map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    let num = usize::try_from(map.get("num")?.as_u64()?).ok()?;
    attachments.get(num).map(|b| &b[..])
}

/// A cursor over one message; binary values are collected into `attachments` as met.
struct Reader<'a> {
    input: &'a Bytes,
    pos: usize,
    attachments: Vec<Bytes>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, MsgpackError> {
        let end = self.pos.checked_add(n).ok_or(MsgpackError::Truncated)?;
        if end > self.input.len() {
            return Err(MsgpackError::Truncated);
        }
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        let range = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.input[range]);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.bytes::<1>()?[0])
    }

    fn be_u16(&mut self) -> Result<u16, MsgpackError> {
        Ok(u16::from_be_bytes(self.bytes()?))
    }

    fn len32(&mut self) -> Result<usize, MsgpackError> {
        let len = u32::from_be_bytes(self.bytes()?);
        usize::try_from(len).map_err(|_| MsgpackError::Truncated)
    }

    /// A length for `n` items, each at least one byte: more than the bytes left is a lie.
    fn count(&self, n: usize) -> Result<usize, MsgpackError> {
        if n > self.input.len() - self.pos {
            Err(MsgpackError::Truncated)
        } else {
            Ok(n)
        }
    }

    fn str(&mut self, len: usize) -> Result<String, MsgpackError> {
        let range = self.take(len)?;
        std::str::from_utf8(&self.input[range])
            .map(str::to_owned)
            .map_err(|_| MsgpackError::InvalidUtf8)
    }

    fn binary(&mut self, len: usize) -> Result<Value, MsgpackError> {
        let range = self.take(len)?;
        let num = self.attachments.len();
        self.attachments.push(self.input.slice(range));
        Ok(packet::placeholder(num))
    }

    /// A map key: a string, or a scalar written as JavaScript writes it as a property name.
    fn key(&mut self) -> Result<String, MsgpackError> {
        let marker = self.input.get(self.pos).copied().map(Marker::from_u8);
        if let Some(
            Marker::FixArray(_)
            | Marker::Array16
            | Marker::Array32
            | Marker::FixMap(_)
            | Marker::Map16
            | Marker::Map32
            | Marker::Bin8
            | Marker::Bin16
            | Marker::Bin32
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32
            | Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16,
        ) = marker
        {
            return Err(MsgpackError::InvalidKey);
        }
        match self.value(0)? {
            Some(Value::String(s)) => Ok(s),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            _ => Ok("null".to_owned()),
        }
    }

    /// The next value at nesting `depth`; `None` is notepack's `undefined`.
    fn value(&mut self, depth: usize) -> Result<Option<Value>, MsgpackError> {
        let marker = Marker::from_u8(self.byte()?);
        let value = match marker {
            Marker::FixPos(n) => Value::from(n),
            Marker::FixNeg(n) => Value::from(n),
            Marker::Null => Value::Null,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::U8 => Value::from(self.byte()?),
            Marker::U16 => Value::from(self.be_u16()?),
            Marker::U32 => Value::from(u32::from_be_bytes(self.bytes()?)),
            Marker::U64 => Value::from(u64::from_be_bytes(self.bytes()?)),
            Marker::I8 => Value::from(i8::from_be_bytes(self.bytes()?)),
            Marker::I16 => Value::from(i16::from_be_bytes(self.bytes()?)),
            Marker::I32 => Value::from(i32::from_be_bytes(self.bytes()?)),
            Marker::I64 => Value::from(i64::from_be_bytes(self.bytes()?)),
            // JSON has no NaN or infinity: `JSON.stringify` writes them as null.
            Marker::F32 => float(f64::from(f32::from_be_bytes(self.bytes()?))),
            Marker::F64 => float(f64::from_be_bytes(self.bytes()?)),
            Marker::FixStr(len) => Value::String(self.str(usize::from(len))?),
            Marker::Str8 => {
                let len = self.byte()?;
                Value::String(self.str(usize::from(len))?)
            }
            Marker::Str16 => {
                let len = self.be_u16()?;
                Value::String(self.str(usize::from(len))?)
            }
            Marker::Str32 => {
                let len = self.len32()?;
                Value::String(self.str(len)?)
            }
            Marker::Bin8 => {
                let len = self.byte()?;
                self.binary(usize::from(len))?
            }
            Marker::Bin16 => {
                let len = self.be_u16()?;
                self.binary(usize::from(len))?
            }
            Marker::Bin32 => {
                let len = self.len32()?;
                self.binary(len)?
            }
            Marker::FixArray(len) => self.array(usize::from(len), depth)?,
            Marker::Array16 => {
                let len = self.be_u16()?;
                self.array(usize::from(len), depth)?
            }
            Marker::Array32 => {
                let len = self.len32()?;
                self.array(len, depth)?
            }
            Marker::FixMap(len) => self.map(usize::from(len), depth)?,
            Marker::Map16 => {
                let len = self.be_u16()?;
                self.map(usize::from(len), depth)?
            }
            Marker::Map32 => {
                let len = self.len32()?;
                self.map(len, depth)?
            }
            Marker::FixExt1 => return self.ext(1),
            Marker::FixExt2 => return self.ext(2),
            Marker::FixExt4 => return self.ext(4),
            Marker::FixExt8 => return self.ext(8),
            Marker::FixExt16 => return self.ext(16),
            Marker::Ext8 => {
                let len = self.byte()?;
                return self.ext_var(usize::from(len));
            }
            Marker::Ext16 => {
                let len = self.be_u16()?;
                return self.ext_var(usize::from(len));
            }
            Marker::Ext32 => {
                let len = self.len32()?;
                return self.ext_var(len);
            }
            Marker::Reserved => return Err(MsgpackError::InvalidMarker),
        };
        Ok(Some(value))
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, MsgpackError> {
        if depth >= MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        let mut items = Vec::with_capacity(self.count(len)?);
        for _ in 0..len {
            items.push(self.value(depth + 1)?.unwrap_or(Value::Null));
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, MsgpackError> {
        if depth >= MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        // Two bytes at least per entry.
        let mut map = Map::with_capacity(self.count(len.saturating_mul(2))? / 2);
        for _ in 0..len {
            let key = self.key()?;
            match self.value(depth + 1)? {
                Some(value) => {
                    map.insert(key, value);
                }
                // `JSON.stringify` leaves out an undefined property.
                None => {
                    map.shift_remove(&key);
                }
            }
        }
        Ok(Value::Object(map))
    }

    /// A fixed-size extension of `len` bytes.
    fn ext(&mut self, len: usize) -> Result<Option<Value>, MsgpackError> {
        let kind = i8::from_be_bytes(self.bytes()?);
        match (kind, len) {
            (0, 1) => {
                self.take(1)?;
                Ok(None)
            }
            (0, 8) => {
                let hi = i32::from_be_bytes(self.bytes()?);
                let lo = u32::from_be_bytes(self.bytes()?);
                let millis = i64::from(hi) * (1 << 32) + i64::from(lo);
                Ok(Some(iso_date(millis)))
            }
            _ => Ok(Some(Value::Array(vec![
                Value::from(kind),
                self.binary(len)?,
            ]))),
        }
    }

    /// `ext 8/16/32`: type 0 is notepack's `ArrayBuffer`.
    fn ext_var(&mut self, len: usize) -> Result<Option<Value>, MsgpackError> {
        let kind = i8::from_be_bytes(self.bytes()?);
        let binary = self.binary(len)?;
        Ok(Some(if kind == 0 {
            binary
        } else {
            Value::Array(vec![Value::from(kind), binary])
        }))
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A MessagePack `Date` as JSON writes it ([`crate::date::iso8601`]; null outside
/// JavaScript's range).
fn iso_date(millis: i64) -> Value {
    crate::date::iso8601(millis).map_or(Value::Null, Value::String)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::packet::placeholder;

    fn decode_bytes(bytes: &[u8]) -> Result<(Packet, Vec<Bytes>), MsgpackError> {
        decode(&Bytes::copy_from_slice(bytes))
    }

    /// Bytes produced by notepack.io 2.2 (socket.io-msgpack-parser 3.0.2's encoder) in Node,
    /// for `{type, data, nsp, id}` objects as socket.io and socket.io-client build them.
    #[test]
    fn decodes_what_notepack_writes() {
        // {type:0, nsp:"/", data:{token:"x"}}: a CONNECT with auth.
        let connect = b"\x83\xa4type\x00\xa3nsp\xa1/\xa4data\x81\xa5token\xa1x";
        assert_eq!(
            decode_bytes(connect).unwrap(),
            (Packet::connect("/", Some(json!({"token": "x"}))), vec![])
        );
        // {type:3, data:[], nsp:"/chat", id:7}
        let ack = b"\x84\xa4type\x03\xa4data\x90\xa3nsp\xa5/chat\xa2id\x07";
        assert_eq!(
            decode_bytes(ack).unwrap().0,
            Packet::ack("/chat", 7, vec![], 0)
        );
        // {type:2, data:["e", 1.5, -1, 300, undefined, {a: undefined, b: null}], nsp:"/"}
        let event = b"\x83\xa4type\x02\xa4data\x96\xa1e\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\
            \xff\xcd\x01\x2c\xd4\x00\x00\x82\xa1a\xd4\x00\x00\xa1b\xc0\xa3nsp\xa1/";
        assert_eq!(
            decode_bytes(event).unwrap().0,
            Packet::event(
                "/",
                "e",
                vec![
                    json!(1.5),
                    json!(-1),
                    json!(300),
                    json!(null),
                    json!({"b": null})
                ],
                None,
                0
            )
        );
    }

    #[test]
    fn binary_values_become_attachments_depth_first() {
        // {type:2, nsp:"/", data:["b", {x: <bin 01>}, <ext0 0203>, [5, <fixext2 type 5>]]}
        let wire = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x94\xa1b\x81\xa1x\xc4\x01\x01\
            \xc7\x02\x00\x02\x03\xd5\x05\x04\x05";
        let (packet, attachments) = decode_bytes(wire).unwrap();
        assert_eq!(
            packet,
            Packet::event(
                "/",
                "b",
                vec![
                    json!({"x": placeholder(0)}),
                    placeholder(1),
                    json!([5, placeholder(2)]),
                ],
                None,
                3
            )
        );
        assert_eq!(attachments, vec![&[1u8][..], &[2, 3][..], &[4, 5][..]]);
        // Encoded back, every placeholder is `bin` (the ext's become bin too).
        let again = encode(&packet, &attachments);
        assert_eq!(decode_bytes(&again).unwrap(), (packet, attachments));
    }

    #[test]
    fn encodes_packet_maps() {
        let packet = Packet::connect("/", Some(json!({"sid": "ab"})));
        assert_eq!(
            encode(&packet, &[]),
            b"\x83\xa4type\x00\xa4data\x81\xa3sid\xa2ab\xa3nsp\xa1/"
        );
        let packet = Packet::disconnect("/x");
        assert_eq!(encode(&packet, &[]), b"\x82\xa4type\x01\xa3nsp\xa2/x");
        let packet = Packet::ack("/", 300, vec![json!(-2), json!(0.5)], 0);
        assert_eq!(
            encode(&packet, &[]),
            b"\x84\xa4type\x03\xa4data\x92\xfe\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00\
              \xa3nsp\xa1/\xa2id\xcd\x01\x2c"
        );
        let packet = Packet::event("/", "f", vec![placeholder(0)], None, 1);
        assert_eq!(
            encode(&packet, &[Bytes::from_static(b"zz")]),
            b"\x83\xa4type\x02\xa4data\x92\xa1f\xc4\x02zz\xa3nsp\xa1/"
        );
    }

    #[test]
    fn round_trips_every_kind() {
        let packets = [
            Packet::connect("/", None),
            Packet::connect("/a", Some(json!({"k": [1, true, null, "s"]}))),
            Packet::disconnect("/"),
            Packet::event("/n", "e", vec![json!({"z": 1, "a": 2})], Some(u64::MAX), 0),
            Packet::ack("/", 0, vec![], 0),
            Packet::connect_error("/", "no", Some(json!({"code": "x"}))),
            Packet::event("/", "b", vec![placeholder(0), placeholder(1)], Some(3), 2),
            Packet::ack("/", 9, vec![json!([placeholder(0)])], 1),
        ];
        for packet in packets {
            let attachments: Vec<Bytes> = (0..packet.attachments)
                .map(|i| Bytes::from(vec![i as u8; i + 1]))
                .collect();
            let wire = encode(&packet, &attachments);
            assert!(looks_like_msgpack(&wire), "{packet:?}");
            assert_eq!(
                decode_bytes(&wire).unwrap(),
                (packet.clone(), attachments),
                "{packet:?}"
            );
        }
    }

    #[test]
    fn dates_read_as_to_json_writes_them() {
        assert_eq!(iso_date(0), json!("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            iso_date(1_796_551_200_123),
            json!("2026-12-06T10:00:00.123Z")
        );
        assert_eq!(iso_date(-1), json!("1969-12-31T23:59:59.999Z"));
        assert_eq!(iso_date(951_782_400_000), json!("2000-02-29T00:00:00.000Z"));
        assert_eq!(
            iso_date(253_402_300_800_000),
            json!("+010000-01-01T00:00:00.000Z")
        );
        assert_eq!(iso_date(8_640_000_000_000_001), json!(null));
        // {type:2, nsp:"/", data:["d", <Date 0>]}
        let wire = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1d\xd7\x00\0\0\0\0\0\0\0\0";
        assert_eq!(
            decode_bytes(wire).unwrap().0.data,
            Some(json!(["d", "1970-01-01T00:00:00.000Z"]))
        );
    }

    #[test]
    fn refuses_what_the_js_decoder_refuses() {
        use MsgpackError::*;
        let cases: &[(&[u8], MsgpackError)] = &[
            (b"", Truncated),
            (b"\x90", NotAMap),
            (b"\xa2hi", NotAMap),
            (b"\x80", InvalidType),
            (b"\x82\xa4type\x05\xa3nsp\xa1/", InvalidType),
            (b"\x82\xa4type\xa10\xa3nsp\xa1/", InvalidType),
            (b"\x81\xa4type\x00", MissingNamespace),
            (b"\x82\xa4type\x00\xa3nsp\x01", MissingNamespace),
            (
                b"\x82\xa4type\x00\xa3nsp\xa1x",
                DecodeError::InvalidNamespace.into(),
            ),
            (
                b"\x83\xa4type\x00\xa3nsp\xa1/\xa4data\x90",
                DecodeError::InvalidPayload.into(),
            ),
            (
                b"\x82\xa4type\x02\xa3nsp\xa1/",
                DecodeError::InvalidPayload.into(),
            ),
            (
                b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x91\xa7connect",
                DecodeError::InvalidPayload.into(),
            ),
            (
                b"\x83\xa4type\x03\xa3nsp\xa1/\xa4data\x90",
                DecodeError::MissingId.into(),
            ),
            (
                b"\x84\xa4type\x02\xa3nsp\xa1/\xa4data\x91\xa1e\xa2id\xff",
                InvalidId,
            ),
            (
                b"\x84\xa4type\x02\xa3nsp\xa1/\xa4data\x91\xa1e\xa2id\xcb\x3f\xf8\0\0\0\0\0\0",
                InvalidId,
            ),
            (
                b"\x83\xa4type\x00\xa3nsp\xa1/\xa4data\x81\xa1k\xc4\x01\x00",
                UnexpectedBinary,
            ),
            (b"\x82\xa4type\x00\xa3nsp\xa1/\x00", TrailingBytes),
            (b"\x82\xa4type\x00\xa3nsp\xa2/", Truncated),
            (b"\x82\xa4type\x00\xa3nsp\xa1\xff", InvalidUtf8),
            (b"\x81\xc1\x00", InvalidMarker),
            (
                b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x91\x81\x90\x00",
                InvalidKey,
            ),
            // A literal placeholder beside binary data would be read as one of them.
            (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x93\xa1e\xc4\x00\x82\xac_placeholder\xc3\xa3num\x00", DecodeError::DuplicatePlaceholder.into()),
            // Lengths larger than the message allocate nothing.
            (
                b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\xdd\xff\xff\xff\xff",
                Truncated,
            ),
            (
                b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\xdf\xff\xff\xff\xff",
                Truncated,
            ),
            (
                b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\xc6\xff\xff\xff\xff",
                Truncated,
            ),
        ];
        for &(wire, expected) in cases {
            assert_eq!(decode_bytes(wire), Err(expected), "{wire:x?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut wire = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e".to_vec();
        wire.extend(std::iter::repeat_n(0x91u8, MAX_DEPTH));
        wire.push(0xc0);
        assert_eq!(decode_bytes(&wire), Err(MsgpackError::TooDeep));
        let mut ok = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e".to_vec();
        ok.extend(std::iter::repeat_n(0x91u8, MAX_DEPTH - 3));
        ok.push(0xc0);
        assert!(decode_bytes(&ok).is_ok());
    }

    #[test]
    fn nil_data_is_absent_as_python_socketio_writes_it() {
        // python-socketio: {'type': 1, 'data': None, 'nsp': '/'} and a CONNECT without auth.
        let disconnect = b"\x83\xa4type\x01\xa4data\xc0\xa3nsp\xa1/";
        assert_eq!(decode_bytes(disconnect).unwrap().0, Packet::disconnect("/"));
        let connect = b"\x83\xa4type\x00\xa4data\xc0\xa3nsp\xa2/a";
        assert_eq!(
            decode_bytes(connect).unwrap().0,
            Packet::connect("/a", None)
        );
    }

    #[test]
    fn unknown_keys_are_ignored_and_scalar_keys_stringified() {
        // {type:2, data:["e", {1: true}], options:{compress:true}, nsp:"/"}
        let wire = b"\x84\xa4type\x02\xa4data\x92\xa1e\x81\x01\xc3\
            \xa7options\x81\xa8compress\xc3\xa3nsp\xa1/";
        assert_eq!(
            decode_bytes(wire).unwrap().0.data,
            Some(json!(["e", {"1": true}]))
        );
    }

    #[test]
    fn the_hint_tells_the_parsers_apart() {
        assert!(looks_like_msgpack(b"\x83\xa4type\x00"));
        assert!(looks_like_msgpack(b"\x84\xa4data\x90"));
        assert!(!looks_like_msgpack(b"40"));
        assert!(!looks_like_msgpack(b"\x01\x02"));
        assert!(!looks_like_msgpack(b"\x80"));
        assert!(!looks_like_msgpack(b""));
    }
}
