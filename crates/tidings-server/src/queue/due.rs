//! One timer for every queue: each dispatcher that has a redelivery coming (an entry requeued
//! with backoff, or in flight until its store deadline) has its earliest due time in one heap,
//! and one task sleeps until the earliest of them and wakes that dispatcher — as the engine's
//! heartbeat sweeper does for sessions. A dispatcher with nothing pending has no entry here:
//! while its subscribers idle it costs no store operation and no wake-up.
//!
//! Times are wall-clock milliseconds, the store's clock ([`tidings_core::clock`]). An entry
//! whose dispatcher was rescheduled earlier, woken for another reason, or stopped is skipped
//! when it comes due: only the time a dispatcher is scheduled for wakes it.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering as Atomic};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tidings_core::clock::{Millis, now_millis};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::dispatcher::Dispatcher;

/// No time scheduled.
pub(super) const UNSCHEDULED: Millis = Millis::MAX;

/// A dispatcher's scheduled time, kept by the dispatcher: the timer wakes it only at that time.
#[derive(Debug)]
pub(super) struct Scheduled(AtomicU64);

impl Default for Scheduled {
    fn default() -> Self {
        Scheduled(AtomicU64::new(UNSCHEDULED))
    }
}

struct Due {
    at: Millis,
    dispatcher: Weak<Dispatcher>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// The due times of every queue, earliest first, and the task that fires them.
#[derive(Default)]
pub(super) struct DueTimer {
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    /// Woken when an entry earlier than the one the task sleeps for is pushed.
    earlier: Notify,
}

impl DueTimer {
    /// Wakes `dispatcher` at `at` (None: never), in place of the time it was scheduled for:
    /// the store reports the queue's earliest due time with every claim, so the latest report
    /// is the truth and an earlier entry that no longer matches is skipped when it comes due.
    pub(super) fn reschedule(&self, dispatcher: &Arc<Dispatcher>, at: Option<Millis>) {
        let at = at.unwrap_or(UNSCHEDULED);
        let before = dispatcher.scheduled().0.swap(at, Atomic::AcqRel);
        if at == before || at == UNSCHEDULED {
            return;
        }
        let mut heap = self.heap.lock();
        let is_earliest = heap.peek().is_none_or(|Reverse(first)| at < first.at);
        heap.push(Reverse(Due {
            at,
            dispatcher: Arc::downgrade(dispatcher),
        }));
        drop(heap);
        if is_earliest {
            self.earlier.notify_one();
        }
    }

    /// Fires due entries until `stop`.
    pub(super) async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let sleep = self.fire_due(now_millis());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.earlier.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Wakes the dispatchers due by `now`; returns how long until the next entry (an hour when
    /// there is none: a push of an earlier one interrupts the sleep).
    fn fire_due(&self, now: Millis) -> Duration {
        let mut due = Vec::new();
        let next = {
            let mut heap = self.heap.lock();
            while heap.peek().is_some_and(|Reverse(first)| first.at <= now) {
                if let Some(Reverse(entry)) = heap.pop() {
                    due.push(entry);
                }
            }
            heap.peek().map(|Reverse(first)| first.at)
        };
        for entry in due {
            let Some(dispatcher) = entry.dispatcher.upgrade() else {
                continue;
            };
            // Only the time it is scheduled for wakes it; a stale entry is skipped.
            let scheduled = &dispatcher.scheduled().0;
            if scheduled
                .compare_exchange(entry.at, UNSCHEDULED, Atomic::AcqRel, Atomic::Acquire)
                .is_ok()
            {
                dispatcher.wake();
            }
        }
        next.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(at.saturating_sub(now).max(1))
        })
    }
}
