//! RFC 6455 WebSocket framing, server side: masked client frames in, unmasked server frames out.
//!
//! Sans-IO like the rest of this crate: [`Decoder::decode`] takes whole messages off the front of
//! a buffer of received bytes, [`encode_frame`] appends one frame to an output buffer. The
//! transport owns the socket and the buffers, and so decides when a buffer exists at all: the
//! server keeps none while a connection is idle (a fixed 8 KiB read buffer per connection was
//! most of an idle connection's memory with the generic WebSocket crate).
//!
//! What the decoder enforces, each with the close code RFC 6455 §7.4.1 gives it:
//! - client frames are masked, reserved bits are clear (no extension is negotiated), opcodes
//!   are known, control frames are final and at most 125 bytes, continuation frames continue
//!   something and a new data frame does not interrupt one (1002, [`CloseCode::PROTOCOL_ERROR`]);
//! - a message (all of its fragments) is at most `max_message` bytes, checked from the frame
//!   header before the payload is buffered (1009, [`CloseCode::MESSAGE_TOO_BIG`]);
//! - text messages and close reasons are UTF-8 (1007, [`CloseCode::INVALID_PAYLOAD`]).
//!
//! ```
//! use bytes::BytesMut;
//! use tidings_proto::ws::{Decoder, Message, Opcode, encode_frame};
//!
//! // A client's masked text frame "hi" (mask 1,2,3,4).
//! let mut received = BytesMut::from(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2][..]);
//! let mut decoder = Decoder::new(1_000_000);
//! let message = decoder.decode(&mut received)?;
//! assert_eq!(message, Some(Message::Text("hi".into())));
//! assert!(received.is_empty());
//!
//! // The server's answer, unmasked.
//! let mut out = BytesMut::new();
//! encode_frame(Opcode::Text, b"hello", &mut out);
//! assert_eq!(&out[..], b"\x81\x05hello");
//! # Ok::<(), tidings_proto::ws::WsError>(())
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// `0x0`: the next fragment of a message.
    Continuation,
    /// `0x1`: a text message (UTF-8).
    Text,
    /// `0x2`: a binary message.
    Binary,
    /// `0x8`: the closing handshake.
    Close,
    /// `0x9`: a ping (answered with a pong carrying the same data).
    Ping,
    /// `0xA`: a pong.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going away (shutting down).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the framing protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1007: a text message or close reason was not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the message violates the server's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was larger than the server accepts.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);

    /// Whether a peer may send this code in a close frame (§7.4.1 and the IANA registry:
    /// 1004–1006 and 1015 are reserved for reporting, never sent).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, already checked to be UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping: the server answers with a pong carrying the same data.
    Ping(Bytes),
    /// A pong (unsolicited or an answer): nothing to do.
    Pong(Bytes),
    /// The client starts or answers the closing handshake, with its code if it sent one.
    Close(Option<CloseCode>),
}

impl Message {
    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            // Checked when the message was decoded; the fallback is never taken.
            Message::Text(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// Why the decoder gave up on a connection. Each maps to the close code the server sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The client broke the framing rules.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message is larger than the limit.
    #[error("websocket message of at least {len} bytes is over the limit of {max} bytes")]
    TooBig {
        /// The message's length as far as it is known (at least this long).
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A text message or a close reason is not UTF-8.
    #[error("websocket text is not valid UTF-8")]
    InvalidUtf8,
}

impl WsError {
    /// The close code to answer this error with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::Protocol(_) => CloseCode::PROTOCOL_ERROR,
            WsError::TooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            WsError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
        }
    }
}

/// A fragmented message being put together.
#[derive(Debug)]
struct Partial {
    opcode: Opcode,
    data: BytesMut,
}

/// Takes client messages off the front of a receive buffer; keeps the fragments of an
/// unfinished fragmented message between calls.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    partial: Option<Partial>,
}

impl Decoder {
    /// A decoder that refuses messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            partial: None,
        }
    }

    /// Whether a fragmented message is unfinished (its fragments are held here).
    pub fn has_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// Decodes the next whole message from the front of `buf`, removing the frames it used.
    /// `Ok(None)`: `buf` holds no whole message yet (the bytes of an incomplete frame stay in
    /// `buf`; the fragments of an unfinished message move into the decoder). After an error
    /// the connection must be closed: the decoder's state is unspecified.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some(header) = parse_header(buf)? else {
                return Ok(None);
            };
            let limit = u64::try_from(self.max_message).unwrap_or(u64::MAX);
            if header.opcode.is_control() {
                if !header.fin {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                if header.len > 125 {
                    return Err(WsError::Protocol("control frame over 125 bytes"));
                }
            } else {
                let so_far = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
                let total = so_far.saturating_add(header.len);
                if total > limit {
                    return Err(WsError::TooBig {
                        len: total,
                        max: self.max_message,
                    });
                }
                match (header.opcode, &self.partial) {
                    (Opcode::Continuation, None) => {
                        return Err(WsError::Protocol("continuation frame without a message"));
                    }
                    (Opcode::Text | Opcode::Binary, Some(_)) => {
                        return Err(WsError::Protocol("new message inside a fragmented one"));
                    }
                    _ => {}
                }
            }
            // `header.len` is at most `max_message` or 125 here, so it fits in usize.
            let len = usize::try_from(header.len).map_err(|_| WsError::Protocol("length"))?;
            if buf.len() < header.header_len + len {
                buf.reserve(header.header_len + len - buf.len());
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(len);
            unmask(&mut payload, header.mask);

            match header.opcode {
                Opcode::Close => return parse_close(&payload).map(Some),
                Opcode::Ping => return Ok(Some(Message::Ping(payload.freeze()))),
                Opcode::Pong => return Ok(Some(Message::Pong(payload.freeze()))),
                Opcode::Text | Opcode::Binary if header.fin => {
                    return finish(header.opcode, payload).map(Some);
                }
                Opcode::Text | Opcode::Binary => {
                    self.partial = Some(Partial {
                        opcode: header.opcode,
                        data: payload,
                    });
                }
                Opcode::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(WsError::Protocol("continuation frame without a message"));
                    };
                    partial.data.extend_from_slice(&payload);
                    if header.fin {
                        let Some(Partial { opcode, data }) = self.partial.take() else {
                            return Err(WsError::Protocol("continuation frame without a message"));
                        };
                        return finish(opcode, data).map(Some);
                    }
                }
            }
        }
    }
}

fn finish(opcode: Opcode, data: BytesMut) -> Result<Message, WsError> {
    if opcode == Opcode::Text {
        if std::str::from_utf8(&data).is_err() {
            return Err(WsError::InvalidUtf8);
        }
        Ok(Message::Text(data.freeze()))
    } else {
        Ok(Message::Binary(data.freeze()))
    }
}

fn parse_close(payload: &[u8]) -> Result<Message, WsError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(WsError::Protocol("close frame with a 1-byte body")),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(WsError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            Ok(Message::Close(Some(code)))
        }
    }
}

struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    len: u64,
    header_len: usize,
}

/// Parses the frame header at the front of `buf` without consuming it.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, WsError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::Protocol("unknown opcode"))?;
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("unmasked client frame"));
    }
    let (len, len_bytes) = match b1 & 0x7F {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
            _ => return Ok(None),
        },
        127 => match rest {
            [a, b, c, d, e, f, g, h, ..] => {
                let len = u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("64-bit length with the top bit set"));
                }
                (len, 8)
            }
            _ => return Ok(None),
        },
        short => (u64::from(short), 0),
    };
    let Some(mask) = rest.get(len_bytes..len_bytes + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        len,
        header_len: 2 + len_bytes + 4,
    }))
}

/// XORs `data` with the 4-byte mask, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask index restarts at 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// The length of the header [`encode_frame`] writes for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Appends one final, unmasked (server-to-client) frame.
pub fn encode_frame(opcode: Opcode, payload: &[u8], out: &mut BytesMut) {
    out.reserve(header_len(payload.len()) + payload.len());
    out.put_u8(0x80 | opcode.bits());
    match payload.len() {
        // The match arms bound each cast.
        len @ 0..=125 => out.put_u8(len as u8),
        len @ 126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        len => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit the 125-byte control frame limit
/// at a character boundary).
pub fn encode_close(code: CloseCode, reason: &str, out: &mut BytesMut) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut body = [0u8; 125];
    body[..2].copy_from_slice(&code.0.to_be_bytes());
    body[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(Opcode::Close, &body[..2 + end], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: `fin`, opcode bits, masked with `mask`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Message>, WsError> {
        let mut decoder = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(message) = decoder.decode(&mut buf)? {
            out.push(message);
        }
        assert!(buf.is_empty(), "bytes left over: {buf:?}");
        Ok(out)
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&hello, 100),
            Ok(vec![Message::Text("Hello".into())])
        );
        // A fragmented "Hel" + "lo", with a ping in between.
        let mut bytes = client_frame(false, 0x1, b"Hel", MASK);
        bytes.extend(client_frame(true, 0x9, b"ping!", MASK));
        bytes.extend(client_frame(true, 0x0, b"lo", MASK));
        assert_eq!(
            decode_all(&bytes, 100),
            Ok(vec![
                Message::Ping("ping!".into()),
                Message::Text("Hello".into())
            ])
        );
    }

    #[test]
    fn every_length_form_and_every_split_point_decodes() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 1000, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = client_frame(true, 0x2, &payload, MASK);
            assert_eq!(
                decode_all(&frame, 100_000),
                Ok(vec![Message::Binary(payload.clone().into())]),
                "length {len}"
            );
        }
        // Fed one byte at a time, a message comes out only with its last byte.
        let frame = client_frame(true, 0x1, b"byte by byte", MASK);
        let mut decoder = Decoder::new(100);
        let mut buf = BytesMut::new();
        for (i, byte) in frame.iter().enumerate() {
            buf.put_u8(*byte);
            let message = decoder.decode(&mut buf).unwrap();
            if i + 1 < frame.len() {
                assert_eq!(message, None, "at byte {i}");
            } else {
                assert_eq!(message, Some(Message::Text("byte by byte".into())));
            }
        }
    }

    #[test]
    fn the_limit_counts_every_fragment_and_is_checked_from_the_header() {
        assert!(decode_all(&client_frame(true, 0x2, &[0; 100], MASK), 100).is_ok());
        // Only the header of a 1 GB frame: refused before any payload arrives.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        header.extend_from_slice(&MASK);
        let mut buf = BytesMut::from(&header[..]);
        let error = Decoder::new(100).decode(&mut buf).unwrap_err();
        assert_eq!(error.close_code(), CloseCode::MESSAGE_TOO_BIG);
        // 60 + 60 bytes in two fragments.
        let mut bytes = client_frame(false, 0x2, &[0; 60], MASK);
        bytes.extend(client_frame(true, 0x0, &[0; 60], MASK));
        assert_eq!(
            decode_all(&bytes, 100),
            Err(WsError::TooBig { len: 120, max: 100 })
        );
    }

    #[test]
    fn protocol_violations_are_refused_with_their_close_code() {
        let cases: Vec<(&str, Vec<u8>, CloseCode)> = vec![
            (
                "unmasked",
                vec![0x81, 0x02, b'h', b'i'],
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "reserved bit",
                client_frame(true, 0x40 | 0x1, b"x", MASK),
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "unknown opcode",
                client_frame(true, 0x3, b"x", MASK),
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "fragmented ping",
                client_frame(false, 0x9, b"x", MASK),
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "long ping",
                client_frame(true, 0x9, &[0; 126], MASK),
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "lone continuation",
                client_frame(true, 0x0, b"x", MASK),
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "new message inside a fragmented one",
                [
                    client_frame(false, 0x1, b"a", MASK),
                    client_frame(true, 0x1, b"b", MASK),
                ]
                .concat(),
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "invalid utf-8",
                client_frame(true, 0x1, &[0xff, 0xfe], MASK),
                CloseCode::INVALID_PAYLOAD,
            ),
            (
                "utf-8 split across fragments is fine, broken is not",
                [
                    client_frame(false, 0x1, &[0xe2, 0x82], MASK),
                    client_frame(true, 0x0, &[0x28], MASK),
                ]
                .concat(),
                CloseCode::INVALID_PAYLOAD,
            ),
            (
                "close with one byte",
                client_frame(true, 0x8, &[3], MASK),
                CloseCode::PROTOCOL_ERROR,
            ),
            (
                "close with a reserved code",
                client_frame(true, 0x8, &1005u16.to_be_bytes(), MASK),
                CloseCode::PROTOCOL_ERROR,
            ),
        ];
        for (name, bytes, code) in cases {
            let error = decode_all(&bytes, 1000).expect_err(name);
            assert_eq!(error.close_code(), code, "{name}: {error}");
        }
        // A character split across two fragments is valid.
        let bytes = [
            client_frame(false, 0x1, &[0xe2, 0x82], MASK),
            client_frame(true, 0x0, &[0xac], MASK),
        ]
        .concat();
        assert_eq!(
            decode_all(&bytes, 1000),
            Ok(vec![Message::Text("€".into())])
        );
    }

    #[test]
    fn close_frames_carry_their_code() {
        let mut body = 1000u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        assert_eq!(
            decode_all(&client_frame(true, 0x8, &body, MASK), 100),
            Ok(vec![Message::Close(Some(CloseCode::NORMAL))])
        );
        assert_eq!(
            decode_all(&client_frame(true, 0x8, &[], MASK), 100),
            Ok(vec![Message::Close(None)])
        );
    }

    #[test]
    fn encodes_each_length_form() {
        for (len, header) in [
            (0, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = BytesMut::new();
            encode_frame(Opcode::Text, &vec![b'a'; len], &mut out);
            assert_eq!(&out[..header.len()], &header[..], "length {len}");
            assert_eq!(out.len(), header.len() + len);
            assert_eq!(header_len(len), header.len());
        }
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let mut out = BytesMut::new();
        encode_close(CloseCode::GOING_AWAY, &"é".repeat(100), &mut out);
        assert_eq!(out[0], 0x88);
        let len = usize::from(out[1]);
        assert!(len <= 125);
        assert_eq!(&out[2..4], &1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..2 + len]).is_ok());
        assert_eq!(out.len(), 2 + len);
    }
}
