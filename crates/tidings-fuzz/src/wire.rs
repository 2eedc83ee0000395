//! The payloads of the built-in events (`subscribe`, `unsubscribe`, `publish`, `history`,
//! `join`, `leave`, `broadcast`): the wire contract of docs/PROTOCOL.md.

use serde_json::{Map, Value, json};
use tidings_core::store::{StartFrom, SubscriptionName, Topic};
use tidings_core::{ErrorCode, Room};
use tidings_proto::packet::{EventHead, Packet};
use tidings_server::fuzzing::{self, EVENTS, Request};

/// The identity of the client that sends the fuzzed events.
const IDENTITY: &str = "fuzz-client";
/// Longest room, event, group and key name the handlers accept, in bytes.
const MAX_NAME_LEN: usize = 256;
/// Largest `limit` of `history`.
const MAX_HISTORY: usize = 1000;

/// The first byte picks the event (or an unknown one); when its high bit is set the rest is a
/// whole Socket.IO packet (`2["publish",{…}]`) whose event name and first argument are used,
/// else the rest is the JSON payload itself (or a JSON string when it is not JSON).
///
/// Checks that the parse is deterministic; that an accepted payload gives a request within the
/// documented limits which, written back as the canonical payload, parses to the same request;
/// and that a refusal is a `bad_request` with a message, serializable into an ack.
///
/// # Panics
///
/// When a property breaks.
pub fn wire_payloads(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (event, payload) = if selector & 0x80 != 0 {
        let text = String::from_utf8_lossy(rest);
        // A `publish` read as text (its `data` never decoded) is the decoded one.
        if let Some(head) = EventHead::peek(&text) {
            if let (Ok(args), Ok(packet)) = (head.args(), Packet::decode(&text)) {
                let first = match &packet.data {
                    Some(Value::Array(args)) => args.get(1).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                if let (Some(raw), Some(name)) = (args.first(), packet.event_name()) {
                    assert_eq!(
                        fuzzing::parse_json(name, IDENTITY, raw),
                        fuzzing::parse(name, IDENTITY, &first),
                        "{text}"
                    );
                }
            }
        }
        let Ok(packet) = Packet::decode(&text) else {
            return;
        };
        let Some(name) = packet.event_name() else {
            return;
        };
        let first = match &packet.data {
            Some(Value::Array(args)) => args.get(1).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (name.to_owned(), first)
    } else {
        let event = EVENTS
            .get(usize::from(selector) % (EVENTS.len() + 1))
            .map_or("unknown", |e| *e);
        let payload = serde_json::from_slice(rest)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()));
        (event.to_owned(), payload)
    };

    let parsed = fuzzing::parse(&event, IDENTITY, &payload);
    assert_eq!(
        parsed,
        fuzzing::parse(&event, IDENTITY, &payload),
        "not deterministic"
    );
    match parsed {
        Ok(request) => {
            check_limits(&request);
            let canonical = canonical_payload(&request);
            assert_eq!(
                fuzzing::parse(&event, IDENTITY, &canonical).as_ref(),
                Ok(&request),
                "{event} {payload} -> {canonical}"
            );
        }
        Err(e) => {
            assert_eq!(e.code, ErrorCode::BadRequest, "{event} {payload}: {e:?}");
            assert!(!e.message.is_empty());
            assert!(serde_json::to_string(&e).is_ok());
        }
    }
}

fn check_name(what: &str, name: &str) {
    assert!(
        !name.is_empty() && name.len() <= MAX_NAME_LEN,
        "accepted {what} {name:?}"
    );
}

fn check_topic(topic: &Topic) {
    assert_eq!(Topic::new(topic.as_str()).as_ref(), Ok(topic));
}

fn check_subscription(subscription: &SubscriptionName) {
    match subscription {
        SubscriptionName::Group(group) => check_name("group", group),
        SubscriptionName::Identity(identity) => assert_eq!(identity.as_str(), IDENTITY),
    }
}

fn check_limits(request: &Request) {
    match request {
        Request::Subscribe {
            topic,
            subscription,
            from,
        } => {
            check_topic(topic);
            check_subscription(subscription);
            assert!(!matches!(from, StartFrom::Offset(0)), "accepted from: 0");
        }
        Request::Unsubscribe {
            topic,
            subscription,
        } => {
            check_topic(topic);
            check_subscription(subscription);
        }
        Request::Publish { topic, event, key } => {
            check_topic(topic);
            check_name("event", event);
            if let Some(key) = key {
                check_name("key", key);
            }
        }
        Request::History { topic, limit, .. } => {
            check_topic(topic);
            assert!((1..=MAX_HISTORY).contains(limit), "accepted limit {limit}");
        }
        Request::Join { room } | Request::Leave { room } => check_name("room", room.as_str()),
        Request::Broadcast { room, event } => {
            if let Some(room) = room {
                check_name("room", room.as_str());
            }
            check_name("event", event);
        }
        other => panic!("no check for {other:?}"),
    }
}

/// The payload a well-behaved client sends for `request`.
fn canonical_payload(request: &Request) -> Value {
    let mut payload = Map::new();
    let mut set = |field: &str, value: Value| {
        payload.insert(field.to_owned(), value);
    };
    let group = |subscription: &SubscriptionName| match subscription {
        SubscriptionName::Group(group) => Value::from(group.as_str()),
        SubscriptionName::Identity(_) => Value::Null,
    };
    let room = |room: &Room| Value::from(room.as_str());
    match request {
        Request::Subscribe {
            topic,
            subscription,
            from,
        } => {
            set("topic", topic.as_str().into());
            set("group", group(subscription));
            set(
                "from",
                match from {
                    StartFrom::New => json!("new"),
                    StartFrom::Earliest => json!("earliest"),
                    StartFrom::Offset(offset) => json!(offset),
                },
            );
        }
        Request::Unsubscribe {
            topic,
            subscription,
        } => {
            set("topic", topic.as_str().into());
            set("group", group(subscription));
        }
        Request::Publish { topic, event, key } => {
            set("topic", topic.as_str().into());
            set("event", event.as_str().into());
            set("key", key.as_deref().into());
            set("data", json!({ "any": ["thing"] }));
        }
        Request::History { topic, from, limit } => {
            set("topic", topic.as_str().into());
            set("from", (*from).into());
            set("limit", (*limit).into());
        }
        Request::Join { room: r } | Request::Leave { room: r } => set("room", room(r)),
        Request::Broadcast { room: r, event } => {
            if let Some(r) = r {
                set("room", room(r));
            }
            set("event", event.as_str().into());
            set("data", json!([1, "two"]));
        }
        other => panic!("no canonical payload for {other:?}"),
    }
    Value::Object(payload)
}
