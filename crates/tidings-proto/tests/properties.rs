//! Property tests: every valid packet survives `decode(encode(p))` (in both parsers' encodings),
//! polling payloads survive
//! `decode_payload(encode_payload(frames))`, and no input makes a decoder panic.
#![allow(missing_docs)]

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use tidings_proto::engine::{self, Frame, PacketType, PayloadItem};
use tidings_proto::packet::{self, Packet, PacketKind, RESERVED_EVENTS, placeholder};
use tidings_proto::{Bytes, msgpack};

/// Strings with quotes, backslashes, control characters and non-ASCII mixed in.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 _-]{0,10}",
        "[\"\\\\/\\n\\t\\u{0}\\u{1f}\\u{7f}é€😀\\u{2028}a]{0,8}",
        any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<u64>().prop_map(Number::from),
        any::<i64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        (-1000.0..1000.0f64).prop_filter_map("finite", Number::from_f64),
    ]
}

/// Arbitrary JSON that never contains a placeholder-shaped object.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6).prop_map(|members| {
                let object: Map<String, Value> = members
                    .into_iter()
                    .map(|(key, value)| {
                        if key == "_placeholder" {
                            (format!("{key}_"), value)
                        } else {
                            (key, value)
                        }
                    })
                    .collect();
                Value::Object(object)
            }),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((text(), json()), 0..4)
        .prop_map(|members| Value::Object(members.into_iter().collect()))
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-z0-9/_-]{1,10}", "/[^,]{0,10}"]
}

fn event_name() -> impl Strategy<Value = Value> {
    prop_oneof![
        text()
            .prop_filter("reserved", |name| !RESERVED_EVENTS.contains(&name.as_str()))
            .prop_map(Value::String),
        number().prop_map(Value::Number),
    ]
}

/// Inserts placeholders `0..count` into `args` at the positions `spots` picks, some nested.
fn with_placeholders(mut args: Vec<Value>, count: usize, spots: &[(usize, u8)]) -> Vec<Value> {
    for (num, &(spot, nesting)) in spots.iter().enumerate().take(count) {
        let value = match nesting % 3 {
            0 => placeholder(num),
            1 => Value::Array(vec![placeholder(num)]),
            _ => serde_json::json!({ "file": placeholder(num), "n": num }),
        };
        let at = spot % (args.len() + 1);
        args.insert(at, value);
    }
    args
}

/// `value` with every placeholder replaced by `{"$bytes": [...]}` of its attachment.
fn resolve(value: &Value, attachments: &[Bytes]) -> Value {
    match value {
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| resolve(v, attachments)).collect())
        }
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let bytes = map
                .get("num")
                .and_then(Value::as_u64)
                .and_then(|n| attachments.get(n as usize))
                .map(|b| b.to_vec());
            serde_json::json!({ "$bytes": bytes })
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve(v, attachments)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn args() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(json(), 0..5)
}

fn spots() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 4)
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (namespace(), prop::option::of(object())).prop_map(|(ns, data)| Packet::connect(&ns, data)),
        namespace().prop_map(|ns| Packet::disconnect(&ns)),
        (namespace(), text(), prop::option::of(json()))
            .prop_map(|(ns, message, data)| Packet::connect_error(&ns, &message, data)),
        (namespace(), text()).prop_map(|(ns, message)| Packet {
            kind: PacketKind::ConnectError,
            namespace: ns,
            id: None,
            data: Some(Value::String(message)),
            attachments: 0,
        }),
        (
            namespace(),
            event_name(),
            args(),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(ns, name, args, id)| {
                let mut data = vec![name];
                data.extend(args);
                Packet {
                    kind: PacketKind::Event,
                    namespace: ns,
                    id,
                    data: Some(Value::Array(data)),
                    attachments: 0,
                }
            }),
        (namespace(), any::<u64>(), args())
            .prop_map(|(ns, id, args)| Packet::ack(&ns, id, args, 0)),
        (
            namespace(),
            event_name(),
            args(),
            prop::option::of(any::<u64>()),
            1..=4usize,
            spots()
        )
            .prop_map(|(ns, name, args, id, count, spots)| {
                let mut data = vec![name];
                data.extend(with_placeholders(args, count, &spots));
                Packet {
                    kind: PacketKind::BinaryEvent,
                    namespace: ns,
                    id,
                    data: Some(Value::Array(data)),
                    attachments: count,
                }
            }),
        (namespace(), any::<u64>(), args(), 1..=4usize, spots()).prop_map(
            |(ns, id, args, count, spots)| {
                Packet::ack(&ns, id, with_placeholders(args, count, &spots), count)
            }
        ),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    let with_data = prop_oneof![
        Just(PacketType::Open),
        Just(PacketType::Ping),
        Just(PacketType::Pong),
        Just(PacketType::Message),
    ];
    let without_data = prop_oneof![
        Just(PacketType::Close),
        Just(PacketType::Upgrade),
        Just(PacketType::Noop)
    ];
    prop_oneof![
        (with_data, any::<String>())
            .prop_map(|(kind, data)| { Frame::text(kind, &data.replace('\u{1e}', "")) }),
        without_data.prop_map(|kind| Frame::text(kind, "")),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|data| Frame::binary(Bytes::from(data))),
    ]
}

/// Strings over the packet alphabet, so that random inputs get past the first checks.
fn packetish() -> impl Strategy<Value = String> {
    "[0-7]{1}[0-9]{0,3}-?(/[a-z,]{0,4})?,?[0-9]{0,22}(\\[|\\{|\"|[a-z0-9:,\"_\\[\\]{} -]){0,30}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn packet_round_trip(packet in packet()) {
        let encoded = packet.encode();
        prop_assert_eq!(Packet::decode(&encoded), Ok(packet.clone()), "{}", encoded);
        let frame = packet.to_frame();
        let text = frame.as_text().unwrap_or_default();
        prop_assert_eq!(text.strip_prefix('4'), Some(encoded.as_str()));
        if let Some(data) = &packet.data {
            prop_assert_eq!(packet::validate_placeholders(data, packet.attachments), Ok(()));
        }
    }

    #[test]
    fn msgpack_round_trip(packet in packet()) {
        let attachments: Vec<Bytes> = (0..packet.attachments)
            .map(|i| Bytes::from(vec![i as u8; i % 3 + 1]))
            .collect();
        let wire = msgpack::encode(&packet, &attachments);
        let decoded = msgpack::decode(&Bytes::from(wire.clone()));
        let (decoded, got) = decoded.map_err(|e| TestCaseError::fail(format!("{e}: {packet:?}")))?;
        prop_assert_eq!(
            (decoded.kind, &decoded.namespace, decoded.id, decoded.attachments),
            (packet.kind, &packet.namespace, packet.id, packet.attachments)
        );
        // msgpack carries binary in place: placeholders come back numbered depth-first, so
        // compare what each one stands for.
        prop_assert_eq!(
            decoded.data.as_ref().map(|d| resolve(d, &got)),
            packet.data.as_ref().map(|d| resolve(d, &attachments))
        );
        prop_assert_eq!(msgpack::encode(&decoded, &got), wire);
    }

    #[test]
    fn msgpack_decoder_never_panics(input in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok((packet, attachments)) = msgpack::decode(&Bytes::from(input)) {
            let wire = Bytes::from(msgpack::encode(&packet, &attachments));
            prop_assert_eq!(msgpack::decode(&wire), Ok((packet, attachments)));
        }
    }

    #[test]
    fn payload_round_trip(frames in prop::collection::vec(frame(), 1..20)) {
        let mut body = Vec::new();
        engine::encode_payload(&frames, &mut body);
        prop_assert_eq!(body.len(), frames.iter().map(engine::payload_len).sum::<usize>() + frames.len() - 1);
        let body = String::from_utf8(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decoded: Result<Vec<Frame>, _> = engine::decode_payload(&body)
            .map(|item| item.map(|item| match item {
                PayloadItem::Text(packet) => packet.to_frame(),
                PayloadItem::Binary(data) => Frame::binary(Bytes::from(data)),
            }))
            .collect();
        prop_assert_eq!(decoded, Ok(frames));
    }

    #[test]
    fn eio3_payload_round_trip(frames in prop::collection::vec(frame(), 1..20), binary in any::<bool>()) {
        let mut body = Vec::new();
        tidings_proto::eio3::encode_payload(&frames, binary, &mut body);
        let decoded: Result<Vec<Frame>, _> = tidings_proto::eio3::decode_payload(&body).map(|items| {
            items
                .into_iter()
                .map(|item| match item {
                    PayloadItem::Text(packet) => packet.to_frame(),
                    PayloadItem::Binary(data) => Frame::binary(Bytes::from(data)),
                })
                .collect()
        });
        prop_assert_eq!(decoded, Ok(frames));
    }

    #[test]
    fn eio3_decoder_never_panics(input in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = tidings_proto::eio3::decode_payload(&input);
    }

    /// An event read as text (`EventHead`) agrees with `decode`: same name, namespace and id,
    /// arguments whose text decodes to the decoded arguments.
    #[test]
    fn event_heads_agree_with_decode(args in prop::collection::vec(json(), 0..4), id in proptest::option::of(any::<u64>()), name in "[a-z]{1,8}") {
        let packet = Packet::event("/n", &name, args.clone(), id, 0);
        let encoded = packet.encode();
        let head = packet::EventHead::peek(&encoded);
        let head = head.ok_or_else(|| TestCaseError::fail(format!("not taken: {encoded}")))?;
        prop_assert_eq!((head.namespace, head.id, head.name), ("/n", id, name.as_str()));
        let raw = head.args().map_err(|e| TestCaseError::fail(format!("{e}: {encoded}")))?;
        let values: Vec<Value> = raw.iter().map(|a| serde_json::from_str(a.get()).unwrap_or(Value::Null)).collect();
        prop_assert_eq!(values, args);
    }

    #[test]
    fn event_heads_accept_what_decode_accepts(input in packetish()) {
        if let Some(head) = packet::EventHead::peek(&input) {
            prop_assert_eq!(head.args().is_ok(), Packet::decode(&input).is_ok(), "{}", input);
        }
    }

    #[test]
    fn decoders_never_panic(input in any::<String>()) {
        if let Ok(packet) = Packet::decode(&input) {
            prop_assert_eq!(Packet::decode(&packet.encode()), Ok(packet));
        }
        let _ = engine::decode_text(&input);
        for item in engine::decode_payload(&input) {
            let _ = item;
        }
    }

    #[test]
    fn packetish_inputs_round_trip_when_valid(input in packetish()) {
        if let Ok(packet) = Packet::decode(&input) {
            let encoded = packet.encode();
            prop_assert_eq!(Packet::decode(&encoded), Ok(packet), "{} -> {}", input, encoded);
        }
    }
}
