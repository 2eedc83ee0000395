//! What a handler receives (an [`Event`]) and how it answers (an [`AckSender`]).

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidings_core::ErrorBody;
use tidings_proto::engine::Frame;
use tidings_proto::packet::Packet;
use tidings_proto::parser::Parser;

use crate::engine::{SendError, Session};

/// An emit could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The data could not be serialized to JSON.
    #[error("cannot serialize event data: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The event name is reserved by Socket.IO (`connect`, `disconnect`, …) and would break
    /// the client.
    #[error("event name {0:?} is reserved")]
    ReservedName(String),
    /// The socket is disconnected, or was just disconnected because it reads too slowly.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Waiting for an acknowledgement failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The data could not be serialized to JSON: nothing was sent.
    #[error("cannot serialize event data: {0}")]
    Serialize(String),
    /// The event name is reserved by Socket.IO: nothing was sent.
    #[error("event name {0:?} is reserved")]
    ReservedName(String),
    /// No acknowledgement within the timeout.
    #[error("acknowledgement timed out")]
    Timeout,
    /// The socket disconnected before acknowledging.
    #[error("socket disconnected before acknowledging")]
    Disconnected,
    /// The emit itself failed.
    #[error("emit failed: {0}")]
    Send(#[from] SendError),
    /// The socket already owes its maximum of acknowledgements
    /// ([`crate::Limits::max_pending_acks_per_socket`]): nothing was sent.
    #[error("the socket already owes {0} acknowledgements (max_pending_acks_per_socket)")]
    TooManyPending(usize),
}

impl From<EmitError> for AckError {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::Serialize(e) => AckError::Serialize(e.to_string()),
            EmitError::ReservedName(name) => AckError::ReservedName(name),
            EmitError::Send(e) => AckError::Send(e),
        }
    }
}

/// The arguments a client acknowledged with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AckReply {
    /// The JSON arguments; binary values appear as placeholders, see [`AckReply::attachments`].
    pub args: Vec<Value>,
    /// The binary attachments, indexed by the placeholders' `num`.
    pub attachments: Vec<Bytes>,
}

impl AckReply {
    /// The first argument deserialized as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.args.first().unwrap_or(&Value::Null))
    }
}

/// Event names the Socket.IO client reserves for itself; a client that receives one of them as
/// an event name rejects the packet and closes the connection.
pub(crate) const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Whether `name` is an event name the Socket.IO client reserves for itself.
pub(crate) fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// The frames of one event packet in `parser`'s encoding (with the default parser: the header,
/// then its binary attachments).
pub(crate) fn event_frames(
    parser: Parser,
    namespace: &str,
    event: &str,
    args: Vec<Value>,
    attachments: &[Bytes],
    id: Option<u64>,
) -> Result<Vec<Frame>, EmitError> {
    if RESERVED_EVENTS.contains(&event) {
        return Err(EmitError::ReservedName(event.to_owned()));
    }
    let packet = Packet::event(namespace, event, args, id, attachments.len());
    Ok(parser.frames(&packet, attachments))
}

/// Answers one client event that asked for an acknowledgement. Consumed by sending, so an
/// event is acknowledged at most once.
#[derive(Debug)]
pub struct AckSender {
    session: Arc<Session>,
    namespace: Arc<str>,
    id: u64,
    parser: Parser,
}

impl AckSender {
    pub(crate) fn new(session: Arc<Session>, namespace: Arc<str>, id: u64, parser: Parser) -> Self {
        AckSender {
            session,
            namespace,
            id,
            parser,
        }
    }

    /// Acknowledges with one argument.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), EmitError> {
        let value = serde_json::to_value(data)?;
        self.send_args(vec![value], Vec::new())
    }

    /// Acknowledges with one argument that is already a JSON value (moved in, not copied as
    /// [`AckSender::send`] would).
    pub fn send_value(self, value: Value) -> Result<(), EmitError> {
        self.send_args(vec![value], Vec::new())
    }

    /// Acknowledges with one argument given as JSON text (one valid JSON value): with the
    /// default parser it is written into the ack as is, with no [`Value`] built or
    /// serialized; the msgpack parser needs the value, so it is parsed there.
    pub(crate) fn send_json(self, json: &str) -> Result<(), EmitError> {
        match self.parser {
            Parser::Default => {
                let frame = Packet::json_ack_frame(&self.namespace, self.id, json);
                self.session.send(frame)?;
                Ok(())
            }
            _ => self.send_value(serde_json::from_str(json)?),
        }
    }

    /// Acknowledges with `{ok:false, error:{code, message}}`, the shape of every built-in
    /// event's failure.
    pub fn send_error(self, error: ErrorBody) -> Result<(), EmitError> {
        self.send_args(vec![error.to_ack()], Vec::new())
    }

    /// Acknowledges with several arguments and binary attachments (referenced from `args` by
    /// [`tidings_proto::packet::placeholder`]).
    pub fn send_args(self, args: Vec<Value>, attachments: Vec<Bytes>) -> Result<(), EmitError> {
        let packet = Packet::ack(&self.namespace, self.id, args, attachments.len());
        self.session
            .send_all(&self.parser.frames(&packet, &attachments))?;
        Ok(())
    }
}

/// An event a client emitted, as a handler receives it.
#[derive(Debug)]
pub struct Event {
    pub(crate) name: String,
    pub(crate) args: Vec<Value>,
    pub(crate) attachments: Vec<Bytes>,
    pub(crate) ack: Option<AckSender>,
}

impl Event {
    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments after the event name. Binary values appear as placeholders
    /// (`{"_placeholder":true,"num":N}`); resolve them with [`Event::binary`].
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// The binary attachments, in placeholder order.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// The first argument, deserialized as `T` (a missing argument deserializes from `null`).
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.args.first().unwrap_or(&Value::Null))
    }

    /// All arguments, deserialized as `T` (a tuple, a `Vec`, or a struct from a sequence).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(serde_json::value::Value::Array(self.args.clone()))
    }

    /// The bytes a placeholder value refers to, if `value` is a placeholder of this event.
    pub fn binary(&self, value: &Value) -> Option<&Bytes> {
        let num = value
            .get("_placeholder")
            .and_then(Value::as_bool)
            .filter(|b| *b)
            .and_then(|_| value.get("num"))
            .and_then(Value::as_u64)?;
        self.attachments.get(usize::try_from(num).ok()?)
    }

    /// Whether the client asked for an acknowledgement.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Takes the acknowledgement responder, if the client asked for one.
    pub fn take_ack(&mut self) -> Option<AckSender> {
        self.ack.take()
    }

    /// Splits the event into its arguments, attachments and responder.
    pub fn into_parts(self) -> (Vec<Value>, Vec<Bytes>, Option<AckSender>) {
        (self.args, self.attachments, self.ack)
    }
}

/// Takes the binary attachments referenced inside `value` out of `attachments`, renumbering
/// the placeholders depth-first from 0, so that `value` can be sent on its own.
///
/// Used to relay part of a packet (the `data` of a `broadcast`): the part may reference only
/// some of the packet's attachments, in any order.
pub fn extract_attachments(value: &mut Value, attachments: &[Bytes]) -> Vec<Bytes> {
    tidings_core::binary::take_referenced(value, attachments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_and_renumbers_referenced_attachments() {
        let attachments = vec![Bytes::from_static(b"zero"), Bytes::from_static(b"one")];
        let mut data = json!({"b": {"_placeholder": true, "num": 1}, "list": [{"_placeholder": true, "num": 0}]});
        let taken = extract_attachments(&mut data, &attachments);
        assert_eq!(
            taken,
            vec![Bytes::from_static(b"one"), Bytes::from_static(b"zero")]
        );
        assert_eq!(
            data.to_string(),
            r#"{"b":{"_placeholder":true,"num":0},"list":[{"_placeholder":true,"num":1}]}"#
        );
    }

    #[test]
    fn reserved_names_are_refused() {
        assert!(matches!(
            event_frames(Parser::Default, "/", "disconnect", vec![], &[], None),
            Err(EmitError::ReservedName(_))
        ));
    }

    #[test]
    fn an_emit_that_cannot_be_encoded_is_no_closed_socket() {
        // A map with non-string keys has no JSON form.
        let data = std::collections::HashMap::from([((1, 2), 3)]);
        let e = EmitError::from(serde_json::to_value(data).unwrap_err());
        assert!(matches!(AckError::from(e), AckError::Serialize(m) if m.contains("key")));
        let e = event_frames(Parser::Default, "/", "connect", vec![], &[], Some(1)).unwrap_err();
        assert_eq!(
            AckError::from(e),
            AckError::ReservedName("connect".to_owned())
        );
    }
}
