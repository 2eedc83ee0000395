//! `history` `{topic, from?, limit?}` → `{ok:true, messages:[…]}`: the retained messages of a
//! topic from an offset, without affecting any queue. Needs `subscribe` on the topic. The HTTP
//! API's `GET /v1/topics/{topic}/messages?from&limit` is the same request ([`History::new`]).
//!
//! Binary parts of messages: over Socket.IO the ack is a BINARY_ACK carrying every listed
//! message's attachments (placeholders renumbered across the list), so clients get Buffers /
//! `bytes` as in deliveries; over HTTP they are `{"_binary":"<base64>"}` objects.

use bytes::Bytes;
use serde_json::{Value, json};
use tidings_core::ErrorBody;
use tidings_core::store::Topic;

use super::subscribe::require_object;
use super::{Access, Builtin, Family, Input, fields};
use crate::auth::Action;
use crate::queue::Queues;

/// Most messages one `history` call returns.
pub const MAX_HISTORY: usize = 1000;
/// Default `limit` of `history`.
pub const DEFAULT_HISTORY: usize = 100;

/// A parsed `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The topic.
    pub topic: Topic,
    /// The first offset.
    pub from: u64,
    /// The most messages returned, 1 to [`MAX_HISTORY`].
    pub limit: usize,
}

impl Builtin for History {
    const NAME: &'static str = "history";
    const FAMILY: Family = Family::Queues;

    fn parse(input: Input<'_>) -> Result<Self, ErrorBody> {
        require_object(Self::NAME, &input.payload)?;
        let payload = &input.payload;
        let topic = fields::topic(payload)?;
        let from = match payload.get("from") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| fields::bad_request("`from` must be an offset"))?,
        };
        let limit = match payload.get("limit") {
            None | Some(Value::Null) => DEFAULT_HISTORY as u64,
            Some(v) => v.as_u64().unwrap_or(0),
        };
        History::new(topic, from, limit)
    }

    fn required_access(&self) -> Access {
        Access::To(Action::Subscribe, self.topic.as_str().to_owned())
    }
}

impl History {
    /// A history request.
    ///
    /// # Errors
    ///
    /// `bad_request` for a `limit` outside 1 to [`MAX_HISTORY`].
    pub fn new(topic: Topic, from: u64, limit: u64) -> Result<History, ErrorBody> {
        let limit = usize::try_from(limit)
            .ok()
            .filter(|l| (1..=MAX_HISTORY).contains(l))
            .ok_or_else(|| fields::bad_request(format!("`limit` must be 1 to {MAX_HISTORY}")))?;
        Ok(History { topic, from, limit })
    }

    /// The ack over Socket.IO: `{ok:true, messages}` and the attachments its placeholders
    /// refer to.
    pub(crate) async fn apply(self, queues: &Queues) -> Result<(Value, Vec<Bytes>), ErrorBody> {
        let stored = queues
            .store()
            .history(&self.topic, self.from, self.limit)
            .await?;
        let mut attachments = Vec::new();
        let messages: Vec<Value> = stored
            .into_iter()
            .map(|m| {
                let mut data = serde_json::from_str::<Value>(&m.data).unwrap_or(Value::Null);
                if !m.attachments.is_empty() {
                    // This message's placeholders count from 0; in the ack they follow the
                    // attachments of the messages before it.
                    let base = attachments.len();
                    let mut taken = crate::io::extract_attachments(&mut data, &m.attachments);
                    shift_placeholders(&mut data, base);
                    attachments.append(&mut taken);
                }
                message_json(m.id, m.offset, m.event, data, m.published_at)
            })
            .collect();
        Ok((json!({ "ok": true, "messages": messages }), attachments))
    }
}

fn message_json(
    id: tidings_core::store::MessageId,
    offset: u64,
    event: String,
    data: Value,
    published_at: u64,
) -> Value {
    json!({
        "id": id.to_string(),
        "offset": offset,
        "event": event,
        "data": data,
        "publishedAt": published_at,
    })
}

/// Adds `base` to the `num` of every placeholder in `value`.
fn shift_placeholders(value: &mut Value, base: usize) {
    match value {
        Value::Object(map) => {
            if map.get("_placeholder").and_then(Value::as_bool) == Some(true) {
                if let Some(n) = map.get("num").and_then(Value::as_u64) {
                    map.insert("num".to_owned(), Value::from(n + base as u64));
                    return;
                }
            }
            map.values_mut().for_each(|v| shift_placeholders(v, base));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_placeholders(v, base)),
        _ => {}
    }
}

/// A stored message's data as the API and the `history` ack show it: JSON, each binary part
/// as `{"_binary":"<base64>"}` ([`tidings_core::binary`]).
pub(crate) fn message_data(data: &str, attachments: &[bytes::Bytes]) -> Value {
    let value = serde_json::from_str::<Value>(data).unwrap_or(Value::Null);
    tidings_core::binary::inline(&value, attachments)
}

/// The messages a history request asks for, as the API and the ack show them.
pub(crate) async fn messages(queues: &Queues, request: &History) -> Result<Vec<Value>, ErrorBody> {
    let messages = queues
        .store()
        .history(&request.topic, request.from, request.limit)
        .await?;
    Ok(messages
        .into_iter()
        .map(|m| {
            let data = message_data(&m.data, &m.attachments);
            message_json(m.id, m.offset, m.event, data, m.published_at)
        })
        .collect())
}
