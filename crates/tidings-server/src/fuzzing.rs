//! Entry points for the fuzz targets (`crates/tidings-fuzz`): the parsers of the built-in events'
//! payloads, reachable without a socket, a namespace or a store. Not part of the API: it may
//! change in any release.

use serde_json::Value;
use tidings_core::store::{StartFrom, SubscriptionName, Topic};
use tidings_core::{ErrorBody, ErrorCode, Room};

use crate::io::builtins;
use crate::queue::events;

/// The built-in events whose first argument [`parse`] reads.
pub const EVENTS: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "publish",
    "history",
    "join",
    "leave",
    "broadcast",
];

/// What a built-in event's payload asks for, once its handler has checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Request {
    Subscribe {
        topic: Topic,
        subscription: SubscriptionName,
        from: StartFrom,
    },
    Unsubscribe {
        topic: Topic,
        subscription: SubscriptionName,
    },
    Publish {
        topic: Topic,
        event: String,
        key: Option<String>,
    },
    History {
        topic: Topic,
        from: u64,
        limit: usize,
    },
    Join {
        room: Room,
    },
    Leave {
        room: Room,
    },
    Broadcast {
        room: Option<Room>,
        event: String,
    },
}

/// Reads `payload`, the first argument of the built-in event `event` sent by a client whose
/// identity is `identity`, with the same functions as the event's handler: the error is the
/// one the client would get in its ack.
///
/// # Errors
///
/// The handler's refusal; `bad_request` for an event that is not in [`EVENTS`].
pub fn parse(event: &str, identity: &str, payload: &Value) -> Result<Request, ErrorBody> {
    let queue_event = matches!(event, "subscribe" | "unsubscribe" | "publish" | "history");
    // The queue handler refuses a non-object payload before it reads any field.
    if queue_event && !payload.is_object() {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("`{event}` expects an object payload"),
        ));
    }
    match event {
        "subscribe" => Ok(Request::Subscribe {
            topic: events::topic_of(payload)?,
            subscription: events::subscription_of(identity, payload)?,
            from: events::start_of(payload)?,
        }),
        "unsubscribe" => Ok(Request::Unsubscribe {
            topic: events::topic_of(payload)?,
            subscription: events::subscription_of(identity, payload)?,
        }),
        "publish" => {
            let (topic, event, key) = events::publish_fields(payload)?;
            events::check_event(event)?;
            Ok(Request::Publish {
                topic,
                event: event.to_owned(),
                key: key.map(str::to_owned),
            })
        }
        "history" => {
            let (topic, from, limit) = events::history_fields(payload)?;
            Ok(Request::History { topic, from, limit })
        }
        "join" => Ok(Request::Join {
            room: builtins::room_of(payload)?,
        }),
        "leave" => Ok(Request::Leave {
            room: builtins::room_of(payload)?,
        }),
        "broadcast" => {
            let (room, event) = builtins::broadcast_fields(payload)?;
            Ok(Request::Broadcast { room, event })
        }
        other => Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("`{other}` is not a built-in event"),
        )),
    }
}
