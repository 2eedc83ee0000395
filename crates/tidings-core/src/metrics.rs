//! Metric primitives that backends own and the server reads: a lock-free latency
//! [`Histogram`] and the [`BackendMetrics`] a store or cluster reports through its seam.
//!
//! The server's `metrics` module is the one place that reads every counter into one snapshot
//! and renders it (`/v1/stats`, `/metrics`); backends live below it (they depend on this crate
//! only), so the types they count with live here.
//!
//! Hot-path cost: [`Histogram::observe`] is three relaxed atomic additions and a short
//! linear scan of at most [`LATENCY_BUCKETS`]` .len()` bounds — no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (seconds) of the latency histograms: 50 µs to 10 s, roughly ×2.5 apart. An
/// fsync on an SSD takes 0.1–2 ms, a Redis round trip on a LAN 0.1–1 ms, a publish confirm
/// (append + group commit) 0.2–5 ms: each lands a few buckets above the first, and a stall
/// of seconds is still told apart from one of ten.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

const N: usize = LATENCY_BUCKETS.len();

/// A latency histogram over [`LATENCY_BUCKETS`] (plus `+Inf`), updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts; index `N` is above the last bound.
    buckets: [AtomicU64; N + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(N);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts so far. Read bucket by bucket without a lock, so a snapshot taken during
    /// observations may be off by those in progress (never inconsistent in a way that matters
    /// to a rate: every count only grows).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(N + 1);
        let mut total = 0u64;
        for b in &self.buckets {
            total += b.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        HistogramSnapshot {
            cumulative,
            count: total,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A [`Histogram`] read at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramSnapshot {
    /// Cumulative counts per bound of [`LATENCY_BUCKETS`], then `+Inf` (= `count`).
    pub cumulative: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Histogram::default().snapshot()
    }
}

impl HistogramSnapshot {
    /// `(upper bound, count in this bucket alone)` pairs, `+Inf` last: what an encoder that
    /// accumulates itself (prometheus-client's) takes.
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        let mut below = 0;
        self.buckets()
            .into_iter()
            .map(|(bound, cumulative)| {
                let n = cumulative - below;
                below = cumulative;
                (bound, n)
            })
            .collect()
    }

    /// `(upper bound, cumulative count)` pairs, `+Inf` last: the exposition format's buckets.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.cumulative.iter().copied())
            .collect()
    }
}

/// What a backend (a store, a cluster) reports about itself; every field is `None`/0 when the
/// backend does not measure it (the memory store has no commit to time).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BackendMetrics {
    /// Time from a batch's first waiting record to its durable answer (write + fsync): what a
    /// confirmed publish waits for in the store. Embedded stores.
    pub commit_seconds: Option<HistogramSnapshot>,
    /// Time of each fsync alone. Embedded stores.
    pub fsync_seconds: Option<HistogramSnapshot>,
    /// Round trips to a remote backend (a Redis command or script, request to reply).
    pub round_trip_seconds: Option<HistogramSnapshot>,
    /// Operations that failed in the backend (I/O errors, lost connections, refused
    /// commands) — not answers like "not found".
    pub errors: u64,
    /// Messages on the Node Socket.IO adapter's and emitter's channels (a Redis cluster that
    /// listens to them).
    pub node_messages: Option<NodeMessageCounts>,
}

/// What a cluster node did with the messages of Node's `@socket.io/redis-adapter` and
/// `@socket.io/redis-emitter`, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeMessageCounts {
    /// Applied to this node's clients (broadcasts, room operations, server-side events) or
    /// answered (requests).
    pub applied: u64,
    /// Refused: malformed, too large, or asking for what tidings cannot do.
    pub refused: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_cumulate() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(40)); // ≤ 50 µs
        h.observe(Duration::from_micros(50)); // ≤ 50 µs (bounds are inclusive)
        h.observe(Duration::from_millis(3)); // ≤ 5 ms
        h.observe(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        let buckets = s.buckets();
        assert_eq!(buckets.len(), N + 1);
        assert_eq!(buckets[0], (0.000_05, 2));
        assert_eq!(buckets[5], (0.002_5, 2));
        assert_eq!(buckets[6], (0.005, 3));
        assert_eq!(buckets[N - 1], (10.0, 3));
        assert_eq!(buckets[N].1, 4);
        assert!(buckets[N].0.is_infinite());
        assert!(
            (s.sum_seconds - 60.003_09).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
        let per: Vec<u64> = s.per_bucket().iter().map(|b| b.1).collect();
        assert_eq!(per.iter().sum::<u64>(), 4);
        assert_eq!((per[0], per[6], per[N]), (2, 1, 1));
    }
}
