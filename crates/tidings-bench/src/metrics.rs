//! What a scenario step measures, and the latency histograms behind it.

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::server::Peer;

/// One measured step of one scenario against one peer in one repetition.
#[derive(Debug, Clone)]
pub struct Record {
    /// Scenario id (`fanout`, `rooms`, `idle`, `publish`, `fanout-durable`, `drain`).
    pub scenario: &'static str,
    /// The step within the scenario (a rate, a connection count, a concurrency).
    pub step: String,
    /// Sort key of the step, so tables list steps in the order they were run.
    pub order: u64,
    /// Which system.
    pub peer: Peer,
    /// Named figures (see [`crate::report`] for the names).
    pub values: BTreeMap<&'static str, f64>,
    /// The repetition (0-based), set by the orchestrator.
    pub rep: usize,
}

impl Record {
    /// An empty record.
    pub fn new(scenario: &'static str, step: String, order: u64, peer: Peer) -> Record {
        Record {
            scenario,
            step,
            order,
            peer,
            values: BTreeMap::new(),
            rep: 0,
        }
    }

    /// Sets a figure.
    pub fn set(&mut self, name: &'static str, value: f64) -> &mut Self {
        self.values.insert(name, value);
        self
    }

    /// Sets p50/p99/p99.9 (milliseconds) from a histogram of microseconds, when it has samples.
    pub fn set_latency(&mut self, hist: &Histogram<u64>) -> &mut Self {
        if !hist.is_empty() {
            self.set("p50_ms", hist.value_at_quantile(0.50) as f64 / 1000.0);
            self.set("p99_ms", hist.value_at_quantile(0.99) as f64 / 1000.0);
            self.set("p999_ms", hist.value_at_quantile(0.999) as f64 / 1000.0);
        }
        self
    }
}

/// A new histogram of microseconds, 1 µs to 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; an error here is a programming error.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Latency histograms shared by many receiver tasks: a few shards, so that tasks on the two
/// runtime threads rarely wait on one another's lock.
pub struct Shards {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Shards {
    /// `n` empty shards.
    pub fn new(n: usize) -> Shards {
        Shards {
            shards: (0..n.max(1)).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    /// Records one latency in microseconds into shard `key % n`.
    pub fn record(&self, key: usize, micros: u64) {
        let mut h = self.shards[key % self.shards.len()].lock();
        h.saturating_record(micros.max(1));
    }

    /// Merges every shard into one histogram and empties them.
    pub fn take(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let mut h = shard.lock();
            let _ = all.add(&*h);
            h.reset();
        }
        all
    }
}

/// Microseconds since a fixed epoch: every timestamp a payload carries is read from here, in
/// the one process that both sends and receives it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// The median of some figures (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn shards_merge_and_reset() {
        let shards = Shards::new(4);
        for i in 0..100 {
            shards.record(i, 1000);
        }
        let h = shards.take();
        assert_eq!(h.len(), 100);
        assert!(shards.take().is_empty());
    }
}
