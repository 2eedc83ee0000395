//! One task per queue (a subscription): claims entries from the store and delivers them to
//! the queue's connected consumers, at most `max_in_flight` unacknowledged at a time.
//!
//! Event-driven, never polling: the task sleeps until a publish to its topic, an answer, a
//! new consumer, an ack deadline, or the earliest due redelivery of its queue — the time the
//! store reports with each claim (`ClaimResult::next_due`), kept in the one
//! [`DueTimer`](super::due::DueTimer) of all queues. A queue whose consumers are connected but
//! have nothing to receive costs nothing.
//!
//! The task awaits its deliveries' answers itself — no task or timer per delivery (both were
//! a tenth of the server's CPU in the drain's profile): the oneshot receivers of the socket's
//! pending acks in one `FuturesUnordered`, and the ack deadlines in one queue in the order
//! sent, which is their order too (every delivery waits the same `ack_timeout`), with one
//! sleep until the earliest. A delivery unanswered at its deadline is forgotten on its socket
//! (a late ack is ignored) and requeued due now; a disconnect ends its wait the same way.
//!
//! Answers are settled in batches: an answer is only recorded (ack, or requeue with its
//! backoff), and the dispatcher's next turn applies every answer recorded since its last turn
//! together with its next claim, in one
//! [`Store::settle_and_claim`](tidings_core::store::Store::settle_and_claim). Under load a turn
//! settles dozens of deliveries and claims as many new ones: one journal record by default,
//! one script call on Redis. Under load — the window of `max_in_flight` deliveries full — an
//! answer alone does not start a turn until three quarters of the window are answered, none
//! is left outstanding, or as long as the last turn took (at most [`MAX_DEFER`]) has passed
//! since the first answer it would settle: on Redis every turn is a script call and an fsync
//! whatever its size, and turns started at the first answer of each burst settled about half
//! a window each (a Redis-mode drain measured 53 messages per script call before this rule,
//! 94 with the threshold alone, `max_in_flight` 100). The time bound is what keeps deliveries
//! that a consumer works on for long from holding the answered ones' slots (a pure count
//! would wait for them up to their ack timeout). Nothing waits when the queue is not busy: a
//! publish, a new consumer, the due timer or an ack deadline start a turn at once, and a
//! window that is not full takes a turn per answer as before.
//!
//! Guarantees: at least once (an entry is in flight in the store until its answer is settled;
//! a crash or a stop before that only causes a redelivery); an ack timeout requeues; never
//! more than `max_in_flight` deliveries awaited or answered-but-unsettled; never two
//! deliveries of one entry at once; a consumer receives its deliveries in claim order (all
//! are sent from this one task).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};

use parking_lot::Mutex;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tidings_core::Sid;
use tidings_core::store::{
    ClaimOptions, Claimed, Offset, Settle, StoreError, SubscriptionName, Topic,
};
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::Queues;
use super::due::Scheduled;
use crate::io::{AckError, AckReply, PendingAck, Socket};
use crate::metrics::TopicCounters;
use tidings_core::clock::{millis, now_millis};

/// The longest a turn under load waits for more answers (see the module docs).
const MAX_DEFER: Duration = Duration::from_millis(20);

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
    wake: Notify,
    /// When the [`DueTimer`](super::due::DueTimer) will wake this dispatcher next.
    scheduled: Scheduled,
    stop: CancellationToken,
    /// The topic's counters (delivered, acked, requeued, dead-lettered), looked up once.
    counters: Arc<TopicCounters>,
    /// The start of every delivery's `meta`, `{"topic":"<topic>"`, and its `,"group":"<g>"`
    /// (empty for an identity's queue): JSON text written once.
    meta_topic: String,
    meta_group: String,
}

/// A delivery sent and not answered yet.
struct Outstanding {
    ack_id: u64,
    socket: Socket,
    attempt: u32,
}

/// The answer to one delivery: the client's ack (`Some`), or `None` when the wait ended
/// without one (the socket disconnected, or the dispatcher forgot the ack id at its timeout).
struct Answer {
    offset: Offset,
    ack_id: u64,
    rx: oneshot::Receiver<AckReply>,
}

impl Future for Answer {
    type Output = (Offset, u64, Option<AckReply>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        Pin::new(&mut this.rx)
            .poll(cx)
            .map(|reply| (this.offset, this.ack_id, reply.ok()))
    }
}

/// The deliveries of a queue, owned by its dispatcher's task (so no lock): what is awaited,
/// the answers to wait for, their deadlines, and the answers not settled yet.
#[derive(Default)]
struct Deliveries {
    /// Offsets delivered and not answered yet. A claim that returns one of them again is not
    /// sent twice.
    awaiting: HashMap<Offset, Outstanding>,
    /// One future per awaited delivery; polled by the dispatcher's task itself.
    answers: FuturesUnordered<Answer>,
    /// (ack deadline, offset, ack id) in the order sent — which is the deadlines' order too,
    /// as every delivery waits the same `ack_timeout`. Entries of answered deliveries are
    /// skipped when they reach the front, and swept when they outnumber the awaited ones.
    deadlines: VecDeque<(Instant, Offset, u64)>,
    /// Answers received and not settled in the store yet (still in flight until settled).
    answered: Vec<Settle>,
}

/// Why a dispatcher's wait ended.
enum Woken {
    Stopped,
    /// A publish, a new consumer, the due timer, an ack deadline or the retry pause.
    Nudged,
    Answer((Offset, u64, Option<AckReply>)),
}

impl Dispatcher {
    pub(crate) fn new(
        topic: Topic,
        sub: SubscriptionName,
        stop: CancellationToken,
        counters: Arc<TopicCounters>,
    ) -> Arc<Dispatcher> {
        let meta_topic = format!("{{\"topic\":{}", json_str(topic.as_str()));
        let meta_group = match &sub {
            SubscriptionName::Group(group) => format!(",\"group\":{}", json_str(group.as_str())),
            SubscriptionName::Identity(_) => String::new(),
        };
        Arc::new(Dispatcher {
            counters,
            meta_topic,
            meta_group,
            topic,
            sub,
            consumers: Mutex::new(Vec::new()),
            next_consumer: AtomicUsize::new(0),
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
        let mut d = Deliveries::default();
        self.deliver_until_stopped(&queues, &mut d).await;
        // Answers that came in meanwhile are settled, so a clean stop redelivers nothing that
        // was acknowledged. The deliveries still awaited stay in flight in the store, released
        // for redelivery at the next start, as after a crash: not waiting for their ack
        // timeouts lets the store close now.
        self.collect_answers(&queues, &mut d);
        let batch = std::mem::take(&mut d.answered);
        if !batch.is_empty() {
            let settled = queues.store().settle(&self.topic, &self.sub, &batch).await;
            self.count_settled(queues.as_ref(), &batch, settled);
        }
    }

    /// The bookkeeping of a settled batch: counters, a wake-up for requeued entries. On an
    /// error the entries stay in flight in the store and are redelivered after their
    /// deadline.
    fn count_settled(
        &self,
        queues: &Queues,
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
    }

    /// Records every answer that is in (without waiting), and requeues the deliveries whose
    /// ack deadline passed.
    fn collect_answers(&self, queues: &Queues, d: &mut Deliveries) {
        while let Some(Some(answer)) = d.answers.next().now_or_never() {
            self.record_answer(queues, d, answer);
        }
        let now = Instant::now();
        while let Some(&(deadline, offset, ack_id)) = d.deadlines.front() {
            if deadline > now {
                break;
            }
            d.deadlines.pop_front();
            let Some(out) = d.awaiting.get(&offset).filter(|o| o.ack_id == ack_id) else {
                continue;
            };
            // Still pending on the socket: forgotten there, so a late ack is ignored, and its
            // answer future ends with `None`, which finds the offset no longer awaited. (Not
            // pending: the ack just came in and is collected with the next answers.)
            if out.socket.forget_ack(ack_id) {
                tracing::debug!(topic = %self.topic, offset, sid = %out.socket.id(), "delivery not acknowledged in time; redelivering");
                d.awaiting.remove(&offset);
                d.answered.push(Settle::Requeue {
                    offset,
                    not_before: now_millis(),
                });
            }
        }
        if d.deadlines.len() > 2 * d.awaiting.len() + 64 {
            let awaiting = &d.awaiting;
            d.deadlines
                .retain(|(_, offset, id)| awaiting.get(offset).is_some_and(|o| o.ack_id == *id));
        }
    }

    /// How one delivery ended, recorded to be settled by the next turn.
    fn record_answer(
        &self,
        queues: &Queues,
        d: &mut Deliveries,
        (offset, ack_id, reply): (Offset, u64, Option<AckReply>),
    ) {
        // No longer awaited before it is settled: once a requeue makes the entry due, the
        // next claim must deliver it — and the settle comes first in the same turn. Until
        // the settle lands the store still has the entry in flight, so no claim can return
        // it twice.
        let Some(out) = d.awaiting.remove(&offset) else {
            return;
        };
        if out.ack_id != ack_id {
            // A stale answer of an earlier delivery of this offset (its deadline passed).
            d.awaiting.insert(offset, out);
            return;
        }
        let settle = match reply {
            Some(reply) if wants_requeue(&reply) => Settle::Requeue {
                offset,
                not_before: now_millis() + millis(queues.config().backoff(out.attempt)),
            },
            Some(_) => Settle::Ack(offset),
            None => {
                tracing::debug!(topic = %self.topic, offset, sid = %out.socket.id(), "consumer disconnected before acknowledging; redelivering");
                Settle::Requeue {
                    offset,
                    not_before: now_millis(),
                }
            }
        };
        d.answered.push(settle);
    }

    /// Sleeps until something may let the loop do more: the stop, a wake-up (publish, new
    /// consumer, due timer), an answer, the earliest ack deadline, or `retry` after a store
    /// error.
    async fn wait(&self, d: &mut Deliveries, retry: Option<Duration>) -> Woken {
        let deadline = d.deadlines.front().map(|&(at, _, _)| at);
        let has_answers = !d.answers.is_empty();
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Woken::Stopped,
            () = self.wake.notified() => Woken::Nudged,
            Some(answer) = d.answers.next(), if has_answers => Woken::Answer(answer),
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Woken::Nudged,
            () = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => Woken::Nudged,
        }
    }

    /// [`Dispatcher::wait`], then what ended it recorded: an answer, and in `by_answer`
    /// whether that is all it was. Returns true when stopped.
    async fn sleep(
        &self,
        queues: &Queues,
        d: &mut Deliveries,
        retry: Option<Duration>,
        by_answer: &mut bool,
    ) -> bool {
        match self.wait(d, retry).await {
            Woken::Stopped => return true,
            Woken::Answer(answer) => {
                self.record_answer(queues, d, answer);
                *by_answer = true;
            }
            Woken::Nudged => *by_answer = false,
        }
        false
    }

    async fn deliver_until_stopped(self: &Arc<Self>, queues: &Arc<Queues>, d: &mut Deliveries) {
        let config = queues.config();
        let mut retry = None;
        // Whether the last wait ended with an answer (rather than a nudge: see `Woken`).
        let mut by_answer = false;
        // How long the last `settle_and_claim` took, and since when a turn is deferred.
        let mut last_turn = Duration::ZERO;
        let mut deferred_since: Option<Instant> = None;
        loop {
            if let Some(pause) = retry.take() {
                if self.sleep(queues, d, Some(pause), &mut by_answer).await {
                    return;
                }
                by_answer = false;
            }
            if self.stop.is_cancelled() {
                return;
            }
            self.collect_answers(queues, d);
            // Under load, a turn waits for most of the window's answers, so that each turn
            // settles and claims many (on Redis a turn is a script call and an fsync, whatever
            // its size). Only when the window is full, only for answers (a publish, a new
            // consumer, the due timer or an ack deadline start a turn at once, and so does the
            // last outstanding answer), and at most as long as the last turn took (capped at
            // MAX_DEFER) after the first answer it would settle: deliveries a consumer works on
            // for long must not keep the slots of the answered ones empty.
            let full = d.awaiting.len() + d.answered.len() >= config.max_in_flight;
            if by_answer
                && full
                && !d.awaiting.is_empty()
                && d.answered.len() * 4 < config.max_in_flight * 3
            {
                let since = *deferred_since.get_or_insert_with(Instant::now);
                let until = since + last_turn.min(MAX_DEFER);
                let now = Instant::now();
                if now < until {
                    if self
                        .sleep(queues, d, Some(until - now), &mut by_answer)
                        .await
                    {
                        return;
                    }
                    continue;
                }
            }
            deferred_since = None;
            // The answers since the last turn are settled with this turn's claim, in one store
            // operation (`Store::settle_and_claim`) — or alone when there is nothing to claim.
            let batch = std::mem::take(&mut d.answered);
            let free = config.max_in_flight.saturating_sub(d.awaiting.len());
            if free == 0 || !self.has_consumers() {
                if !batch.is_empty() {
                    let settled = queues.store().settle(&self.topic, &self.sub, &batch).await;
                    self.count_settled(queues, &batch, settled);
                    continue;
                }
                if self.sleep(queues, d, None, &mut by_answer).await {
                    return;
                }
                continue;
            }
            let now = now_millis();
            let opts = ClaimOptions {
                now,
                max: free,
                ack_timeout: store_deadline(config.ack_timeout),
                max_deliveries: config.max_deliveries,
            };
            queues.claims.incr();
            let started = Instant::now();
            let turn = queues
                .store()
                .settle_and_claim(&self.topic, &self.sub, &batch, opts)
                .await;
            last_turn = started.elapsed();
            let claimed = match turn {
                Ok((settled, claimed)) => {
                    if !batch.is_empty() {
                        self.count_settled(queues, &batch, Ok(settled));
                    }
                    claimed
                }
                Err(e) => {
                    if !batch.is_empty() {
                        self.count_settled(queues, &batch, Err(e.clone()));
                    }
                    tracing::warn!(topic = %self.topic, subscription = %self.sub, error = %e, "claim failed");
                    retry = Some(STORE_RETRY);
                    continue;
                }
            };
            TopicCounters::add(&self.counters.dead_lettered, claimed.dead_lettered.len());
            for offset in &claimed.dead_lettered {
                tracing::warn!(
                    topic = %self.topic, subscription = %self.sub, offset,
                    max_deliveries = config.max_deliveries, "message moved to dead letters"
                );
            }
            // Woken by the timer when the earliest pending entry falls due (an entry
            // stranded in flight, a requeue's backoff), unless something else wakes the
            // dispatcher first.
            let next_due = claimed.next_due.map(|at| at.max(now + 1));
            queues.due_timer().reschedule(self, next_due);
            if claimed.claimed.is_empty() {
                // Nothing to hand out now: sleep until woken.
                if self.sleep(queues, d, None, &mut by_answer).await {
                    return;
                }
                continue;
            }
            // Sent here, in the dispatcher's loop, so deliveries leave in offset order.
            let deadline = Instant::now() + config.ack_timeout;
            let mut delivered = 0;
            for claimed in claimed.claimed {
                delivered += usize::from(self.deliver(queues, d, claimed, deadline));
            }
            TopicCounters::add(&self.counters.delivered, delivered);
        }
    }

    /// Emits one claimed entry to a consumer; its answer is awaited by the dispatcher's loop.
    /// Returns whether it was sent.
    fn deliver(
        self: &Arc<Self>,
        queues: &Arc<Queues>,
        d: &mut Deliveries,
        claimed: Claimed,
        deadline: Instant,
    ) -> bool {
        let offset = claimed.message.offset;
        if d.awaiting.contains_key(&offset) {
            // Still waiting for this entry's answer: never two deliveries of one entry at once.
            tracing::debug!(topic = %self.topic, subscription = %self.sub, offset, "claimed entry is still awaited; not resent");
            return false;
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
            return false;
        };
        let attempt = claimed.attempt;
        match self.send(&socket, &claimed) {
            Ok(pending) => {
                let (ack_id, rx) = pending.into_parts();
                d.answers.push(Answer { offset, ack_id, rx });
                d.deadlines.push_back((deadline, offset, ack_id));
                d.awaiting.insert(
                    offset,
                    Outstanding {
                        ack_id,
                        socket,
                        attempt,
                    },
                );
                true
            }
            Err(e @ AckError::TooManyPending(_)) => {
                // The consumer owes max_pending_acks_per_socket answers: not sent; retried
                // after the requeue backoff rather than at once, which would spin.
                let (n, warn) = queues.admission.deliveries_deferred.incr();
                if warn {
                    tracing::warn!(topic = %self.topic, sid = %socket.id(), deferred = n, "a consumer owes max_pending_acks_per_socket acks: deliveries deferred (logged once per 1000)");
                } else {
                    tracing::debug!(topic = %self.topic, offset, sid = %socket.id(), error = %e, "consumer owes too many acks; delivery deferred");
                }
                d.answered.push(Settle::Requeue {
                    offset,
                    not_before: now_millis() + millis(queues.config().backoff(attempt)),
                });
                false
            }
            Err(e) => {
                tracing::debug!(topic = %self.topic, offset, sid = %socket.id(), error = %e, "delivery not sent; redelivering");
                d.answered.push(Settle::Requeue {
                    offset,
                    not_before: now_millis(),
                });
                false
            }
        }
    }
}

impl Dispatcher {
    /// Sends one claimed entry to `socket` as `event` with `(data, meta)` and an ack id.
    ///
    /// With the default parser and no attachments, the packet is text written around the
    /// stored `data` (JSON text already, [`StoredMessage::data`](tidings_core::store::StoredMessage::data)):
    /// no `Value` of it is built — the largest cost per delivery in the drain's profile
    /// (ARCHITECTURE.md). A message with binary goes out as a BINARY_EVENT through
    /// [`Socket::send_with_ack`]: `data` holds its placeholders, the attachments are shared
    /// `Bytes` (no copy per delivery); so does everything for a msgpack client.
    fn send(&self, socket: &Socket, claimed: &Claimed) -> Result<PendingAck, AckError> {
        let message = &claimed.message;
        if message.attachments.is_empty() {
            // Data that is not JSON (never written by tidings) is delivered as `null`, as the
            // `Value` path does.
            let data = if serde_json::from_str::<IgnoredAny>(&message.data).is_ok() {
                message.data.as_str()
            } else {
                "null"
            };
            let write_args = |args: &mut Vec<u8>| {
                // Writing into a `Vec` cannot fail.
                args.extend_from_slice(data.as_bytes());
                args.push(b',');
                args.extend_from_slice(self.meta_topic.as_bytes());
                let _ = write!(
                    args,
                    ",\"id\":\"{}\",\"offset\":{}",
                    message.id, message.offset
                );
                args.extend_from_slice(self.meta_group.as_bytes());
                let _ = write!(
                    args,
                    ",\"attempt\":{},\"publishedAt\":{}}}",
                    claimed.attempt, message.published_at
                );
            };
            let len = data.len() + self.meta_topic.len() + self.meta_group.len() + 120;
            if let Some(sent) = socket.send_text_with_ack(&message.event, len, write_args) {
                return sent;
            }
        }
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
        socket.send_with_ack(&message.event, vec![data, meta], &message.attachments)
    }
}

/// `s` as a JSON string.
fn json_str(s: &str) -> String {
    Value::from(s).to_string()
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
