//! The built-in events that clients can use with no server code of their own (enabled by
//! [`crate::ServerConfig::builtin_events`], on by default in `tidings serve`):
//!
//! - `join` `{room}` → `{ok:true}`
//! - `leave` `{room}` → `{ok:true}`
//! - `broadcast` `{room?, event, data}` → `{ok:true, recipients:N}`: every socket in `room`
//!   (the whole namespace without one) except the sender receives `event` with the single
//!   argument `data`; binary inside `data` stays binary.
//!
//! A payload of the wrong shape is answered with `{ok:false,error:{code:"bad_request",…}}`.
//! They run inline, in arrival order, so a `join` followed by a `broadcast` from the same
//! client always sees the join.

use serde_json::{Value, json};
use tidings_core::{ErrorBody, ErrorCode, Room};

use super::event::{AckSender, Event, RESERVED_EVENTS, extract_attachments};
use super::socket::Socket;

/// Longest accepted room or event name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

const BUILTINS: &[&str] = &["join", "leave", "broadcast"];

pub(crate) fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

pub(crate) fn handle(socket: &Socket, event: Event) {
    let name = event.name.clone();
    let (mut args, attachments, ack) = event.into_parts();
    let payload = if args.is_empty() {
        Value::Null
    } else {
        args.swap_remove(0)
    };
    let result = match name.as_str() {
        "join" => room_of(&payload).map(|room| {
            socket.join(room);
            json!({ "ok": true })
        }),
        "leave" => room_of(&payload).map(|room| {
            socket.leave(room);
            json!({ "ok": true })
        }),
        _ => broadcast(socket, payload, &attachments),
    };
    respond(socket, &name, ack, result);
}

fn respond(socket: &Socket, event: &str, ack: Option<AckSender>, result: Result<Value, ErrorBody>) {
    if let Err(e) = &result {
        tracing::debug!(sid = %socket.id(), event, code = %e.code, message = %e.message, "built-in event refused");
    }
    let Some(ack) = ack else { return };
    let sent = match result {
        Ok(value) => ack.send(&value),
        Err(e) => ack.send_error(e),
    };
    if let Err(e) = sent {
        tracing::debug!(sid = %socket.id(), event, error = %e, "could not acknowledge");
    }
}

fn bad_request(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}

/// A non-empty string of at most [`MAX_NAME_LEN`] bytes.
fn name_field<'a>(payload: &'a Value, field: &str) -> Result<Option<&'a str>, ErrorBody> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_NAME_LEN => Ok(Some(s)),
        Some(_) => Err(bad_request(format!(
            "`{field}` must be a non-empty string of at most {MAX_NAME_LEN} bytes"
        ))),
    }
}

fn require_object(payload: &Value, shape: &str) -> Result<(), ErrorBody> {
    if payload.is_object() {
        Ok(())
    } else {
        Err(bad_request(format!("expected an object {shape}")))
    }
}

pub(crate) fn room_of(payload: &Value) -> Result<Room, ErrorBody> {
    require_object(payload, "{room}")?;
    name_field(payload, "room")?
        .map(Room::from)
        .ok_or_else(|| bad_request("`room` is required"))
}

/// The `room` (none: the whole namespace) and `event` of a `broadcast` payload.
pub(crate) fn broadcast_fields(payload: &Value) -> Result<(Option<Room>, String), ErrorBody> {
    require_object(payload, "{room?, event, data}")?;
    let room = name_field(payload, "room")?.map(Room::from);
    let event = name_field(payload, "event")?
        .ok_or_else(|| bad_request("`event` is required"))?
        .to_owned();
    if RESERVED_EVENTS.contains(&event.as_str()) {
        return Err(bad_request(format!("`{event}` is a reserved event name")));
    }
    Ok((room, event))
}

fn broadcast(
    socket: &Socket,
    payload: Value,
    attachments: &[bytes::Bytes],
) -> Result<Value, ErrorBody> {
    let (room, event) = broadcast_fields(&payload)?;
    let mut data = match payload {
        Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let data_attachments = extract_attachments(&mut data, attachments);
    let targets = match room {
        Some(room) => socket.to(room),
        None => socket.broadcast(),
    };
    let recipients = targets
        .emit_args(&event, vec![data], &data_attachments)
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    Ok(json!({ "ok": true, "recipients": recipients }))
}
