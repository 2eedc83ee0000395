//! Durable topics and per-subscriber queues: the delivery engine on top of a
//! [`tidings_core::store::Store`].
//!
//! Clients use it through built-in events (docs/PROTOCOL.md): `subscribe`, `unsubscribe`,
//! `publish`, `history`. A publish is acknowledged only once the store made it durable. Each
//! subscription (an identity's own queue, or a group's shared one) has a `dispatcher` task
//! that claims entries from the store and emits them — `event` with `(data, meta)` and an ack
//! id — to the connected sockets of its identity or group, at most `max_in_flight` at a time.
//! The client's ack settles the entry; `{requeue:true}`, a timeout or a disconnect puts it back
//! (with backoff for requeue); the store dead-letters it after `max_deliveries`.
//!
//! Identity: the `clientId` string of the CONNECT auth payload. Queues belong to identities
//! (or groups), never to socket ids, so a client that reconnects — with a new socket id — finds
//! its queues and gets its backlog first, then live messages.
//!
//! The module, by concern: [`config`] (settings and per-pattern rules), `registry` (who
//! consumes which queue, one dispatcher per queue), `admission` (limits checked before the
//! store is asked), `dispatcher` (claims and delivers), `retention` (trims topics). The
//! built-in events that reach it are in [`crate::command`].

mod admission;
pub mod config;
mod dispatcher;
mod due;
mod registry;
mod retention;

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tidings_core::clock::now_millis;
use tidings_core::cluster::ClusterMessage;
use tidings_core::store::{Store, SubscriptionName, Topic};
use tokio_util::sync::CancellationToken;

pub use self::config::{QueueConfig, QueueDepthRule, RetentionRule};
pub use self::retention::enforce_retention;
/// Whether a topic matches a pattern: see [`tidings_core::pattern`].
pub use tidings_core::topic_matches;

use self::admission::Admission;
use self::due::DueTimer;
use self::registry::Registry;
use crate::cluster::ClusterLink;

/// A queue: a topic and one of its subscriptions.
type QueueKey = (Topic, SubscriptionName);

/// The delivery engine. Created by [`crate::Server::enable_queues`].
pub struct Queues {
    me: Weak<Queues>,
    store: Arc<dyn Store>,
    config: QueueConfig,
    registry: Mutex<Registry>,
    stop: CancellationToken,
    /// Other nodes sharing the store: told about publishes and subscription changes.
    cluster: Arc<ClusterLink>,
    /// The limits checked before the store is asked, and what they refused.
    admission: Admission,
    /// The earliest due redelivery of every queue that has one.
    due_timer: Arc<DueTimer>,
    /// `Store::claim` calls made by the dispatchers.
    claims: crate::metrics::Counter,
    /// What happened to each topic's messages here (published, delivered, acked…).
    pub(crate) topic_counters: crate::metrics::TopicCounterMap,
    /// Time from a publish's arrival to its confirmation.
    pub(crate) publish_latency: tidings_core::metrics::Histogram,
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
            admission: Admission::default(),
            due_timer: Arc::new(DueTimer::default()),
            claims: crate::metrics::Counter::default(),
            topic_counters: crate::metrics::TopicCounterMap::default(),
            publish_latency: tidings_core::metrics::Histogram::default(),
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
        tokio::spawn(retention::retention_task(queues.clone()));
        tokio::spawn(queues.due_timer.clone().run(queues.stop.child_token()));
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

    /// `Store::claim` calls the dispatchers made since start: with subscribers connected and
    /// nothing to deliver, this stands still.
    pub fn store_claims(&self) -> u64 {
        self.claims.get()
    }

    /// The delivery engine's counters and the store's own measurements, without asking the
    /// store anything (see [`crate::Server::counters`]).
    pub(crate) fn counters(&self) -> crate::metrics::QueueMetrics {
        let totals = self
            .topic_counters
            .read_all()
            .into_iter()
            .fold(crate::metrics::TopicCounts::default(), |sum, (_, c)| {
                sum.plus(c)
            });
        crate::metrics::QueueMetrics {
            rate_limited_publishes: self.rate_limited_publishes(),
            subscriptions_refused: self.subscriptions_refused(),
            queue_full_publishes: self.queue_full_publishes(),
            store_full_publishes: self.store_full_publishes(),
            overflow_dropped: self.overflow_dropped(),
            topics_refused: self.topics_refused(),
            deliveries_deferred: self.deliveries_deferred(),
            store_claims: self.store_claims(),
            totals,
            publish_seconds: self.publish_latency.snapshot(),
            store: self.store.metrics(),
            topics: Vec::new(),
        }
    }

    /// The per-topic gauges and counters of the topics `config` selects: those matching its
    /// patterns (at most [`crate::metrics::MAX_PATTERN_TOPICS`]) and its `top_topics` most
    /// active ones. Asks the store about each (a topic it cannot describe now is left out of
    /// this scrape).
    pub(crate) async fn topic_metrics(
        &self,
        config: &crate::metrics::MetricsConfig,
    ) -> Vec<crate::metrics::TopicMetrics> {
        use crate::metrics::{MAX_PATTERN_TOPICS, MAX_SUBSCRIPTIONS_PER_TOPIC, TopicMetrics};
        let mut counts = self.topic_counters.read_all();
        counts.sort_by(|a, b| {
            b.1.activity()
                .cmp(&a.1.activity())
                .then_with(|| a.0.cmp(&b.0))
        });
        let mut selected: Vec<Topic> = Vec::new();
        if !config.topics.is_empty() {
            if let Ok(all) = self.store.topics().await {
                selected.extend(
                    all.into_iter()
                        .filter(|t| config.topics.iter().any(|p| topic_matches(p, t.as_str())))
                        .take(MAX_PATTERN_TOPICS),
                );
            }
        }
        for (topic, c) in counts.iter().take(config.top_topics) {
            if c.activity() > 0 && !selected.contains(topic) {
                selected.push(topic.clone());
            }
        }
        let by_topic: std::collections::HashMap<_, _> = counts.into_iter().collect();
        let now = now_millis();
        let mut out = Vec::with_capacity(selected.len());
        for topic in selected {
            let Ok(Some(info)) = self.store.topic_info(&topic).await else {
                continue;
            };
            let oldest = self.store.oldest_unsettled(&topic).await.ok().flatten();
            let lag_of = |name: &SubscriptionName| -> Option<f64> {
                let oldest = oldest.as_ref()?;
                Some(
                    oldest
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(0.0, |(_, at)| now.saturating_sub(*at) as f64 / 1000.0),
                )
            };
            let mut subscriptions: Vec<_> = info
                .subscriptions
                .iter()
                .map(|s| crate::metrics::SubscriptionMetrics {
                    subscription: s.name.to_string(),
                    pending: s.pending,
                    in_flight: s.in_flight,
                    dead: s.dead,
                    gaps: s.gaps,
                    lag_seconds: lag_of(&s.name),
                })
                .collect();
            let max_lag_seconds = oldest.as_ref().map(|_| {
                subscriptions
                    .iter()
                    .filter_map(|s| s.lag_seconds)
                    .fold(0.0, f64::max)
            });
            let sum = |f: fn(&crate::metrics::SubscriptionMetrics) -> u64| {
                subscriptions.iter().map(f).sum::<u64>()
            };
            let (pending, in_flight, dead, gaps) = (
                sum(|s| s.pending),
                sum(|s| s.in_flight),
                sum(|s| s.dead),
                sum(|s| s.gaps),
            );
            subscriptions.sort_by(|a, b| {
                b.lag_seconds
                    .unwrap_or(0.0)
                    .total_cmp(&a.lag_seconds.unwrap_or(0.0))
                    .then(b.pending.cmp(&a.pending))
                    .then_with(|| a.subscription.cmp(&b.subscription))
            });
            subscriptions.truncate(MAX_SUBSCRIPTIONS_PER_TOPIC);
            out.push(TopicMetrics {
                topic: topic.as_str().to_owned(),
                counts: by_topic.get(&topic).copied().unwrap_or_default(),
                retained: info.retained,
                pending,
                in_flight,
                dead,
                gaps,
                max_lag_seconds,
                subscriptions,
            });
        }
        out
    }

    fn due_timer(&self) -> &DueTimer {
        &self.due_timer
    }

    /// Stops every dispatcher (on shutdown) and lets go of every socket: sockets lead back to
    /// the server, which holds the queues, so a socket kept here would keep the store open
    /// after the server is gone (a journal's directory stays locked while its store lives).
    pub(crate) fn shutdown(&self) {
        self.stop.cancel();
        let mut registry = self.registry.lock();
        registry.sockets.clear();
        for d in registry.dispatchers.take_all() {
            d.clear_consumers();
        }
    }

    /// Wakes the dispatchers of `topic` (after a publish or a dead-letter requeue), here and
    /// on the other nodes.
    pub(crate) fn wake_topic(&self, topic: &Topic) {
        self.wake_local(topic);
        self.cluster.publish(|| ClusterMessage::Published {
            topic: topic.as_str().to_owned(),
        });
    }

    /// An entry of `topic` was requeued here: the other nodes' dispatchers of its queue (whose
    /// consumers may be the ones left) claim again and learn its new due time, as after a
    /// publish. This node's own dispatcher is woken by the settle itself.
    pub(crate) fn requeued(&self, topic: &Topic) {
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
}
