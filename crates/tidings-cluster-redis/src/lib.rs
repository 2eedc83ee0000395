//! The Redis [`Cluster`] of tidings: several nodes share room broadcasts, remote room
//! operations and queue wake-ups over Redis pub/sub.
//!
//! # Channels
//!
//! - `<prefix>cluster` — every node subscribes; a node publishes each broadcast here **once**,
//!   already encoded ([`ClusterMessage::encode`]), whatever the number of nodes.
//! - `<prefix>cluster:node:<id>` — answers to one node's requests (fetch sockets).
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tidings_core::Sid;
use tidings_core::cluster::{Cluster, ClusterError, ClusterFuture, ClusterHandler, ClusterMessage};
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
}

impl RedisClusterConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisClusterConfig {
            url: url.into(),
            prefix: "tidings:".to_owned(),
            node_id: None,
        }
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
    /// Each pipelined publish batch's and each `PUBSUB NUMSUB`'s round trip.
    round_trip: Arc<tidings_core::metrics::Histogram>,
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
        let (outgoing, rx) = mpsc::unbounded_channel();
        let failed = Arc::new(AtomicU64::new(0));
        let round_trip = Arc::new(tidings_core::metrics::Histogram::default());
        tokio::spawn(publisher(
            connection.clone(),
            rx,
            failed.clone(),
            round_trip.clone(),
        ));
        Ok(RedisCluster {
            all_channel: format!("{}cluster", config.prefix),
            prefix: config.prefix,
            node_id,
            client,
            connection,
            outgoing,
            started: AtomicBool::new(false),
            failed,
            round_trip,
        })
    }

    /// Messages that could not be published (Redis unreachable) since start.
    pub fn failed_publishes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn node_channel(&self, node: &str) -> String {
        format!("{}cluster:node:{node}", self.prefix)
    }

    fn send(&self, channel: String, message: &ClusterMessage) {
        let payload = message.encode(&self.node_id);
        if self.outgoing.send(Outgoing { channel, payload }).is_err() {
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

impl Cluster for RedisCluster {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn publish(&self, message: ClusterMessage) {
        self.send(self.all_channel.clone(), &message);
    }

    fn send_to(&self, node: &str, message: ClusterMessage) {
        self.send(self.node_channel(node), &message);
    }

    fn start(&self, handler: ClusterHandler) {
        if self.started.swap(true, Ordering::AcqRel) {
            tracing::warn!("cluster: start called twice; ignored");
            return;
        }
        let channels = [self.all_channel.clone(), self.node_channel(&self.node_id)];
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

    /// Errors: messages that could not be published ([`RedisCluster::failed_publishes`]).
    fn metrics(&self) -> tidings_core::metrics::BackendMetrics {
        let mut m = tidings_core::metrics::BackendMetrics::default();
        m.round_trip_seconds = Some(self.round_trip.snapshot());
        m.errors = self.failed.load(Ordering::Relaxed);
        m
    }
}
