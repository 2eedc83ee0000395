//! A fault-injecting [`Store`]: wraps a real backend and, while a [`Fault`] is switched on,
//! makes its operations fail the way a broken disk or a lost connection does.
//!
//! It is how the server's fault handling is tested against a real store (SQLite on a real file)
//! without breaking a real disk: publishes must be refused with `store_unavailable` and never
//! confirmed unless stored, volatile traffic must keep flowing, and everything must work again
//! once the fault is switched off.
//!
//! Use it as `Arc::new(FaultyStore::new(backend))`; `crates/tidings-client/tests/store_faults.rs`
//! drives the real server through it. With [`Fault::None`] it is transparent: the memory
//! store's `tests/faulty_conformance.rs` runs the whole conformance suite through it.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, DeadLetter, Gap, MessageId, Millis,
    NewMessage, Offset, QueueBound, Retention, StartFrom, Store, StoreError, StoreFuture,
    StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};

/// The fault a [`FaultyStore`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// No fault: every operation reaches the backend and returns its answer.
    None,
    /// Every operation fails with [`StoreError::Unavailable`] before it reaches the backend
    /// (disk full, I/O error on open, connection refused): nothing is changed.
    Unavailable,
    /// Every operation reaches the backend and takes effect, but the caller gets
    /// [`StoreError::Unavailable`] instead of the answer (the commit happened, the reply was
    /// lost: a connection dropped after the write, an fsync whose error is reported late). A
    /// publish in this state is stored but must not be *confirmed*.
    LostAnswer,
}

impl Fault {
    fn to_u8(self) -> u8 {
        match self {
            Fault::None => 0,
            Fault::Unavailable => 1,
            Fault::LostAnswer => 2,
        }
    }

    fn from_u8(v: u8) -> Fault {
        match v {
            1 => Fault::Unavailable,
            2 => Fault::LostAnswer,
            _ => Fault::None,
        }
    }
}

/// A [`Store`] that delegates to `S` and injects the current [`Fault`] into every operation.
/// Share it as `Arc<FaultyStore<S>>`: one clone goes to the server (as `Arc<dyn Store>`), the
/// test keeps the other to switch faults.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    fault: AtomicU8,
    injected: AtomicU64,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`, with no fault.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            fault: AtomicU8::new(Fault::None.to_u8()),
            injected: AtomicU64::new(0),
        }
    }

    /// Switches the injected fault (takes effect for operations that start after the call).
    pub fn set_fault(&self, fault: Fault) {
        self.fault.store(fault.to_u8(), Ordering::SeqCst);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        Fault::from_u8(self.fault.load(Ordering::SeqCst))
    }

    /// How many operations failed because of an injected fault so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The wrapped backend (to inspect what really was stored).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn injected_error(&self, what: &str) -> StoreError {
        self.injected.fetch_add(1, Ordering::SeqCst);
        StoreError::Unavailable(format!("injected fault during {what}"))
    }

    /// Runs `op` on the backend under the current fault.
    async fn run<'a, T: Send + 'a>(
        &'a self,
        what: &'static str,
        op: StoreFuture<'a, T>,
    ) -> Result<T, StoreError> {
        match self.fault() {
            Fault::None => op.await,
            Fault::Unavailable => {
                drop(op);
                Err(self.injected_error(what))
            }
            Fault::LostAnswer => {
                let _answer = op.await;
                Err(self.injected_error(what))
            }
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn append<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Appended> {
        Box::pin(self.run("append", self.inner.append(topic, msg, dedup_window)))
    }

    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend> {
        Box::pin(self.run(
            "append_bounded",
            self.inner.append_bounded(topic, msg, dedup_window, bound),
        ))
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    ) -> StoreFuture<'a, SubscriptionInfo> {
        Box::pin(self.run("subscribe", self.inner.subscribe(topic, sub, from)))
    }

    fn unsubscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.run("unsubscribe", self.inner.unsubscribe(topic, sub)))
    }

    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>> {
        Box::pin(self.run("subscriptions", self.inner.subscriptions()))
    }

    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.run(
            "set_member",
            self.inner.set_member(topic, group, identity, member),
        ))
    }

    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>> {
        Box::pin(self.run("members", self.inner.members()))
    }

    fn claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    ) -> StoreFuture<'a, ClaimResult> {
        Box::pin(self.run("claim", self.inner.claim(topic, sub, opts)))
    }

    fn ack<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.run("ack", self.inner.ack(topic, sub, offset)))
    }

    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.run(
            "requeue",
            self.inner.requeue(topic, sub, offset, not_before),
        ))
    }

    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64> {
        Box::pin(self.run("release_in_flight", self.inner.release_in_flight(now)))
    }

    fn dead_letters<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Vec<DeadLetter>> {
        Box::pin(self.run("dead_letters", self.inner.dead_letters(topic)))
    }

    fn requeue_dead<'a>(
        &'a self,
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.run("requeue_dead", self.inner.requeue_dead(topic, id, now)))
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        from: Offset,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        Box::pin(self.run("history", self.inner.history(topic, from, limit)))
    }

    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>> {
        Box::pin(self.run("topic_info", self.inner.topic_info(topic)))
    }

    fn topics(&self) -> StoreFuture<'_, Vec<Topic>> {
        Box::pin(self.run("topics", self.inner.topics()))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.run("ping", self.inner.ping()))
    }

    fn oldest_unsettled<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> StoreFuture<'a, Option<Vec<(SubscriptionName, Millis)>>> {
        Box::pin(self.run("oldest_unsettled", self.inner.oldest_unsettled(topic)))
    }

    fn metrics(&self) -> tidings_core::metrics::BackendMetrics {
        let mut m = self.inner.metrics();
        m.errors += self.injected();
        m
    }

    fn enforce_retention<'a>(
        &'a self,
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Vec<Gap>> {
        Box::pin(
            self.run(
                "enforce_retention",
                self.inner
                    .enforce_retention(topic, retention, now, dedup_window),
            ),
        )
    }
}
