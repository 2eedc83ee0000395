//! `publish` `{topic, event, data, key?}` → `{ok:true, id, offset, duplicate}`, answered only
//! once the store made the message durable. Needs `publish` on the topic. The HTTP API's
//! `POST /v1/topics/{topic}/messages` `{event, data, key?}` is the same request
//! ([`Publish::from_body`]), checked by the same field readers.
//!
//! Binary inside `data` is kept: over Socket.IO as the packet's attachments (renumbered to
//! those `data` references), over HTTP as `{"_binary":"<base64>"}` objects
//! ([`tidings_core::binary`]). Either way the store gets `data` with Socket.IO placeholders
//! and the attachments, and subscribers receive a BINARY_EVENT.

use bytes::Bytes;
use serde_json::{Value, json};
use tidings_core::ErrorBody;
use tidings_core::clock::{millis, now_millis};
use tidings_core::store::{BoundedAppend, NewMessage, Topic};

use super::subscribe::require_object;
use super::{Access, Answer, Builtin, Family, Input, fields};
use crate::auth::Action;
use crate::queue::Queues;

/// A parsed `publish`.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// The topic.
    pub topic: Topic,
    /// The event name the subscribers receive.
    pub event: String,
    /// The message's data, with Socket.IO placeholders for its binary parts.
    pub data: Value,
    /// The binary parts of `data`, in placeholder order (numbered from 0).
    pub attachments: Vec<Bytes>,
    /// The idempotency key: a publish with a key seen within the dedup window is not stored
    /// again.
    pub key: Option<String>,
}

impl Builtin for Publish {
    const NAME: &'static str = "publish";
    const FAMILY: Family = Family::Queues;

    fn parse(input: Input<'_>) -> Result<Self, ErrorBody> {
        require_object(Self::NAME, &input.payload)?;
        let topic = fields::topic(&input.payload)?;
        let mut publish = Publish::from_fields(topic, input.payload)?;
        // Only what `data` references is kept: binary elsewhere in the packet (another
        // field, a second argument) is not part of the message. (Without attachments there is
        // nothing to look for: no walk of `data` on the common path.)
        if !input.attachments.is_empty() {
            publish.attachments =
                crate::io::extract_attachments(&mut publish.data, &input.attachments);
        }
        Ok(publish)
    }

    fn required_access(&self) -> Access {
        Access::To(Action::Publish, self.topic.as_str().to_owned())
    }
}

impl Publish {
    /// The publish of `body` `{event, data, key?}` to `topic` (the HTTP API's request), whose
    /// binary parts are `{"_binary":"<base64>"}` objects inside `data`.
    ///
    /// # Errors
    ///
    /// `bad_request` as for the `publish` event: an event name that is empty, longer than
    /// [`fields::MAX_NAME_LEN`] bytes or reserved; a key that is not a name; a `_binary` that
    /// is not base64, or a Socket.IO placeholder object inside `data`.
    pub fn from_body(topic: Topic, body: Value) -> Result<Publish, ErrorBody> {
        let mut publish = Publish::from_fields(topic, body)?;
        publish.attachments = tidings_core::binary::extract(&mut publish.data)
            .map_err(|e| fields::bad_request(format!("`data`: {e}")))?;
        Ok(publish)
    }

    fn from_fields(topic: Topic, mut body: Value) -> Result<Publish, ErrorBody> {
        fields::require_object(&body, "{event, data, key?}")?;
        let event = fields::event_name(&body)?;
        let key = fields::key(&body)?;
        let data = fields::take_data(&mut body);
        Ok(Publish {
            topic,
            event,
            data,
            attachments: Vec::new(),
            key,
        })
    }

    /// Stores the message (after the per-identity publish rate limit and the topic and queue
    /// depth limits) and wakes the topic's dispatchers.
    pub(crate) async fn apply(self, queues: &Queues, identity: Option<&str>) -> Answer {
        let started = std::time::Instant::now();
        queues.admit_publish(identity)?;
        let Publish {
            topic,
            event,
            data,
            attachments,
            key,
        } = self;
        let message = NewMessage {
            event,
            data: data.to_string(),
            attachments,
            key,
            published_at: now_millis(),
        };
        let dedup_window = millis(queues.config().dedup_window);
        let _creating = queues.admit_topic(&topic).await?;
        let store = queues.store();
        let refused = |e| queues.publish_refused(&topic, e);
        let appended = match queues.config().queue_bound_for(&topic) {
            None => store
                .append(&topic, message, dedup_window)
                .await
                .map_err(refused)?,
            Some(bound) => match store
                .append_bounded(&topic, message, dedup_window, bound)
                .await
                .map_err(refused)?
            {
                BoundedAppend::Appended { appended, dropped } => {
                    queues.overflowed(&dropped);
                    appended
                }
                BoundedAppend::Full {
                    subscription,
                    depth,
                } => return Err(queues.queue_full(&topic, bound, &subscription, depth)),
            },
        };
        queues.topic_created(&topic);
        if !appended.duplicate {
            queues.wake_topic(&topic);
        }
        crate::metrics::record_publish(
            &queues.topic_counters,
            &queues.publish_latency,
            &topic,
            !appended.duplicate,
            started,
        );
        Ok(json!({
            "ok": true,
            "id": appended.id.to_string(),
            "offset": appended.offset,
            "duplicate": appended.duplicate,
        }))
    }
}
