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
//! let msg = NewMessage { event: "ready".into(), data: "{}".into(), key: None, published_at: 0 };
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
//! - lists come sorted: topics by name, subscriptions by (topic, name), dead letters by
//!   (`dead_at`, offset, subscription), gaps by (subscription, offset).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, Claimed, DeadLetter, Gap, MessageId,
    Millis, NewMessage, Offset, Overflow, QueueBound, Retention, StartFrom, Store, StoreError,
    StoreFuture, StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};
use tracing::{debug, warn};

/// The in-memory store. A cheap-clone handle: clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    topics: BTreeMap<Topic, TopicState>,
}

struct TopicState {
    head: Offset,
    /// The retained messages, offsets `first()..=head` without holes.
    messages: VecDeque<StoredMessage>,
    retained_bytes: u64,
    keys: HashMap<String, KeyRecord>,
    subs: BTreeMap<SubscriptionName, SubState>,
}

struct KeyRecord {
    id: MessageId,
    offset: Offset,
    at: Millis,
}

struct SubState {
    cursor: Offset,
    gaps: u64,
    /// Unsettled offsets below the cursor; every one of them is retained.
    pending: BTreeMap<Offset, Entry>,
    dead: BTreeMap<Offset, Dead>,
    /// Identities that are members (group subscriptions only).
    members: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    attempt: u32,
    in_flight: bool,
    /// The ack deadline when in flight, `not_before` when waiting.
    due: Millis,
}

struct Dead {
    /// A copy, so that the dead letter outlives the message's retention.
    message: StoredMessage,
    attempts: u32,
    dead_at: Millis,
}

impl TopicState {
    fn new() -> Self {
        TopicState {
            head: 0,
            messages: VecDeque::new(),
            retained_bytes: 0,
            keys: HashMap::new(),
            subs: BTreeMap::new(),
        }
    }

    fn first(&self) -> Offset {
        self.head + 1 - self.messages.len() as u64
    }

    /// The first append of `msg`'s idempotency key, if it is within the window.
    fn duplicate(&self, msg: &NewMessage, dedup_window: Millis) -> Option<Appended> {
        let rec = msg.key.as_ref().and_then(|k| self.keys.get(k))?;
        (msg.published_at.saturating_sub(rec.at) <= dedup_window).then_some(Appended {
            id: rec.id,
            offset: rec.offset,
            duplicate: true,
        })
    }

    fn info(&self, topic: &Topic) -> TopicInfo {
        TopicInfo {
            topic: topic.clone(),
            head: self.head,
            first: self.first(),
            retained: self.messages.len() as u64,
            retained_bytes: self.retained_bytes,
            subscriptions: self
                .subs
                .iter()
                .map(|(name, sub)| sub.info(name, self.head))
                .collect(),
        }
    }
}

/// The retained message at `offset`, if any.
fn message_at(
    messages: &VecDeque<StoredMessage>,
    head: Offset,
    offset: Offset,
) -> Option<&StoredMessage> {
    let first = head + 1 - messages.len() as u64;
    let index = usize::try_from(offset.checked_sub(first)?).ok()?;
    messages.get(index)
}

impl SubState {
    fn new(cursor: Offset) -> Self {
        SubState {
            cursor,
            gaps: 0,
            pending: BTreeMap::new(),
            dead: BTreeMap::new(),
            members: std::collections::BTreeSet::new(),
        }
    }

    /// Entries in the queue: pending ones plus messages not handed out yet.
    fn depth(&self, head: Offset) -> u64 {
        self.pending.len() as u64 + (head + 1 - self.cursor)
    }

    fn info(&self, name: &SubscriptionName, head: Offset) -> SubscriptionInfo {
        SubscriptionInfo {
            name: name.clone(),
            pending: self.depth(head),
            in_flight: self.pending.values().filter(|e| e.in_flight).count() as u64,
            dead: self.dead.len() as u64,
            gaps: self.gaps,
            cursor: self.cursor,
        }
    }
}

/// Where a new subscription's cursor starts, given the topic's head and first retained offset.
fn start_cursor(from: StartFrom, head: Offset, first: Offset) -> Result<Offset, StoreError> {
    match from {
        StartFrom::New => Ok(head + 1),
        StartFrom::Earliest => Ok(first),
        StartFrom::Offset(o) if o > head.saturating_add(1) => Err(StoreError::Invalid(format!(
            "start offset {o} is beyond the head {head} of the topic"
        ))),
        StartFrom::Offset(o) => Ok(o.max(first)),
    }
}

fn topic_not_found(topic: &Topic) -> StoreError {
    StoreError::NotFound(format!("topic {topic}"))
}

fn sub_not_found(topic: &Topic, sub: &SubscriptionName) -> StoreError {
    StoreError::NotFound(format!("subscription {sub} of topic {topic}"))
}

/// Adds `from..=to` to ascending, non-overlapping ranges, merging with the last if adjacent.
fn push_range(ranges: &mut Vec<(Offset, Offset)>, from: Offset, to: Offset) {
    match ranges.last_mut() {
        Some(last) if last.1 + 1 == from => last.1 = to,
        _ => ranges.push((from, to)),
    }
}

impl State {
    fn topic_mut(&mut self, topic: &Topic) -> Result<&mut TopicState, StoreError> {
        self.topics
            .get_mut(topic)
            .ok_or_else(|| topic_not_found(topic))
    }

    fn append(&mut self, topic: &Topic, msg: NewMessage, dedup_window: Millis) -> Appended {
        let t = self
            .topics
            .entry(topic.clone())
            .or_insert_with(TopicState::new);
        if let Some(first) = t.duplicate(&msg, dedup_window) {
            return first;
        }
        let id = MessageId::new();
        let offset = t.head + 1;
        t.head = offset;
        t.retained_bytes += msg.data.len() as u64;
        if let Some(key) = msg.key {
            let at = msg.published_at;
            t.keys.insert(key, KeyRecord { id, offset, at });
        }
        t.messages.push_back(StoredMessage {
            id,
            offset,
            event: msg.event,
            data: msg.data,
            published_at: msg.published_at,
        });
        Appended {
            id,
            offset,
            duplicate: false,
        }
    }

    fn append_bounded(
        &mut self,
        topic: &Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> BoundedAppend {
        if let Some(t) = self.topics.get(topic) {
            if let Some(first) = t.duplicate(&msg, dedup_window) {
                return BoundedAppend::Appended {
                    appended: first,
                    dropped: Vec::new(),
                };
            }
            if bound.overflow == Overflow::Reject {
                let full = t
                    .subs
                    .iter()
                    .find(|(_, s)| s.depth(t.head) >= bound.max_depth);
                if let Some((name, s)) = full {
                    return BoundedAppend::Full {
                        subscription: name.clone(),
                        depth: s.depth(t.head),
                    };
                }
            }
        }
        let appended = self.append(topic, msg, dedup_window);
        let mut dropped = Vec::new();
        if bound.overflow == Overflow::DropOldest {
            if let Some(t) = self.topics.get_mut(topic) {
                let head = t.head;
                for (name, s) in &mut t.subs {
                    let Some(mut excess) = s.depth(head).checked_sub(bound.max_depth) else {
                        continue;
                    };
                    let mut ranges = Vec::new();
                    while excess > 0 {
                        let Some((offset, _)) = s.pending.pop_first() else {
                            break;
                        };
                        push_range(&mut ranges, offset, offset);
                        excess -= 1;
                    }
                    if excess > 0 {
                        push_range(&mut ranges, s.cursor, s.cursor + excess - 1);
                        s.cursor += excess;
                    }
                    for (from, to) in ranges {
                        s.gaps += to - from + 1;
                        debug!(topic = %topic, sub = %name, from, to, "queue full: dropped its oldest unsettled messages");
                        dropped.push(Gap {
                            topic: topic.clone(),
                            subscription: name.clone(),
                            from,
                            to,
                        });
                    }
                }
            }
        }
        BoundedAppend::Appended { appended, dropped }
    }

    fn subscribe(
        &mut self,
        topic: &Topic,
        sub: &SubscriptionName,
        from: StartFrom,
    ) -> Result<SubscriptionInfo, StoreError> {
        let (head, first) = match self.topics.get(topic) {
            Some(t) => {
                if let Some(s) = t.subs.get(sub) {
                    return Ok(s.info(sub, t.head));
                }
                (t.head, t.first())
            }
            None => (0, 1),
        };
        // Validate before creating anything, so that an invalid request changes nothing.
        let cursor = start_cursor(from, head, first)?;
        let t = self
            .topics
            .entry(topic.clone())
            .or_insert_with(TopicState::new);
        let s = SubState::new(cursor);
        let info = s.info(sub, head);
        t.subs.insert(sub.clone(), s);
        debug!(topic = %topic, sub = %sub, cursor, "subscription created");
        Ok(info)
    }

    fn claim(
        &mut self,
        topic: &Topic,
        sub: &SubscriptionName,
        opts: ClaimOptions,
    ) -> Result<ClaimResult, StoreError> {
        let t = self.topic_mut(topic)?;
        let TopicState {
            head,
            messages,
            subs,
            ..
        } = t;
        let head = *head;
        let s = subs.get_mut(sub).ok_or_else(|| sub_not_found(topic, sub))?;
        let deadline = opts.now.saturating_add(opts.ack_timeout);
        let mut result = ClaimResult::default();
        let missing = |offset| {
            StoreError::Corrupt(format!(
                "offset {offset} of topic {topic} is pending for {sub} but not retained"
            ))
        };

        let due: Vec<Offset> = s
            .pending
            .iter()
            .filter(|(_, e)| e.due <= opts.now)
            .map(|(&o, _)| o)
            .collect();
        for offset in due {
            if result.claimed.len() >= opts.max {
                break;
            }
            let message = message_at(messages, head, offset).ok_or_else(|| missing(offset))?;
            let Some(entry) = s.pending.get_mut(&offset) else {
                continue;
            };
            if entry.attempt >= opts.max_deliveries {
                let attempts = entry.attempt;
                s.pending.remove(&offset);
                s.dead.insert(
                    offset,
                    Dead {
                        message: message.clone(),
                        attempts,
                        dead_at: opts.now,
                    },
                );
                result.dead_lettered.push(offset);
                continue;
            }
            *entry = Entry {
                attempt: entry.attempt + 1,
                in_flight: true,
                due: deadline,
            };
            result.claimed.push(Claimed {
                message: message.clone(),
                attempt: entry.attempt,
            });
        }

        while result.claimed.len() < opts.max && s.cursor <= head {
            let offset = s.cursor;
            let message = message_at(messages, head, offset).ok_or_else(|| missing(offset))?;
            s.cursor += 1;
            if opts.max_deliveries == 0 {
                s.dead.insert(
                    offset,
                    Dead {
                        message: message.clone(),
                        attempts: 0,
                        dead_at: opts.now,
                    },
                );
                result.dead_lettered.push(offset);
                continue;
            }
            s.pending.insert(
                offset,
                Entry {
                    attempt: 1,
                    in_flight: true,
                    due: deadline,
                },
            );
            result.claimed.push(Claimed {
                message: message.clone(),
                attempt: 1,
            });
        }
        if !result.dead_lettered.is_empty() {
            warn!(topic = %topic, sub = %sub, offsets = ?result.dead_lettered, "dead-lettered");
        }
        result.next_due = s.pending.values().map(|e| e.due).min();
        Ok(result)
    }

    fn sub_mut(
        &mut self,
        topic: &Topic,
        sub: &SubscriptionName,
    ) -> Result<&mut SubState, StoreError> {
        self.topic_mut(topic)?
            .subs
            .get_mut(sub)
            .ok_or_else(|| sub_not_found(topic, sub))
    }

    fn dead_letters(&self, topic: &Topic) -> Result<Vec<DeadLetter>, StoreError> {
        let t = self
            .topics
            .get(topic)
            .ok_or_else(|| topic_not_found(topic))?;
        let mut out: Vec<DeadLetter> = t
            .subs
            .iter()
            .flat_map(|(name, s)| {
                s.dead.values().map(move |d| DeadLetter {
                    message: d.message.clone(),
                    subscription: name.clone(),
                    attempts: d.attempts,
                    dead_at: d.dead_at,
                })
            })
            .collect();
        DeadLetter::sort(&mut out);
        Ok(out)
    }

    fn requeue_dead(
        &mut self,
        topic: &Topic,
        id: MessageId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let t = self.topic_mut(topic)?;
        let first = t.first();
        let mut requeued = false;
        for s in t.subs.values_mut() {
            let offsets: Vec<Offset> = s
                .dead
                .iter()
                .filter(|(o, d)| d.message.id == id && **o >= first)
                .map(|(&o, _)| o)
                .collect();
            for offset in offsets {
                s.dead.remove(&offset);
                let entry = Entry {
                    attempt: 0,
                    in_flight: false,
                    due: now,
                };
                s.pending.insert(offset, entry);
                requeued = true;
            }
        }
        Ok(requeued)
    }

    fn enforce_retention(
        &mut self,
        topic: &Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> Result<Vec<Gap>, StoreError> {
        let t = self.topic_mut(topic)?;
        while let Some(oldest) = t.messages.front() {
            let too_many = t.messages.len() as u64 > retention.max_messages;
            let too_big = t.retained_bytes > retention.max_bytes;
            let too_old = now.saturating_sub(oldest.published_at) > retention.max_age;
            if !(too_many || too_big || too_old) {
                break;
            }
            t.retained_bytes -= oldest.data.len() as u64;
            t.messages.pop_front();
        }
        let first = t.first();
        let mut gaps = Vec::new();
        for (name, s) in &mut t.subs {
            let kept = s.pending.split_off(&first);
            let lost = std::mem::replace(&mut s.pending, kept);
            let mut ranges = Vec::new();
            for &offset in lost.keys() {
                push_range(&mut ranges, offset, offset);
            }
            if s.cursor < first {
                push_range(&mut ranges, s.cursor, first - 1);
                s.cursor = first;
            }
            for (from, to) in ranges {
                s.gaps += to - from + 1;
                warn!(topic = %topic, sub = %name, from, to, "retention removed unsettled messages");
                gaps.push(Gap {
                    topic: topic.clone(),
                    subscription: name.clone(),
                    from,
                    to,
                });
            }
        }
        t.keys
            .retain(|_, rec| now.saturating_sub(rec.at) <= dedup_window);
        Ok(gaps)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Runs `f` on the state under the lock. A poisoned lock (a panic while it was held, which
    /// may have left the state half-changed) makes the store unavailable for good.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard: MutexGuard<'_, State> = self.state.lock().map_err(|_| {
            StoreError::Unavailable("memory store lock poisoned by a panic".to_owned())
        })?;
        f(&mut guard)
    }

    fn ready<'a, T: Send + 'a>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
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
        self.ready(|s| Ok(s.append(topic, msg, dedup_window)))
    }

    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend> {
        self.ready(|s| Ok(s.append_bounded(topic, msg, dedup_window, bound)))
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
        self.ready(|s| {
            let removed = s
                .topics
                .get_mut(topic)
                .and_then(|t| t.subs.remove(sub))
                .is_some();
            if removed {
                debug!(topic = %topic, sub = %sub, "subscription removed");
            }
            Ok(removed)
        })
    }

    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>> {
        self.ready(|s| {
            Ok(s.topics
                .iter()
                .flat_map(|(topic, t)| t.subs.keys().map(|name| (topic.clone(), name.clone())))
                .collect())
        })
    }

    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()> {
        self.ready(|s| {
            let state = s
                .topics
                .get_mut(topic)
                .and_then(|t| t.subs.get_mut(group))
                .filter(|_| matches!(group, SubscriptionName::Group(_)))
                .ok_or_else(|| {
                    StoreError::NotFound(format!("no group subscription {group} on {topic}"))
                })?;
            if member {
                state.members.insert(identity.to_owned());
            } else {
                state.members.remove(identity);
            }
            Ok(())
        })
    }

    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>> {
        self.ready(|s| {
            Ok(s.topics
                .iter()
                .flat_map(|(topic, t)| {
                    t.subs.iter().flat_map(move |(name, sub)| {
                        sub.members
                            .iter()
                            .map(move |m| (topic.clone(), name.clone(), m.clone()))
                    })
                })
                .collect())
        })
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
        self.ready(|s| Ok(s.sub_mut(topic, sub)?.pending.remove(&offset).is_some()))
    }

    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool> {
        self.ready(|s| {
            let Some(entry) = s.sub_mut(topic, sub)?.pending.get_mut(&offset) else {
                return Ok(false);
            };
            entry.in_flight = false;
            entry.due = not_before;
            Ok(true)
        })
    }

    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64> {
        self.ready(|s| {
            let mut released = 0;
            for t in s.topics.values_mut() {
                for sub in t.subs.values_mut() {
                    for entry in sub.pending.values_mut().filter(|e| e.in_flight) {
                        entry.in_flight = false;
                        entry.due = now;
                        released += 1;
                    }
                }
            }
            Ok(released)
        })
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
        self.ready(|s| {
            let Some(t) = s.topics.get(topic) else {
                return Ok(Vec::new());
            };
            let skip = usize::try_from(from.saturating_sub(t.first())).unwrap_or(usize::MAX);
            Ok(t.messages.iter().skip(skip).take(limit).cloned().collect())
        })
    }

    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>> {
        self.ready(|s| Ok(s.topics.get(topic).map(|t| t.info(topic))))
    }

    fn topics(&self) -> StoreFuture<'_, Vec<Topic>> {
        self.ready(|s| Ok(s.topics.keys().cloned().collect()))
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
