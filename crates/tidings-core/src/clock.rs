//! The one clock helper of tidings: wall-clock milliseconds for everything that is stored or
//! sent between nodes (publish times, deadlines, offsets), and whole milliseconds of a
//! [`Duration`] for arithmetic on them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit of every stored time.
pub type Millis = u64;

/// The largest value [`millis`] returns: far enough away for any deadline, and small enough
/// that adding one such value to a current time cannot overflow `u64`.
pub const MAX_MILLIS: Millis = u64::MAX / 2;

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// `d` in whole milliseconds, saturating at [`MAX_MILLIS`], so that `now + millis(d)` never
/// overflows.
pub fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).map_or(MAX_MILLIS, |ms| ms.min(MAX_MILLIS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_so_that_a_sum_cannot_overflow() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), MAX_MILLIS);
        assert!(now_millis().checked_add(millis(Duration::MAX)).is_some());
        // 2020-01-01 in ms: the clock of any machine running this is past it.
        assert!(now_millis() > 1_577_836_800_000);
    }
}
