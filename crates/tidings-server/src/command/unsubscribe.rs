//! `unsubscribe` `{topic, group?}` → `{ok:true}`: the sender's identity stops consuming the
//! queue; a queue nobody consumes any more is removed with its entries and dead letters.
//! Needs an identity, and no permission: it only undoes a subscribe.

use std::sync::Arc;

use serde_json::json;
use tidings_core::ErrorBody;
use tidings_core::store::{StoreError, SubscriptionName, Topic};

use super::subscribe::{identity, require_object};
use super::{Access, Answer, Builtin, Family, Input, fields};
use crate::queue::Queues;

/// A parsed `unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The sender's identity.
    pub identity: Arc<str>,
    /// The topic.
    pub topic: Topic,
    /// The identity's own queue, or a group's.
    pub subscription: SubscriptionName,
}

impl Builtin for Unsubscribe {
    const NAME: &'static str = "unsubscribe";
    const FAMILY: Family = Family::Queues;

    fn parse(input: Input<'_>) -> Result<Self, ErrorBody> {
        require_object(Self::NAME, &input.payload)?;
        let identity = identity(&input)?;
        Ok(Unsubscribe {
            topic: fields::topic(&input.payload)?,
            subscription: fields::subscription(&identity, &input.payload)?,
            identity,
        })
    }

    fn required_access(&self) -> Access {
        Access::Any
    }
}

impl Unsubscribe {
    pub(crate) async fn apply(self, queues: &Queues) -> Answer {
        let Unsubscribe {
            identity,
            topic,
            subscription: sub,
        } = self;
        if matches!(sub, SubscriptionName::Group(_)) {
            match queues
                .store()
                .set_member(&topic, &sub, &identity, false)
                .await
            {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let key = (topic, sub);
        if queues.detach(&identity, &key) {
            // Nobody consumes this queue any more: its entries and dead letters go too.
            queues.store().unsubscribe(&key.0, &key.1).await?;
        }
        Ok(json!({ "ok": true }))
    }
}
