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
