//! Engine.IO v4 framing: packet types, WebSocket text frames and the HTTP long-polling payload.
//!
//! A text packet is one ASCII type digit followed by its data (`4hello`, `2probe`, `6`). Over
//! WebSocket, v4 sends binary messages as raw binary frames with no prefix. Over HTTP
//! long-polling, the packets of one request or response body are joined by the record separator
//! `0x1e`, and a binary message is written as `b` followed by standard padded base64.
//!
//! ```
//! use tidings_proto::engine::{self, Frame, PayloadItem, TextPacket};
//! use tidings_proto::Bytes;
//!
//! let frames = [Frame::message("hello"), Frame::binary(Bytes::from_static(&[1, 2, 3, 4]))];
//! let mut body = Vec::new();
//! engine::encode_payload(&frames, &mut body);
//! assert_eq!(body, b"4hello\x1ebAQIDBA==");
//!
//! let body = std::str::from_utf8(&body)?;
//! let items: Vec<_> = engine::decode_payload(body).collect::<Result<_, _>>()?;
//! assert_eq!(items[0], PayloadItem::Text(TextPacket::Message("hello")));
//! assert_eq!(items[1], PayloadItem::Binary(vec![1, 2, 3, 4]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;

/// The byte that separates packets in an HTTP long-polling body.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// The prefix of a base64-encoded binary message in an HTTP long-polling body.
pub const BINARY_PREFIX: u8 = b'b';

/// Decoding accepts base64 with or without padding: the JavaScript and Python clients both pad,
/// but the JavaScript server accepts either, and being stricter than it gains nothing.
const BASE64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The type of an Engine.IO packet; on the wire, the ASCII digits `'0'` to `'6'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: the handshake, sent by the server with the session JSON.
    Open,
    /// `1`: the transport is being closed.
    Close,
    /// `2`: a heartbeat probe (sent by the server in v4, or `2probe` during an upgrade).
    Ping,
    /// `3`: the answer to a ping.
    Pong,
    /// `4`: an application message (a Socket.IO packet).
    Message,
    /// `5`: the client switches to the probed transport.
    Upgrade,
    /// `6`: nothing; used to flush a pending long-poll during an upgrade.
    Noop,
}

impl PacketType {
    /// The type's wire digit, `'0'` to `'6'`.
    pub fn as_char(self) -> char {
        char::from(self.as_byte())
    }

    /// The type's wire digit as an ASCII byte, `b'0'` to `b'6'`.
    pub const fn as_byte(self) -> u8 {
        match self {
            Self::Open => b'0',
            Self::Close => b'1',
            Self::Ping => b'2',
            Self::Pong => b'3',
            Self::Message => b'4',
            Self::Upgrade => b'5',
            Self::Noop => b'6',
        }
    }

    /// The type whose wire digit is `byte`, if any.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }
}

/// A decoded Engine.IO text packet borrowing from its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextPacket<'a> {
    /// `0<json>`: the handshake data.
    Open(&'a str),
    /// `1`.
    Close,
    /// `2[data]`, e.g. `2probe`.
    Ping(&'a str),
    /// `3[data]`, e.g. `3probe`.
    Pong(&'a str),
    /// `4<data>`: an application message.
    Message(&'a str),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

impl<'a> TextPacket<'a> {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Open(_) => PacketType::Open,
            Self::Close => PacketType::Close,
            Self::Ping(_) => PacketType::Ping,
            Self::Pong(_) => PacketType::Pong,
            Self::Message(_) => PacketType::Message,
            Self::Upgrade => PacketType::Upgrade,
            Self::Noop => PacketType::Noop,
        }
    }

    /// The packet's data after the type digit; empty for `Close`, `Upgrade` and `Noop`.
    pub fn data(&self) -> &'a str {
        match *self {
            Self::Open(data) | Self::Ping(data) | Self::Pong(data) | Self::Message(data) => data,
            Self::Close | Self::Upgrade | Self::Noop => "",
        }
    }

    /// Encodes this packet back into a frame (dropped trailing data stays dropped).
    pub fn to_frame(&self) -> Frame {
        Frame::text(self.packet_type(), self.data())
    }
}

/// Decodes one Engine.IO text packet, such as a WebSocket text frame.
///
/// `"4hello"` is `Message("hello")`, `"2probe"` is `Ping("probe")`, `"3"` is `Pong("")` and `"6"`
/// is `Noop`. Trailing data after `Close`, `Upgrade` and `Noop` is ignored, as the reference
/// server ignores it.
///
/// # Errors
///
/// [`EngineDecodeError::Empty`] for an empty input, [`EngineDecodeError::UnknownType`] when the
/// first character is not a type digit.
pub fn decode_text(input: &str) -> Result<TextPacket<'_>, EngineDecodeError> {
    let first = *input.as_bytes().first().ok_or(EngineDecodeError::Empty)?;
    let kind = PacketType::from_byte(first).ok_or(EngineDecodeError::UnknownType)?;
    // The first byte is an ASCII digit, so index 1 is a char boundary.
    let data = input.get(1..).unwrap_or_default();
    Ok(match kind {
        PacketType::Open => TextPacket::Open(data),
        PacketType::Close => TextPacket::Close,
        PacketType::Ping => TextPacket::Ping(data),
        PacketType::Pong => TextPacket::Pong(data),
        PacketType::Message => TextPacket::Message(data),
        PacketType::Upgrade => TextPacket::Upgrade,
        PacketType::Noop => TextPacket::Noop,
    })
}

/// An outbound frame, already encoded exactly as it goes on the wire.
///
/// `Text` holds the full text of one Engine.IO text packet including its type digit (always valid
/// UTF-8 when built by the constructors here); `Binary` holds the raw bytes of a binary message
/// (no prefix: v4 sends binary WebSocket frames raw). Cloning is cheap: it shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// An encoded text packet, e.g. `42["a"]`.
    Text(Bytes),
    /// A binary message's bytes.
    Binary(Bytes),
}

impl Frame {
    /// The text packet of type `kind` carrying `data`.
    ///
    /// `Frame::text(PacketType::Message, "2[\"a\"]")` is the text `42["a"]`.
    pub fn text(kind: PacketType, data: &str) -> Frame {
        let mut encoded = Vec::with_capacity(1 + data.len());
        encoded.push(kind.as_byte());
        encoded.extend_from_slice(data.as_bytes());
        Frame::Text(Bytes::from(encoded))
    }

    /// The message packet carrying `data`: `Frame::text(PacketType::Message, data)`.
    pub fn message(data: &str) -> Frame {
        Frame::text(PacketType::Message, data)
    }

    /// A text frame from a fully encoded static packet, such as `"2"`, `"6"` or `"3probe"`.
    /// Does not allocate.
    pub fn from_static(encoded: &'static str) -> Frame {
        Frame::Text(Bytes::from_static(encoded.as_bytes()))
    }

    /// A text frame that takes ownership of a fully encoded packet (type digit included),
    /// without copying it.
    pub fn from_encoded(encoded: String) -> Frame {
        Frame::Text(Bytes::from(encoded.into_bytes()))
    }

    /// A binary message frame.
    pub fn binary(data: Bytes) -> Frame {
        Frame::Binary(data)
    }

    /// The encoded length in bytes as sent over WebSocket, for buffer accounting. (Over
    /// long-polling a binary frame grows to `1 + 4 * ceil(len / 3)` bytes.)
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the encoded frame has no bytes (only possible for an empty binary message).
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Frame::Binary(_))
    }

    /// The encoded bytes: the packet text for `Text`, the raw message for `Binary`.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::Text(bytes) | Frame::Binary(bytes) => bytes,
        }
    }

    /// For a text frame, the encoded packet as `&str`; `None` for binary frames (and for a text
    /// frame built by hand from bytes that are not UTF-8).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(bytes) => std::str::from_utf8(bytes).ok(),
            Frame::Binary(_) => None,
        }
    }

    /// The encoded bytes, shared rather than copied.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Frame::Text(bytes) | Frame::Binary(bytes) => bytes,
        }
    }
}

/// Encodes frames as one HTTP long-polling response body, appending to `out`.
///
/// Packets are joined by the record separator `0x1e`; a binary frame becomes `b` followed by
/// standard padded base64 of its bytes. No frames append nothing.
pub fn encode_payload<'a>(frames: impl IntoIterator<Item = &'a Frame>, out: &mut Vec<u8>) {
    for (index, frame) in frames.into_iter().enumerate() {
        if index > 0 {
            out.push(RECORD_SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.extend_from_slice(text),
            Frame::Binary(data) => {
                out.push(BINARY_PREFIX);
                push_base64(data, out);
            }
        }
    }
}

/// The length of `frame` once written into a long-polling body (without separator).
pub fn payload_len(frame: &Frame) -> usize {
    match frame {
        Frame::Text(text) => text.len(),
        Frame::Binary(data) => 1 + data.len().div_ceil(3) * 4,
    }
}

fn push_base64(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    match out
        .get_mut(start..)
        .map(|tail| STANDARD.encode_slice(data, tail))
    {
        Some(Ok(written)) => out.truncate(start + written),
        // Unreachable: the tail is sized for padded output. Fall back to an allocation.
        _ => {
            out.truncate(start);
            out.extend_from_slice(STANDARD.encode(data).as_bytes());
        }
    }
}

/// One packet of a decoded HTTP long-polling request body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PayloadItem<'a> {
    /// A text packet.
    Text(TextPacket<'a>),
    /// A binary message, decoded from its base64.
    Binary(Vec<u8>),
}

/// Splits an HTTP long-polling request body (a POST) into its packets.
///
/// Parts are separated by `0x1e`; a part starting with `b` is a base64 binary message, anything
/// else is decoded with [`decode_text`]. The iterator yields one item per part, so the caller
/// decides whether to stop at the first error (the reference server closes the session).
///
/// # Errors
///
/// Each item is an error when its part is empty (an empty body is one empty part), has an unknown
/// type, or is binary with invalid base64.
pub fn decode_payload(
    body: &str,
) -> impl Iterator<Item = Result<PayloadItem<'_>, EngineDecodeError>> {
    body.split(char::from(RECORD_SEPARATOR))
        .map(decode_payload_item)
}

/// Decodes one part of a long-polling body: `b<base64>` or a text packet.
///
/// # Errors
///
/// As [`decode_text`], plus [`EngineDecodeError::InvalidBase64`].
pub fn decode_payload_item(part: &str) -> Result<PayloadItem<'_>, EngineDecodeError> {
    match part.strip_prefix(char::from(BINARY_PREFIX)) {
        Some(encoded) => BASE64_DECODE
            .decode(encoded)
            .map(PayloadItem::Binary)
            .map_err(|_| EngineDecodeError::InvalidBase64),
        None => decode_text(part).map(PayloadItem::Text),
    }
}

/// Why an Engine.IO packet or payload could not be decoded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum EngineDecodeError {
    /// The packet (or a part of a polling body) was empty.
    #[error("empty packet")]
    Empty,
    /// The first character was not a packet type digit `0`-`6`.
    #[error("unknown packet type")]
    UnknownType,
    /// A `b` part of a polling body was not valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// An Engine.IO v3 payload whose framing is broken (a length missing, not a number, or
    /// longer than the body; see [`crate::eio3`]).
    #[error("invalid payload framing")]
    InvalidPayload,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn packet_type_digits_round_trip() {
        let all = [
            PacketType::Open,
            PacketType::Close,
            PacketType::Ping,
            PacketType::Pong,
            PacketType::Message,
            PacketType::Upgrade,
            PacketType::Noop,
        ];
        for (digit, kind) in ('0'..='6').zip(all) {
            assert_eq!(kind.as_char(), digit);
            assert_eq!(PacketType::from_byte(digit as u8), Some(kind));
        }
        assert_eq!(PacketType::from_byte(b'7'), None);
        assert_eq!(PacketType::from_byte(b'b'), None);
    }

    #[test]
    fn decodes_every_type() {
        let open = r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":300}"#;
        assert_eq!(
            decode_text(open),
            Ok(TextPacket::Open(
                r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":300}"#
            ))
        );
        assert_eq!(decode_text("1"), Ok(TextPacket::Close));
        assert_eq!(decode_text("2"), Ok(TextPacket::Ping("")));
        assert_eq!(decode_text("2probe"), Ok(TextPacket::Ping("probe")));
        assert_eq!(decode_text("3"), Ok(TextPacket::Pong("")));
        assert_eq!(decode_text("3probe"), Ok(TextPacket::Pong("probe")));
        assert_eq!(decode_text("4hello"), Ok(TextPacket::Message("hello")));
        assert_eq!(decode_text("4"), Ok(TextPacket::Message("")));
        assert_eq!(decode_text("4héllo €"), Ok(TextPacket::Message("héllo €")));
        assert_eq!(decode_text("5"), Ok(TextPacket::Upgrade));
        assert_eq!(decode_text("6"), Ok(TextPacket::Noop));
    }

    #[test]
    fn ignores_trailing_data_on_dataless_types() {
        assert_eq!(decode_text("1bye"), Ok(TextPacket::Close));
        assert_eq!(decode_text("5x"), Ok(TextPacket::Upgrade));
        assert_eq!(decode_text("6noop"), Ok(TextPacket::Noop));
    }

    #[test]
    fn rejects_empty_and_unknown() {
        assert_eq!(decode_text(""), Err(EngineDecodeError::Empty));
        assert_eq!(decode_text("7"), Err(EngineDecodeError::UnknownType));
        assert_eq!(decode_text("abc"), Err(EngineDecodeError::UnknownType));
        assert_eq!(decode_text("bAQID"), Err(EngineDecodeError::UnknownType));
        assert_eq!(decode_text("€"), Err(EngineDecodeError::UnknownType));
        assert_eq!(decode_text(" 4"), Err(EngineDecodeError::UnknownType));
    }

    #[test]
    fn text_packet_accessors() {
        let packet = TextPacket::Ping("probe");
        assert_eq!(packet.packet_type(), PacketType::Ping);
        assert_eq!(packet.data(), "probe");
        assert_eq!(packet.to_frame(), Frame::from_static("2probe"));
        assert_eq!(TextPacket::Noop.data(), "");
        assert_eq!(TextPacket::Close.to_frame(), Frame::from_static("1"));
    }

    #[test]
    fn frame_constructors() {
        let frame = Frame::text(PacketType::Message, "2[\"a\"]");
        assert_eq!(frame, Frame::Text(Bytes::from_static(b"42[\"a\"]")));
        assert_eq!(frame.as_text(), Some("42[\"a\"]"));
        assert_eq!(frame.len(), 7);
        assert!(!frame.is_empty());
        assert!(!frame.is_binary());
        assert_eq!(Frame::message("hi"), Frame::from_static("4hi"));
        assert_eq!(
            Frame::from_encoded("3probe".to_owned()),
            Frame::from_static("3probe")
        );
        assert_eq!(Frame::text(PacketType::Noop, ""), Frame::from_static("6"));

        let binary = Frame::binary(Bytes::from_static(&[0xff, 0]));
        assert_eq!(binary.as_text(), None);
        assert_eq!(binary.len(), 2);
        assert!(binary.is_binary());
        assert_eq!(binary.as_bytes(), &[0xff, 0]);
        assert!(Frame::binary(Bytes::new()).is_empty());
        assert_eq!(
            Frame::Text(Bytes::from_static(&[b'4', 0xff])).as_text(),
            None
        );
    }

    #[test]
    fn encodes_payload() {
        let frames = [
            Frame::from_static("2"),
            Frame::message("hello"),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::binary(Bytes::from_static(&[1, 2, 3])),
            Frame::binary(Bytes::from_static(&[1, 2])),
            Frame::binary(Bytes::new()),
            Frame::from_static("6"),
        ];
        let mut out = b"keep:".to_vec();
        encode_payload(&frames, &mut out);
        assert_eq!(
            out,
            b"keep:2\x1e4hello\x1ebAQIDBA==\x1ebAQID\x1ebAQI=\x1eb\x1e6".to_vec()
        );
        let lengths: usize = frames.iter().map(payload_len).sum::<usize>() + frames.len() - 1;
        assert_eq!(lengths, out.len() - 5);

        let mut empty = Vec::new();
        encode_payload(&[], &mut empty);
        assert!(empty.is_empty());
        encode_payload(&[Frame::from_static("6")], &mut empty);
        assert_eq!(empty, b"6");
    }

    #[test]
    fn decodes_mixed_payload() {
        let body = "4hello\u{1e}bAQIDBA==\u{1e}2probe\u{1e}1\u{1e}b\u{1e}4€";
        let items: Vec<_> = decode_payload(body).collect();
        assert_eq!(
            items,
            vec![
                Ok(PayloadItem::Text(TextPacket::Message("hello"))),
                Ok(PayloadItem::Binary(vec![1, 2, 3, 4])),
                Ok(PayloadItem::Text(TextPacket::Ping("probe"))),
                Ok(PayloadItem::Text(TextPacket::Close)),
                Ok(PayloadItem::Binary(Vec::new())),
                Ok(PayloadItem::Text(TextPacket::Message("€"))),
            ]
        );
    }

    #[test]
    fn payload_round_trip_mixed() {
        let frames = vec![
            Frame::message("2[\"a\",1]"),
            Frame::binary(Bytes::from_static(b"\x00\xff\x10binary")),
            Frame::message("51-[\"b\",{\"_placeholder\":true,\"num\":0}]"),
            Frame::binary(Bytes::from_static(&[9; 100])),
            Frame::from_static("3"),
        ];
        let mut body = Vec::new();
        encode_payload(&frames, &mut body);
        let body = std::str::from_utf8(&body).unwrap();
        let decoded: Vec<Frame> = decode_payload(body)
            .map(|item| match item.unwrap() {
                PayloadItem::Text(packet) => packet.to_frame(),
                PayloadItem::Binary(data) => Frame::binary(Bytes::from(data)),
            })
            .collect();
        assert_eq!(decoded, frames);
    }

    #[test]
    fn accepts_unpadded_base64() {
        let items: Vec<_> = decode_payload("bAQI\u{1e}bAQIDBA").collect();
        assert_eq!(
            items,
            vec![
                Ok(PayloadItem::Binary(vec![1, 2])),
                Ok(PayloadItem::Binary(vec![1, 2, 3, 4]))
            ]
        );
    }

    #[test]
    fn rejects_bad_payloads() {
        let first = |body| decode_payload(body).next();
        assert_eq!(first(""), Some(Err(EngineDecodeError::Empty)));
        assert_eq!(first("b!!!"), Some(Err(EngineDecodeError::InvalidBase64)));
        assert_eq!(first("bAQIDB"), Some(Err(EngineDecodeError::InvalidBase64)));
        assert_eq!(first("x"), Some(Err(EngineDecodeError::UnknownType)));
        let items: Vec<_> = decode_payload("4a\u{1e}\u{1e}4b\u{1e}").collect();
        assert_eq!(
            items,
            vec![
                Ok(PayloadItem::Text(TextPacket::Message("a"))),
                Err(EngineDecodeError::Empty),
                Ok(PayloadItem::Text(TextPacket::Message("b"))),
                Err(EngineDecodeError::Empty),
            ]
        );
    }

    #[test]
    fn error_messages_are_lowercase() {
        for error in [
            EngineDecodeError::Empty,
            EngineDecodeError::UnknownType,
            EngineDecodeError::InvalidBase64,
        ] {
            let message = error.to_string();
            assert!(
                message.chars().next().is_some_and(char::is_lowercase),
                "{message}"
            );
            assert!(!message.ends_with('.'));
        }
    }
}
