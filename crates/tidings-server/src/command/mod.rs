//! The built-in events, as one typed command set (mini-redis's `cmd/`): every built-in a
//! client can send without server code of its own is a variant of [`Command`], with its own
//! file holding its payload type, its `parse`, the permission it needs (`required_access`)
//! and its `apply`.
//!
//! Every entry point goes through the same parsers: the Socket.IO event path
//! (`run`), the HTTP API (`POST /v1/topics/{t}/messages` builds a [`Publish`]) and the fuzz
//! targets ([`crate::fuzzing`]). A built-in cannot exist without a declared permission: the
//! [`Builtin`] trait has no default for [`Builtin::required_access`], and [`Command`]'s
//! matches are exhaustive.
//!
//! Every built-in's file has the same shape on purpose (a payload struct, `impl Builtin`, an
//! `apply`), and [`Command`]'s methods are one exhaustive match each: a duplicate finder pairs
//! them by shape; the sameness is the pattern, and a macro would hide the per-command code.
//!
//! The order of a request is always: parse (`bad_request`), then authorize (`forbidden`),
//! then apply. Room built-ins run inline, in arrival order, so that a `join` followed by a
//! `broadcast` from the same client always sees the join; queue built-ins wait for the store,
//! concurrently, among the socket's pending work (one driver task per socket:
//! `Socket::run_pending`), and answer in any order.

mod broadcast;
pub mod fields;
mod history;
mod join;
mod leave;
mod publish;
mod subscribe;
mod unsubscribe;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tidings_core::{ErrorBody, ErrorCode};

pub use self::broadcast::Broadcast;
pub use self::fields::{MAX_NAME_LEN, bad_request};
pub use self::history::{DEFAULT_HISTORY, History, MAX_HISTORY};
pub(crate) use self::history::{message_data, messages};
pub use self::join::Join;
pub use self::leave::Leave;
pub use self::publish::{Publish, Published};
pub use self::subscribe::Subscribe;
pub use self::unsubscribe::Unsubscribe;

use crate::auth::{Action, Principal, forbidden};
use crate::io::{AckSender, EmitError, Event, Socket};
use crate::queue::Queues;

/// The answer of a built-in: the ack's value, or the error it is refused with.
pub type Answer = Result<Value, ErrorBody>;

/// What a built-in acknowledges with when it succeeds.
pub(crate) trait AckAnswer {
    /// Sends the acknowledgement.
    fn send(self, ack: AckSender) -> Result<(), EmitError>;
}

impl AckAnswer for Value {
    fn send(self, ack: AckSender) -> Result<(), EmitError> {
        ack.send_value(self)
    }
}

/// Which part of the server offers a built-in; each can be switched off on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `join`, `leave`, `broadcast`: [`crate::ServerConfig::builtin_events`].
    Rooms,
    /// `subscribe`, `unsubscribe`, `publish`, `history`: present once queues are enabled
    /// ([`crate::Server::enable_queues`]).
    Queues,
}

/// The permission a parsed built-in needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Any connected client: the request only undoes what was allowed before (`leave`,
    /// `unsubscribe`).
    Any,
    /// `action` on the topic or room `name`.
    To(Action, String),
    /// Only an admin; the text says what was refused (`broadcast to the whole namespace`).
    Admin(&'static str),
}

impl Access {
    /// `Ok` when `principal` holds this access, else the `forbidden` refusal.
    pub fn check(&self, principal: &Principal) -> Result<(), ErrorBody> {
        match self {
            Access::Any => Ok(()),
            Access::To(action, name) => principal.check(*action, name),
            Access::Admin(_) if principal.is_admin() => Ok(()),
            Access::Admin(what) => Err(forbidden(format!(
                "{} may not {what} (admin only)",
                principal.identity()
            ))),
        }
    }
}

/// What a parser reads: the event's first argument, its binary attachments and the sender's
/// durable identity.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The first argument of the event (null when it has none).
    pub payload: Value,
    /// The packet's binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
    /// The sender's durable identity, if it has one.
    pub identity: Option<&'a str>,
}

/// One built-in event: its name, its family, how its payload is read and what it needs.
pub trait Builtin: Sized {
    /// The event name clients emit.
    const NAME: &'static str;
    /// The part of the server that offers it.
    const FAMILY: Family;
    /// Reads and checks the payload; the error is what the client's ack gets.
    ///
    /// # Errors
    ///
    /// `bad_request` for a payload of the wrong shape; `identity_required` for a queue
    /// request from a client without an identity.
    fn parse(input: Input<'_>) -> Result<Self, ErrorBody>;
    /// The permission the request needs, checked before it is applied.
    fn required_access(&self) -> Access;
}

/// Every built-in event, parsed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Command {
    Join(Join),
    Leave(Leave),
    Broadcast(Broadcast),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Publish(Publish),
    History(History),
}

/// The names of every built-in event.
pub const NAMES: &[&str] = &[
    Join::NAME,
    Leave::NAME,
    Broadcast::NAME,
    Subscribe::NAME,
    Unsubscribe::NAME,
    Publish::NAME,
    History::NAME,
];

impl Command {
    /// The family of the built-in called `name`; None for an application event.
    pub fn family_of(name: &str) -> Option<Family> {
        Some(match name {
            Join::NAME => Join::FAMILY,
            Leave::NAME => Leave::FAMILY,
            Broadcast::NAME => Broadcast::FAMILY,
            Subscribe::NAME => Subscribe::FAMILY,
            Unsubscribe::NAME => Unsubscribe::FAMILY,
            Publish::NAME => Publish::FAMILY,
            History::NAME => History::FAMILY,
            _ => return None,
        })
    }

    /// Parses the built-in `name`.
    ///
    /// # Errors
    ///
    /// The parser's refusal; `bad_request` when `name` is not a built-in.
    pub fn parse(name: &str, input: Input<'_>) -> Result<Command, ErrorBody> {
        match name {
            Join::NAME => Join::parse(input).map(Command::Join),
            Leave::NAME => Leave::parse(input).map(Command::Leave),
            Broadcast::NAME => Broadcast::parse(input).map(Command::Broadcast),
            Subscribe::NAME => Subscribe::parse(input).map(Command::Subscribe),
            Unsubscribe::NAME => Unsubscribe::parse(input).map(Command::Unsubscribe),
            Publish::NAME => Publish::parse(input).map(Command::Publish),
            History::NAME => History::parse(input).map(Command::History),
            other => Err(bad_request(format!("`{other}` is not a built-in event"))),
        }
    }

    /// The permission this request needs.
    pub fn required_access(&self) -> Access {
        match self {
            Command::Join(c) => c.required_access(),
            Command::Leave(c) => c.required_access(),
            Command::Broadcast(c) => c.required_access(),
            Command::Subscribe(c) => c.required_access(),
            Command::Unsubscribe(c) => c.required_access(),
            Command::Publish(c) => c.required_access(),
            Command::History(c) => c.required_access(),
        }
    }

    /// The event name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Join(_) => Join::NAME,
            Command::Leave(_) => Leave::NAME,
            Command::Broadcast(_) => Broadcast::NAME,
            Command::Subscribe(_) => Subscribe::NAME,
            Command::Unsubscribe(_) => Unsubscribe::NAME,
            Command::Publish(_) => Publish::NAME,
            Command::History(_) => History::NAME,
        }
    }
}

/// Runs the built-in `event` sent by `socket`: parse, authorize, apply, answer the ack.
/// `queues` is the delivery engine, for the queue built-ins.
pub(crate) fn run(socket: Socket, event: Event, queues: Option<Arc<Queues>>) {
    let name = event.name().to_owned();
    let (mut args, attachments, ack) = event.into_parts();
    let payload = if args.is_empty() {
        Value::Null
    } else {
        args.swap_remove(0)
    };
    let input = Input {
        payload,
        attachments,
        identity: socket.identity(),
    };
    let command = Command::parse(&name, input);
    run_parsed(socket, name, command, ack, queues);
}

/// Runs the `publish` whose first argument is `payload`, JSON text checked by the packet
/// decoder (None: the event had no argument), read by [`Publish::from_json`]: the socket's
/// fast path, where `data` is stored as the text it arrived as.
pub(crate) fn run_publish_json(
    socket: Socket,
    payload: Option<&serde_json::value::RawValue>,
    ack: Option<AckSender>,
    queues: Arc<Queues>,
) {
    let identity = socket.identity();
    let command = match payload {
        Some(payload) => Publish::from_json(payload, &[], identity),
        None => Publish::parse(Input {
            payload: Value::Null,
            attachments: Vec::new(),
            identity,
        }),
    };
    run_parsed(
        socket,
        Publish::NAME.to_owned(),
        command.map(Command::Publish),
        ack,
        Some(queues),
    );
}

fn run_parsed(
    socket: Socket,
    name: String,
    command: Result<Command, ErrorBody>,
    ack: Option<AckSender>,
    queues: Option<Arc<Queues>>,
) {
    let command = command.and_then(|command| {
        match socket.principal() {
            Some(principal) => command.required_access().check(&principal),
            // No verified principal: development mode, everything is allowed.
            None => Ok(()),
        }
        .map(|()| command)
    });
    let command = match command {
        Ok(command) => command,
        Err(e) => return respond::<Value>(&socket, &name, ack, Err(e)),
    };
    match command {
        Command::Join(c) => respond(&socket, &name, ack, c.apply(&socket)),
        Command::Leave(c) => respond(&socket, &name, ack, c.apply(&socket)),
        Command::Broadcast(c) => respond(&socket, &name, ack, c.apply(&socket)),
        Command::Subscribe(c) => in_task(socket, name, ack, queues, |queues, _| async move {
            c.apply(&queues).await
        }),
        Command::Unsubscribe(c) => in_task(socket, name, ack, queues, |queues, _| async move {
            c.apply(&queues).await
        }),
        Command::Publish(c) => in_task(socket, name, ack, queues, |queues, socket| async move {
            c.apply(&queues, socket.identity()).await
        }),
        Command::History(c) => {
            // Answered with the messages' attachments: not through `in_task`, whose answer is
            // JSON only.
            let Some(queues) = queues else {
                let e = ErrorBody::new(ErrorCode::Internal, "durable queues are not enabled");
                return respond::<Value>(&socket, &name, ack, Err(e));
            };
            let driven = socket.clone();
            driven.run_pending(Box::pin(async move {
                match c.apply(&queues).await {
                    Ok((value, attachments)) => {
                        let Some(ack) = ack else { return };
                        if let Err(e) = ack.send_args(vec![value], attachments) {
                            tracing::debug!(sid = %socket.id(), event = %name, error = %e, "could not acknowledge");
                        }
                    }
                    Err(e) => respond::<Value>(&socket, &name, ack, Err(e)),
                }
            }));
        }
    }
}

/// Applies a queue built-in (it waits for the store) among the socket's pending work
/// ([`Socket::run_pending`]: one task per socket drives all its store requests, not a task
/// each) and answers it.
fn in_task<F, Fut, R>(
    socket: Socket,
    name: String,
    ack: Option<AckSender>,
    queues: Option<Arc<Queues>>,
    apply: F,
) where
    F: FnOnce(Arc<Queues>, Socket) -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, ErrorBody>> + Send + 'static,
    R: AckAnswer,
{
    let Some(queues) = queues else {
        let e = ErrorBody::new(ErrorCode::Internal, "durable queues are not enabled");
        return respond::<Value>(&socket, &name, ack, Err(e));
    };
    let driven = socket.clone();
    driven.run_pending(Box::pin(async move {
        let answer = apply(queues, socket.clone()).await;
        respond(&socket, &name, ack, answer);
    }));
}

fn respond<R: AckAnswer>(
    socket: &Socket,
    event: &str,
    ack: Option<AckSender>,
    answer: Result<R, ErrorBody>,
) {
    if let Err(e) = &answer {
        tracing::debug!(sid = %socket.id(), event, code = %e.code, message = %e.message, "built-in event refused");
    }
    let Some(ack) = ack else { return };
    let sent = match answer {
        Ok(answer) => answer.send(ack),
        Err(e) => ack.send_error(e),
    };
    if let Err(e) = sent {
        tracing::debug!(sid = %socket.id(), event, error = %e, "could not acknowledge");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(name: &str, payload: Value) -> Result<Command, ErrorBody> {
        let input = Input {
            payload,
            attachments: Vec::new(),
            identity: Some("d-7"),
        };
        Command::parse(name, input)
    }

    /// The permission of every built-in, from a well-formed payload of each.
    #[test]
    fn every_built_in_declares_its_access() {
        let to = |action, name: &str| Access::To(action, name.to_owned());
        let cases = [
            ("join", json!({ "room": "r.1" }), to(Action::Join, "r.1")),
            ("leave", json!({ "room": "r.1" }), Access::Any),
            (
                "broadcast",
                json!({ "room": "r.1", "event": "e" }),
                to(Action::Publish, "r.1"),
            ),
            (
                "broadcast",
                json!({ "event": "e" }),
                Access::Admin("broadcast to the whole namespace"),
            ),
            (
                "subscribe",
                json!({ "topic": "t.1" }),
                to(Action::Subscribe, "t.1"),
            ),
            ("unsubscribe", json!({ "topic": "t.1" }), Access::Any),
            (
                "publish",
                json!({ "topic": "t.1", "event": "e" }),
                to(Action::Publish, "t.1"),
            ),
            (
                "history",
                json!({ "topic": "t.1" }),
                to(Action::Subscribe, "t.1"),
            ),
        ];
        let mut seen = std::collections::HashSet::new();
        for (name, payload, access) in cases {
            let command = parse(name, payload).unwrap();
            assert_eq!(command.name(), name);
            assert_eq!(command.required_access(), access, "{name}");
            seen.insert(name);
        }
        assert_eq!(seen.len(), NAMES.len(), "a built-in without a case here");
        for name in NAMES {
            assert!(Command::family_of(name).is_some(), "{name}");
        }
        assert_eq!(Command::family_of("chat"), None);
    }

    #[test]
    fn queue_requests_need_an_identity_and_an_object() {
        let input = Input {
            payload: json!({ "topic": "t" }),
            attachments: Vec::new(),
            identity: None,
        };
        let e = Command::parse("subscribe", input).unwrap_err();
        assert_eq!(e.code, ErrorCode::IdentityRequired);
        let e = parse("publish", json!("t")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::BadRequest, "`publish` expects an object payload")
        );
    }

    /// A publish keeps the binary its `data` references, renumbered from 0; binary elsewhere
    /// in the packet is not part of the message.
    #[test]
    fn publish_keeps_the_binary_of_its_data() {
        let placeholder = |n: usize| json!({ "_placeholder": true, "num": n });
        let input = Input {
            payload: json!({
                "topic": "t",
                "event": "e",
                "other": placeholder(0),
                "data": { "b": [placeholder(2), placeholder(1)] },
            }),
            attachments: vec![
                Bytes::from_static(b"zero"),
                Bytes::from_static(b"one"),
                Bytes::from_static(b"two"),
            ],
            identity: Some("d-7"),
        };
        let Command::Publish(p) = Command::parse("publish", input).unwrap() else {
            panic!("not a publish")
        };
        let data: Value = serde_json::from_str(&p.data).unwrap();
        assert_eq!(data, json!({ "b": [placeholder(0), placeholder(1)] }));
        assert_eq!(
            p.attachments,
            [Bytes::from_static(b"two"), Bytes::from_static(b"one")]
        );
    }

    /// The HTTP form: `{"_binary": base64}` parts become placeholders + attachments; a bad
    /// base64 or a raw placeholder is `bad_request`.
    #[test]
    fn publish_from_a_body_reads_binary_parts() {
        let topic = tidings_core::store::Topic::new("t").unwrap();
        let p = Publish::from_body(
            topic.clone(),
            json!({ "event": "e", "data": [{ "_binary": "AQI=" }, "x"] }),
        )
        .unwrap();
        assert_eq!(p.data, r#"[{"_placeholder":true,"num":0},"x"]"#);
        assert_eq!(p.attachments, [Bytes::from_static(&[1, 2])]);
        for data in [
            json!({ "_binary": "not base64!" }),
            json!([{ "_placeholder": true, "num": 0 }]),
        ] {
            let e = Publish::from_body(topic.clone(), json!({ "event": "e", "data": data }))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{}", e.message);
        }
    }

    /// The socket's text path ([`Publish::from_json`]) reads a payload as the decoded path
    /// does: the same request or the same refusal; `data` kept as the text it arrived as,
    /// equal in meaning to the decoded data.
    #[test]
    fn publish_from_json_agrees_with_the_decoded_path() {
        let placeholder = r#"{"_placeholder":true,"num":0}"#;
        let payloads = [
            r#"{"topic":"t","event":"e","data":"x"}"#.to_owned(),
            r#"{"topic":"t","event":"e"}"#.to_owned(),
            r#"{ "event" : "e", "topic": "t", "key": "k1", "data" : {"z":1,"a":[1.0, -0, 1e3, "\u00e9\"", null, true, {}]} }"#.to_owned(),
            r#"{"topic":"t","event":"e","data":1,"data":{"last":"wins"}}"#.to_owned(),
            r#"{"topic":"t","topic":"u","event":"e","data":[]}"#.to_owned(),
            r#"{"topic":"t","event":"e","x":{"deep":[[[[1]]]]},"data":null}"#.to_owned(),
            format!(r#"{{"topic":"t","event":"e","data":{}1{}}}"#, "[".repeat(100), "]".repeat(100)),
            // Refusals: each the decoded path's.
            r#""t""#.to_owned(),
            r#"[1]"#.to_owned(),
            r#"null"#.to_owned(),
            r#"{"event":"e","data":1}"#.to_owned(),
            r#"{"topic":"","event":"e"}"#.to_owned(),
            r#"{"topic":7,"event":"e"}"#.to_owned(),
            r#"{"topic":"t"}"#.to_owned(),
            r#"{"topic":"t","event":"disconnect"}"#.to_owned(),
            r#"{"topic":"t","event":"e","key":""}"#.to_owned(),
            r#"{"topic":"t","event":"e","key":5}"#.to_owned(),
            format!(r#"{{"topic":"t","event":"{}"}}"#, "e".repeat(MAX_NAME_LEN + 1)),
            format!(r#"{{"topic":"t","event":"e","data":{placeholder}}}"#),
        ];
        for text in &payloads {
            let raw = serde_json::value::RawValue::from_string(text.clone()).unwrap();
            let value: Value = serde_json::from_str(text).unwrap();
            let from_json = Publish::from_json(&raw, &[], Some("d-7"));
            let decoded = match parse("publish", value) {
                Ok(Command::Publish(p)) => Ok(p),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e),
            };
            match (from_json, decoded) {
                (Ok(fast), Ok(slow)) => {
                    assert_eq!(
                        (&fast.topic, &fast.event, &fast.key, &fast.attachments),
                        (&slow.topic, &slow.event, &slow.key, &slow.attachments),
                        "{text}"
                    );
                    let fast_data: Value = serde_json::from_str(&fast.data).unwrap();
                    let slow_data: Value = serde_json::from_str(&slow.data).unwrap();
                    assert_eq!(fast_data, slow_data, "{text}");
                }
                (Err(fast), Err(slow)) => assert_eq!(fast, slow, "{text}"),
                (fast, slow) => panic!("{text}: text path {fast:?}, decoded {slow:?}"),
            }
        }
        // The common case stores the data exactly as sent.
        let raw = serde_json::value::RawValue::from_string(
            r#"{"topic":"t","event":"e","data":{"b": 1.50, "a": "\u00e9"}}"#.to_owned(),
        )
        .unwrap();
        let p = Publish::from_json(&raw, &[], Some("d-7")).unwrap();
        assert_eq!(p.data, r#"{"b": 1.50, "a": "\u00e9"}"#);
    }

    /// With attachments the text path renumbers what `data` references, as the decoded path.
    #[test]
    fn publish_from_json_keeps_the_binary_of_its_data() {
        let raw = serde_json::value::RawValue::from_string(
            r#"{"topic":"t","event":"e","other":{"_placeholder":true,"num":0},"data":{"b":[{"_placeholder":true,"num":2},{"_placeholder":true,"num":1}]}}"#.to_owned(),
        )
        .unwrap();
        let attachments = [
            Bytes::from_static(b"zero"),
            Bytes::from_static(b"one"),
            Bytes::from_static(b"two"),
        ];
        let p = Publish::from_json(&raw, &attachments, Some("d-7")).unwrap();
        assert_eq!(
            p.data,
            r#"{"b":[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]}"#
        );
        assert_eq!(
            p.attachments,
            [Bytes::from_static(b"two"), Bytes::from_static(b"one")]
        );
    }

    /// The ack text of a publish is its value's text.
    #[test]
    fn published_json_is_its_value() {
        for duplicate in [false, true] {
            let published = Published {
                id: tidings_core::store::MessageId::new(),
                offset: u64::MAX,
                duplicate,
            };
            let text: Value = serde_json::from_str(&published.to_json()).unwrap();
            assert_eq!(text, published.to_value());
            assert_eq!(published.to_json(), published.to_value().to_string());
        }
    }
}
