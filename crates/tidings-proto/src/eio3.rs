//! Engine.IO v3's long-polling payloads, for `socket.io-client` 2.x (`--allow-eio3`).
//!
//! The packets are v4's (`0`–`6`, text as in [`crate::engine`]); what differs is how a polling
//! body holds them and how a binary message is framed:
//!
//! - **text payload** — each packet as `<length>:<packet>`, the length counted in UTF-16 code
//!   units (JavaScript string length), a binary message as the packet `b4<base64>`. The server
//!   sends this when the client asked for base64 (`b64=1`) or when nothing in the response is
//!   binary; the client sends it when nothing in its body is binary.
//! - **binary payload** — each packet as a kind byte (`0` text, `1` binary), the decimal digits
//!   of its length as bytes `0`–`9`, the byte `255`, then the packet: the UTF-8 text, or the
//!   type byte `4` followed by the binary data (the length counts that byte).
//! - Over WebSocket a binary message likewise starts with the type byte `4`
//!   ([`BINARY_MESSAGE_TYPE`]).
//!
//! ```
//! use tidings_proto::Bytes;
//! use tidings_proto::eio3::{self, Payload};
//! use tidings_proto::engine::Frame;
//!
//! let frames = [Frame::message("2[\"é\"]"), Frame::binary(Bytes::from_static(&[1, 2]))];
//! let mut text = Vec::new();
//! assert_eq!(eio3::encode_payload(&frames, false, &mut text), Payload::Text);
//! assert_eq!(text, "7:42[\"é\"]6:b4AQI=".as_bytes());
//! let mut binary = Vec::new();
//! assert_eq!(eio3::encode_payload(&frames, true, &mut binary), Payload::Binary);
//! assert_eq!(binary, b"\x00\x08\xff42[\"\xc3\xa9\"]\x01\x03\xff\x04\x01\x02");
//! # Ok::<(), tidings_proto::engine::EngineDecodeError>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::engine::{EngineDecodeError, Frame, PayloadItem, decode_text};

/// The type byte (`message`) before the data of a binary message, over WebSocket and inside a
/// binary payload.
pub const BINARY_MESSAGE_TYPE: u8 = 4;

/// Which kind of body [`encode_payload`] wrote (its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `text/plain; charset=UTF-8`.
    Text,
    /// `application/octet-stream`.
    Binary,
}

/// Encodes `frames` as one polling response body, appending to `out`: a binary payload when
/// `supports_binary` (the client did not ask for `b64=1`) and a frame is binary, else a text
/// payload.
pub fn encode_payload(frames: &[Frame], supports_binary: bool, out: &mut Vec<u8>) -> Payload {
    if supports_binary && frames.iter().any(Frame::is_binary) {
        for frame in frames {
            match frame {
                Frame::Text(text) => {
                    push_binary_header(out, 0, text.len());
                    out.extend_from_slice(text);
                }
                Frame::Binary(data) => {
                    push_binary_header(out, 1, data.len() + 1);
                    out.push(BINARY_MESSAGE_TYPE);
                    out.extend_from_slice(data);
                }
            }
        }
        return Payload::Binary;
    }
    for frame in frames {
        match frame {
            Frame::Text(text) => {
                let units =
                    std::str::from_utf8(text).map_or(text.len(), |s| s.encode_utf16().count());
                out.extend_from_slice(format!("{units}:").as_bytes());
                out.extend_from_slice(text);
            }
            Frame::Binary(data) => {
                let encoded = STANDARD.encode(data);
                out.extend_from_slice(format!("{}:b4", encoded.len() + 2).as_bytes());
                out.extend_from_slice(encoded.as_bytes());
            }
        }
    }
    Payload::Text
}

fn push_binary_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend(len.to_string().bytes().map(|digit| digit - b'0'));
    out.push(255);
}

/// Splits a polling request body into its packets: a binary payload when it starts with the
/// byte `0` or `1`, else a text payload.
///
/// # Errors
///
/// [`EngineDecodeError::InvalidPayload`] when a length is missing, not a number, or runs past
/// the body, or a binary message does not start with the `message` type; otherwise as
/// [`decode_text`], and [`EngineDecodeError::InvalidBase64`].
pub fn decode_payload(body: &[u8]) -> Result<Vec<PayloadItem<'_>>, EngineDecodeError> {
    match body.first() {
        Some(0 | 1) => decode_binary_payload(body),
        _ => {
            let text = std::str::from_utf8(body).map_err(|_| EngineDecodeError::InvalidPayload)?;
            decode_text_payload(text)
        }
    }
}

fn decode_binary_payload(mut body: &[u8]) -> Result<Vec<PayloadItem<'_>>, EngineDecodeError> {
    let mut items = Vec::new();
    while let Some((&kind, rest)) = body.split_first() {
        let end = rest
            .iter()
            .position(|&b| b == 255)
            .ok_or(EngineDecodeError::InvalidPayload)?;
        let (digits, rest) = rest.split_at(end);
        let len = digits_value(digits.iter().copied(), |d| (d <= 9).then_some(d))?;
        let rest = rest.get(1..).unwrap_or_default();
        let packet = rest.get(..len).ok_or(EngineDecodeError::InvalidPayload)?;
        body = rest.get(len..).unwrap_or_default();
        items.push(match kind {
            0 => {
                let text =
                    std::str::from_utf8(packet).map_err(|_| EngineDecodeError::InvalidPayload)?;
                PayloadItem::Text(decode_text(text)?)
            }
            1 => match packet.split_first() {
                Some((&BINARY_MESSAGE_TYPE, data)) => PayloadItem::Binary(data.to_vec()),
                _ => return Err(EngineDecodeError::InvalidPayload),
            },
            _ => return Err(EngineDecodeError::InvalidPayload),
        });
    }
    Ok(items)
}

fn decode_text_payload(mut body: &str) -> Result<Vec<PayloadItem<'_>>, EngineDecodeError> {
    let mut items = Vec::new();
    if body.is_empty() {
        return Err(EngineDecodeError::Empty);
    }
    while !body.is_empty() {
        let (digits, rest) = body
            .split_once(':')
            .ok_or(EngineDecodeError::InvalidPayload)?;
        let units = digits_value(digits.bytes(), |b| b.is_ascii_digit().then(|| b - b'0'))?;
        // Walk `units` UTF-16 code units of the rest.
        let mut counted = 0;
        let mut end = 0;
        for c in rest.chars() {
            if counted >= units {
                break;
            }
            counted += c.len_utf16();
            end += c.len_utf8();
        }
        if counted != units {
            return Err(EngineDecodeError::InvalidPayload);
        }
        let (packet, rest) = rest.split_at(end);
        body = rest;
        items.push(match packet.strip_prefix('b') {
            Some(encoded) => {
                let encoded = encoded
                    .strip_prefix(char::from(b'0' + BINARY_MESSAGE_TYPE))
                    .ok_or(EngineDecodeError::InvalidPayload)?;
                STANDARD
                    .decode(encoded)
                    .map(PayloadItem::Binary)
                    .map_err(|_| EngineDecodeError::InvalidBase64)?
            }
            None => PayloadItem::Text(decode_text(packet)?),
        });
    }
    Ok(items)
}

/// The decimal number of `digits` (each mapped to 0–9 by `digit`), at most 10 digits.
fn digits_value(
    digits: impl ExactSizeIterator<Item = u8>,
    digit: impl Fn(u8) -> Option<u8>,
) -> Result<usize, EngineDecodeError> {
    if digits.len() == 0 || digits.len() > 10 {
        return Err(EngineDecodeError::InvalidPayload);
    }
    let mut value: usize = 0;
    for d in digits {
        let d = digit(d).ok_or(EngineDecodeError::InvalidPayload)?;
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(d)))
            .ok_or(EngineDecodeError::InvalidPayload)?;
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::TextPacket;
    use bytes::Bytes;

    #[test]
    fn text_payload_counts_utf16_units() {
        let frames = [
            Frame::from_static("3"),
            Frame::message("2[\"😀\"]"),
            Frame::binary(Bytes::from_static(b"\x00\xff")),
        ];
        let mut out = Vec::new();
        assert_eq!(encode_payload(&frames, false, &mut out), Payload::Text);
        let text = String::from_utf8(out).unwrap();
        // 😀 is two UTF-16 units: `42["😀"]` has 8.
        assert_eq!(text, "1:38:42[\"😀\"]6:b4AP8=");
        assert_eq!(
            decode_payload(text.as_bytes()).unwrap(),
            vec![
                PayloadItem::Text(TextPacket::Pong("")),
                PayloadItem::Text(TextPacket::Message("2[\"😀\"]")),
                PayloadItem::Binary(vec![0, 255]),
            ]
        );
    }

    #[test]
    fn binary_payload_round_trips() {
        let frames = [
            Frame::message("51-[\"a\",{\"_placeholder\":true,\"num\":0}]"),
            Frame::binary(Bytes::from(vec![7u8; 300])),
        ];
        let mut out = Vec::new();
        assert_eq!(encode_payload(&frames, true, &mut out), Payload::Binary);
        assert_eq!(&out[..4], &[0, 3, 9, 255]);
        assert_eq!(
            decode_payload(&out).unwrap(),
            vec![
                PayloadItem::Text(TextPacket::Message(
                    "51-[\"a\",{\"_placeholder\":true,\"num\":0}]"
                )),
                PayloadItem::Binary(vec![7u8; 300]),
            ]
        );
        // Without binary frames the body is text even when binary is supported.
        let mut out = Vec::new();
        assert_eq!(
            encode_payload(&[Frame::from_static("6")], true, &mut out),
            Payload::Text
        );
        assert_eq!(out, b"1:6");
    }

    #[test]
    fn what_engine_io_client_3_sends() {
        // engine.io-client 3.5 (Node): `40/chat,` and an event, as one text body.
        assert_eq!(
            decode_payload(b"8:40/chat,12:42[\"hi\",\"\xc3\xa9\"]")
                .unwrap()
                .len(),
            2
        );
        // A binary event with one attachment, as one binary body.
        let body = b"\x00\x03\x09\xff451-[\"f\",{\"_placeholder\":true,\"num\":0}]\x01\x03\xff\x04\x09\x08";
        let items = decode_payload(&body[..]).unwrap();
        assert_eq!(items[1], PayloadItem::Binary(vec![9, 8]));
    }

    #[test]
    fn rejects_malformed_payloads() {
        use EngineDecodeError::*;
        let cases: &[(&[u8], EngineDecodeError)] = &[
            (b"", Empty),
            (b"4", InvalidPayload),
            (b"x:4", InvalidPayload),
            (b":4", InvalidPayload),
            (b"5:4", InvalidPayload),
            (b"99999999999:4", InvalidPayload),
            (b"1:7", UnknownType),
            (b"3:b4!", InvalidBase64),
            (b"4:b3AA", InvalidPayload),
            (b"\x00\x01", InvalidPayload),
            (b"\x00\x09\xff4", InvalidPayload),
            (b"\x01\x01\xff\x03", InvalidPayload),
            (b"\x00\x0a\xff4", InvalidPayload),
            (b"\x00\x01\xff\xff", InvalidPayload),
        ];
        for &(body, expected) in cases {
            assert_eq!(decode_payload(body), Err(expected), "{body:?}");
        }
    }
}
