//! Settings of the delivery engine: [`QueueConfig`] with its documented defaults, and the
//! per-topic-pattern rules for retention and queue depth.

use std::time::Duration;

use tidings_core::store::{Overflow, QueueBound, Retention, Topic};
use tidings_core::topic_matches;

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
    /// Default 1,000 (each publish is a durable write: one identity may take about 1/40 of
    /// what the SQLite store confirms per second on the benchmark machine).
    pub max_publishes_per_second: Option<u32>,
    /// Subscriptions (own queues and group memberships) per identity; one more is refused
    /// with `limit_exceeded`. Default 10,000.
    pub max_subscriptions_per_identity: Option<usize>,
    /// The most entries a subscription's queue may hold — pending (in flight or waiting) plus
    /// not yet delivered, the `pending` of the topic info — checked atomically with each
    /// publish by the store ([`Store::append_bounded`](tidings_core::store::Store::append_bounded)).
    /// Default None: no check at publish time. A queue is still bounded by default, by its
    /// topic's retention (10 million messages, 10 GiB, 7 days): trimmed entries become gaps.
    /// The check costs a look at every subscription of the topic per publish — measured 3.5×
    /// fewer confirmed publishes with 100 subscriptions (BENCHMARKS.md) — so it is not a
    /// default.
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
    /// `limit_exceeded`. Topics are never deleted, so this bounds them for good. Default
    /// 100,000 (each topic keeps at least a row and its retention's messages).
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
            max_publishes_per_second: Some(1_000),
            max_subscriptions_per_identity: Some(10_000),
            max_queue_depth: None,
            overflow: Overflow::Reject,
            queue_depth_rules: Vec::new(),
            max_topics: Some(100_000),
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

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.requeue_backoff
            .saturating_mul(factor)
            .min(self.requeue_backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_bounds_per_pattern() {
        let topic = |name| Topic::new(name).unwrap();
        let mut c = QueueConfig::default();
        assert_eq!(
            c.queue_bound_for(&topic("a")),
            None,
            "no check by default (retention bounds it)"
        );
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
}
