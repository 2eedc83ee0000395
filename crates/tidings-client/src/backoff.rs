//! Reconnect delays: exponential from a minimum to a maximum, randomized so that clients that
//! lost a server together do not all come back in the same instant.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    /// 0..=1: each delay is picked uniformly within ±`jitter` of its nominal value.
    pub(crate) jitter: f64,
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (0 for the first), given `random` drawn
    /// uniformly from `0.0..1.0`.
    ///
    /// The nominal delay is `min * 2^attempt`, capped at `max`; the jittered delay stays within
    /// `nominal * (1 ± jitter)` and never exceeds `max`.
    pub(crate) fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        let min = self.min.as_secs_f64();
        let max = self.max.as_secs_f64();
        let nominal = (min * 2f64.powi(attempt.min(64) as i32)).min(max);
        let factor = 1.0 + self.jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((nominal * factor).clamp(0.0, max))
    }

    /// [`Backoff::delay_with`] with a fresh random draw.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: f64) -> Backoff {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_maximum() {
        let b = backoff(0.0);
        let delays: Vec<u128> = (0..8).map(|n| b.delay_with(n, 0.9).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(b.delay_with(u32::MAX, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = backoff(0.5);
        assert_eq!(b.delay_with(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay_with(0, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay_with(1, 0.0), Duration::from_millis(100));
        // Jitter never pushes a delay past the maximum.
        assert_eq!(b.delay_with(10, 0.99), Duration::from_secs(2));
        for attempt in 0..10 {
            for _ in 0..100 {
                let nominal = b.delay_with(attempt, 0.5).as_secs_f64();
                let d = b.delay(attempt).as_secs_f64();
                assert!(d >= nominal * 0.5 - 1e-9 && d <= (nominal * 1.5).min(2.0) + 1e-9);
            }
        }
    }

    #[test]
    fn random_draws_differ() {
        let b = backoff(0.5);
        let draws: std::collections::HashSet<Duration> = (0..50).map(|_| b.delay(3)).collect();
        assert!(draws.len() > 1);
    }
}
