//! An in-memory [`Store`]: every topic, queue and dead letter lives in the process and is gone
//! when it exits.
//!
//! It is the reference behaviour of the store seam (the conformance suite in
//! `tidings-store-tests` was written against it), the backend of `tidings serve --store memory`
//! and the store of tests that do not care about durability.
//!
//! ```
//! use tidings_core::store::{NewMessage, Store, Topic};
//! use tidings_store_memory::MemoryStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let topic = Topic::new("pickup")?;
//! let msg = NewMessage { event: "ready".into(), data: "{}".into(), attachments: vec![], key: None, published_at: 0 };
//! let appended = store.append(&topic, msg, 60_000).await?;
//! assert_eq!(appended.offset, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics the trait leaves open
//!
//! The backends agree on these, and the conformance suite checks them:
//! - an idempotency key is a duplicate while `published_at - seen_at <= dedup_window`, and
//!   retention forgets it once `now - seen_at > dedup_window`;
//! - `StartFrom::Offset(o)` starts at `max(o, first)`; `o > head + 1` is
//!   [`StoreError::Invalid`];
//! - an in-flight entry is due again when `now >= deadline`, a waiting one when
//!   `now >= not_before`;
//! - entries moved to the dead letters by a claim do not count against `max`; with
//!   `max_deliveries == 0` new messages go to the dead letters without being handed out;
//! - retention trims from the oldest message: it removes the first retained message while it is
//!   too old or the topic holds too many messages or bytes, and stops at the first message that
//!   may stay (so retained offsets are always `first..=head`, without holes);
//! - [`Store::requeue_dead`] requeues the message for every subscription that dead-lettered it;
//! - with a retained-data budget ([`MemoryStore::max_retained_bytes`]), an append that would
//!   take [`Machine::footprint`] over it stores nothing and is [`StoreError::Full`] (a
//!   duplicate within the dedup window is still answered as one);
//! - lists come sorted: topics by name, subscriptions by (topic, name), dead letters by
//!   (`dead_at`, offset, subscription), gaps by (subscription, offset).
#![forbid(unsafe_code)]

pub mod codec;
mod machine;
mod ring;
mod snapshot;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, DeadLetter, Gap, MessageId, Millis,
    NewMessage, Offset, QueueBound, Retention, Settle, StartFrom, Store, StoreError, StoreFuture,
    StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};

pub use crate::machine::{ATTACHMENT_OVERHEAD, MESSAGE_OVERHEAD, Machine, footprint};
pub use crate::snapshot::{Capture, SnapshotError, SnapshotFormat};

/// The in-memory store. A cheap-clone handle: clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<Machine>>,
    max_retained_bytes: Option<u64>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Bounds what the retained messages and dead letters may hold, counted as
    /// [`Machine::footprint`] counts them (payload + event name + [`MESSAGE_OVERHEAD`] each):
    /// an append past it is [`StoreError::Full`]. `None` (the default): no bound.
    #[must_use]
    pub fn max_retained_bytes(mut self, max: Option<u64>) -> Self {
        self.max_retained_bytes = max;
        self
    }

    /// What the retained messages and dead letters count now (see
    /// [`MemoryStore::max_retained_bytes`]).
    pub fn footprint(&self) -> u64 {
        self.with(|s| Ok(s.footprint())).unwrap_or(0)
    }

    /// Runs `f` on the state under the lock. A poisoned lock (a panic while it was held, which
    /// may have left the state half-changed) makes the store unavailable for good.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Machine) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard: MutexGuard<'_, Machine> = self.state.lock().map_err(|_| {
            StoreError::Unavailable("memory store lock poisoned by a panic".to_owned())
        })?;
        f(&mut guard)
    }

    fn ready<'a, T: Send + 'a>(
        &self,
        f: impl FnOnce(&mut Machine) -> Result<T, StoreError>,
    ) -> StoreFuture<'a, T> {
        let result = self.with(f);
        Box::pin(std::future::ready(result))
    }
}

// Every method does its work when called and returns a ready future: the lock is never held
// across an await.
impl Store for MemoryStore {
    fn append<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Appended> {
        let budget = self.max_retained_bytes;
        self.ready(|s| {
            s.admits(topic, &msg, dedup_window, budget)?;
            Ok(s.append(topic, MessageId::new(), msg, dedup_window))
        })
    }

    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend> {
        let budget = self.max_retained_bytes;
        self.ready(|s| {
            s.admits(topic, &msg, dedup_window, budget)?;
            Ok(s.append_bounded(topic, MessageId::new(), msg, dedup_window, bound))
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    ) -> StoreFuture<'a, SubscriptionInfo> {
        self.ready(|s| s.subscribe(topic, sub, from))
    }

    fn unsubscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    ) -> StoreFuture<'a, bool> {
        self.ready(|s| Ok(s.unsubscribe(topic, sub)))
    }

    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>> {
        self.ready(|s| Ok(s.subscriptions()))
    }

    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()> {
        self.ready(|s| s.set_member(topic, group, identity, member))
    }

    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>> {
        self.ready(|s| Ok(s.members()))
    }

    fn claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    ) -> StoreFuture<'a, ClaimResult> {
        self.ready(|s| s.claim(topic, sub, opts))
    }

    fn ack<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    ) -> StoreFuture<'a, bool> {
        self.ready(|s| s.ack(topic, sub, offset))
    }

    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool> {
        self.ready(|s| s.requeue(topic, sub, offset, not_before))
    }

    fn settle<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
    ) -> StoreFuture<'a, Vec<bool>> {
        self.ready(|s| s.settle(topic, sub, batch))
    }

    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64> {
        self.ready(|s| Ok(s.release_in_flight(now)))
    }

    fn dead_letters<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Vec<DeadLetter>> {
        self.ready(|s| s.dead_letters(topic))
    }

    fn requeue_dead<'a>(
        &'a self,
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    ) -> StoreFuture<'a, bool> {
        self.ready(|s| s.requeue_dead(topic, id, now))
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        from: Offset,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        self.ready(|s| Ok(s.history(topic, from, limit)))
    }

    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>> {
        self.ready(|s| Ok(s.topic_info(topic)))
    }

    fn topics(&self) -> StoreFuture<'_, Vec<Topic>> {
        self.ready(|s| Ok(s.topics()))
    }

    fn oldest_unsettled<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> StoreFuture<'a, Option<Vec<(SubscriptionName, Millis)>>> {
        self.ready(|s| Ok(Some(s.oldest_unsettled(topic))))
    }

    fn enforce_retention<'a>(
        &'a self,
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Vec<Gap>> {
        self.ready(|s| s.enforce_retention(topic, retention, now, dedup_window))
    }
}
