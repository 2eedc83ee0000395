//! One task per queue (a subscription): claims entries from the store and delivers them to
//! the queue's connected consumers, at most `max_in_flight` unacknowledged at a time.
//!
//! Event-driven, never polling: the task sleeps until a publish to its topic, a settled
//! delivery, a new consumer, or the earliest due redelivery of its queue — the time the store
//! reports with each claim (`ClaimResult::next_due`), kept in the one [`DueTimer`](super::due::DueTimer) of all
//! queues. A queue whose consumers are connected but have nothing to receive costs nothing.
//! An unacknowledged delivery is requeued by its own ack timer (`ack_timeout` after it was
//! sent) and the dispatcher woken at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings_core::Sid;
use tidings_core::store::{ClaimOptions, Claimed, Offset, SubscriptionName, Topic};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Queues;
use super::due::Scheduled;
use crate::io::{AckError, AckReply, Socket};
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
    wake: Notify,
    /// When the [`DueTimer`](super::due::DueTimer) will wake this dispatcher next.
    scheduled: Scheduled,
    stop: CancellationToken,
}

impl Dispatcher {
    pub(crate) fn new(
        topic: Topic,
        sub: SubscriptionName,
        stop: CancellationToken,
    ) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            topic,
            sub,
            consumers: Mutex::new(Vec::new()),
            next_consumer: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            awaiting: Mutex::new(HashSet::new()),
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
        let config = queues.config();
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let in_flight = self.in_flight.load(Ordering::Acquire);
            let free = config.max_in_flight.saturating_sub(in_flight);
            if free == 0 || !self.has_consumers() {
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
            let pause = match queues.store().claim(&self.topic, &self.sub, opts).await {
                Ok(result) => {
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
                    queues.due_timer().reschedule(&self, next_due);
                    if result.claimed.is_empty() {
                        // Nothing to hand out now: sleep until woken.
                        tokio::select! {
                            _ = self.stop.cancelled() => return,
                            _ = self.wake.notified() => {}
                        }
                        continue;
                    }
                    for claimed in result.claimed {
                        self.deliver(&queues, claimed);
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
        let pending = socket.send_with_ack(&message.event, vec![data, meta], &[]);
        self.awaiting.lock().insert(offset);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        let queues = queues.clone();
        let attempt = claimed.attempt;
        tokio::spawn(async move {
            let timeout = queues.config().ack_timeout;
            let answer = match pending {
                Ok(pending) => pending.wait(timeout).await,
                Err(e) => Err(e),
            };
            // No longer awaited before it is settled: once a requeue makes the entry due, the
            // next claim must deliver it. (Removed after the settle, a claim in between was
            // skipped as "still awaited" and left the entry in flight in the store until its
            // deadline: a redelivery late by 2 × ack timeout + 5 s.) Until the settle lands the
            // store still has the entry in flight, so no claim can return it twice.
            me.awaiting.lock().remove(&offset);
            let store = queues.store();
            let (settled, requeued) = match answer {
                Ok(reply) if wants_requeue(&reply) => {
                    let delay = queues.config().backoff(attempt);
                    let due = now_millis() + millis(delay);
                    (store.requeue(&me.topic, &me.sub, offset, due).await, true)
                }
                Ok(_) => (store.ack(&me.topic, &me.sub, offset).await, false),
                Err(e @ AckError::TooManyPending(_)) => {
                    // The consumer owes max_pending_acks_per_socket answers: not sent; retried
                    // after the requeue backoff rather than at once, which would spin.
                    let (n, warn) = queues.admission.deliveries_deferred.incr();
                    if warn {
                        tracing::warn!(topic = %me.topic, sid = %socket.id(), deferred = n, "a consumer owes max_pending_acks_per_socket acks: deliveries deferred (logged once per 1000)");
                    } else {
                        tracing::debug!(topic = %me.topic, offset, sid = %socket.id(), error = %e, "consumer owes too many acks; delivery deferred");
                    }
                    let due = now_millis() + millis(queues.config().backoff(attempt));
                    (store.requeue(&me.topic, &me.sub, offset, due).await, true)
                }
                Err(e) => {
                    tracing::debug!(topic = %me.topic, offset, sid = %socket.id(), error = %e, "delivery not acknowledged; redelivering");
                    let now = now_millis();
                    (store.requeue(&me.topic, &me.sub, offset, now).await, true)
                }
            };
            if requeued && settled.is_ok() {
                queues.requeued(&me.topic);
            }
            if let Err(e) = settled {
                // The entry stays in flight in the store and is redelivered after its deadline.
                tracing::warn!(topic = %me.topic, subscription = %me.sub, offset, error = %e, "could not settle a delivery");
            }
            me.in_flight.fetch_sub(1, Ordering::AcqRel);
            me.wake();
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
