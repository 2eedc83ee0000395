//! The field readers every built-in's parser uses, so that a name is checked the same way
//! wherever it arrives (a Socket.IO event, an HTTP body, a fuzz input).

use serde_json::Value;
use tidings_core::store::{SubscriptionName, Topic};
use tidings_core::{ErrorBody, ErrorCode, Room};

/// Longest accepted room name, event name, group name or idempotency key, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A `bad_request` refusal: the payload does not have the shape the request needs.
pub fn bad_request(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}

/// `Ok` when `payload` is a JSON object; `shape` names the fields in the refusal.
pub(crate) fn require_object(payload: &Value, shape: &str) -> Result<(), ErrorBody> {
    if payload.is_object() {
        Ok(())
    } else {
        Err(bad_request(format!("expected an object {shape}")))
    }
}

/// An optional name field: absent or null is None, else a non-empty string of at most
/// [`MAX_NAME_LEN`] bytes.
pub(crate) fn optional_name<'a>(
    payload: &'a Value,
    field: &str,
) -> Result<Option<&'a str>, ErrorBody> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => name(field, s).map(Some),
        Some(_) => Err(not_a_name(field)),
    }
}

/// The string `s` of name field `field` (see [`optional_name`]).
pub(crate) fn name<'a>(field: &str, s: &'a str) -> Result<&'a str, ErrorBody> {
    if !s.is_empty() && s.len() <= MAX_NAME_LEN {
        Ok(s)
    } else {
        Err(not_a_name(field))
    }
}

fn not_a_name(field: &str) -> ErrorBody {
    bad_request(format!(
        "`{field}` must be a non-empty string of at most {MAX_NAME_LEN} bytes"
    ))
}

/// A required name field (see [`optional_name`]).
pub(crate) fn required_name<'a>(payload: &'a Value, field: &str) -> Result<&'a str, ErrorBody> {
    optional_name(payload, field)?.ok_or_else(|| bad_request(format!("`{field}` is required")))
}

/// The `room` of a payload.
pub(crate) fn room(payload: &Value) -> Result<Room, ErrorBody> {
    required_name(payload, "room").map(Room::from)
}

/// The name of an event a client asks the server to emit (`publish`, `broadcast`): a name
/// (see [`optional_name`]) that is not one of Socket.IO's reserved event names.
pub(crate) fn event_name(payload: &Value) -> Result<String, ErrorBody> {
    event_name_of(required_name(payload, "event")?)
}

/// [`event_name`] of the string `event`.
pub(crate) fn event_name_of(event: &str) -> Result<String, ErrorBody> {
    let event = name("event", event)?;
    if crate::io::is_reserved_event(event) {
        return Err(bad_request(format!("`{event}` is a reserved event name")));
    }
    Ok(event.to_owned())
}

/// The idempotency `key` of a publish (see [`optional_name`]).
pub(crate) fn key(payload: &Value) -> Result<Option<String>, ErrorBody> {
    Ok(optional_name(payload, "key")?.map(str::to_owned))
}

/// A topic name, as sent in a payload or a URL path.
pub(crate) fn topic_name(name: &str) -> Result<Topic, ErrorBody> {
    Topic::new(name).map_err(|e| bad_request(e.to_string()))
}

/// The `topic` of a payload.
pub(crate) fn topic(payload: &Value) -> Result<Topic, ErrorBody> {
    let name = payload
        .get("topic")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("`topic` must be a string"))?;
    topic_name(name)
}

/// The subscription a payload names: its `group`, or else the sender's own queue.
pub(crate) fn subscription(identity: &str, payload: &Value) -> Result<SubscriptionName, ErrorBody> {
    match optional_name(payload, "group")? {
        Some(group) => SubscriptionName::group(group),
        None => SubscriptionName::identity(identity),
    }
    .map_err(|e| bad_request(e.to_string()))
}

/// The data of a payload: its `data` field, null when absent.
pub(crate) fn take_data(payload: &mut Value) -> Value {
    payload
        .as_object_mut()
        .and_then(|map| map.remove("data"))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_bounded_and_not_reserved() {
        let long = "k".repeat(MAX_NAME_LEN + 1);
        assert!(key(&json!({ "key": "" })).is_err());
        assert!(key(&json!({ "key": long })).is_err());
        assert!(key(&json!({ "key": 7 })).is_err());
        assert_eq!(key(&json!({})).unwrap(), None);
        assert_eq!(
            key(&json!({ "key": "k".repeat(MAX_NAME_LEN) })).unwrap(),
            Some("k".repeat(MAX_NAME_LEN))
        );
        assert!(event_name(&json!({ "event": "disconnect" })).is_err());
        assert!(event_name(&json!({})).is_err());
        assert_eq!(event_name(&json!({ "event": "news" })).unwrap(), "news");
    }
}
