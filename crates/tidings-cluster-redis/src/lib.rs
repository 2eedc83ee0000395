//! The Redis [`Cluster`] of tidings: several nodes share room broadcasts, remote room
//! operations and queue wake-ups over Redis pub/sub.
//!
//! # Channels
//!
//! - `<prefix>cluster` — every node subscribes; a node publishes each broadcast here **once**,
//!   already encoded ([`ClusterMessage::encode`]), whatever the number of nodes.
//! - `<prefix>cluster:node:<id>` — answers to one node's requests (fetch sockets).
//! - With [`RedisClusterConfig::node_adapter`] (on by default in `tidings serve --redis`): the
//!   channels of Node Socket.IO's Redis adapter and emitter, `<key>#*` and `<key>-request#*`
//!   (key `socket.io` by default), so that a Node service's `@socket.io/redis-emitter` reaches
//!   tidings' clients; see [`node`]. With [`RedisClusterConfig::node_cluster`] the request
//!   channels are SUBSCRIBEd per namespace instead (with the response channels and
//!   `<prefix>node:<key>#<nsp>#`, which only tidings nodes subscribe to), so that Node
//!   servers count this node and it answers their requests.
//!
//! # Delivery
//!
//! One publisher task per node sends queued messages in order, pipelining whatever is waiting
//! (one round trip for a burst); Redis keeps the order of one connection's publishes, so every
//! node sees a node's broadcasts in the order it made them. One subscriber task reads both
//! channels and hands other nodes' messages to the server in order (its own are skipped).
//!
//! When Redis is unreachable the node keeps serving its own clients: messages it cannot
//! publish are counted ([`RedisCluster::failed_publishes`]) and logged at `warn`, and the
//! subscriber reconnects with backoff. Broadcasts are volatile across nodes as on one node;
//! durable topics (the Redis `Store`) are what must arrive.
#![forbid(unsafe_code)]

pub mod node;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tidings_core::Sid;
use tidings_core::cluster::{Cluster, ClusterError, ClusterFuture, ClusterHandler, ClusterMessage};
use tidings_proto::parser::Parser;
use tokio::sync::mpsc;

/// Settings of a [`RedisCluster`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisClusterConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of the channel names; nodes that should see each other use the same. Default
    /// `tidings:`.
    pub prefix: String,
    /// This node's id; a random one when `None` (the default).
    pub node_id: Option<String>,
    /// The key (channel prefix) of Node Socket.IO's Redis adapter and emitter whose
    /// broadcasts and requests this node applies to its clients; `None` (the default for the
    /// library): not read. `tidings serve --redis` reads `socket.io` unless told otherwise.
    pub node_adapter: Option<String>,
    /// Also send this node's broadcasts, room operations and server-side events in the Node
    /// adapter's form (on [`RedisClusterConfig::node_adapter`]'s channels), so that Node
    /// servers on `@socket.io/redis-adapter` receive them: a mixed cluster. Default false: a
    /// cluster of tidings nodes only does not pay for the second publish.
    pub node_cluster: bool,
    /// The largest message accepted on the Node channels, in bytes (default 1,000,000, the
    /// server's default `max_payload`); larger ones are counted and dropped.
    pub node_max_message: usize,
    /// The packet encoding of this node's clients (the server's `parser`): broadcasts from
    /// Node services are encoded in it. Default [`Parser::Default`].
    pub parser: Parser,
}

impl RedisClusterConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisClusterConfig {
            url: url.into(),
            prefix: "tidings:".to_owned(),
            node_id: None,
            node_adapter: None,
            node_cluster: false,
            node_max_message: 1_000_000,
            parser: Parser::Default,
        }
    }

    /// See [`RedisClusterConfig::parser`].
    pub fn parser(mut self, parser: Parser) -> Self {
        self.parser = parser;
        self
    }

    /// See [`RedisClusterConfig::node_adapter`].
    pub fn node_adapter(mut self, key: Option<String>) -> Self {
        self.node_adapter = key;
        self
    }

    /// See [`RedisClusterConfig::node_cluster`].
    pub fn node_cluster(mut self, on: bool) -> Self {
        self.node_cluster = on;
        self
    }

    /// See [`RedisClusterConfig::node_max_message`].
    pub fn node_max_message(mut self, bytes: usize) -> Self {
        self.node_max_message = bytes;
        self
    }

    /// See [`RedisClusterConfig::prefix`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

struct Outgoing {
    channel: String,
    payload: Vec<u8>,
    /// A hint that may be sent once for many ([`ClusterMessage::Published`]): see
    /// [`coalesce`].
    hint: bool,
}

/// The Redis pub/sub cluster. See the crate docs.
pub struct RedisCluster {
    node_id: String,
    all_channel: String,
    prefix: String,
    client: redis::Client,
    connection: redis::aio::ConnectionManager,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    started: AtomicBool,
    failed: Arc<AtomicU64>,
    node_adapter: Option<String>,
    /// The Node adapter key and this node's uid there, when sending in the Node form too.
    node_cluster: Option<(String, String)>,
    node_max_message: usize,
    parser: Parser,
    node_counters: Arc<node::NodeCounters>,
    /// Each pipelined publish batch's and each `PUBSUB NUMSUB`'s round trip.
    round_trip: Arc<tidings_core::metrics::Histogram>,
    /// With `node_cluster`: the server's namespaces, whose Node request channels this node
    /// subscribes to, and the names whose subscription may have to change.
    node_namespaces: Arc<Mutex<BTreeSet<String>>>,
    namespace_changes: mpsc::UnboundedSender<String>,
    namespace_changes_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not shown.
        f.debug_struct("RedisCluster")
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> ClusterError {
    ClusterError::Unavailable(e.to_string())
}

impl RedisCluster {
    /// Connects to Redis and starts the publisher task. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] when the URL is invalid or Redis cannot be reached now.
    pub async fn connect(config: RedisClusterConfig) -> Result<RedisCluster, ClusterError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let connection = client.get_connection_manager().await.map_err(unavailable)?;
        let node_id = config.node_id.unwrap_or_else(|| Sid::new().to_string());
        let node_cluster = config
            .node_adapter
            .clone()
            .filter(|_| config.node_cluster)
            .map(|key| (key, node::uid(&node_id)));
        let (outgoing, rx) = mpsc::unbounded_channel();
        let failed = Arc::new(AtomicU64::new(0));
        let round_trip = Arc::new(tidings_core::metrics::Histogram::default());
        tokio::spawn(publisher(
            connection.clone(),
            rx,
            failed.clone(),
            round_trip.clone(),
        ));
        let (namespace_changes, namespace_changes_rx) = mpsc::unbounded_channel();
        Ok(RedisCluster {
            node_namespaces: Arc::default(),
            namespace_changes,
            namespace_changes_rx: Mutex::new(Some(namespace_changes_rx)),
            all_channel: format!("{}cluster", config.prefix),
            prefix: config.prefix,
            node_id,
            client,
            connection,
            outgoing,
            started: AtomicBool::new(false),
            failed,
            node_cluster,
            node_adapter: config.node_adapter,
            node_max_message: config.node_max_message,
            parser: config.parser,
            node_counters: Arc::default(),
            round_trip,
        })
    }

    /// Whether this node is subscribed to the Node adapter's channels now (false without
    /// [`RedisClusterConfig::node_adapter`], before [`Cluster::start`], and while Redis is
    /// unreachable).
    pub fn node_adapter_listening(&self) -> bool {
        self.node_counters.listening.load(Ordering::Acquire)
    }

    /// Messages on the Node adapter's channels applied to this node's clients, and refused
    /// (malformed or too large), since start.
    pub fn node_messages(&self) -> (u64, u64) {
        (
            self.node_counters.accepted.load(Ordering::Relaxed),
            self.node_counters.refused.load(Ordering::Relaxed),
        )
    }

    /// Messages that could not be published (Redis unreachable) since start.
    pub fn failed_publishes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// `<prefix>node:<key>#`: followed by `<nsp>#`, the channel only tidings nodes that have
    /// namespace `nsp` subscribe to, beside Node's request channel. The difference of their
    /// subscriber counts is the number of Node servers that have the namespace.
    fn marker_prefix(&self, key: &str) -> String {
        format!("{}node:{key}#", self.prefix)
    }

    fn node_channel(&self, node: &str) -> String {
        format!("{}cluster:node:{node}", self.prefix)
    }

    fn send(&self, channel: String, message: &ClusterMessage) {
        let payload = message.encode(&self.node_id);
        let hint = matches!(message, ClusterMessage::Published { .. });
        self.queue(Outgoing {
            channel,
            payload,
            hint,
        });
    }

    fn enqueue(&self, channel: String, payload: Vec<u8>) {
        self.queue(Outgoing {
            channel,
            payload,
            hint: false,
        });
    }

    fn queue(&self, outgoing: Outgoing) {
        if self.outgoing.send(outgoing).is_err() {
            // The publisher task is gone only when the runtime shuts down.
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends queued messages in order, pipelining what is waiting.
async fn publisher(
    mut connection: redis::aio::ConnectionManager,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    failed: Arc<AtomicU64>,
    round_trip: Arc<tidings_core::metrics::Histogram>,
) {
    const BATCH: usize = 256;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        coalesce(&mut batch);
        let mut pipe = redis::pipe();
        for m in &batch {
            pipe.publish(&m.channel, m.payload.as_slice()).ignore();
        }
        let started = std::time::Instant::now();
        let sent = pipe.query_async::<()>(&mut connection).await;
        round_trip.observe(started.elapsed());
        if let Err(e) = sent {
            failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, lost = batch.len(), "cluster: cannot publish to Redis; other nodes miss these broadcasts");
        }
        batch.clear();
    }
}

/// Drops the hints of `batch` that repeat an earlier one of the same batch (same channel, same
/// bytes): "topic t has new messages" said once per batch wakes the same dispatchers as said
/// for every publish — they claim whatever is there — and under load a batch holds dozens of
/// them, each a PUBLISH that Redis (the store's own server in Redis mode) would process and
/// every node decode. Anything else is kept, in order: two equal broadcasts are two
/// deliveries.
fn coalesce(batch: &mut Vec<Outgoing>) {
    if batch.iter().filter(|m| m.hint).nth(1).is_none() {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(batch.len());
    for m in batch.drain(..) {
        if !m.hint || seen.insert((m.channel.clone(), m.payload.clone())) {
            kept.push(m);
        }
    }
    *batch = kept;
}

/// Reads both channels and hands other nodes' messages to `handler`; reconnects with backoff.
async fn subscriber(
    client: redis::Client,
    channels: [String; 2],
    node_id: String,
    handler: ClusterHandler,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                let subscribed = async {
                    for channel in &channels {
                        pubsub.subscribe(channel).await?;
                    }
                    Ok::<(), redis::RedisError>(())
                }
                .await;
                match subscribed {
                    Ok(()) => {
                        tracing::info!(node = %node_id, "cluster: listening to the other nodes");
                        backoff = Duration::from_millis(100);
                        let mut stream = pubsub.on_message();
                        while let Some(msg) = stream.next().await {
                            match ClusterMessage::decode(msg.get_payload_bytes()) {
                                Ok((from, _)) if from == node_id => {}
                                Ok((_, message)) => handler(message),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cluster: ignored a malformed message")
                                }
                            }
                        }
                        tracing::warn!("cluster: lost the Redis subscription; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster: cannot subscribe"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster: cannot reach Redis; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// What a node that Node servers count listens to besides the patterns: per namespace.
struct Counted {
    uid: String,
    /// `<prefix>node:<key>#`: with `<nsp>#`, the marker channel of a namespace.
    marker: String,
    namespaces: Arc<Mutex<BTreeSet<String>>>,
    changes: mpsc::UnboundedReceiver<String>,
}

impl Counted {
    fn channels(&self, key: &str, nsp: &str) -> Vec<String> {
        let mut channels = node::channels(key, &self.uid, nsp).to_vec();
        channels.push(format!("{}{nsp}#", self.marker));
        channels
    }

    fn has(&self, nsp: &str) -> bool {
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(nsp)
    }
}

/// Reads the Node adapter's channels (`key`) and hands what they bring to `handler` as other
/// nodes' messages; reconnects with backoff. A message that cannot be used is counted and
/// logged, never a stop. With `counted`, the request channels are SUBSCRIBEd per namespace
/// (so that Node servers count this node) and requests that want an answer are handed on
/// as requests to this node.
async fn node_subscriber(
    client: redis::Client,
    key: String,
    max_bytes: usize,
    parser: Parser,
    counters: Arc<node::NodeCounters>,
    handler: ClusterHandler,
    mut counted: Option<Counted>,
) {
    let patterns = node::patterns(&key);
    // Counted: requests arrive on the per-namespace subscriptions only.
    let patterns = if counted.is_some() {
        &patterns[..1]
    } else {
        &patterns[..]
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(pubsub) => {
                let (mut sink, mut stream) = pubsub.split();
                let subscribed = async {
                    for pattern in patterns {
                        sink.psubscribe(pattern).await?;
                    }
                    if let Some(counted) = &counted {
                        let names: Vec<String> = counted
                            .namespaces
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .iter()
                            .cloned()
                            .collect();
                        for nsp in names {
                            sink.subscribe(counted.channels(&key, &nsp)).await?;
                        }
                    }
                    Ok::<(), redis::RedisError>(())
                }
                .await;
                match subscribed {
                    Ok(()) => {
                        counters.listening.store(true, Ordering::Release);
                        tracing::info!(key = %key, counted = counted.is_some(), "cluster: listening to Node Socket.IO's Redis adapter and emitter");
                        backoff = Duration::from_millis(100);
                        loop {
                            let change = async {
                                match counted.as_mut() {
                                    Some(c) => c.changes.recv().await,
                                    None => std::future::pending().await,
                                }
                            };
                            tokio::select! {
                                msg = stream.next() => {
                                    let Some(msg) = msg else { break };
                                    on_node_message(&msg, &key, max_bytes, parser, &counters, &handler, counted.as_ref());
                                }
                                Some(nsp) = change => {
                                    let Some(c) = counted.as_ref() else { continue };
                                    // The set says what is wanted now, whatever the order of
                                    // the changes that led there.
                                    let channels = c.channels(&key, &nsp);
                                    let done = if c.has(&nsp) {
                                        sink.subscribe(channels).await
                                    } else {
                                        sink.unsubscribe(channels).await
                                    };
                                    if let Err(e) = done {
                                        tracing::warn!(error = %e, nsp, "cluster: cannot change the Node request subscriptions");
                                        break;
                                    }
                                }
                            }
                        }
                        counters.listening.store(false, Ordering::Release);
                        tracing::warn!("cluster: lost the Node adapter subscription; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: cannot subscribe to the Node adapter's channels")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster: cannot reach Redis; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One message of the Node channels: decoded and handed on, or counted and logged.
fn on_node_message(
    msg: &redis::Msg,
    key: &str,
    max_bytes: usize,
    parser: Parser,
    counters: &node::NodeCounters,
    handler: &ClusterHandler,
    counted: Option<&Counted>,
) {
    let channel = msg.get_channel_name().as_bytes();
    let payload = msg.get_payload_bytes();
    let decoded = match counted {
        // Pattern messages are broadcasts; the rest came on this node's subscriptions.
        Some(c) if !msg.from_pattern() => {
            node::decode_counted(key, &c.uid, channel, payload, max_bytes, parser)
        }
        _ => node::decode(key, channel, payload, max_bytes, parser),
    };
    match decoded {
        Ok(messages) => {
            if !messages.is_empty() {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
            }
            for message in messages {
                handler(message);
            }
        }
        Err(e) => {
            let preview = node::preview(payload);
            if counters.refuse() {
                tracing::warn!(channel = %msg.get_channel_name(), error = %e, %preview, refused = counters.refused.load(Ordering::Relaxed), "cluster: ignored a message on a Node adapter channel");
            } else {
                tracing::debug!(channel = %msg.get_channel_name(), error = %e, %preview, "cluster: ignored a message on a Node adapter channel");
            }
        }
    }
}

impl Cluster for RedisCluster {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn publish(&self, message: ClusterMessage) {
        self.send(self.all_channel.clone(), &message);
        if let Some((key, uid)) = &self.node_cluster {
            // After tidings' own form, on the same ordered publisher.
            for (channel, payload) in node::encode(key, uid, &message) {
                self.enqueue(channel, payload);
            }
        }
    }

    fn send_to(&self, node: &str, message: ClusterMessage) {
        if node.starts_with(node::NODE_ORIGIN) {
            // An answer to a Node server's request.
            if let Some((key, _)) = &self.node_cluster {
                if let Some((channel, payload)) = node::answer(key, node, &message) {
                    self.enqueue(channel, payload);
                }
            }
            return;
        }
        self.send(self.node_channel(node), &message);
    }

    fn start(&self, handler: ClusterHandler) {
        if self.started.swap(true, Ordering::AcqRel) {
            tracing::warn!("cluster: start called twice; ignored");
            return;
        }
        let channels = [self.all_channel.clone(), self.node_channel(&self.node_id)];
        if let Some(key) = &self.node_adapter {
            let counted = self.node_cluster.as_ref().and_then(|(key, uid)| {
                let changes = self
                    .namespace_changes_rx
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()?;
                Some(Counted {
                    uid: uid.clone(),
                    marker: self.marker_prefix(key),
                    namespaces: self.node_namespaces.clone(),
                    changes,
                })
            });
            tokio::spawn(node_subscriber(
                self.client.clone(),
                key.clone(),
                self.node_max_message,
                self.parser,
                self.node_counters.clone(),
                handler.clone(),
                counted,
            ));
        }
        tokio::spawn(subscriber(
            self.client.clone(),
            channels,
            self.node_id.clone(),
            handler,
        ));
    }

    fn peers(&self) -> ClusterFuture<'_, usize> {
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let counts = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&self.all_channel)
                .query_async::<Vec<(String, usize)>>(&mut connection)
                .await;
            self.round_trip.observe(started.elapsed());
            let counts = counts.map_err(unavailable)?;
            let listening = counts.first().map_or(0, |(_, n)| *n);
            // This node is one of them once started.
            let me = usize::from(self.started.load(Ordering::Acquire));
            Ok(listening.saturating_sub(me))
        })
    }

    /// With `node_cluster`: the other tidings nodes, plus the Node servers that have
    /// `namespace` (those subscribed to its request channel, less the tidings nodes there).
    fn peers_for(&self, namespace: &str) -> ClusterFuture<'_, usize> {
        let Some((key, _)) = &self.node_cluster else {
            return self.peers();
        };
        let channels = [
            self.all_channel.clone(),
            format!("{key}-request#{namespace}#"),
            format!("{}{namespace}#", self.marker_prefix(key)),
        ];
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let counts = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channels[..])
                .query_async::<Vec<(String, usize)>>(&mut connection)
                .await;
            self.round_trip.observe(started.elapsed());
            let counts = counts.map_err(unavailable)?;
            let count = |i: usize| counts.get(i).map_or(0, |(_, n)| *n);
            let me = usize::from(self.started.load(Ordering::Acquire));
            let tidings = count(0).saturating_sub(me);
            let node_servers = count(1).saturating_sub(count(2));
            Ok(tidings + node_servers)
        })
    }

    fn namespace_opened(&self, name: &str) {
        if self.node_cluster.is_some() {
            self.node_namespaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.to_owned());
            let _ = self.namespace_changes.send(name.to_owned());
        }
    }

    fn namespace_closed(&self, name: &str) {
        if self.node_cluster.is_some() {
            self.node_namespaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
            let _ = self.namespace_changes.send(name.to_owned());
        }
    }

    /// Errors: messages that could not be published ([`RedisCluster::failed_publishes`]);
    /// with the Node adapter's channels, what came on them ([`RedisCluster::node_messages`]).
    fn metrics(&self) -> tidings_core::metrics::BackendMetrics {
        let mut m = tidings_core::metrics::BackendMetrics::default();
        m.round_trip_seconds = Some(self.round_trip.snapshot());
        m.errors = self.failed.load(Ordering::Relaxed);
        if self.node_adapter.is_some() {
            let (applied, refused) = self.node_messages();
            m.node_messages = Some(tidings_core::metrics::NodeMessageCounts { applied, refused });
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(channel: &str, payload: &str, hint: bool) -> Outgoing {
        Outgoing {
            channel: channel.to_owned(),
            payload: payload.as_bytes().to_vec(),
            hint,
        }
    }

    fn sent(batch: &[Outgoing]) -> Vec<(String, String)> {
        batch
            .iter()
            .map(|m| {
                (
                    m.channel.clone(),
                    String::from_utf8_lossy(&m.payload).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn repeated_hints_are_sent_once_and_everything_else_as_queued() {
        let mut batch = vec![
            outgoing("all", "wake a", true),
            outgoing("all", "emit x", false),
            outgoing("all", "wake a", true),
            outgoing("all", "wake b", true),
            outgoing("all", "emit x", false),
            outgoing("node-2", "wake a", true),
            outgoing("all", "wake a", true),
        ];
        coalesce(&mut batch);
        let want = [
            ("all", "wake a"),
            ("all", "emit x"),
            ("all", "wake b"),
            ("all", "emit x"),
            ("node-2", "wake a"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(c, p)| ((*c).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(sent(&batch), want);
    }

    #[test]
    fn a_batch_without_repeated_hints_is_untouched() {
        let mut batch = vec![
            outgoing("all", "emit", false),
            outgoing("all", "emit", false),
        ];
        coalesce(&mut batch);
        assert_eq!(batch.len(), 2);
    }
}
