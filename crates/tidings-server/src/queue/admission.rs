//! Admission: the limits a publish or a subscribe passes before the store sees it — the
//! per-identity publish rate, subscriptions per identity, the number of topics, full queues —
//! and the counters of what they refused.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tidings_core::store::{Gap, QueueBound, StoreError, SubscriptionName, Topic};
use tidings_core::{ErrorBody, ErrorCode};

use super::{QueueKey, Queues};
use crate::limits::KeyedBuckets;
use crate::metrics::Counter;

/// How stale this node's count of topics may be before a new topic lists the store's topics
/// again (see [`Queues::admit_topic`]).
pub(crate) const TOPIC_RECOUNT: Duration = Duration::from_secs(1);

/// The state of admission: rate buckets, known topics and refusal counters.
#[derive(Default)]
pub(super) struct Admission {
    /// [`QueueConfig::max_publishes_per_second`](super::QueueConfig::max_publishes_per_second)
    /// per identity.
    publish_buckets: KeyedBuckets,
    /// Publishes refused by the per-identity rate limit.
    rate_limited_publishes: Counter,
    /// Subscribes refused by `max_subscriptions_per_identity`.
    subscriptions_refused: Counter,
    /// Publishes refused with `queue_full`.
    queue_full_publishes: Counter,
    /// Publishes refused with `store_full` (the store's `max_retained_bytes`).
    store_full_publishes: Counter,
    /// Unsettled entries dropped by `Overflow::DropOldest`.
    overflow_dropped: Counter,
    /// Publishes and subscribes refused by `max_topics`.
    topics_refused: Counter,
    /// Deliveries put back because their consumer owed `max_pending_acks_per_socket` acks.
    pub(super) deliveries_deferred: Counter,
    /// Topics known to exist (with `max_topics` only): topics are never deleted, so a topic
    /// in here needs no check, and there are at least as many topics as it holds.
    known_topics: Mutex<HashSet<Topic>>,
    /// When `known_topics` was last refreshed from the store's list (None: never).
    topics_listed_at: Mutex<Option<Instant>>,
    /// Held while a topic is created under `max_topics`, so that this node's concurrent
    /// creations are counted one after the other.
    creating_topic: tokio::sync::Mutex<()>,
}

impl Queues {
    /// Publishes refused by [`QueueConfig::max_publishes_per_second`](super::QueueConfig::max_publishes_per_second) since start.
    pub fn rate_limited_publishes(&self) -> u64 {
        self.admission.rate_limited_publishes.get()
    }

    /// Subscribes refused by [`QueueConfig::max_subscriptions_per_identity`](super::QueueConfig::max_subscriptions_per_identity) since start.
    pub fn subscriptions_refused(&self) -> u64 {
        self.admission.subscriptions_refused.get()
    }

    /// Publishes refused with `queue_full` since start.
    pub fn queue_full_publishes(&self) -> u64 {
        self.admission.queue_full_publishes.get()
    }

    /// Publishes refused with `store_full` (the embedded store's `max_retained_bytes`) since
    /// start.
    pub fn store_full_publishes(&self) -> u64 {
        self.admission.store_full_publishes.get()
    }

    /// Unsettled entries dropped from full queues ([`Overflow::DropOldest`](tidings_core::store::Overflow::DropOldest)) since start.
    pub fn overflow_dropped(&self) -> u64 {
        self.admission.overflow_dropped.get()
    }

    /// Deliveries put back for later because their consumer owed
    /// [`crate::Limits::max_pending_acks_per_socket`] acknowledgements, since start.
    pub fn deliveries_deferred(&self) -> u64 {
        self.admission.deliveries_deferred.get()
    }

    /// Publishes and subscribes refused by [`QueueConfig::max_topics`](super::QueueConfig::max_topics) since start.
    pub fn topics_refused(&self) -> u64 {
        self.admission.topics_refused.get()
    }

    /// Under [`QueueConfig::max_topics`](super::QueueConfig::max_topics): Ok(None) when `topic` exists (or there is no
    /// limit); Ok(Some(guard)) when it may be created — hold the guard until the store created
    /// it, then call [`Queues::topic_created`]; `Err(limit_exceeded)` when there are already
    /// `max_topics`.
    ///
    /// The count is this node's set of known topics, refreshed from the store's list when it
    /// is older than [`TOPIC_RECOUNT`] or one topic short of the limit, so that topics other
    /// nodes created count too without listing every topic on every creation (that made
    /// creating n topics cost O(n²)). Topics are never deleted, so the set never counts too
    /// many: a set at the limit refuses without asking the store. The guard serialises this
    /// node's creations; nodes creating topics within the same [`TOPIC_RECOUNT`] can together
    /// overshoot the limit by the topics the others created in that time.
    pub(crate) async fn admit_topic(
        &self,
        topic: &Topic,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, ErrorBody> {
        let Some(max) = self.config.max_topics else {
            return Ok(None);
        };
        if self.admission.known_topics.lock().contains(topic) {
            return Ok(None);
        }
        let guard = self.admission.creating_topic.lock().await;
        let known_count = self.admission.known_topics.lock().len() as u64;
        if known_count < max {
            let stale = self
                .admission
                .topics_listed_at
                .lock()
                .is_none_or(|at| at.elapsed() >= TOPIC_RECOUNT);
            if stale || known_count + 1 >= max {
                let topics = self.store.topics().await?;
                self.admission.known_topics.lock().extend(topics);
                *self.admission.topics_listed_at.lock() = Some(Instant::now());
            }
            let known = self.admission.known_topics.lock();
            if known.contains(topic) {
                return Ok(None);
            }
            if (known.len() as u64) < max {
                return Ok(Some(guard));
            }
        }
        let (n, warn) = self.admission.topics_refused.incr();
        if warn {
            tracing::warn!(topic = %topic, max, refused = n, "new topic over max_topics refused");
        }
        Err(ErrorBody::new(
            ErrorCode::LimitExceeded,
            format!(
                "this server holds its maximum of {max} topics: topic {topic} cannot be created"
            ),
        ))
    }

    /// The store created (or found) `topic`: no more checks for it under `max_topics`.
    pub(crate) fn topic_created(&self, topic: &Topic) {
        if self.config.max_topics.is_some() {
            self.admission.known_topics.lock().insert(topic.clone());
        }
    }

    /// A publish was refused because a queue of `topic` is full.
    pub(crate) fn queue_full(
        &self,
        topic: &Topic,
        bound: QueueBound,
        subscription: &SubscriptionName,
        depth: u64,
    ) -> ErrorBody {
        let (n, warn) = self.admission.queue_full_publishes.incr();
        if warn {
            tracing::warn!(
                topic = %topic, subscription = %subscription, depth, max = bound.max_depth,
                refused = n, "publish refused: a subscription's queue is full"
            );
        }
        // The subscription's name (an identity) is not the publisher's business.
        ErrorBody::new(
            ErrorCode::QueueFull,
            format!(
                "a subscription of topic {topic} holds {depth} unsettled messages (max_queue_depth {}): nothing was stored; retry once its consumers catch up",
                bound.max_depth
            ),
        )
    }

    /// What a publish the store refused is answered with; a full store is counted and logged
    /// at `warn` (once per 1000).
    pub(crate) fn publish_refused(&self, topic: &Topic, e: StoreError) -> ErrorBody {
        if let StoreError::Full(why) = &e {
            let (n, warn) = self.admission.store_full_publishes.incr();
            if warn {
                tracing::warn!(topic = %topic, refused = n, "publish refused: {why}");
            } else {
                tracing::debug!(topic = %topic, "publish refused: {why}");
            }
        }
        e.into()
    }

    /// Entries dropped from full queues by a publish: counted, logged, announced.
    pub(crate) fn overflowed(&self, dropped: &[Gap]) {
        for gap in dropped {
            let lost = gap.to - gap.from + 1;
            let (dropped, warn) = self.admission.overflow_dropped.add(lost);
            // Every publish to a topic with a lagging subscriber drops: warn once per 1000.
            if warn {
                tracing::warn!(
                    topic = %gap.topic, subscription = %gap.subscription, from = gap.from,
                    to = gap.to, dropped,
                    "queue full: dropped the subscription's oldest unsettled messages"
                );
            } else {
                tracing::debug!(
                    topic = %gap.topic, subscription = %gap.subscription, from = gap.from,
                    to = gap.to, "queue full: dropped the subscription's oldest unsettled messages"
                );
            }
            self.announce_gap(gap);
        }
    }

    /// `Err(rate_limited)` when `identity` published more than
    /// [`QueueConfig::max_publishes_per_second`](super::QueueConfig::max_publishes_per_second).
    pub(crate) fn admit_publish(&self, identity: Option<&str>) -> Result<(), ErrorBody> {
        let (Some(rate), Some(identity)) = (self.config.max_publishes_per_second, identity) else {
            return Ok(());
        };
        if self
            .admission
            .publish_buckets
            .take(&Arc::from(identity), rate)
        {
            return Ok(());
        }
        let (n, warn) = self.admission.rate_limited_publishes.incr();
        if warn {
            tracing::warn!(
                identity,
                refused = n,
                "publish over the per-identity rate limit refused"
            );
        }
        Err(ErrorBody::new(
            ErrorCode::RateLimited,
            format!("more than {rate} publishes per second: slow down"),
        ))
    }

    /// `Err(limit_exceeded)` when `identity` already has
    /// [`QueueConfig::max_subscriptions_per_identity`](super::QueueConfig::max_subscriptions_per_identity) subscriptions and `key` is not one.
    pub(crate) fn admit_subscription(
        &self,
        identity: &str,
        key: &QueueKey,
    ) -> Result<(), ErrorBody> {
        let Some(max) = self.config.max_subscriptions_per_identity else {
            return Ok(());
        };
        let registry = self.registry.lock();
        let Some(keys) = registry.consumes.get(identity) else {
            return Ok(());
        };
        if keys.len() < max || keys.contains(key) {
            return Ok(());
        }
        drop(registry);
        let (refused, warn) = self.admission.subscriptions_refused.incr();
        if warn {
            tracing::warn!(
                identity,
                max,
                refused,
                "subscription over the per-identity limit refused"
            );
        } else {
            tracing::debug!(
                identity,
                max,
                "subscription over the per-identity limit refused"
            );
        }
        Err(ErrorBody::new(
            ErrorCode::LimitExceeded,
            format!("at most {max} subscriptions per identity"),
        ))
    }
}
