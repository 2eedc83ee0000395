//! Entry points for the fuzz targets (`crates/tidings-fuzz`): the parsers of the built-in events'
//! payloads, reachable without a socket, a namespace or a store. Not part of the API: it may
//! change in any release.
//!
//! [`parse`] is [`Command::parse`], the parser every entry point uses; [`Request`] is what a
//! parsed command asks for without its data, so that a payload written back from it can be
//! compared.

use serde_json::Value;
use tidings_core::store::{StartFrom, SubscriptionName, Topic};
use tidings_core::{ErrorBody, Room};

use crate::command::{Builtin, Command, Input};

/// The built-in events whose first argument [`parse`] reads.
pub const EVENTS: &[&str] = crate::command::NAMES;

/// What a built-in event's payload asks for, once its parser has checked it.
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

// A field-by-field projection (the data left out): alike in shape for every variant by nature.
impl From<Command> for Request {
    fn from(command: Command) -> Request {
        match command {
            Command::Subscribe(c) => Request::Subscribe {
                topic: c.topic,
                subscription: c.subscription,
                from: c.from,
            },
            Command::Unsubscribe(c) => Request::Unsubscribe {
                topic: c.topic,
                subscription: c.subscription,
            },
            Command::Publish(c) => Request::Publish {
                topic: c.topic,
                event: c.event,
                key: c.key,
            },
            Command::History(c) => Request::History {
                topic: c.topic,
                from: c.from,
                limit: c.limit,
            },
            Command::Join(c) => Request::Join { room: c.room },
            Command::Leave(c) => Request::Leave { room: c.room },
            Command::Broadcast(c) => Request::Broadcast {
                room: c.room,
                event: c.event,
            },
        }
    }
}

/// Reads `payload`, the first argument of the built-in event `event` sent by a client whose
/// identity is `identity`, with the parser the server uses: the error is the one the client
/// would get in its ack.
///
/// # Errors
///
/// The parser's refusal; `bad_request` for an event that is not in [`EVENTS`].
pub fn parse(event: &str, identity: &str, payload: &Value) -> Result<Request, ErrorBody> {
    let input = Input {
        payload: payload.clone(),
        attachments: Vec::new(),
        identity: Some(identity),
    };
    Command::parse(event, input).map(Request::from)
}

/// [`parse`] of a payload given as the JSON text it arrived as: for `publish`, the socket's
/// text path ([`crate::command::Publish::from_json`], `data` never decoded); for the other
/// built-ins, `payload` decoded and [`parse`].
///
/// # Errors
///
/// As [`parse`].
pub fn parse_json(
    event: &str,
    identity: &str,
    payload: &serde_json::value::RawValue,
) -> Result<Request, ErrorBody> {
    if event == crate::command::Publish::NAME {
        return crate::command::Publish::from_json(payload, &[], Some(identity))
            .map(|p| Request::from(Command::Publish(p)));
    }
    let payload = serde_json::from_str(payload.get()).unwrap_or(Value::Null);
    parse(event, identity, &payload)
}
