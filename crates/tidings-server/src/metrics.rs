//! The one home of the server's metrics: the counter types components own, the
//! [`MetricsSnapshot`] that every reader renders, and its two renderings — the `/v1/stats`
//! JSON ([`MetricsSnapshot::stats_json`]) and the Prometheus text exposition
//! ([`MetricsSnapshot::encode_prometheus`], served at `GET /metrics`).
//!
//! **Who counts, who reads.** Each component owns its counters as plain atomics next to what
//! it counts (the engine's `EngineStats`, the delivery engine's `TopicCounters`, a store's
//! [`tidings_core::metrics::BackendMetrics`]); `Server::metrics` reads all of them into one
//! [`MetricsSnapshot`], once per request. `/v1/stats`, `/metrics` and a dashboard render that
//! same value, so two readers can never disagree by having summed differently.
//!
//! **Hot-path cost.** Counting is a relaxed `fetch_add` on an atomic the component already
//! holds: no lock, no allocation, no label lookup per packet. Traffic is counted per session
//! (received: atomics only that session's reader writes; sent: under the state lock its
//! writer holds anyway, once per batch), and summed at scrape time with the totals of closed
//! sessions, so no cache line shared by all sessions is written per packet; a broadcast adds
//! one count and its recipient total once. The delivery engine's per-topic counters are
//! looked up once per dispatcher (when it starts) and once per publish (a read lock on a map,
//! next to a store append that costs a hundred times more). Histograms are fixed-bucket
//! atomics ([`tidings_core::metrics::Histogram`]).
//!
//! **Label cardinality is bounded.** A topic gets series of its own only when it matches one
//! of [`MetricsConfig::topics`]' patterns (at most [`MAX_PATTERN_TOPICS`]) or is among the
//! [`MetricsConfig::top_topics`] most active topics since start; within a topic at most
//! [`MAX_SUBSCRIPTIONS_PER_TOPIC`] subscriptions (those with the largest lag, then depth) get
//! per-subscription series. Everything else is still counted, in the unlabelled totals.
//! Prometheus keeps every distinct label set as a series in memory for hours; one per
//! identity queue of 100,000 clients would cost the monitoring more than the server.
//!
//! Exposition: [`prometheus-client`](https://docs.rs/prometheus-client) (the Prometheus
//! project's own Rust client) encodes the snapshot through its `Collector` interface, so the
//! escaping, `_total` suffixes, histogram `_bucket`/`_sum`/`_count` lines and the text format
//! are the reference implementation's, while the values stay our own atomics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;
use serde_json::{Value, json};
use tidings_core::metrics::{BackendMetrics, HistogramSnapshot};
use tidings_core::store::Topic;

/// A count of something refused or lost, and when to say so at `warn`: the first time, then
/// each time the total crosses a multiple of [`Counter::WARN_EVERY`]. The other times are for
/// `debug`.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// How many counted events one `warn` line stands for.
    pub const WARN_EVERY: u64 = 1000;

    /// Adds `n`; returns the new total and whether this addition should be logged at `warn`.
    pub fn add(&self, n: u64) -> (u64, bool) {
        let before = self.0.fetch_add(n, Ordering::Relaxed);
        let after = before.saturating_add(n);
        let warn = before == 0 || before / Self::WARN_EVERY != after / Self::WARN_EVERY;
        (after, warn)
    }

    /// Adds one (see [`Counter::add`]).
    pub fn incr(&self) -> (u64, bool) {
        self.add(1)
    }

    /// The total so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How much of the metrics the server exposes, and which topics get series of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Serve `GET /metrics`. Default true (`tidings serve --metrics off` turns it off;
    /// `/v1/stats` stays).
    pub enabled: bool,
    /// Topic patterns (`orders.*`, `billing.>`) whose topics always get per-topic series.
    /// Default none.
    pub topics: Vec<String>,
    /// How many of the most active topics (publishes + deliveries on this node since start)
    /// get per-topic series besides those. Default 10.
    pub top_topics: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            topics: Vec::new(),
            top_topics: 10,
        }
    }
}

/// At most this many topics are selected by [`MetricsConfig::topics`]' patterns per scrape:
/// a pattern like `>` must not turn 100,000 topics into series.
pub const MAX_PATTERN_TOPICS: usize = 200;

/// At most this many subscriptions of one topic get per-subscription series.
pub const MAX_SUBSCRIPTIONS_PER_TOPIC: usize = 20;

/// Counters of the Socket.IO layer (the engine counts its own in `EngineStats`).
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    /// Broadcasts delivered on this node (an `io.to(room).emit`, a `broadcast` built-in, or
    /// one arriving from another node).
    pub(crate) broadcasts: AtomicU64,
    /// Sockets those broadcasts were queued for.
    pub(crate) broadcast_deliveries: AtomicU64,
}

impl IoCounters {
    /// One broadcast reached `recipients` local sockets.
    pub(crate) fn broadcast(&self, recipients: usize) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
        self.broadcast_deliveries
            .fetch_add(recipients as u64, Ordering::Relaxed);
    }
}

/// What the delivery engine did with one topic's messages on this node since start.
#[derive(Debug, Default)]
pub(crate) struct TopicCounters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) requeued: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
}

impl TopicCounters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn read(&self) -> TopicCounts {
        TopicCounts {
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

/// The [`TopicCounters`] of every topic used on this node. An entry per topic, as bounded as
/// the topics are (`max_topics`); entries are never removed, so a counter never goes back.
///
/// Public (hidden) only for `benches/metrics.rs`, which measures [`record_publish`].
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct TopicCounterMap(RwLock<HashMap<Topic, Arc<TopicCounters>>>);

/// Everything the metrics do for one confirmed durable publish: its topic's `published`
/// count (when it stored a message, not a duplicate) and the confirmation latency since
/// `started`. The publish command calls exactly this; `benches/metrics.rs` measures it.
#[doc(hidden)]
pub fn record_publish(
    topics: &TopicCounterMap,
    latency: &tidings_core::metrics::Histogram,
    topic: &Topic,
    stored: bool,
    started: std::time::Instant,
) {
    if stored {
        TopicCounters::add(&topics.get(topic).published, 1);
    }
    latency.observe(started.elapsed());
}

impl TopicCounterMap {
    pub(crate) fn get(&self, topic: &Topic) -> Arc<TopicCounters> {
        if let Some(c) = self.0.read().get(topic) {
            return c.clone();
        }
        self.0.write().entry(topic.clone()).or_default().clone()
    }

    /// Every topic's counts.
    pub(crate) fn read_all(&self) -> Vec<(Topic, TopicCounts)> {
        self.0
            .read()
            .iter()
            .map(|(t, c)| (t.clone(), c.read()))
            .collect()
    }
}

/// What the delivery engine did with messages (of one topic, or of all), on this node since
/// start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicCounts {
    /// Messages published through this node (not duplicates).
    pub published: u64,
    /// Deliveries sent to a consumer (redeliveries included).
    pub delivered: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Deliveries that will be redelivered: `{requeue:true}`, an ack timeout, a disconnect,
    /// a consumer owing too many acks.
    pub requeued: u64,
    /// Entries moved to the dead letters after `max_deliveries`.
    pub dead_lettered: u64,
}

impl TopicCounts {
    pub(crate) fn plus(self, o: TopicCounts) -> TopicCounts {
        TopicCounts {
            published: self.published + o.published,
            delivered: self.delivered + o.delivered,
            acked: self.acked + o.acked,
            requeued: self.requeued + o.requeued,
            dead_lettered: self.dead_lettered + o.dead_lettered,
        }
    }

    /// How a topic ranks for [`MetricsConfig::top_topics`].
    pub(crate) fn activity(&self) -> u64 {
        self.published + self.delivered
    }
}

/// Everything the server counts, read at one moment. `/v1/stats`, `/metrics` and a dashboard
/// render this one value (see the module docs).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The server's counters (the fields `/v1/stats` always had).
    pub server: crate::ServerStats,
    /// The transport.
    pub transport: TransportMetrics,
    /// Broadcasts delivered on this node.
    pub broadcasts: u64,
    /// Sockets those broadcasts were queued for.
    pub broadcast_deliveries: u64,
    /// The delivery engine, when queues are enabled.
    pub queues: Option<QueueMetrics>,
    /// The cluster backend, in a cluster.
    pub cluster: Option<BackendMetrics>,
    /// Connection State Recovery outcomes, `(outcome, count)`, rendered as
    /// `tidings_recovery_total{outcome}`. The hook: `Server::counters` fills it from
    /// `Recovery`'s outcome counters; it stays empty until `Recovery` keeps them, and when
    /// recovery is off.
    pub recovery: Vec<(&'static str, u64)>,
    /// Readiness as of the snapshot: `None` when ready, else why not (see `GET /readyz`).
    pub unready: Option<String>,
}

/// The transport's gauges and counters.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportMetrics {
    /// Open TCP connections (HTTP requests, long-polls and WebSockets alike).
    pub connections: usize,
    /// Open sessions on HTTP long-polling.
    pub sessions_polling: usize,
    /// Open sessions on WebSocket.
    pub sessions_websocket: usize,
    /// Sessions closed, `(reason, count)` for every reason.
    pub closed: Vec<(&'static str, u64)>,
    /// Engine.IO packets received.
    pub packets_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Engine.IO packets sent.
    pub packets_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
}

/// The delivery engine's counters and the store's state.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueMetrics {
    /// Publishes refused by the per-identity rate limit.
    pub rate_limited_publishes: u64,
    /// Subscribes refused by `max_subscriptions_per_identity`.
    pub subscriptions_refused: u64,
    /// Publishes refused with `queue_full`.
    pub queue_full_publishes: u64,
    /// Publishes refused with `store_full` (the embedded store's `max_retained_bytes`).
    pub store_full_publishes: u64,
    /// Entries dropped (as gaps) by `drop-oldest` depth limits.
    pub overflow_dropped: u64,
    /// New topics refused by `max_topics`.
    pub topics_refused: u64,
    /// Deliveries deferred because the consumer owed too many acks.
    pub deliveries_deferred: u64,
    /// `Store::claim` calls.
    pub store_claims: u64,
    /// Counts of every topic together.
    pub totals: TopicCounts,
    /// Time from a publish's arrival to its confirmation (stored, durable).
    pub publish_seconds: HistogramSnapshot,
    /// The store's own measurements.
    pub store: BackendMetrics,
    /// The topics that get series of their own (see [`MetricsConfig`]).
    pub topics: Vec<TopicMetrics>,
}

/// One selected topic.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicMetrics {
    /// The topic.
    pub topic: String,
    /// What this node did with its messages.
    pub counts: TopicCounts,
    /// Retained messages.
    pub retained: u64,
    /// Sum over its subscriptions.
    pub pending: u64,
    /// Sum over its subscriptions.
    pub in_flight: u64,
    /// Sum over its subscriptions.
    pub dead: u64,
    /// Sum over its subscriptions.
    pub gaps: u64,
    /// The largest consumer lag of its subscriptions (seconds); `None` when the store does
    /// not report it.
    pub max_lag_seconds: Option<f64>,
    /// Its subscriptions with the largest lag (at most [`MAX_SUBSCRIPTIONS_PER_TOPIC`]).
    pub subscriptions: Vec<SubscriptionMetrics>,
}

/// One subscription of a selected topic.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionMetrics {
    /// `id:<identity>` or `group:<name>`.
    pub subscription: String,
    /// Unsettled entries (in flight, waiting, never delivered).
    pub pending: u64,
    /// Of those, in flight.
    pub in_flight: u64,
    /// Dead letters.
    pub dead: u64,
    /// Unsettled entries lost to retention or drop-oldest.
    pub gaps: u64,
    /// Age of the oldest unsettled entry (0 with nothing unsettled); `None` when the store
    /// does not report it.
    pub lag_seconds: Option<f64>,
}

impl MetricsSnapshot {
    /// The `/v1/stats` body: the flat counters it always had (same names and meaning), plus
    /// the newer flat counters. Per-topic detail is in `/metrics` and [`MetricsSnapshot`].
    pub fn stats_json(&self) -> Value {
        let s = &self.server;
        let t = &self.transport;
        let mut v = json!({
            "sessions": s.sessions,
            "sessionsOpened": s.sessions_opened,
            "slowClientDisconnects": s.slow_client_disconnects,
            "protocolErrors": s.protocol_errors,
            "slowRequests": s.slow_requests,
            "connectionsRefused": s.connections_refused,
            "rateLimitedEvents": s.rate_limited_events,
            "namespaces": s.namespaces,
            "namespacesRefused": s.namespaces_refused,
            "joinsRefused": s.joins_refused,
            "recoveryRecovered": s.recovery_recovered,
            "recoveryExpired": s.recovery_expired,
            "recoveryUnknown": s.recovery_unknown,
            "connections": t.connections,
            "sessionsPolling": t.sessions_polling,
            "sessionsWebsocket": t.sessions_websocket,
            "packetsIn": t.packets_in,
            "bytesIn": t.bytes_in,
            "packetsOut": t.packets_out,
            "bytesOut": t.bytes_out,
            "broadcasts": self.broadcasts,
            "broadcastDeliveries": self.broadcast_deliveries,
        });
        if let Some(n) = self.cluster.as_ref().and_then(|c| c.node_messages) {
            v["nodeMessagesApplied"] = json!(n.applied);
            v["nodeMessagesRefused"] = json!(n.refused);
        }
        if let Some(q) = &self.queues {
            let more = json!({
                "rateLimitedPublishes": q.rate_limited_publishes,
                "subscriptionsRefused": q.subscriptions_refused,
                "queueFullPublishes": q.queue_full_publishes,
                "storeFullPublishes": q.store_full_publishes,
                "overflowDropped": q.overflow_dropped,
                "topicsRefused": q.topics_refused,
                "deliveriesDeferred": q.deliveries_deferred,
                "storeClaims": q.store_claims,
                "published": q.totals.published,
                "delivered": q.totals.delivered,
                "acked": q.totals.acked,
                "requeued": q.totals.requeued,
                "deadLettered": q.totals.dead_lettered,
                "storeErrors": q.store.errors,
            });
            if let (Value::Object(v), Value::Object(more)) = (&mut v, more) {
                v.extend(more);
            }
        }
        v
    }

    /// The snapshot in the Prometheus text exposition format (version 0.0.4), the body of
    /// `GET /metrics` (content type [`PROMETHEUS_CONTENT_TYPE`]).
    pub fn encode_prometheus(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// The content type of [`MetricsSnapshot::encode_prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes one metric family at a time.
struct Families<'e, 'w> {
    encoder: &'e mut DescriptorEncoder<'w>,
}

impl Families<'_, '_> {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> std::fmt::Result {
        let c = ConstCounter::new(value);
        let m = self
            .encoder
            .encode_descriptor(name, help, None, c.metric_type())?;
        c.encode(m)
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) -> std::fmt::Result {
        let g = ConstGauge::new(value);
        let m = self
            .encoder
            .encode_descriptor(name, help, None, g.metric_type())?;
        g.encode(m)
    }

    fn labelled(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        series: &[(Labels<'_>, f64)],
    ) -> std::fmt::Result {
        let mut m = self.encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, value) in series {
            let family = m.encode_family(labels)?;
            match kind {
                MetricType::Counter => ConstCounter::new(*value as u64).encode(family)?,
                _ => ConstGauge::new(*value).encode(family)?,
            }
        }
        Ok(())
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        series: &[(Labels<'_>, &HistogramSnapshot)],
    ) -> std::fmt::Result {
        let mut m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in series {
            let mut family = m.encode_family(labels)?;
            family.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum_seconds,
                h.count,
                &h.per_bucket(),
                None,
            )?;
        }
        Ok(())
    }
}

impl Collector for MetricsSnapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut f = Families {
            encoder: &mut encoder,
        };
        let s = &self.server;
        let t = &self.transport;
        f.gauge(
            "tidings_up",
            "1 when the store (and Redis, in a cluster) answer, as GET /readyz; 0 otherwise",
            if self.unready.is_none() { 1.0 } else { 0.0 },
        )?;
        f.gauge(
            "tidings_connections",
            "Open TCP connections (HTTP requests, long-polls and WebSockets)",
            t.connections as f64,
        )?;
        f.labelled(
            "tidings_sessions",
            "Open Engine.IO sessions, by the transport that carries them",
            MetricType::Gauge,
            &[
                (vec![("transport", "polling")], t.sessions_polling as f64),
                (
                    vec![("transport", "websocket")],
                    t.sessions_websocket as f64,
                ),
            ],
        )?;
        f.counter(
            "tidings_sessions_opened",
            "Engine.IO sessions opened",
            s.sessions_opened,
        )?;
        let closed: Vec<_> = t
            .closed
            .iter()
            .map(|(reason, n)| (vec![("reason", *reason)], *n as f64))
            .collect();
        f.labelled(
            "tidings_sessions_closed",
            "Engine.IO sessions closed, by reason",
            MetricType::Counter,
            &closed,
        )?;
        f.counter(
            "tidings_slow_client_disconnects",
            "Sessions closed because the client read too slowly (outbound buffer full)",
            s.slow_client_disconnects,
        )?;
        f.counter(
            "tidings_protocol_errors",
            "Sessions closed for malformed or oversized input",
            s.protocol_errors,
        )?;
        f.labelled(
            "tidings_packets",
            "Engine.IO packets, by direction",
            MetricType::Counter,
            &[
                (vec![("direction", "in")], t.packets_in as f64),
                (vec![("direction", "out")], t.packets_out as f64),
            ],
        )?;
        f.labelled(
            "tidings_bytes",
            "Payload bytes of Engine.IO packets, by direction",
            MetricType::Counter,
            &[
                (vec![("direction", "in")], t.bytes_in as f64),
                (vec![("direction", "out")], t.bytes_out as f64),
            ],
        )?;
        f.counter(
            "tidings_broadcasts",
            "Broadcasts delivered on this node",
            self.broadcasts,
        )?;
        f.counter(
            "tidings_broadcast_deliveries",
            "Sockets that broadcasts were queued for",
            self.broadcast_deliveries,
        )?;
        f.gauge("tidings_namespaces", "Namespaces", s.namespaces as f64)?;
        let mut refused = vec![
            (vec![("what", "connection")], s.connections_refused as f64),
            (vec![("what", "event")], s.rate_limited_events as f64),
            (vec![("what", "namespace")], s.namespaces_refused as f64),
            (vec![("what", "join")], s.joins_refused as f64),
            (vec![("what", "slow_request")], s.slow_requests as f64),
        ];
        if let Some(q) = &self.queues {
            refused.extend([
                (
                    vec![("what", "publish_rate")],
                    q.rate_limited_publishes as f64,
                ),
                (
                    vec![("what", "subscription")],
                    q.subscriptions_refused as f64,
                ),
                (vec![("what", "queue_full")], q.queue_full_publishes as f64),
                (vec![("what", "store_full")], q.store_full_publishes as f64),
                (vec![("what", "topic")], q.topics_refused as f64),
                (
                    vec![("what", "delivery_deferred")],
                    q.deliveries_deferred as f64,
                ),
            ]);
        }
        f.labelled(
            "tidings_refused",
            "Things refused by a limit, by what (connection, event, namespace, join, slow_request, publish_rate, subscription, queue_full, topic, delivery_deferred)",
            MetricType::Counter,
            &refused,
        )?;
        if let Some(q) = &self.queues {
            encode_queues(&mut f, q)?;
        }
        if let Some(c) = &self.cluster {
            encode_backend(&mut f, "cluster", c)?;
        }
        let recovery: Vec<_> = self
            .recovery
            .iter()
            .map(|(outcome, n)| (vec![("outcome", *outcome)], *n as f64))
            .collect();
        f.labelled(
            "tidings_recovery",
            "Connection State Recovery attempts, by outcome",
            MetricType::Counter,
            &recovery,
        )?;
        Ok(())
    }
}

fn encode_queues(f: &mut Families<'_, '_>, q: &QueueMetrics) -> std::fmt::Result {
    let totals = [
        (
            "tidings_durable_published",
            "Messages published through this node",
            q.totals.published,
        ),
        (
            "tidings_durable_delivered",
            "Durable deliveries sent to consumers (redeliveries included)",
            q.totals.delivered,
        ),
        (
            "tidings_durable_acked",
            "Durable deliveries acknowledged",
            q.totals.acked,
        ),
        (
            "tidings_durable_requeued",
            "Durable deliveries to be redelivered (requeue, ack timeout, disconnect)",
            q.totals.requeued,
        ),
        (
            "tidings_durable_dead_lettered",
            "Entries moved to the dead letters",
            q.totals.dead_lettered,
        ),
        (
            "tidings_durable_overflow_dropped",
            "Entries dropped as gaps by drop-oldest queue depth limits",
            q.overflow_dropped,
        ),
        (
            "tidings_store_claims",
            "Store claim operations of the dispatchers",
            q.store_claims,
        ),
    ];
    for (name, help, v) in totals {
        f.counter(name, help, v)?;
    }
    f.histogram(
        "tidings_publish_confirm_seconds",
        "Time from a publish's arrival to its confirmation (stored and durable)",
        &[(vec![], &q.publish_seconds)],
    )?;
    encode_backend(f, "store", &q.store)?;

    type Pick = fn(&TopicMetrics) -> f64;
    let per_topic: [(&str, &str, MetricType, Pick); 11] = [
        (
            "tidings_topic_published",
            "Messages published through this node, per selected topic",
            MetricType::Counter,
            |t| t.counts.published as f64,
        ),
        (
            "tidings_topic_delivered",
            "Deliveries sent, per selected topic",
            MetricType::Counter,
            |t| t.counts.delivered as f64,
        ),
        (
            "tidings_topic_acked",
            "Deliveries acknowledged, per selected topic",
            MetricType::Counter,
            |t| t.counts.acked as f64,
        ),
        (
            "tidings_topic_requeued",
            "Deliveries to be redelivered, per selected topic",
            MetricType::Counter,
            |t| t.counts.requeued as f64,
        ),
        (
            "tidings_topic_dead_lettered",
            "Entries dead-lettered, per selected topic",
            MetricType::Counter,
            |t| t.counts.dead_lettered as f64,
        ),
        (
            "tidings_topic_retained",
            "Retained messages, per selected topic",
            MetricType::Gauge,
            |t| t.retained as f64,
        ),
        (
            "tidings_topic_pending",
            "Unsettled entries of all subscriptions, per selected topic",
            MetricType::Gauge,
            |t| t.pending as f64,
        ),
        (
            "tidings_topic_in_flight",
            "Entries in flight of all subscriptions, per selected topic",
            MetricType::Gauge,
            |t| t.in_flight as f64,
        ),
        (
            "tidings_topic_dead",
            "Dead letters of all subscriptions, per selected topic",
            MetricType::Gauge,
            |t| t.dead as f64,
        ),
        (
            "tidings_topic_gaps",
            "Unsettled entries lost to retention or drop-oldest (store total), per selected topic",
            MetricType::Gauge,
            |t| t.gaps as f64,
        ),
        (
            "tidings_topic_lag_seconds",
            "Largest consumer lag (age of the oldest unsettled entry) of the topic's subscriptions",
            MetricType::Gauge,
            |t| t.max_lag_seconds.unwrap_or(f64::NAN),
        ),
    ];
    for (name, help, kind, pick) in per_topic {
        let series: Vec<_> = q
            .topics
            .iter()
            .filter(|t| kind != MetricType::Gauge || !pick(t).is_nan())
            .map(|t| (vec![("topic", t.topic.as_str())], pick(t)))
            .collect();
        f.labelled(name, help, kind, &series)?;
    }
    type PickSub = fn(&SubscriptionMetrics) -> Option<f64>;
    let per_sub: [(&str, &str, PickSub); 5] = [
        (
            "tidings_subscription_pending",
            "Unsettled entries of a subscription (in flight, waiting, never delivered)",
            |s| Some(s.pending as f64),
        ),
        (
            "tidings_subscription_in_flight",
            "Entries of a subscription handed out and not settled",
            |s| Some(s.in_flight as f64),
        ),
        (
            "tidings_subscription_dead",
            "Dead letters of a subscription",
            |s| Some(s.dead as f64),
        ),
        (
            "tidings_subscription_gaps",
            "Unsettled entries of a subscription lost to retention or drop-oldest",
            |s| Some(s.gaps as f64),
        ),
        (
            "tidings_subscription_lag_seconds",
            "Consumer lag: age of the subscription's oldest unsettled entry (0 when none)",
            |s| s.lag_seconds,
        ),
    ];
    for (name, help, pick) in per_sub {
        let series: Vec<_> = q
            .topics
            .iter()
            .flat_map(|t| {
                t.subscriptions.iter().filter_map(move |s| {
                    let labels = vec![
                        ("topic", t.topic.as_str()),
                        ("subscription", s.subscription.as_str()),
                    ];
                    pick(s).map(|v| (labels, v))
                })
            })
            .collect();
        f.labelled(name, help, MetricType::Gauge, &series)?;
    }
    Ok(())
}

/// A backend's measurements as `tidings_<what>_…` families.
fn encode_backend(f: &mut Families<'_, '_>, what: &str, m: &BackendMetrics) -> std::fmt::Result {
    f.counter(
        &format!("tidings_{what}_errors"),
        &format!("Operations of the {what} backend that failed (I/O, connection, refusal)"),
        m.errors,
    )?;
    let histograms = [
        (
            "commit_seconds",
            "Time of a batch's journal write and fsync (group commit)",
            &m.commit_seconds,
        ),
        ("fsync_seconds", "Time of one fsync", &m.fsync_seconds),
        (
            "round_trip_seconds",
            "Round trips to Redis (request to reply)",
            &m.round_trip_seconds,
        ),
    ];
    for (name, help, h) in histograms {
        if let Some(h) = h {
            f.histogram(&format!("tidings_{what}_{name}"), help, &[(vec![], h)])?;
        }
    }
    if let Some(n) = &m.node_messages {
        f.labelled(
            &format!("tidings_{what}_node_messages"),
            "Messages of the Node Socket.IO adapter and emitter channels, applied or refused (malformed, too large)",
            MetricType::Counter,
            &[
                (vec![("outcome", "applied")], n.applied as f64),
                (vec![("outcome", "refused")], n.refused as f64),
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_the_first_time_then_once_per_thousand() {
        let c = Counter::default();
        let warned: Vec<u64> = (0..2500)
            .filter_map(|_| match c.incr() {
                (n, true) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(warned, [1, 1000, 2000]);
        assert_eq!(c.get(), 2500);
        // A large addition that crosses a multiple warns once.
        assert_eq!(c.add(600), (3100, true));
        assert_eq!(c.add(10), (3110, false));
    }

    #[test]
    fn a_snapshot_renders_as_prometheus_text() {
        let h = tidings_core::metrics::Histogram::default();
        h.observe(std::time::Duration::from_millis(2));
        let snapshot = MetricsSnapshot {
            transport: TransportMetrics {
                sessions_websocket: 3,
                closed: vec![("slow client", 2)],
                ..TransportMetrics::default()
            },
            queues: Some(QueueMetrics {
                publish_seconds: h.snapshot(),
                topics: vec![TopicMetrics {
                    topic: "orders".into(),
                    counts: TopicCounts {
                        published: 5,
                        ..TopicCounts::default()
                    },
                    retained: 5,
                    pending: 4,
                    in_flight: 1,
                    dead: 0,
                    gaps: 0,
                    max_lag_seconds: None,
                    subscriptions: vec![SubscriptionMetrics {
                        subscription: "id:a\"b".into(),
                        pending: 4,
                        in_flight: 1,
                        dead: 0,
                        gaps: 0,
                        lag_seconds: Some(1.5),
                    }],
                }],
                ..QueueMetrics::default()
            }),
            ..MetricsSnapshot::default()
        };
        let text = snapshot.encode_prometheus();
        for line in [
            "# TYPE tidings_sessions gauge",
            "tidings_sessions{transport=\"websocket\"} 3.0",
            "tidings_sessions_closed_total{reason=\"slow client\"} 2",
            "tidings_topic_published_total{topic=\"orders\"} 5",
            "tidings_subscription_lag_seconds{topic=\"orders\",subscription=\"id:a\\\"b\"} 1.5",
            "tidings_publish_confirm_seconds_bucket{le=\"0.0025\"} 1",
            "tidings_publish_confirm_seconds_count 1",
            "tidings_up 1.0",
            "tidings_publish_confirm_seconds_bucket{le=\"+Inf\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // No lag reported for the topic: no series rather than NaN.
        assert!(!text.contains("tidings_topic_lag_seconds{"), "{text}");
    }
}
