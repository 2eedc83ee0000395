//! Durable topics: the types of the queue API and the encoding of its wire contract.
//!
//! The contract is a set of built-in Socket.IO events, each acknowledged with `{ok:true, …}` or
//! `{ok:false, error:{code, message}}`:
//!
//! | event | payload | ack |
//! | --- | --- | --- |
//! | `subscribe` | `{topic, group?, from?: "new" \| "earliest" \| offset}` | `{ok, topic, group, pending}` |
//! | `unsubscribe` | `{topic, group?}` | `{ok}` |
//! | `publish` | `{topic, event, data, key?}` | `{ok, id, offset, duplicate}`, once durable |
//! | `history` | `{topic, from?, limit?}` | `{ok, messages:[{id, offset, event, data, publishedAt}]}` |
//!
//! A delivery is the server emitting the message's `event` with two arguments, `(data, meta)`
//! with `meta = {topic, id, offset, group?, attempt, publishedAt}`, and an ack id. The client's
//! acknowledgement settles it: no argument means done, `{requeue:true}` means redeliver later.
//! `tidings:gap` `{topic, from, to}` tells that retention removed messages before they were
//! settled.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tidings_core::ErrorCode;
use tidings_core::store::{MessageId, Millis, Offset, StartFrom, Topic};
use tokio::sync::mpsc;

use crate::Client;
use crate::core::{Core, SubKey};
use crate::error::{EmitError, RequestError, SubscribeError};
use crate::event::{AckHandle, EventStream, ServerEvent};

/// The event name of gap notices.
pub const GAP_EVENT: &str = "tidings:gap";

/// What [`Client::subscribe`] subscribes to.
///
/// ```
/// use tidings_client::{StartFrom, SubscribeOptions};
///
/// let options = SubscribeOptions::new("pickup").group("drivers").from(StartFrom::Earliest);
/// assert_eq!(options.group.as_deref(), Some("drivers"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// The topic, e.g. `pickup` or `vendor.store-42`.
    pub topic: String,
    /// A competing-consumer group: each message goes to one member of the group. `None` (the
    /// default) subscribes this client's own identity (its `clientId`).
    pub group: Option<String>,
    /// Where a new subscription starts. `None` (the default) leaves it to the server, which
    /// starts at new messages. An existing subscription resumes where it was, whatever this says.
    pub from: Option<StartFrom>,
}

impl SubscribeOptions {
    /// A subscription of this client's identity to `topic`, from the server's default start.
    pub fn new(topic: impl Into<String>) -> Self {
        SubscribeOptions {
            topic: topic.into(),
            group: None,
            from: None,
        }
    }

    /// Subscribes as a member of `group` instead.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Where a new subscription starts.
    pub fn from(mut self, from: StartFrom) -> Self {
        self.from = Some(from);
        self
    }
}

/// A message the server confirmed as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message id (the first publish's, when `duplicate`).
    pub id: MessageId,
    /// The message's offset in its topic.
    pub offset: Offset,
    /// The idempotency key was seen before: nothing new was stored.
    pub duplicate: bool,
}

/// A retained message, as [`Client::history`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryMessage {
    /// The message id.
    pub id: MessageId,
    /// Its offset in the topic.
    pub offset: Offset,
    /// The event name.
    pub event: String,
    /// The payload. Its binary parts are Socket.IO placeholders `{"_placeholder":true,"num":N}`
    /// standing for `attachments[N]`.
    pub data: Value,
    /// The binary parts of `data`, in placeholder order (empty for a message without binary).
    pub attachments: Vec<Bytes>,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at: Millis,
}

/// Where a delivery comes from and which attempt it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMeta {
    /// The topic.
    pub topic: Topic,
    /// The message id.
    pub id: MessageId,
    /// The message's offset in the topic.
    pub offset: Offset,
    /// The group it was delivered through, if any.
    pub group: Option<String>,
    /// 1 for the first delivery, 2 and up for redeliveries.
    pub attempt: u32,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at: Millis,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    topic: Topic,
    id: String,
    offset: Offset,
    #[serde(default)]
    group: Option<String>,
    #[serde(default = "first_attempt")]
    attempt: u32,
    #[serde(default)]
    published_at: Millis,
}

fn first_attempt() -> u32 {
    1
}

impl DeliveryMeta {
    /// Reads the `meta` argument of a delivery; `None` when `value` does not have its shape.
    pub fn from_value(value: &Value) -> Option<DeliveryMeta> {
        let wire = WireMeta::deserialize(value).ok()?;
        Some(DeliveryMeta {
            topic: wire.topic,
            id: wire.id.parse().ok()?,
            offset: wire.offset,
            group: wire.group,
            attempt: wire.attempt,
            published_at: wire.published_at,
        })
    }

    pub(crate) fn key(&self) -> SubKey {
        SubKey {
            topic: self.topic.as_str().to_owned(),
            group: self.group.clone(),
        }
    }
}

/// A delivery as it arrived, before a subscription takes it.
pub(crate) struct Unclaimed {
    pub(crate) event: String,
    pub(crate) data: Value,
    pub(crate) attachments: Vec<Bytes>,
    pub(crate) meta: DeliveryMeta,
    /// The connection it arrived on, and its ack id there.
    pub(crate) epoch: u64,
    pub(crate) id: u64,
}

impl Unclaimed {
    pub(crate) fn into_delivery(self, core: Arc<Core>) -> Delivery {
        let handle = AckHandle::new(core, self.epoch, self.id);
        let mut delivery = Delivery::new(self.event, self.data, self.meta, handle);
        delivery.attachments = self.attachments;
        delivery
    }
}

/// One message delivered to a [`Subscription`]. Settle it with [`Delivery::ack`] or
/// [`Delivery::requeue`].
///
/// Dropping a delivery without settling it logs a warning and leaves it to the server, which
/// redelivers it once its ack timeout has passed. Settling after the connection it arrived on
/// dropped fails with [`EmitError::ConnectionLost`]: the server redelivers it anyway.
pub struct Delivery {
    /// The event name the message was published with.
    pub event: String,
    /// The payload. Its binary parts are Socket.IO placeholders
    /// `{"_placeholder":true,"num":N}` standing for `attachments[N]`.
    pub data: Value,
    /// The binary parts of `data`, in placeholder order (empty for a message without binary).
    pub attachments: Vec<Bytes>,
    /// Topic, id, offset, group and attempt.
    pub meta: DeliveryMeta,
    settle: Settle,
}

/// Logs a delivery dropped unsettled.
struct Settle {
    handle: AckHandle,
    topic: Topic,
    offset: Offset,
    done: bool,
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!(
                topic = %self.topic,
                offset = self.offset,
                "delivery dropped without ack or requeue; the server redelivers it after its ack timeout"
            );
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event)
            .field("data", &self.data)
            .field("attachments", &self.attachments.len())
            .field("meta", &self.meta)
            .field("ack_id", &self.settle.handle.id())
            .finish()
    }
}

impl Delivery {
    pub(crate) fn new(event: String, data: Value, meta: DeliveryMeta, handle: AckHandle) -> Self {
        let settle = Settle {
            handle,
            topic: meta.topic.clone(),
            offset: meta.offset,
            done: false,
        };
        Delivery {
            event,
            data,
            attachments: Vec::new(),
            meta,
            settle,
        }
    }

    /// Marks the delivery as handed back without a warning (its route vanished).
    pub(crate) fn forget(mut self) {
        self.settle.done = true;
    }

    /// The payload deserialized as `T`.
    ///
    /// # Errors
    ///
    /// When the payload does not deserialize as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// Settles the delivery: the message is done for this subscription.
    ///
    /// # Errors
    ///
    /// [`EmitError::ConnectionLost`] when the connection the delivery came on is gone (the
    /// server redelivers it), [`EmitError::Closed`] when the client is closed.
    pub async fn ack(mut self) -> Result<(), EmitError> {
        self.settle.done = true;
        self.settle.handle.send(Vec::new(), Vec::new()).await
    }

    /// Hands the delivery back: the server redelivers it later, with `attempt` + 1.
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`].
    pub async fn requeue(mut self) -> Result<(), EmitError> {
        self.settle.done = true;
        self.settle
            .handle
            .send(vec![json!({ "requeue": true })], Vec::new())
            .await
    }
}

/// A live durable subscription: a [`Stream`] of [`Delivery`]s (also readable through
/// [`Subscription::recv`]).
///
/// Deliveries are routed here by their `meta.topic` and `meta.group`. A tidings server starts
/// delivering an identity's queues as soon as the client connects, often before the
/// application calls [`Client::subscribe`]: such deliveries are held (up to 1024, for the
/// current connection only) and handed to the first `Subscription` of their topic and group,
/// ahead of newer ones. Deliveries nobody claims stay unacknowledged, and the server
/// redelivers them after its ack timeout.
///
/// After a reconnect the client subscribes again with the topic and group only, so the server
/// resumes the subscription where it was (and re-registers group memberships). Dropping the
/// `Subscription` stops the routing but keeps the subscription on the server (it is durable):
/// its later deliveries are held as above. Use [`Subscription::unsubscribe`] to end it on the
/// server too. Deliveries are buffered without bound until read; the server's in-flight window
/// is what bounds them.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Delivery>,
    // Keeps the connection alive while someone consumes.
    client: Client,
    key: SubKey,
    entry_id: u64,
    topic: Topic,
    pending: u64,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("group", &self.key.group)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        client: Client,
        key: SubKey,
        entry_id: u64,
        topic: Topic,
        pending: u64,
        rx: mpsc::UnboundedReceiver<Delivery>,
    ) -> Self {
        Subscription {
            rx,
            client,
            key,
            entry_id,
            topic,
            pending,
        }
    }

    pub(crate) fn with_pending(mut self, pending: u64) -> Self {
        self.pending = pending;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The group, if this is a group subscription.
    pub fn group(&self) -> Option<&str> {
        self.key.group.as_deref()
    }

    /// How many messages were waiting for this subscription when the server confirmed it.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The next delivery; `None` once the subscription ended (unsubscribed, refused after a
    /// reconnect, or the client closed).
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// Ends the subscription on the server too.
    ///
    /// # Errors
    ///
    /// As [`Client::unsubscribe`].
    pub async fn unsubscribe(self) -> Result<(), SubscribeError> {
        self.client
            .unsubscribe(self.topic.as_str(), self.key.group.as_deref())
            .await
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client
            .core()
            .remove_subscription(&self.key, self.entry_id);
        self.rx.close();
        let mut unsettled = 0usize;
        while let Ok(delivery) = self.rx.try_recv() {
            unsettled += 1;
            delivery.forget();
        }
        if unsettled > 0 {
            tracing::warn!(
                topic = %self.topic,
                unsettled,
                "subscription dropped with unread deliveries; the server redelivers them after its ack timeout"
            );
        }
    }
}

/// Retention removed messages of `topic` with offsets `from..=to` before this client's
/// subscription settled them (the `tidings:gap` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The topic.
    pub topic: Topic,
    /// The first offset lost.
    pub from: Offset,
    /// The last offset lost.
    pub to: Offset,
}

#[derive(Deserialize)]
struct WireGap {
    topic: Topic,
    from: Offset,
    to: Offset,
}

impl Gap {
    /// Reads a `tidings:gap` payload; `None` when `value` does not have its shape.
    pub fn from_value(value: &Value) -> Option<Gap> {
        let wire = WireGap::deserialize(value).ok()?;
        Some(Gap {
            topic: wire.topic,
            from: wire.from,
            to: wire.to,
        })
    }
}

/// The gap notices of [`Client::gaps`].
#[derive(Debug)]
pub struct GapStream {
    events: EventStream,
}

impl GapStream {
    pub(crate) fn new(events: EventStream) -> Self {
        GapStream { events }
    }

    /// The next gap notice; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Gap> {
        loop {
            let event = self.events.recv().await?;
            if let Some(gap) = gap_of(&event) {
                return Some(gap);
            }
        }
    }
}

fn gap_of(event: &ServerEvent) -> Option<Gap> {
    let gap = event.args.first().and_then(Gap::from_value);
    if gap.is_none() {
        tracing::debug!("malformed tidings:gap event ignored");
    }
    gap
}

impl Stream for GapStream {
    type Item = Gap;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Gap>> {
        loop {
            match Pin::new(&mut self.events).poll_next(cx) {
                Poll::Ready(Some(event)) => {
                    if let Some(gap) = gap_of(&event) {
                        return Poll::Ready(Some(gap));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn start_from(from: StartFrom) -> Value {
    match from {
        StartFrom::New => Value::from("new"),
        StartFrom::Earliest => Value::from("earliest"),
        StartFrom::Offset(offset) => Value::from(offset),
    }
}

/// `{topic, group?, from?}`.
pub(crate) fn subscribe_payload(
    topic: &str,
    group: Option<&str>,
    from: Option<StartFrom>,
) -> Value {
    let mut map = Map::new();
    map.insert("topic".into(), Value::from(topic));
    if let Some(group) = group {
        map.insert("group".into(), Value::from(group));
    }
    if let Some(from) = from {
        map.insert("from".into(), start_from(from));
    }
    Value::Object(map)
}

/// `{topic, group?}`.
pub(crate) fn unsubscribe_payload(topic: &str, group: Option<&str>) -> Value {
    subscribe_payload(topic, group, None)
}

/// `{topic, event, data, key?}`.
pub(crate) fn publish_payload(topic: &str, event: &str, data: Value, key: Option<&str>) -> Value {
    let mut map = Map::new();
    map.insert("topic".into(), Value::from(topic));
    map.insert("event".into(), Value::from(event));
    map.insert("data".into(), data);
    if let Some(key) = key {
        map.insert("key".into(), Value::from(key));
    }
    Value::Object(map)
}

/// `{topic, from?, limit?}`.
pub(crate) fn history_payload(topic: &str, from: Option<Offset>, limit: Option<usize>) -> Value {
    let mut map = Map::new();
    map.insert("topic".into(), Value::from(topic));
    if let Some(from) = from {
        map.insert("from".into(), Value::from(from));
    }
    if let Some(limit) = limit {
        map.insert("limit".into(), Value::from(limit));
    }
    Value::Object(map)
}

/// The object of an `{ok:true, …}` acknowledgement, or the error of an `{ok:false, error}` one.
pub(crate) fn parse_reply(args: Vec<Value>) -> Result<Map<String, Value>, RequestError> {
    let protocol = |what: &str| Err(RequestError::Protocol(what.to_owned()));
    let Some(Value::Object(map)) = args.into_iter().next() else {
        return protocol("the acknowledgement is not an object");
    };
    match map.get("ok") {
        Some(Value::Bool(true)) => Ok(map),
        Some(Value::Bool(false)) => {
            let error = map.get("error");
            let text = |field: &str| {
                error
                    .and_then(|e| e.get(field))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (raw, message) = (text("code"), text("message"));
            // Every code of this version, incl. the refusals a caller branches on (queue_full,
            // rate_limited, limit_exceeded); a newer server's code comes as `internal`.
            Err(match ErrorCode::from_wire(&raw) {
                Some(code) => RequestError::Server { code, message },
                None => RequestError::Server {
                    code: ErrorCode::Internal,
                    message: format!("{raw}: {message}"),
                },
            })
        }
        _ => protocol("the acknowledgement has no boolean `ok`"),
    }
}

fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a Value, RequestError> {
    map.get(name)
        .ok_or_else(|| RequestError::Protocol(format!("the acknowledgement has no `{name}`")))
}

fn message_id(value: &Value) -> Result<MessageId, RequestError> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RequestError::Protocol("`id` is not a message id".into()))
}

fn offset(value: &Value) -> Result<Offset, RequestError> {
    value
        .as_u64()
        .ok_or_else(|| RequestError::Protocol("`offset` is not a non-negative integer".into()))
}

/// `{ok:true, id, offset, duplicate}`.
pub(crate) fn parse_published(map: &Map<String, Value>) -> Result<Published, RequestError> {
    Ok(Published {
        id: message_id(field(map, "id")?)?,
        offset: offset(field(map, "offset")?)?,
        duplicate: map
            .get("duplicate")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// `{ok:true, topic, group, pending}`: the pending count.
pub(crate) fn parse_subscribed(map: &Map<String, Value>) -> u64 {
    map.get("pending").and_then(Value::as_u64).unwrap_or(0)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    id: String,
    offset: Offset,
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    published_at: Millis,
}

/// `{ok:true, messages:[…]}`.
/// The messages of a `history` ack; `attachments`: the ack's, which the messages'
/// placeholders number across the whole list.
pub(crate) fn parse_history(
    map: &Map<String, Value>,
    attachments: &[Bytes],
) -> Result<Vec<HistoryMessage>, RequestError> {
    let messages = field(map, "messages")?
        .as_array()
        .ok_or_else(|| RequestError::Protocol("`messages` is not an array".into()))?;
    messages
        .iter()
        .map(|m| {
            let wire = WireMessage::deserialize(m)
                .map_err(|e| RequestError::Protocol(format!("bad history message: {e}")))?;
            let mut data = wire.data;
            let attachments = if attachments.is_empty() {
                Vec::new()
            } else {
                tidings_core::binary::take_referenced(&mut data, attachments)
            };
            Ok(HistoryMessage {
                id: message_id(&Value::String(wire.id))?,
                offset: wire.offset,
                event: wire.event,
                data,
                attachments,
                published_at: wire.published_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AAAAAAAAAAAAAAAAAAAAAB";

    /// Every refusal reaches the caller with its own code, so that it can branch on it (a
    /// `queue_full` or `rate_limited` was once turned into `internal`).
    #[test]
    fn refusals_keep_their_code() {
        for code in ErrorCode::ALL {
            let ack = serde_json::json!({ "ok": false, "error": { "code": code.as_str(), "message": "m" } });
            match parse_reply(vec![ack]) {
                Err(RequestError::Server { code: got, message }) => {
                    assert_eq!((got, message.as_str()), (code, "m"));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        let newer =
            serde_json::json!({ "ok": false, "error": { "code": "teapot", "message": "m" } });
        match parse_reply(vec![newer]) {
            Err(RequestError::Server { code, message }) => {
                assert_eq!((code, message.as_str()), (ErrorCode::Internal, "teapot: m"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encodes_requests_as_the_contract_says() {
        assert_eq!(
            subscribe_payload("pickup", None, None).to_string(),
            r#"{"topic":"pickup"}"#
        );
        assert_eq!(
            subscribe_payload("pickup", Some("drivers"), Some(StartFrom::Earliest)).to_string(),
            r#"{"topic":"pickup","group":"drivers","from":"earliest"}"#
        );
        assert_eq!(
            subscribe_payload("a.b", None, Some(StartFrom::New)).to_string(),
            r#"{"topic":"a.b","from":"new"}"#
        );
        assert_eq!(
            subscribe_payload("a", None, Some(StartFrom::Offset(42))).to_string(),
            r#"{"topic":"a","from":42}"#
        );
        assert_eq!(
            unsubscribe_payload("a", Some("g")).to_string(),
            r#"{"topic":"a","group":"g"}"#
        );
        assert_eq!(
            publish_payload("pickup", "order", json!({"n": 1}), None).to_string(),
            r#"{"topic":"pickup","event":"order","data":{"n":1}}"#
        );
        assert_eq!(
            publish_payload("pickup", "order", Value::Null, Some("k-1")).to_string(),
            r#"{"topic":"pickup","event":"order","data":null,"key":"k-1"}"#
        );
        assert_eq!(
            history_payload("pickup", None, None).to_string(),
            r#"{"topic":"pickup"}"#
        );
        assert_eq!(
            history_payload("pickup", Some(5), Some(100)).to_string(),
            r#"{"topic":"pickup","from":5,"limit":100}"#
        );
    }

    #[test]
    fn decodes_a_publish_ack() {
        let map = parse_reply(vec![
            json!({"ok": true, "id": ID, "offset": 7, "duplicate": true}),
        ])
        .unwrap();
        let published = parse_published(&map).unwrap();
        assert_eq!(published.id.to_string(), ID);
        assert_eq!(published.offset, 7);
        assert!(published.duplicate);
        // `duplicate` defaults to false.
        let map = parse_reply(vec![json!({"ok": true, "id": ID, "offset": 1})]).unwrap();
        assert!(!parse_published(&map).unwrap().duplicate);
        let map = parse_reply(vec![json!({"ok": true, "id": "nope", "offset": 1})]).unwrap();
        assert!(matches!(
            parse_published(&map),
            Err(RequestError::Protocol(_))
        ));
        let map = parse_reply(vec![json!({"ok": true, "id": ID})]).unwrap();
        assert!(matches!(
            parse_published(&map),
            Err(RequestError::Protocol(_))
        ));
    }

    #[test]
    fn decodes_error_acks() {
        let reply = json!({"ok": false, "error": {"code": "identity_required", "message": "connect with a clientId"}});
        match parse_reply(vec![reply]) {
            Err(RequestError::Server { code, message }) => {
                assert_eq!(code, ErrorCode::IdentityRequired);
                assert_eq!(message, "connect with a clientId");
            }
            other => panic!("{other:?}"),
        }
        // (Every other code, and one this version does not know: `refusals_keep_their_code`.)
        for bad in [vec![], vec![json!("ok")], vec![json!({"ok": "yes"})]] {
            assert!(matches!(parse_reply(bad), Err(RequestError::Protocol(_))));
        }
    }

    #[test]
    fn decodes_a_subscribe_ack() {
        let map = parse_reply(vec![
            json!({"ok": true, "topic": "pickup", "group": null, "pending": 3}),
        ])
        .unwrap();
        assert_eq!(parse_subscribed(&map), 3);
    }

    #[test]
    fn decodes_history() {
        let map = parse_reply(vec![json!({"ok": true, "messages": [
            {"id": ID, "offset": 1, "event": "order", "data": {"n": 1}, "publishedAt": 1_700_000_000_000u64},
            {"id": ID, "offset": 2, "event": "order", "data": [1, 2], "publishedAt": 1_700_000_000_001u64},
        ]})])
        .unwrap();
        let messages = parse_history(&map, &[]).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].offset, 1);
        assert_eq!(messages[0].event, "order");
        assert_eq!(messages[0].data, json!({"n": 1}));
        assert_eq!(messages[1].published_at, 1_700_000_000_001);
        let map = parse_reply(vec![json!({"ok": true, "messages": [{"id": ID}]})]).unwrap();
        assert!(matches!(
            parse_history(&map, &[]),
            Err(RequestError::Protocol(_))
        ));
    }

    #[test]
    fn decodes_delivery_meta() {
        let meta = DeliveryMeta::from_value(&json!({
            "topic": "pickup", "id": ID, "offset": 12, "group": "drivers",
            "attempt": 2, "publishedAt": 1_700_000_000_000u64
        }))
        .unwrap();
        assert_eq!(meta.topic.as_str(), "pickup");
        assert_eq!(meta.id.to_string(), ID);
        assert_eq!(meta.offset, 12);
        assert_eq!(meta.group.as_deref(), Some("drivers"));
        assert_eq!(meta.attempt, 2);
        assert_eq!(meta.published_at, 1_700_000_000_000);
        assert_eq!(
            meta.key(),
            SubKey {
                topic: "pickup".into(),
                group: Some("drivers".into())
            }
        );

        let meta = DeliveryMeta::from_value(
            &json!({"topic": "pickup", "id": ID, "offset": 1, "attempt": 1, "publishedAt": 0}),
        )
        .unwrap();
        assert_eq!(meta.group, None);

        for bad in [
            json!({"topic": "pickup", "id": ID}),
            json!({"topic": "bad topic", "id": ID, "offset": 1}),
            json!({"topic": "pickup", "id": "x", "offset": 1}),
            json!({"topic": "pickup", "id": ID, "offset": -1}),
            json!("meta"),
        ] {
            assert_eq!(DeliveryMeta::from_value(&bad), None, "{bad}");
        }
    }

    #[test]
    fn decodes_gaps() {
        let gap = Gap::from_value(&json!({"topic": "pickup", "from": 3, "to": 9})).unwrap();
        assert_eq!(gap.topic.as_str(), "pickup");
        assert_eq!((gap.from, gap.to), (3, 9));
        assert_eq!(Gap::from_value(&json!({"topic": "pickup"})), None);
    }
}
