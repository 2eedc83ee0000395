//! The queue built-in events: `subscribe`, `unsubscribe`, `publish`, `history`.

use std::sync::Arc;

use serde_json::{Value, json};
use tidings_core::store::{
    BoundedAppend, NewMessage, StartFrom, StoreError, SubscriptionName, Topic,
};
use tidings_core::{ErrorBody, ErrorCode};

use super::{Queues, millis, now_millis};
use crate::io::{Event, Socket};

/// Longest accepted event name or idempotency key, in bytes.
const MAX_NAME_LEN: usize = 256;
/// Most messages one `history` call returns.
pub const MAX_HISTORY: usize = 1000;
/// Default `limit` of `history`.
const DEFAULT_HISTORY: usize = 100;

type Answer = Result<Value, ErrorBody>;

fn bad_request(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}

pub(crate) fn store_error(e: &StoreError) -> ErrorBody {
    match e {
        StoreError::NotFound(what) => ErrorBody::new(ErrorCode::NotFound, what.clone()),
        StoreError::Invalid(what) => bad_request(what.clone()),
        other => ErrorBody::new(ErrorCode::StoreUnavailable, other.to_string()),
    }
}

pub(crate) async fn handle(queues: Arc<Queues>, socket: Socket, event: Event) {
    let name = event.name().to_owned();
    let has_binary = !event.attachments().is_empty();
    let (mut args, _, ack) = event.into_parts();
    let payload = if args.is_empty() {
        Value::Null
    } else {
        args.swap_remove(0)
    };
    let answer = if !payload.is_object() {
        Err(bad_request(format!("`{name}` expects an object payload")))
    } else {
        match name.as_str() {
            "subscribe" => subscribe(&queues, &socket, &payload).await,
            "unsubscribe" => unsubscribe(&queues, &socket, &payload).await,
            "publish" if has_binary => Err(bad_request(
                "binary data cannot be published to durable topics",
            )),
            "publish" => match queues.admit_publish(socket.identity()) {
                Ok(()) => publish(&queues, &payload).await,
                Err(e) => Err(e),
            },
            _ => history(&queues, &payload).await,
        }
    };
    if let Err(e) = &answer {
        tracing::debug!(sid = %socket.id(), event = %name, code = %e.code, message = %e.message, "queue request refused");
    }
    let Some(ack) = ack else { return };
    let sent = match answer {
        Ok(value) => ack.send(&value),
        Err(e) => ack.send_error(e),
    };
    if let Err(e) = sent {
        tracing::debug!(sid = %socket.id(), event = %name, error = %e, "could not acknowledge");
    }
}

pub(crate) fn topic_of(payload: &Value) -> Result<Topic, ErrorBody> {
    let name = payload
        .get("topic")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("`topic` must be a string"))?;
    Topic::new(name).map_err(|e| bad_request(e.to_string()))
}

fn optional_string<'a>(payload: &'a Value, field: &str) -> Result<Option<&'a str>, ErrorBody> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_NAME_LEN => Ok(Some(s)),
        Some(_) => Err(bad_request(format!(
            "`{field}` must be a non-empty string of at most {MAX_NAME_LEN} bytes"
        ))),
    }
}

fn identity_of(socket: &Socket) -> Result<Arc<str>, ErrorBody> {
    socket.identity().map(Arc::from).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::IdentityRequired,
            "connect with a clientId in the auth payload to use durable queues",
        )
    })
}

pub(crate) fn subscription_of(
    identity: &str,
    payload: &Value,
) -> Result<SubscriptionName, ErrorBody> {
    let sub = match optional_string(payload, "group")? {
        Some(group) => SubscriptionName::group(group),
        None => SubscriptionName::identity(identity),
    };
    sub.map_err(|e| bad_request(e.to_string()))
}

pub(crate) fn start_of(payload: &Value) -> Result<StartFrom, ErrorBody> {
    match payload.get("from") {
        None | Some(Value::Null) => Ok(StartFrom::New),
        Some(Value::String(s)) if s == "new" => Ok(StartFrom::New),
        Some(Value::String(s)) if s == "earliest" => Ok(StartFrom::Earliest),
        Some(v) => v
            .as_u64()
            .filter(|o| *o >= 1)
            .map(StartFrom::Offset)
            .ok_or_else(|| bad_request("`from` must be \"new\", \"earliest\" or an offset >= 1")),
    }
}

async fn subscribe(queues: &Queues, socket: &Socket, payload: &Value) -> Answer {
    let identity = identity_of(socket)?;
    let topic = topic_of(payload)?;
    let sub = subscription_of(&identity, payload)?;
    let from = start_of(payload)?;
    queues.admit_subscription(&identity, &(topic.clone(), sub.clone()))?;
    let _creating = queues.admit_topic(&topic).await?;
    let info = queues
        .store
        .subscribe(&topic, &sub, from)
        .await
        .map_err(|e| store_error(&e))?;
    queues.topic_created(&topic);
    if matches!(sub, SubscriptionName::Group(_)) {
        queues
            .store
            .set_member(&topic, &sub, &identity, true)
            .await
            .map_err(|e| store_error(&e))?;
    }
    queues.attach(&identity, &(topic.clone(), sub.clone()));
    let group = match &sub {
        SubscriptionName::Group(g) => Value::from(g.as_str()),
        SubscriptionName::Identity(_) => Value::Null,
    };
    Ok(json!({ "ok": true, "topic": topic.as_str(), "group": group, "pending": info.pending }))
}

async fn unsubscribe(queues: &Queues, socket: &Socket, payload: &Value) -> Answer {
    let identity = identity_of(socket)?;
    let topic = topic_of(payload)?;
    let sub = subscription_of(&identity, payload)?;
    let key = (topic.clone(), sub.clone());
    if matches!(sub, SubscriptionName::Group(_)) {
        match queues
            .store
            .set_member(&topic, &sub, &identity, false)
            .await
        {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(store_error(&e)),
        }
    }
    if queues.detach(&identity, &key) {
        // Nobody consumes this queue any more: its entries and dead letters go too.
        queues
            .store
            .unsubscribe(&topic, &sub)
            .await
            .map_err(|e| store_error(&e))?;
    }
    Ok(json!({ "ok": true }))
}

/// Validates and appends a publish; shared by the `publish` event and the HTTP API.
pub(crate) async fn append(
    queues: &Queues,
    topic: &Topic,
    event: &str,
    data: &Value,
    key: Option<&str>,
) -> Answer {
    check_event(event)?;
    let message = NewMessage {
        event: event.to_owned(),
        data: data.to_string(),
        key: key.map(str::to_owned),
        published_at: now_millis(),
    };
    let dedup_window = millis(queues.config.dedup_window);
    let _creating = queues.admit_topic(topic).await?;
    let appended = match queues.config.queue_bound_for(topic) {
        None => queues.store.append(topic, message, dedup_window).await,
        Some(bound) => match queues
            .store
            .append_bounded(topic, message, dedup_window, bound)
            .await
        {
            Ok(BoundedAppend::Appended { appended, dropped }) => {
                queues.overflowed(&dropped);
                Ok(appended)
            }
            Ok(BoundedAppend::Full {
                subscription,
                depth,
            }) => return Err(queues.queue_full(topic, bound, &subscription, depth)),
            Err(e) => Err(e),
        },
    }
    .map_err(|e| store_error(&e))?;
    queues.topic_created(topic);
    if !appended.duplicate {
        queues.wake_topic(topic);
    }
    Ok(json!({
        "ok": true,
        "id": appended.id.to_string(),
        "offset": appended.offset,
        "duplicate": appended.duplicate,
    }))
}

/// The event name of a publish: non-empty, at most [`MAX_NAME_LEN`] bytes, not reserved.
pub(crate) fn check_event(event: &str) -> Result<(), ErrorBody> {
    if event.is_empty() || event.len() > MAX_NAME_LEN {
        return Err(bad_request(format!(
            "`event` must be a non-empty string of at most {MAX_NAME_LEN} bytes"
        )));
    }
    if crate::io::is_reserved_event(event) {
        return Err(bad_request(format!("`{event}` is a reserved event name")));
    }
    Ok(())
}

/// The `topic`, `event` and `key` of a `publish` payload (`event` is checked by [`append`]).
pub(crate) fn publish_fields(payload: &Value) -> Result<(Topic, &str, Option<&str>), ErrorBody> {
    let topic = topic_of(payload)?;
    let event = payload
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("`event` must be a string"))?;
    let key = optional_string(payload, "key")?;
    Ok((topic, event, key))
}

async fn publish(queues: &Queues, payload: &Value) -> Answer {
    let (topic, event, key) = publish_fields(payload)?;
    let data = payload.get("data").cloned().unwrap_or(Value::Null);
    append(queues, &topic, event, &data, key).await
}

/// The messages of a topic as the API shows them.
pub(crate) async fn messages(
    queues: &Queues,
    topic: &Topic,
    from: u64,
    limit: usize,
) -> Result<Vec<Value>, ErrorBody> {
    let messages = queues
        .store
        .history(topic, from, limit)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(messages
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id.to_string(),
                "offset": m.offset,
                "event": m.event,
                "data": serde_json::from_str::<Value>(&m.data).unwrap_or(Value::Null),
                "publishedAt": m.published_at,
            })
        })
        .collect())
}

/// The `topic`, first offset and `limit` of a `history` payload.
pub(crate) fn history_fields(payload: &Value) -> Result<(Topic, u64, usize), ErrorBody> {
    let topic = topic_of(payload)?;
    let from = match payload.get("from") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad_request("`from` must be an offset"))?,
    };
    let limit = match payload.get("limit") {
        None | Some(Value::Null) => DEFAULT_HISTORY,
        Some(v) => v
            .as_u64()
            .filter(|l| (1..=MAX_HISTORY as u64).contains(l))
            .ok_or_else(|| bad_request(format!("`limit` must be 1 to {MAX_HISTORY}")))?
            as usize,
    };
    Ok((topic, from, limit))
}

async fn history(queues: &Queues, payload: &Value) -> Answer {
    let (topic, from, limit) = history_fields(payload)?;
    let messages = messages(queues, &topic, from, limit).await?;
    Ok(json!({ "ok": true, "messages": messages }))
}
