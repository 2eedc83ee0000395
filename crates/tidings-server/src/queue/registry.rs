//! The registry of the delivery engine: which identities consume which queues, which sockets
//! each identity has connected, and the one dispatcher task per queue with consumers. Kept in
//! step with the other nodes of a cluster through `Subscribed` messages.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tidings_core::cluster::ClusterMessage;
use tidings_core::store::{Gap, SubscriptionName, Topic};

use super::dispatcher::Dispatcher;
use super::{QueueKey, Queues};
use crate::io::Socket;

/// The dispatchers, by topic then subscription: a publish wakes its own topic's dispatchers
/// with one lookup, however many other topics have subscriptions.
#[derive(Default)]
pub(super) struct Dispatchers(HashMap<Topic, HashMap<SubscriptionName, Arc<Dispatcher>>>);

impl Dispatchers {
    pub(super) fn get(&self, key: &QueueKey) -> Option<&Arc<Dispatcher>> {
        self.0.get(&key.0)?.get(&key.1)
    }

    fn insert(&mut self, key: &QueueKey, dispatcher: Arc<Dispatcher>) {
        self.0
            .entry(key.0.clone())
            .or_default()
            .insert(key.1.clone(), dispatcher);
    }

    fn remove(&mut self, key: &QueueKey) -> Option<Arc<Dispatcher>> {
        let of_topic = self.0.get_mut(&key.0)?;
        let removed = of_topic.remove(&key.1);
        if of_topic.is_empty() {
            self.0.remove(&key.0);
        }
        removed
    }

    /// Removes every dispatcher, returning them.
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = Arc<Dispatcher>> {
        std::mem::take(&mut self.0)
            .into_values()
            .flat_map(HashMap::into_values)
    }

    fn of_topic(&self, topic: &Topic) -> impl Iterator<Item = &Arc<Dispatcher>> {
        self.0.get(topic).into_iter().flat_map(HashMap::values)
    }
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) dispatchers: Dispatchers,
    /// The queues each identity consumes: its own subscriptions and its groups'.
    pub(super) consumes: HashMap<Arc<str>, HashSet<QueueKey>>,
    /// Members of each group queue.
    pub(super) members: HashMap<QueueKey, HashSet<Arc<str>>>,
    /// Connected sockets per identity.
    pub(super) sockets: HashMap<Arc<str>, Vec<Socket>>,
}

impl Queues {
    fn dispatcher(&self, registry: &mut Registry, key: &QueueKey) -> Arc<Dispatcher> {
        if let Some(d) = registry.dispatchers.get(key) {
            return d.clone();
        }
        let d = Dispatcher::new(
            key.0.clone(),
            key.1.clone(),
            self.stop.child_token(),
            self.topic_counters.get(&key.0),
        );
        registry.dispatchers.insert(key, d.clone());
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
    pub(crate) fn attach(&self, identity: &Arc<str>, key: &QueueKey) {
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

    // Like `on_socket_connected`, this indexes an identity under its queues; the two start from
    // opposite ends (a new socket of an identity; a new queue of an identity).
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
    pub(crate) fn detach(&self, identity: &Arc<str>, key: &QueueKey) -> bool {
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

    pub(super) fn wake_local(&self, topic: &Topic) {
        let registry = self.registry.lock();
        for d in registry.dispatchers.of_topic(topic) {
            d.wake();
        }
    }

    /// Sends `tidings:gap` to the connected consumers of a queue.
    pub(super) fn announce_gap(&self, gap: &Gap) {
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
