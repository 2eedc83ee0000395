//! The Socket.IO and Engine.IO decoders of `tidings-proto`.

use serde_json::Value;
use tidings_proto::engine::{self, Frame, PayloadItem};
use tidings_proto::packet::{EventHead, Packet};
use tidings_proto::{Bytes, msgpack};

/// Decodes the input as a Socket.IO packet (the text after the Engine.IO `4`); a packet that
/// decodes must encode to text that decodes to the same packet, that text must be stable under
/// another round, and [`Packet::to_frame`] must be `4` followed by it.
///
/// # Panics
///
/// When a property breaks.
pub fn decode_packet(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let decoded = Packet::decode(&input);
    // The text path of an event (its arguments left as JSON text) accepts exactly what
    // `decode` accepts, with the same arguments.
    if let Some(head) = EventHead::peek(&input) {
        match (head.args(), &decoded) {
            (Ok(args), Ok(packet)) => {
                let values: Vec<Value> = args
                    .iter()
                    .map(|a| serde_json::from_str(a.get()).unwrap_or(Value::Null))
                    .collect();
                let decoded_args = packet
                    .data
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|a| a.get(1..).unwrap_or_default());
                assert_eq!(Some(values.as_slice()), decoded_args, "{input:?}");
                assert_eq!(Some(head.name), packet.event_name(), "{input:?}");
                assert_eq!(
                    (head.namespace, head.id),
                    (packet.namespace.as_str(), packet.id)
                );
            }
            (Err(_), Err(_)) => {}
            (text, decoded) => panic!("{input:?}: text path {text:?}, decode {decoded:?}"),
        }
    }
    let Ok(packet) = decoded else {
        return;
    };
    let encoded = packet.encode();
    let again = Packet::decode(&encoded);
    assert_eq!(again.as_ref(), Ok(&packet), "{input:?} -> {encoded:?}");
    if let Ok(again) = again {
        assert_eq!(
            again.encode(),
            encoded,
            "encoding of {input:?} is not stable"
        );
    }
    let frame = packet.to_frame();
    assert_eq!(
        frame.as_text().and_then(|t| t.strip_prefix('4')),
        Some(encoded.as_str()),
        "to_frame of {input:?}"
    );
}

/// Decodes the input as a `socket.io-msgpack-parser` packet (one binary message): a packet
/// that decodes must encode to bytes that decode to the same packet and attachments, and that
/// encoding must be stable under another round.
///
/// # Panics
///
/// When a property breaks.
pub fn decode_msgpack(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    let Ok((packet, attachments)) = msgpack::decode(&input) else {
        return;
    };
    assert_eq!(packet.attachments, attachments.len(), "{data:x?}");
    let encoded = Bytes::from(msgpack::encode(&packet, &attachments));
    let again = msgpack::decode(&encoded);
    assert_eq!(
        again.as_ref(),
        Ok(&(packet.clone(), attachments.clone())),
        "{data:x?} -> {encoded:x?}"
    );
    if let Ok((again, again_attachments)) = again {
        assert_eq!(
            msgpack::encode(&again, &again_attachments),
            encoded,
            "encoding of {data:x?} is not stable"
        );
    }
}

/// Decodes the input as an Engine.IO v3 polling body (text or binary payload): a body that
/// decodes must, re-encoded as either payload kind, decode to the same packets.
///
/// # Panics
///
/// When a property breaks.
pub fn decode_eio3(data: &[u8]) {
    let Ok(items) = tidings_proto::eio3::decode_payload(data) else {
        return;
    };
    let frames: Vec<Frame> = items
        .iter()
        .map(|item| match item {
            PayloadItem::Text(text) => text.to_frame(),
            PayloadItem::Binary(bytes) => Frame::binary(bytes.clone().into()),
        })
        .collect();
    for supports_binary in [false, true] {
        let mut body = Vec::new();
        tidings_proto::eio3::encode_payload(&frames, supports_binary, &mut body);
        if frames.is_empty() {
            continue;
        }
        let again = tidings_proto::eio3::decode_payload(&body);
        assert_eq!(
            again.as_ref(),
            Ok(&items),
            "{data:x?} -> {body:x?} (binary: {supports_binary})"
        );
    }
}

/// Decodes the input as one Engine.IO text packet (a WebSocket text frame) and as a long-polling
/// request body. A packet that decodes must survive `to_frame` and decode to itself, keeping its
/// data; a body whose parts all decode must survive [`engine::encode_payload`] and decode to the
/// same parts. Socket.IO packets inside `4` messages go through [`decode_packet`].
///
/// # Panics
///
/// When a property breaks.
pub fn decode_engine(data: &[u8]) {
    let input = String::from_utf8_lossy(data);

    if let Ok(text) = engine::decode_text(&input) {
        let frame = text.to_frame();
        assert_eq!(frame.len(), engine::payload_len(&frame));
        let encoded = frame.as_text().unwrap_or_default();
        assert_eq!(
            engine::decode_text(encoded),
            Ok(text),
            "{input:?} -> {encoded:?}"
        );
        // Only `Close`, `Upgrade` and `Noop` drop what follows the type digit.
        let dropped = matches!(
            text,
            engine::TextPacket::Close | engine::TextPacket::Upgrade | engine::TextPacket::Noop
        );
        if !dropped {
            assert_eq!(Some(text.data()), input.get(1..), "data of {input:?}");
        }
    }

    let items: Vec<_> = engine::decode_payload(&input).collect();
    for item in &items {
        if let Ok(PayloadItem::Text(engine::TextPacket::Message(message))) = item {
            decode_packet(message.as_bytes());
        }
    }
    let Ok(items) = items.into_iter().collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let frames: Vec<Frame> = items
        .iter()
        .map(|item| match item {
            PayloadItem::Text(text) => text.to_frame(),
            PayloadItem::Binary(bytes) => Frame::binary(bytes.clone().into()),
        })
        .collect();
    let mut body = Vec::new();
    engine::encode_payload(&frames, &mut body);
    let separators = frames.len().saturating_sub(1);
    assert_eq!(
        body.len(),
        frames.iter().map(engine::payload_len).sum::<usize>() + separators,
        "payload_len of {input:?}"
    );
    let body = match String::from_utf8(body) {
        Ok(body) => body,
        Err(e) => panic!("encoded body of {input:?} is not UTF-8: {e}"),
    };
    let again: Result<Vec<_>, _> = engine::decode_payload(&body).collect();
    assert_eq!(again.as_ref(), Ok(&items), "{input:?} -> {body:?}");
}
