//! `subscribe` `{topic, group?, from?}` → `{ok:true, topic, group, pending}`: the sender's
//! identity consumes the topic's queue — its own, or its group's, shared with the group's
//! other members. Needs an identity and `subscribe` on the topic.

use std::sync::Arc;

use serde_json::{Value, json};
use tidings_core::store::{StartFrom, SubscriptionName, Topic};
use tidings_core::{ErrorBody, ErrorCode};

use super::{Access, Answer, Builtin, Family, Input, fields};
use crate::auth::Action;
use crate::queue::Queues;

/// A parsed `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The sender's identity.
    pub identity: Arc<str>,
    /// The topic.
    pub topic: Topic,
    /// The identity's own queue, or a group's.
    pub subscription: SubscriptionName,
    /// Where a new subscription starts.
    pub from: StartFrom,
}

/// The identity a queue request needs.
pub(super) fn identity(input: &Input<'_>) -> Result<Arc<str>, ErrorBody> {
    input.identity.map(Arc::from).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::IdentityRequired,
            "connect with a clientId in the auth payload to use durable queues",
        )
    })
}

/// Refuses a queue request whose payload is not an object, before any field is read.
pub(super) fn require_object(name: &str, payload: &Value) -> Result<(), ErrorBody> {
    if payload.is_object() {
        Ok(())
    } else {
        Err(fields::bad_request(format!(
            "`{name}` expects an object payload"
        )))
    }
}

fn start(payload: &Value) -> Result<StartFrom, ErrorBody> {
    match payload.get("from") {
        None | Some(Value::Null) => Ok(StartFrom::New),
        Some(Value::String(s)) if s == "new" => Ok(StartFrom::New),
        Some(Value::String(s)) if s == "earliest" => Ok(StartFrom::Earliest),
        Some(v) => v
            .as_u64()
            .filter(|o| *o >= 1)
            .map(StartFrom::Offset)
            .ok_or_else(|| {
                fields::bad_request("`from` must be \"new\", \"earliest\" or an offset >= 1")
            }),
    }
}

impl Builtin for Subscribe {
    const NAME: &'static str = "subscribe";
    const FAMILY: Family = Family::Queues;

    fn parse(input: Input<'_>) -> Result<Self, ErrorBody> {
        require_object(Self::NAME, &input.payload)?;
        let identity = identity(&input)?;
        let payload = &input.payload;
        Ok(Subscribe {
            topic: fields::topic(payload)?,
            subscription: fields::subscription(&identity, payload)?,
            from: start(payload)?,
            identity,
        })
    }

    fn required_access(&self) -> Access {
        Access::To(Action::Subscribe, self.topic.as_str().to_owned())
    }
}

impl Subscribe {
    pub(crate) async fn apply(self, queues: &Queues) -> Answer {
        let Subscribe {
            identity,
            topic,
            subscription: sub,
            from,
        } = self;
        let key = (topic.clone(), sub.clone());
        queues.admit_subscription(&identity, &key)?;
        let _creating = queues.admit_topic(&topic).await?;
        let info = queues.store().subscribe(&topic, &sub, from).await?;
        queues.topic_created(&topic);
        if matches!(sub, SubscriptionName::Group(_)) {
            queues
                .store()
                .set_member(&topic, &sub, &identity, true)
                .await?;
        }
        queues.attach(&identity, &key);
        let group = match &sub {
            SubscriptionName::Group(g) => Value::from(g.as_str()),
            SubscriptionName::Identity(_) => Value::Null,
        };
        Ok(json!({ "ok": true, "topic": topic.as_str(), "group": group, "pending": info.pending }))
    }
}
