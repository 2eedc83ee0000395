//! `history` `{topic, from?, limit?}` → `{ok:true, messages:[…]}`: the retained messages of a
//! topic from an offset, without affecting any queue. Needs `subscribe` on the topic. The HTTP
//! API's `GET /v1/topics/{topic}/messages?from&limit` is the same request ([`History::new`]).

use serde_json::{Value, json};
use tidings_core::ErrorBody;
use tidings_core::store::Topic;

use super::subscribe::require_object;
use super::{Access, Answer, Builtin, Family, Input, fields};
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

    pub(crate) async fn apply(self, queues: &Queues) -> Answer {
        let messages = messages(queues, &self).await?;
        Ok(json!({ "ok": true, "messages": messages }))
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
            json!({
                "id": m.id.to_string(),
                "offset": m.offset,
                "event": m.event,
                "data": message_data(&m.data, &m.attachments),
                "publishedAt": m.published_at,
            })
        })
        .collect())
}
