//! The server's WebSocket frame decoder, `tidings_proto::ws`.

use bytes::{BufMut, BytesMut};
use tidings_proto::ws::{self, Decoder, Message, Opcode, WsError};

/// The message limit the target decodes with: small, so that fuzzed lengths cross it.
const MAX_MESSAGE: usize = 1024;

/// Decodes everything the input holds, `chunk` bytes arriving at a time (all at once when 0);
/// returns the messages and the error that stopped decoding, if any.
fn decode_stream(input: &[u8], chunk: usize) -> (Vec<Message>, Option<WsError>) {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let step = if chunk == 0 {
        input.len().max(1)
    } else {
        chunk
    };
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
        }
    }
    (messages, None)
}

/// A client's frame for `message`: the server encoding with the mask bit set and a zero mask.
fn client_frame(message: &Message) -> BytesMut {
    let (opcode, payload): (Opcode, Vec<u8>) = match message {
        Message::Text(b) => (Opcode::Text, b.to_vec()),
        Message::Binary(b) => (Opcode::Binary, b.to_vec()),
        Message::Ping(b) => (Opcode::Ping, b.to_vec()),
        Message::Pong(b) => (Opcode::Pong, b.to_vec()),
        Message::Close(None) => (Opcode::Close, Vec::new()),
        Message::Close(Some(code)) => (Opcode::Close, code.0.to_be_bytes().to_vec()),
    };
    let mut server = BytesMut::new();
    ws::encode_frame(opcode, &payload, &mut server);
    let header = ws::header_len(payload.len());
    let mut client = BytesMut::with_capacity(server.len() + 4);
    client.extend_from_slice(&server[..header]);
    client[1] |= 0x80;
    client.put_u32(0);
    client.extend_from_slice(&server[header..]);
    client
}

/// Decodes the input as bytes a client sent on a WebSocket, all at once and in chunks of 1 to
/// 16 bytes (the first input byte picks the size). Both must give the same messages and stop
/// at the same error; every message must be within the limits (text is UTF-8, a data message
/// at most the limit, a control payload at most 125 bytes); and each message, sent again as a
/// client frame, must decode to itself.
///
/// # Panics
///
/// When a property breaks.
pub fn decode_ws(data: &[u8]) {
    let chunk = usize::from(data.first().copied().unwrap_or(0) % 16) + 1;
    let whole = decode_stream(data, 0);
    let chunked = decode_stream(data, chunk);
    assert_eq!(whole, chunked, "chunks of {chunk} decode differently");

    for message in &whole.0 {
        match message {
            Message::Text(b) => {
                assert!(std::str::from_utf8(b).is_ok(), "text is not UTF-8");
                assert!(b.len() <= MAX_MESSAGE);
            }
            Message::Binary(b) => assert!(b.len() <= MAX_MESSAGE),
            Message::Ping(b) | Message::Pong(b) => assert!(b.len() <= 125),
            Message::Close(code) => {
                assert!(code.is_none_or(|c| c.is_sendable()), "close code {code:?}");
            }
        }
        let frame = client_frame(message);
        let (again, error) = decode_stream(&frame, 0);
        assert_eq!(error, None, "re-sent {message:?}");
        assert_eq!(again.as_slice(), std::slice::from_ref(message));
    }
}
