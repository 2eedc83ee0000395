//! Durable topics and per-subscriber queues: the delivery engine on top of a
//! [`Store`](tidings_core::store::Store).
//!
//! Clients use it through built-in events (docs/PROTOCOL.md): `subscribe`, `unsubscribe`,
//! `publish`, `history`. A publish is acknowledged only once the store made it durable. Each
//! subscription (an identity's own queue, or a group's shared one) has a [`dispatcher`] task
//! that claims entries from the store and emits them — `event` with `(data, meta)` and an ack
//! id — to the connected sockets of its identity or group, at most `max_in_flight` at a time.
//! The client's ack settles the entry; `{requeue:true}`, a timeout or a disconnect puts it back
//! (with backoff for requeue); the store dead-letters it after `max_deliveries`.
//!
//! Identity: the `clientId` string of the CONNECT auth payload. Queues belong to identities
//! (or groups), never to socket ids, so a client that reconnects — with a new socket id — finds
//! its queues and gets its backlog first, then live messages.

mod dispatcher;
pub(crate) mod events;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings_core::store::{
    Gap, Millis, Overflow, QueueBound, Retention, Store, SubscriptionName, Topic,
};
use tokio_util::sync::CancellationToken;

use self::dispatcher::Dispatcher;
use crate::cluster::ClusterLink;
use crate::io::{ConnectError, Event, Socket};
use tidings_core::cluster::ClusterMessage;
use tidings_core::{ErrorBody, ErrorCode};

/// The built-in events of the durable queues.
const QUEUE_EVENTS: &[&str] = &["subscribe", "unsubscribe", "publish", "history"];

/// Whether `name` is one of the queue built-ins.
pub(crate) fn is_queue_event(name: &str) -> bool {
    QUEUE_EVENTS.contains(&name)
}

/// The longest accepted `clientId`, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = tidings_core::store::MAX_SUBSCRIBER_LEN;

/// The durable identity named by the CONNECT auth payload's `clientId`, if any. A `clientId`
/// that is present but not a usable name refuses the connection (a client that believes it has
/// an identity must not silently run without one).
pub(crate) fn identity_from_auth(auth: &Value) -> Result<Option<Arc<str>>, ConnectError> {
    match auth.get("clientId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if SubscriptionName::identity(id).is_ok() => Ok(Some(Arc::from(id.as_str()))),
        Some(_) => Err(ConnectError::new("invalid clientId").with_data(json!({
            "code": "bad_request",
            "message": format!("clientId must be a string of 1 to {MAX_CLIENT_ID_LEN} bytes without control characters"),
        }))),
    }
}

/// Retention for topics whose name matches a pattern (`*` matches one dot-separated segment,
/// `>` the rest), first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// The topic pattern, e.g. `vendor.*` or `audit.>`.
    pub pattern: String,
    /// The limits for matching topics.
    pub retention: Retention,
}

/// The queue depth bound of topics whose name matches a pattern (`*` one segment, `>` the
/// rest), first match wins: see [`QueueConfig::max_queue_depth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepthRule {
    /// The topic pattern, e.g. `telemetry.>`.
    pub pattern: String,
    /// The most entries per subscription of matching topics; None: unbounded.
    pub max_queue_depth: Option<u64>,
    /// What a publish to a matching topic does when a subscription is full.
    pub overflow: Overflow,
}

/// Whether `topic` matches `pattern` (`*` one segment, `>` one or more trailing segments).
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut pat = pattern.split('.');
    let mut top = topic.split('.');
    loop {
        match (pat.next(), top.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(t)) if p == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Settings of the delivery engine, with documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueConfig {
    /// How long a delivery may wait for its ack before it is redelivered. Default 30 s.
    pub ack_timeout: Duration,
    /// Deliveries of one message to one subscription before it moves to the dead letters.
    /// Default 10.
    pub max_deliveries: u32,
    /// Unacknowledged deliveries per subscription; the rest wait. Default 100.
    pub max_in_flight: usize,
    /// How long an idempotency key is remembered. Default 24 h.
    pub dedup_window: Duration,
    /// Delay before a message requeued with `{requeue:true}` is redelivered, doubled per
    /// attempt up to `requeue_backoff_max`. Default 1 s.
    pub requeue_backoff: Duration,
    /// Upper bound of the requeue delay. Default 60 s.
    pub requeue_backoff_max: Duration,
    /// Retention of topics that match no rule. Default: 7 days, 10 million messages, 10 GiB.
    pub retention: Retention,
    /// Per-topic-pattern retention, first match wins.
    pub retention_rules: Vec<RetentionRule>,
    /// How often retention is enforced. Default 30 s.
    pub retention_interval: Duration,
    /// Publishes per second per identity (socket events and the HTTP API together), with a
    /// burst of the same size; past it a publish is refused with `rate_limited` and nothing
    /// is stored. Anonymous publishers are held by the per-connection event limit only.
    /// Default unlimited.
    pub max_publishes_per_second: Option<u32>,
    /// Subscriptions (own queues and group memberships) per identity; one more is refused
    /// with `limit_exceeded`. Default 10,000.
    pub max_subscriptions_per_identity: Option<usize>,
    /// The most entries a subscription's queue may hold — pending (in flight or waiting) plus
    /// not yet delivered, the `pending` of the topic info — checked atomically with each
    /// publish by the store ([`Store::append_bounded`]). Default None: unbounded (retention
    /// still bounds every topic).
    pub max_queue_depth: Option<u64>,
    /// What a publish does when a subscription of its topic holds `max_queue_depth` entries:
    /// [`Overflow::Reject`] (the default) refuses it with `queue_full` and stores nothing;
    /// [`Overflow::DropOldest`] stores it, and each full subscription loses its oldest
    /// unsettled entries — a gap, counted, logged and announced with `tidings:gap`. Never a
    /// silent drop.
    pub overflow: Overflow,
    /// Per-topic-pattern depth bounds, first match wins; topics that match none use
    /// `max_queue_depth` and `overflow`.
    pub queue_depth_rules: Vec<QueueDepthRule>,
    /// The most topics; a publish or subscribe that would create one more is refused with
    /// `limit_exceeded`. Topics are never deleted, so this bounds them for good. Default None:
    /// unlimited.
    pub max_topics: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            ack_timeout: Duration::from_secs(30),
            max_deliveries: 10,
            max_in_flight: 100,
            dedup_window: Duration::from_secs(24 * 3600),
            requeue_backoff: Duration::from_secs(1),
            requeue_backoff_max: Duration::from_secs(60),
            retention: Retention::default(),
            retention_rules: Vec::new(),
            retention_interval: Duration::from_secs(30),
            max_publishes_per_second: None,
            max_subscriptions_per_identity: Some(10_000),
            max_queue_depth: None,
            overflow: Overflow::Reject,
            queue_depth_rules: Vec::new(),
            max_topics: None,
        }
    }
}

impl QueueConfig {
    /// The retention of `topic`.
    pub fn retention_for(&self, topic: &Topic) -> Retention {
        self.retention_rules
            .iter()
            .find(|rule| topic_matches(&rule.pattern, topic.as_str()))
            .map_or(self.retention, |rule| rule.retention)
    }

    /// The queue depth bound of `topic`, if it has one.
    pub fn queue_bound_for(&self, topic: &Topic) -> Option<QueueBound> {
        let (max_depth, overflow) = self
            .queue_depth_rules
            .iter()
            .find(|rule| topic_matches(&rule.pattern, topic.as_str()))
            .map_or((self.max_queue_depth, self.overflow), |rule| {
                (rule.max_queue_depth, rule.overflow)
            });
        max_depth.map(|max_depth| QueueBound {
            max_depth,
            overflow,
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.requeue_backoff
            .saturating_mul(factor)
            .min(self.requeue_backoff_max)
    }
}

pub(crate) fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

pub(crate) fn millis(d: Duration) -> Millis {
    d.as_millis().min(u128::from(u64::MAX)) as Millis
}

type QueueKey = (Topic, SubscriptionName);

#[derive(Default)]
struct Registry {
    dispatchers: HashMap<QueueKey, Arc<Dispatcher>>,
    /// The queues each identity consumes: its own subscriptions and its groups'.
    consumes: HashMap<Arc<str>, HashSet<QueueKey>>,
    /// Members of each group queue.
    members: HashMap<QueueKey, HashSet<Arc<str>>>,
    /// Connected sockets per identity.
    sockets: HashMap<Arc<str>, Vec<Socket>>,
}

/// The delivery engine. Created by [`crate::Server::enable_queues`].
pub struct Queues {
    me: Weak<Queues>,
    store: Arc<dyn Store>,
    config: QueueConfig,
    registry: Mutex<Registry>,
    stop: CancellationToken,
    /// Other nodes sharing the store: told about publishes and subscription changes.
    cluster: Arc<ClusterLink>,
    /// [`QueueConfig::max_publishes_per_second`] per identity.
    publish_buckets: crate::limits::KeyedBuckets,
    /// Publishes refused by the per-identity rate limit.
    rate_limited_publishes: AtomicU64,
    /// Subscribes refused by [`QueueConfig::max_subscriptions_per_identity`].
    subscriptions_refused: AtomicU64,
    /// Publishes refused with `queue_full`.
    queue_full_publishes: AtomicU64,
    /// Unsettled entries dropped by [`Overflow::DropOldest`].
    overflow_dropped: AtomicU64,
    /// Publishes and subscribes refused by [`QueueConfig::max_topics`].
    topics_refused: AtomicU64,
    /// Topics known to exist (with `max_topics` only): topics are never deleted, so a topic
    /// in here needs no check.
    known_topics: Mutex<HashSet<Topic>>,
    /// Held while a topic is created under `max_topics`, so that this node's concurrent
    /// creations are counted one after the other.
    creating_topic: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Queues {
    /// Loads the existing subscriptions and starts the retention task.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        config: QueueConfig,
        cluster: Arc<ClusterLink>,
    ) -> Result<Arc<Queues>, tidings_core::store::StoreError> {
        let subscriptions = store.subscriptions().await?;
        let members = store.members().await?;
        // Deliveries handed out before a restart can no longer be acknowledged: make them due
        // now instead of after their ack deadlines.
        let released = store.release_in_flight(now_millis()).await?;
        if released > 0 {
            tracing::info!(
                released,
                "deliveries in flight before the restart will be redelivered"
            );
        }
        let queues = Arc::new_cyclic(|me| Queues {
            me: me.clone(),
            store,
            config,
            registry: Mutex::new(Registry::default()),
            stop: CancellationToken::new(),
            cluster,
            publish_buckets: crate::limits::KeyedBuckets::default(),
            rate_limited_publishes: AtomicU64::new(0),
            subscriptions_refused: AtomicU64::new(0),
            queue_full_publishes: AtomicU64::new(0),
            overflow_dropped: AtomicU64::new(0),
            topics_refused: AtomicU64::new(0),
            known_topics: Mutex::new(HashSet::new()),
            creating_topic: tokio::sync::Mutex::new(()),
        });
        {
            let mut registry = queues.registry.lock();
            for (topic, sub) in subscriptions {
                match &sub {
                    SubscriptionName::Identity(id) => {
                        registry
                            .consumes
                            .entry(Arc::from(id.as_str()))
                            .or_default()
                            .insert((topic, sub));
                    }
                    SubscriptionName::Group(_) => {
                        registry.members.entry((topic, sub)).or_default();
                    }
                }
            }
            for (topic, group, identity) in members {
                let identity: Arc<str> = Arc::from(identity.as_str());
                let key = (topic, group);
                registry
                    .consumes
                    .entry(identity.clone())
                    .or_default()
                    .insert(key.clone());
                registry.members.entry(key).or_default().insert(identity);
            }
        }
        tokio::spawn(retention_task(queues.clone()));
        Ok(queues)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Publishes refused by [`QueueConfig::max_publishes_per_second`] since start.
    pub fn rate_limited_publishes(&self) -> u64 {
        self.rate_limited_publishes.load(Ordering::Relaxed)
    }

    /// Subscribes refused by [`QueueConfig::max_subscriptions_per_identity`] since start.
    pub fn subscriptions_refused(&self) -> u64 {
        self.subscriptions_refused.load(Ordering::Relaxed)
    }

    /// Publishes refused with `queue_full` since start.
    pub fn queue_full_publishes(&self) -> u64 {
        self.queue_full_publishes.load(Ordering::Relaxed)
    }

    /// Unsettled entries dropped from full queues ([`Overflow::DropOldest`]) since start.
    pub fn overflow_dropped(&self) -> u64 {
        self.overflow_dropped.load(Ordering::Relaxed)
    }

    /// Publishes and subscribes refused by [`QueueConfig::max_topics`] since start.
    pub fn topics_refused(&self) -> u64 {
        self.topics_refused.load(Ordering::Relaxed)
    }

    /// Under [`QueueConfig::max_topics`]: Ok(None) when `topic` exists (or there is no
    /// limit); Ok(Some(guard)) when it may be created — hold the guard until the store created
    /// it, then call [`Queues::topic_created`]; `Err(limit_exceeded)` when there are already
    /// `max_topics`. The count comes from the store, so topics other nodes created count too;
    /// the guard serialises this node's creations, so only nodes creating topics at the same
    /// moment can overshoot the limit (by at most one topic per other node).
    pub(crate) async fn admit_topic(
        &self,
        topic: &Topic,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, ErrorBody> {
        let Some(max) = self.config.max_topics else {
            return Ok(None);
        };
        if self.known_topics.lock().contains(topic) {
            return Ok(None);
        }
        let guard = self.creating_topic.lock().await;
        let topics = self
            .store
            .topics()
            .await
            .map_err(|e| events::store_error(&e))?;
        let mut known = self.known_topics.lock();
        known.extend(topics);
        if known.contains(topic) {
            return Ok(None);
        }
        let count = known.len() as u64;
        if count < max {
            return Ok(Some(guard));
        }
        drop(known);
        let n = self.topics_refused.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 1000 == 1 {
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
            self.known_topics.lock().insert(topic.clone());
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
        let n = self.queue_full_publishes.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 1000 == 1 {
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

    /// Entries dropped from full queues by a publish: counted, logged, announced.
    pub(crate) fn overflowed(&self, dropped: &[Gap]) {
        for gap in dropped {
            let lost = gap.to - gap.from + 1;
            let before = self.overflow_dropped.fetch_add(lost, Ordering::Relaxed);
            // Every publish to a topic with a lagging subscriber drops: warn once per 1000.
            if before / 1000 != (before + lost) / 1000 || before == 0 {
                tracing::warn!(
                    topic = %gap.topic, subscription = %gap.subscription, from = gap.from,
                    to = gap.to, dropped = before + lost,
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
    /// [`QueueConfig::max_publishes_per_second`].
    pub(crate) fn admit_publish(&self, identity: Option<&str>) -> Result<(), ErrorBody> {
        let (Some(rate), Some(identity)) = (self.config.max_publishes_per_second, identity) else {
            return Ok(());
        };
        if self.publish_buckets.take(&Arc::from(identity), rate) {
            return Ok(());
        }
        let n = self.rate_limited_publishes.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 1000 == 1 {
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
    /// [`QueueConfig::max_subscriptions_per_identity`] subscriptions and `key` is not one.
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
        self.subscriptions_refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            identity,
            max,
            "subscription over the per-identity limit refused"
        );
        Err(ErrorBody::new(
            ErrorCode::LimitExceeded,
            format!("at most {max} subscriptions per identity"),
        ))
    }

    /// Stops every dispatcher (on shutdown).
    pub(crate) fn shutdown(&self) {
        self.stop.cancel();
    }

    fn dispatcher(&self, registry: &mut Registry, key: &QueueKey) -> Arc<Dispatcher> {
        if let Some(d) = registry.dispatchers.get(key) {
            return d.clone();
        }
        let d = Dispatcher::new(key.0.clone(), key.1.clone(), self.stop.child_token());
        registry.dispatchers.insert(key.clone(), d.clone());
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(d.clone().run(me));
        }
        d
    }

    /// A socket with an identity connected: it becomes a consumer of its identity's queues,
    /// whose backlog is delivered first.
    pub(crate) fn on_socket_connected(&self, socket: &Socket) {
        let Some(identity) = socket.identity().map(Arc::<str>::from) else {
            return;
        };
        {
            let mut registry = self.registry.lock();
            registry
                .sockets
                .entry(identity.clone())
                .or_default()
                .push(socket.clone());
            let keys: Vec<QueueKey> = registry
                .consumes
                .get(&identity)
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default();
            for key in keys {
                self.dispatcher(&mut registry, &key)
                    .add_consumer(socket.clone());
            }
        }
        let me = self.me.clone();
        socket.on_disconnect(move |socket, _reason| async move {
            if let Some(queues) = me.upgrade() {
                queues.on_socket_disconnected(&socket, &identity);
            }
        });
    }

    fn on_socket_disconnected(&self, socket: &Socket, identity: &Arc<str>) {
        let mut registry = self.registry.lock();
        if let Some(sockets) = registry.sockets.get_mut(identity) {
            sockets.retain(|s| s.id() != socket.id());
            if sockets.is_empty() {
                registry.sockets.remove(identity);
            }
        }
        if let Some(keys) = registry.consumes.get(identity) {
            for key in keys {
                if let Some(d) = registry.dispatchers.get(key) {
                    d.remove_consumer(socket.id());
                }
            }
        }
    }

    /// Registers `identity` as a consumer of the queue `key` (after a subscribe), here and on
    /// the other nodes.
    fn attach(&self, identity: &Arc<str>, key: &QueueKey) {
        self.attach_local(identity, key);
        self.announce_subscription(identity, key, true);
    }

    fn announce_subscription(&self, identity: &str, key: &QueueKey, subscribed: bool) {
        self.cluster.publish(|| ClusterMessage::Subscribed {
            topic: key.0.as_str().to_owned(),
            key: key.1.key(),
            identity: identity.to_owned(),
            subscribed,
        });
    }

    /// Another node's client subscribed or unsubscribed: this node's sockets of that identity
    /// consume (or stop consuming) the queue too.
    pub(crate) fn on_remote_subscription(
        &self,
        topic: &str,
        key: &str,
        identity: &str,
        subscribed: bool,
    ) {
        let (Ok(topic), Ok(sub)) = (Topic::new(topic), SubscriptionName::from_key(key)) else {
            tracing::warn!(
                topic,
                key,
                "cluster: ignored a subscription change with invalid names"
            );
            return;
        };
        let identity: Arc<str> = Arc::from(identity);
        let key = (topic, sub);
        if subscribed {
            self.attach_local(&identity, &key);
        } else {
            self.detach_local(&identity, &key);
        }
    }

    fn attach_local(&self, identity: &Arc<str>, key: &QueueKey) {
        let mut registry = self.registry.lock();
        registry
            .consumes
            .entry(identity.clone())
            .or_default()
            .insert(key.clone());
        if matches!(key.1, SubscriptionName::Group(_)) {
            registry
                .members
                .entry(key.clone())
                .or_default()
                .insert(identity.clone());
        }
        let sockets = registry.sockets.get(identity).cloned().unwrap_or_default();
        let dispatcher = self.dispatcher(&mut registry, key);
        for socket in sockets {
            dispatcher.add_consumer(socket);
        }
        dispatcher.wake();
    }

    /// Removes `identity` from the queue `key`. Returns true when nobody consumes the queue
    /// any more (so its entries can be removed).
    fn detach(&self, identity: &Arc<str>, key: &QueueKey) -> bool {
        let orphaned = self.detach_local(identity, key);
        self.announce_subscription(identity, key, false);
        orphaned
    }

    fn detach_local(&self, identity: &Arc<str>, key: &QueueKey) -> bool {
        let mut registry = self.registry.lock();
        if let Some(keys) = registry.consumes.get_mut(identity) {
            keys.remove(key);
        }
        if let (Some(d), Some(sockets)) = (
            registry.dispatchers.get(key),
            registry.sockets.get(identity),
        ) {
            for s in sockets {
                d.remove_consumer(s.id());
            }
        }
        let orphaned = match key.1 {
            SubscriptionName::Identity(_) => true,
            SubscriptionName::Group(_) => {
                let members = registry.members.entry(key.clone()).or_default();
                members.remove(identity);
                members.is_empty()
            }
        };
        if orphaned {
            registry.members.remove(key);
            if let Some(d) = registry.dispatchers.remove(key) {
                d.stop();
            }
        }
        orphaned
    }

    /// Wakes the dispatchers of `topic` (after a publish or a dead-letter requeue).
    pub(crate) fn wake_all(&self, topic: &Topic) {
        self.wake_topic(topic);
    }

    /// Forgets a queue entirely (deleted through the API): no identity consumes it any more.
    pub(crate) fn forget(&self, topic: &Topic, sub: &SubscriptionName) {
        let key = (topic.clone(), sub.clone());
        let mut registry = self.registry.lock();
        for keys in registry.consumes.values_mut() {
            keys.remove(&key);
        }
        registry.members.remove(&key);
        if let Some(d) = registry.dispatchers.remove(&key) {
            d.stop();
        }
    }

    /// Wakes the dispatchers of `topic` (after a publish), here and on the other nodes.
    fn wake_topic(&self, topic: &Topic) {
        self.wake_local(topic);
        self.cluster.publish(|| ClusterMessage::Published {
            topic: topic.as_str().to_owned(),
        });
    }

    /// Another node appended to `topic`.
    pub(crate) fn wake_topic_by_name(&self, topic: &str) {
        if let Ok(topic) = Topic::new(topic) {
            self.wake_local(&topic);
        }
    }

    fn wake_local(&self, topic: &Topic) {
        let registry = self.registry.lock();
        for ((t, _), d) in &registry.dispatchers {
            if t == topic {
                d.wake();
            }
        }
    }

    /// Handles a queue built-in event (see docs/PROTOCOL.md).
    pub(crate) fn handle_event(&self, socket: Socket, event: Event) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(events::handle(me, socket, event));
    }

    /// Sends `tidings:gap` to the connected consumers of a queue.
    fn announce_gap(&self, gap: &Gap) {
        let registry = self.registry.lock();
        let identities: Vec<Arc<str>> = match &gap.subscription {
            SubscriptionName::Identity(id) => vec![Arc::from(id.as_str())],
            SubscriptionName::Group(_) => registry
                .members
                .get(&(gap.topic.clone(), gap.subscription.clone()))
                .map(|m| m.iter().cloned().collect())
                .unwrap_or_default(),
        };
        let mut notice = json!({ "topic": gap.topic.as_str(), "from": gap.from, "to": gap.to });
        if let SubscriptionName::Group(group) = &gap.subscription {
            notice["group"] = Value::from(group.as_str());
        }
        for identity in identities {
            for socket in registry.sockets.get(&identity).into_iter().flatten() {
                let _ = socket.emit("tidings:gap", &notice);
            }
        }
    }
}

/// Enforces retention on every topic, periodically, and announces the gaps.
async fn retention_task(queues: Arc<Queues>) {
    let mut tick = tokio::time::interval(queues.config.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = queues.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = enforce_retention(&queues).await {
            tracing::warn!(error = %e, "retention pass failed; will retry");
        }
    }
}

/// One retention pass over every topic.
pub(crate) async fn enforce_retention(
    queues: &Queues,
) -> Result<usize, tidings_core::store::StoreError> {
    let dedup = millis(queues.config.dedup_window);
    let mut lost = 0;
    for topic in queues.store.topics().await? {
        let retention = queues.config.retention_for(&topic);
        let gaps = queues
            .store
            .enforce_retention(&topic, retention, now_millis(), dedup)
            .await?;
        for gap in &gaps {
            lost += 1;
            tracing::warn!(
                topic = %gap.topic, subscription = %gap.subscription, from = gap.from, to = gap.to,
                "retention removed unsettled messages"
            );
            queues.announce_gap(gap);
        }
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments() {
        assert!(topic_matches("vendor.*", "vendor.store-1"));
        assert!(!topic_matches("vendor.*", "vendor.store-1.x"));
        assert!(topic_matches("vendor.>", "vendor.store-1.x"));
        assert!(!topic_matches("vendor.>", "vendor"));
        assert!(topic_matches("pickup", "pickup"));
        assert!(!topic_matches("pickup", "pickups"));
    }

    #[test]
    fn queue_bounds_per_pattern() {
        let topic = |name| Topic::new(name).unwrap();
        let mut c = QueueConfig::default();
        assert_eq!(c.queue_bound_for(&topic("a")), None, "unbounded by default");
        c.max_queue_depth = Some(10);
        c.queue_depth_rules = vec![
            QueueDepthRule {
                pattern: "telemetry.>".into(),
                max_queue_depth: Some(3),
                overflow: Overflow::DropOldest,
            },
            QueueDepthRule {
                pattern: "free.*".into(),
                max_queue_depth: None,
                overflow: Overflow::Reject,
            },
        ];
        let reject10 = QueueBound {
            max_depth: 10,
            overflow: Overflow::Reject,
        };
        assert_eq!(c.queue_bound_for(&topic("a")), Some(reject10));
        assert_eq!(
            c.queue_bound_for(&topic("telemetry.x.y")),
            Some(QueueBound {
                max_depth: 3,
                overflow: Overflow::DropOldest
            })
        );
        assert_eq!(c.queue_bound_for(&topic("free.x")), None);
        assert_eq!(c.queue_bound_for(&topic("free.x.y")), Some(reject10));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = QueueConfig::default();
        assert_eq!(c.backoff(1), Duration::from_secs(1));
        assert_eq!(c.backoff(3), Duration::from_secs(4));
        assert_eq!(c.backoff(30), Duration::from_secs(60));
    }

    #[test]
    fn client_ids() {
        assert_eq!(identity_from_auth(&json!({})).unwrap(), None);
        assert_eq!(
            identity_from_auth(&json!({"clientId": "d-7"}))
                .unwrap()
                .as_deref(),
            Some("d-7")
        );
        assert!(identity_from_auth(&json!({"clientId": 7})).is_err());
        assert!(identity_from_auth(&json!({"clientId": ""})).is_err());
    }
}
