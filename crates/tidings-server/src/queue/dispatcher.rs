//! One task per queue (a subscription): claims entries from the store and delivers them to
//! the queue's connected consumers, at most `max_in_flight` unacknowledged at a time.
//!
//! Event-driven, never polling: the task sleeps until a publish to its topic, a settled
//! delivery, a new consumer, or the earliest due redelivery of its queue — the time the store
//! reports with each claim (`ClaimResult::next_due`), kept in the one [`DueTimer`](super::due::DueTimer) of all
//! queues. A queue whose consumers are connected but have nothing to receive costs nothing.
//! An unacknowledged delivery is requeued by its own ack timer (`ack_timeout` after it was
//! sent) and the dispatcher woken at once.
//!
//! Answers are settled in batches: each delivery's task only records how it ended (ack, or
//! requeue with its backoff) and wakes the dispatcher, which applies every answer recorded
//! since its last turn together with its next claim, in one
//! [`Store::settle_and_claim`](tidings_core::store::Store::settle_and_claim). Under load a turn
//! settles dozens of deliveries and claims as many new ones: one journal record each by default,
//! one script call for both on Redis.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings_core::Sid;
use tidings_core::store::{
    ClaimOptions, Claimed, Offset, Settle, StoreError, SubscriptionName, Topic,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Queues;
use super::due::Scheduled;
use crate::io::{AckError, AckReply, Socket};
use crate::metrics::TopicCounters;
use tidings_core::clock::{millis, now_millis};

/// How long a dispatcher waits before retrying after a store error.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// The store's own deadline for a claimed entry: a backstop for deliveries whose waiting task
/// died with the process (those are released at the next start anyway). It must be later than
/// the dispatcher's own ack timeout — which starts only when the delivery is sent, after the
/// claim's commit — or the store would hand out an entry that is still awaited.
fn store_deadline(ack_timeout: Duration) -> u64 {
    millis(ack_timeout).saturating_mul(2).saturating_add(5_000)
}

pub(crate) struct Dispatcher {
    topic: Topic,
    sub: SubscriptionName,
    consumers: Mutex<Vec<Socket>>,
    next_consumer: AtomicUsize,
    in_flight: AtomicUsize,
    /// Offsets delivered and not settled yet. A claim that returns one of them again is not
    /// sent twice.
    awaiting: Mutex<HashSet<Offset>>,
    /// Answers received and not settled in the store yet (still counted in `in_flight`).
    answered: Mutex<Vec<Settle>>,
    wake: Notify,
    /// When the [`DueTimer`](super::due::DueTimer) will wake this dispatcher next.
    scheduled: Scheduled,
    stop: CancellationToken,
    /// The topic's counters (delivered, acked, requeued, dead-lettered), looked up once.
    counters: Arc<TopicCounters>,
}

impl Dispatcher {
    pub(crate) fn new(
        topic: Topic,
        sub: SubscriptionName,
        stop: CancellationToken,
        counters: Arc<TopicCounters>,
    ) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            counters,
            topic,
            sub,
            consumers: Mutex::new(Vec::new()),
            next_consumer: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            awaiting: Mutex::new(HashSet::new()),
            answered: Mutex::new(Vec::new()),
            wake: Notify::new(),
            scheduled: Scheduled::default(),
            stop,
        })
    }

    pub(crate) fn add_consumer(&self, socket: Socket) {
        let mut consumers = self.consumers.lock();
        if !consumers.iter().any(|s| s.id() == socket.id()) {
            consumers.push(socket);
        }
        drop(consumers);
        self.wake();
    }

    pub(crate) fn clear_consumers(&self) {
        self.consumers.lock().clear();
    }

    pub(crate) fn remove_consumer(&self, sid: Sid) {
        self.consumers.lock().retain(|s| s.id() != sid);
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    pub(super) fn scheduled(&self) -> &Scheduled {
        &self.scheduled
    }

    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// The next connected consumer, round-robin.
    fn pick_consumer(&self) -> Option<Socket> {
        let mut consumers = self.consumers.lock();
        consumers.retain(Socket::is_connected);
        if consumers.is_empty() {
            return None;
        }
        let i = self.next_consumer.fetch_add(1, Ordering::Relaxed) % consumers.len();
        Some(consumers[i].clone())
    }

    fn has_consumers(&self) -> bool {
        self.consumers.lock().iter().any(Socket::is_connected)
    }

    pub(crate) async fn run(self: Arc<Self>, queues: Arc<Queues>) {
        self.deliver_until_stopped(&queues).await;
        // Answers that came in meanwhile are settled, so a clean stop redelivers nothing that
        // was acknowledged.
        self.settle_answered(&queues).await;
    }

    /// Applies the answers recorded since the last turn with one store operation.
    async fn settle_answered(&self, queues: &Arc<Queues>) {
        let batch = std::mem::take(&mut *self.answered.lock());
        if batch.is_empty() {
            return;
        }
        let settled = queues.store().settle(&self.topic, &self.sub, &batch).await;
        self.count_settled(queues, &batch, settled);
    }

    /// The bookkeeping of a settled batch: counters, a wake-up for requeued entries, the
    /// in-flight count. On an error the entries stay in flight in the store and are
    /// redelivered after their deadline.
    fn count_settled(
        &self,
        queues: &Arc<Queues>,
        batch: &[Settle],
        settled: Result<Vec<bool>, StoreError>,
    ) {
        let acks = batch.iter().filter(|s| matches!(s, Settle::Ack(_))).count();
        TopicCounters::add(&self.counters.acked, acks);
        TopicCounters::add(&self.counters.requeued, batch.len() - acks);
        match settled {
            Ok(answers) => {
                let requeued = batch
                    .iter()
                    .zip(&answers)
                    .any(|(s, &pending)| pending && matches!(s, Settle::Requeue { .. }));
                if requeued {
                    queues.requeued(&self.topic);
                }
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, subscription = %self.sub, deliveries = batch.len(), error = %e, "could not settle deliveries");
            }
        }
        self.in_flight.fetch_sub(batch.len(), Ordering::AcqRel);
    }

    async fn deliver_until_stopped(self: &Arc<Self>, queues: &Arc<Queues>) {
        let config = queues.config();
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            // The answers since the last turn are settled with this turn's claim, in one store
            // operation (`Store::settle_and_claim`) — or alone when there is nothing to claim.
            let batch = std::mem::take(&mut *self.answered.lock());
            let in_flight = self
                .in_flight
                .load(Ordering::Acquire)
                .saturating_sub(batch.len());
            let free = config.max_in_flight.saturating_sub(in_flight);
            if free == 0 || !self.has_consumers() {
                if !batch.is_empty() {
                    let settled = queues.store().settle(&self.topic, &self.sub, &batch).await;
                    self.count_settled(queues, &batch, settled);
                    continue;
                }
                // Woken by a new consumer or a settled delivery.
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            }
            let now = now_millis();
            let opts = ClaimOptions {
                now,
                max: free,
                ack_timeout: store_deadline(config.ack_timeout),
                max_deliveries: config.max_deliveries,
            };
            queues.claims.incr();
            let turn = queues
                .store()
                .settle_and_claim(&self.topic, &self.sub, &batch, opts)
                .await;
            let claimed = match turn {
                Ok((settled, claimed)) => {
                    if !batch.is_empty() {
                        self.count_settled(queues, &batch, Ok(settled));
                    }
                    Ok(claimed)
                }
                Err(e) => {
                    if !batch.is_empty() {
                        self.count_settled(queues, &batch, Err(e.clone()));
                    }
                    Err(e)
                }
            };
            let pause = match claimed {
                Ok(result) => {
                    TopicCounters::add(&self.counters.dead_lettered, result.dead_lettered.len());
                    for offset in &result.dead_lettered {
                        tracing::warn!(
                            topic = %self.topic, subscription = %self.sub, offset,
                            max_deliveries = config.max_deliveries, "message moved to dead letters"
                        );
                    }
                    // Woken by the timer when the earliest pending entry falls due (an entry
                    // stranded in flight, a requeue's backoff), unless something else wakes
                    // the dispatcher first.
                    let next_due = result.next_due.map(|at| at.max(now + 1));
                    queues.due_timer().reschedule(self, next_due);
                    if result.claimed.is_empty() {
                        // Nothing to hand out now: sleep until woken.
                        tokio::select! {
                            _ = self.stop.cancelled() => return,
                            _ = self.wake.notified() => {}
                        }
                        continue;
                    }
                    for claimed in result.claimed {
                        self.deliver(queues, claimed);
                    }
                    None
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, subscription = %self.sub, error = %e, "claim failed");
                    Some(STORE_RETRY)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Emits one claimed entry to a consumer and settles it from the answer.
    fn deliver(self: &Arc<Self>, queues: &Arc<Queues>, claimed: Claimed) {
        let offset = claimed.message.offset;
        if self.awaiting.lock().contains(&offset) {
            // Still waiting for this entry's answer: never two deliveries of one entry at once.
            tracing::debug!(topic = %self.topic, subscription = %self.sub, offset, "claimed entry is still awaited; not resent");
            return;
        }
        let Some(socket) = self.pick_consumer() else {
            // Everyone left between the claim and now: hand it back at once.
            let queues = queues.clone();
            let me = self.clone();
            tokio::spawn(async move {
                match queues
                    .store()
                    .requeue(&me.topic, &me.sub, offset, now_millis())
                    .await
                {
                    Ok(_) => queues.requeued(&me.topic),
                    Err(e) => {
                        tracing::warn!(topic = %me.topic, offset, error = %e, "requeue failed; the ack timeout will redeliver");
                    }
                }
            });
            return;
        };
        let message = &claimed.message;
        let data: Value = serde_json::from_str(&message.data).unwrap_or(Value::Null);
        let mut meta = json!({
            "topic": self.topic.as_str(),
            "id": message.id.to_string(),
            "offset": message.offset,
        });
        if let SubscriptionName::Group(group) = &self.sub {
            meta["group"] = Value::from(group.as_str());
        }
        meta["attempt"] = Value::from(claimed.attempt);
        meta["publishedAt"] = Value::from(message.published_at);
        // Queued here, in the dispatcher's loop, so deliveries leave in offset order; only the
        // wait for each answer runs in a task of its own.
        // A message with binary goes out as a BINARY_EVENT: `data` holds its placeholders,
        // the attachments are shared `Bytes` (no copy per delivery).
        let pending = socket.send_with_ack(&message.event, vec![data, meta], &message.attachments);
        if pending.is_ok() {
            TopicCounters::add(&self.counters.delivered, 1);
        }
        self.awaiting.lock().insert(offset);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        let queues = queues.clone();
        let attempt = claimed.attempt;
        tokio::spawn(async move {
            let timeout = queues.config().ack_timeout;
            let answer = match pending {
                Ok(pending) => tokio::select! {
                    biased;
                    answer = pending.wait(timeout) => answer,
                    // Stopping (shutdown, unsubscribe): the entry stays in flight in the store,
                    // released for redelivery at the next start, as after a crash. Not waiting
                    // for the ack timeout lets the store close now.
                    () = me.stop.cancelled() => return,
                },
                Err(e) => Err(e),
            };
            // No longer awaited before it is settled: once a requeue makes the entry due, the
            // next claim must deliver it. (Removed after the settle, a claim in between was
            // skipped as "still awaited" and left the entry in flight in the store until its
            // deadline: a redelivery late by 2 × ack timeout + 5 s.) Until the settle lands the
            // store still has the entry in flight, so no claim can return it twice.
            me.awaiting.lock().remove(&offset);
            let settle = match answer {
                Ok(reply) if wants_requeue(&reply) => {
                    let delay = queues.config().backoff(attempt);
                    Settle::Requeue {
                        offset,
                        not_before: now_millis() + millis(delay),
                    }
                }
                Ok(_) => Settle::Ack(offset),
                Err(e @ AckError::TooManyPending(_)) => {
                    // The consumer owes max_pending_acks_per_socket answers: not sent; retried
                    // after the requeue backoff rather than at once, which would spin.
                    let (n, warn) = queues.admission.deliveries_deferred.incr();
                    if warn {
                        tracing::warn!(topic = %me.topic, sid = %socket.id(), deferred = n, "a consumer owes max_pending_acks_per_socket acks: deliveries deferred (logged once per 1000)");
                    } else {
                        tracing::debug!(topic = %me.topic, offset, sid = %socket.id(), error = %e, "consumer owes too many acks; delivery deferred");
                    }
                    Settle::Requeue {
                        offset,
                        not_before: now_millis() + millis(queues.config().backoff(attempt)),
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %me.topic, offset, sid = %socket.id(), error = %e, "delivery not acknowledged; redelivering");
                    Settle::Requeue {
                        offset,
                        not_before: now_millis(),
                    }
                }
            };
            // Settled by the dispatcher's next turn, with the other answers of the moment —
            // or here, when the dispatcher has stopped (shutdown): its last turn may be over,
            // and an answer that came in must still be settled, or a clean restart would
            // redeliver what was acknowledged. Whoever takes the answers settles them.
            me.answered.lock().push(settle);
            if me.stop.is_cancelled() {
                me.settle_answered(&queues).await;
            } else {
                me.wake();
            }
        });
    }
}

/// The ack `{requeue:true}` asks for a redelivery; anything else settles the message.
fn wants_requeue(reply: &AckReply) -> bool {
    reply
        .args
        .first()
        .and_then(|v| v.get("requeue"))
        .and_then(Value::as_bool)
        == Some(true)
}
