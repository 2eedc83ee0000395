//! The server's counters. Each refusal or loss is counted in full and logged at `warn` only now
//! and then, so that a flood is visible in the counts without flooding the log.

use std::sync::atomic::{AtomicU64, Ordering};

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
}
