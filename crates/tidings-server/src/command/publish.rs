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
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tidings_core::ErrorBody;
use tidings_core::clock::{millis, now_millis};
use tidings_core::store::{BoundedAppend, MessageId, NewMessage, Topic};

use super::subscribe::require_object;
use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{Access, AckAnswer, Builtin, Family, Input, fields};
use crate::auth::Action;
use crate::io::{AckSender, EmitError};
use crate::queue::Queues;

/// A parsed `publish`.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// The topic.
    pub topic: Topic,
    /// The event name the subscribers receive.
    pub event: String,
    /// The message's data as JSON text (one value, as `serde_json` reads it into a [`Value`]),
    /// with Socket.IO placeholders for its binary parts: what the store keeps. From a socket
    /// without attachments it is the text the client sent, never decoded
    /// ([`Publish::from_json`]).
    pub data: String,
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
        let mut body = input.payload;
        let (event, key) = Publish::names(&body)?;
        let mut data = fields::take_data(&mut body);
        // Only what `data` references is kept: binary elsewhere in the packet (another
        // field, a second argument) is not part of the message. (Without attachments there is
        // nothing to look for: no walk of `data` on the common path.)
        let attachments = if input.attachments.is_empty() {
            Vec::new()
        } else {
            crate::io::extract_attachments(&mut data, &input.attachments)
        };
        Ok(Publish {
            topic,
            event,
            data: json_text(&data),
            attachments,
            key,
        })
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
    pub fn from_body(topic: Topic, mut body: Value) -> Result<Publish, ErrorBody> {
        fields::require_object(&body, "{event, data, key?}")?;
        let (event, key) = Publish::names(&body)?;
        let mut data = fields::take_data(&mut body);
        let attachments = tidings_core::binary::extract(&mut data)
            .map_err(|e| fields::bad_request(format!("`data`: {e}")))?;
        Ok(Publish {
            topic,
            event,
            data: json_text(&data),
            attachments,
            key,
        })
    }

    /// The publish of the Socket.IO event argument `payload`, given as the JSON text it
    /// arrived as (checked already as one JSON value, as the packet decoder checks it): the
    /// same request as [`Builtin::parse`] reads from the decoded payload, with the same
    /// refusals, but nothing is decoded into a [`Value`] in the common case: `topic`, `event`
    /// and `key` are read as the plain strings they are, and `data` is stored as the text it
    /// arrived as. Anything else (a name with escapes or of another type, a payload that is
    /// not an object, binary `attachments` to renumber) takes the decoded path.
    ///
    /// # Errors
    ///
    /// As [`Builtin::parse`].
    pub fn from_json(
        payload: &RawValue,
        attachments: &[Bytes],
        identity: Option<&str>,
    ) -> Result<Publish, ErrorBody> {
        let fields = match serde_json::from_str::<RawFields<'_>>(payload.get()) {
            Ok(fields) if attachments.is_empty() => fields,
            _ => {
                let payload = serde_json::from_str(payload.get()).unwrap_or(Value::Null);
                return Publish::parse(Input {
                    payload,
                    attachments: attachments.to_vec(),
                    identity,
                });
            }
        };
        let decoded = || {
            let payload = serde_json::from_str(payload.get()).unwrap_or(Value::Null);
            Publish::parse(Input {
                payload,
                attachments: Vec::new(),
                identity,
            })
        };
        let (Some(topic), Some(event)) = (plain_str(fields.topic), plain_str(fields.event)) else {
            return decoded();
        };
        let key = match fields.key {
            None => None,
            Some(key) if key.get() == "null" => None,
            Some(key) => match plain_str(Some(key)) {
                Some(key) => Some(key),
                None => return decoded(),
            },
        };
        // In the order of `parse`, with its field readers.
        let topic = fields::topic_name(topic)?;
        let event = fields::event_name_of(event)?;
        let key = key
            .map(|key| fields::name("key", key).map(str::to_owned))
            .transpose()?;
        Ok(Publish {
            topic,
            event,
            data: fields
                .data
                .map_or_else(|| "null".to_owned(), |d| d.get().to_owned()),
            attachments: Vec::new(),
            key,
        })
    }

    /// The `event` and `key` of a publish's body.
    fn names(body: &Value) -> Result<(String, Option<String>), ErrorBody> {
        Ok((fields::event_name(body)?, fields::key(body)?))
    }

    /// Stores the message (after the per-identity publish rate limit and the topic and queue
    /// depth limits) and wakes the topic's dispatchers.
    ///
    /// # Errors
    ///
    /// The refusal the client's ack gets: `rate_limited`, `limit_exceeded` (too many topics),
    /// `queue_full`, or the store's error.
    pub(crate) async fn apply(
        self,
        queues: &Queues,
        identity: Option<&str>,
    ) -> Result<Published, ErrorBody> {
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
            data,
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
        Ok(Published {
            id: appended.id,
            offset: appended.offset,
            duplicate: appended.duplicate,
        })
    }
}

/// A stored publish: the answer `{ok:true, id, offset, duplicate}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's id.
    pub id: MessageId,
    /// Its offset in the topic.
    pub offset: u64,
    /// Whether its idempotency key was seen already (nothing was stored again).
    pub duplicate: bool,
}

impl Published {
    /// The answer as a JSON value.
    pub fn to_value(self) -> Value {
        json!({
            "ok": true,
            "id": self.id.to_string(),
            "offset": self.offset,
            "duplicate": self.duplicate,
        })
    }

    /// The answer as JSON text, [`Published::to_value`]'s text written directly: every
    /// socket publish is acknowledged with it, and a map built and serialized per publish
    /// showed in the profiles. (The id's alphabet needs no JSON escape.)
    pub fn to_json(self) -> String {
        format!(
            r#"{{"ok":true,"id":"{}","offset":{},"duplicate":{}}}"#,
            self.id, self.offset, self.duplicate
        )
    }
}

impl AckAnswer for Published {
    fn send(self, ack: AckSender) -> Result<(), EmitError> {
        ack.send_json(&self.to_json())
    }
}

/// `value` as JSON text.
fn json_text(value: &Value) -> String {
    // Writing a `Value` cannot fail (its map keys are strings); `to_string` writes into a
    // `Vec`, about twice as fast as `Value`'s `Display`.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// The JSON text of a string without escapes: the string itself.
fn plain_str(raw: Option<&RawValue>) -> Option<&str> {
    let inner = raw?.get().strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// The members of a publish payload the request reads, their values left as JSON text (of a
/// member named twice, the last, as when the object is decoded); the others skipped.
#[derive(Default)]
struct RawFields<'a> {
    topic: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    key: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields<'de>, A::Error> {
                let mut fields = RawFields::default();
                while let Some(name) = map.next_key::<Name<'de>>()? {
                    let slot = match name.0.as_ref() {
                        "topic" => &mut fields.topic,
                        "event" => &mut fields.event,
                        "key" => &mut fields.key,
                        "data" => &mut fields.data,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<&'de RawValue>()?);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A member name, borrowed unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}
