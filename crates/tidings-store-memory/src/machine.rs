//! The store's state and every operation on it, without locking, I/O or randomness.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

#[cfg(doc)]
use tidings_core::store::Store;
use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, Claimed, DeadLetter, Gap, MessageId,
    Millis, NewMessage, Offset, Overflow, QueueBound, Retention, Settle, StartFrom, StoreError,
    StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};
use tracing::{debug, warn};

use crate::ring::MessageRing;

/// The whole state of a store: every topic, subscription, pending entry and dead letter.
///
/// Every change is a method call whose result depends only on the state and the arguments
/// (the caller passes the clock and new message ids), so replaying the same calls on the same
/// state gives the same state and results: the journal store replays its log through it.
#[derive(Default)]
pub struct Machine {
    pub(crate) topics: BTreeMap<Topic, TopicState>,
    /// What the retained messages and dead letters count against a store's
    /// `max_retained_bytes`: the sum of their [`footprint`]s.
    pub(crate) footprint: u64,
}

/// What a message is counted as holding in memory, beyond its event name and payload: its
/// id, offset, time, the `String`s' own headers, its slot in the topic's ring and a share of
/// the idempotency-key map, its (empty) attachments vector. Measured: 385 bytes of RSS per
/// retained 256-byte message before messages had attachments (release, 1 M messages,
/// BENCHMARKS.md); with them, 421 bytes where the same build measured 389 before (debug,
/// 200,000 messages: +32 bytes, the `Vec<Bytes>` in each ring slot): ~160 bytes around the
/// payload and event name.
pub const MESSAGE_OVERHEAD: u64 = 160;

/// What each binary attachment of a message is counted as holding beyond its bytes: its
/// `Bytes` handle (32 bytes) and the header of its own allocation.
pub const ATTACHMENT_OVERHEAD: u64 = 48;

/// What one retained message or dead letter with this event name, payload and binary
/// attachments counts against `max_retained_bytes`.
pub fn footprint(event: &str, data: &str, attachments: &[Bytes]) -> u64 {
    event.len() as u64
        + tidings_core::store::payload_len(data, attachments)
        + attachments.len() as u64 * ATTACHMENT_OVERHEAD
        + MESSAGE_OVERHEAD
}

fn footprint_of(message: &StoredMessage) -> u64 {
    footprint(&message.event, &message.data, &message.attachments)
}

pub(crate) struct TopicState {
    pub(crate) head: Offset,
    /// The retained messages, offsets `first()..=head` without holes.
    pub(crate) messages: MessageRing,
    pub(crate) retained_bytes: u64,
    pub(crate) keys: HashMap<String, KeyRecord>,
    pub(crate) subs: BTreeMap<SubscriptionName, SubState>,
}

pub(crate) struct KeyRecord {
    pub(crate) id: MessageId,
    pub(crate) offset: Offset,
    pub(crate) at: Millis,
}

pub(crate) struct SubState {
    pub(crate) cursor: Offset,
    pub(crate) gaps: u64,
    /// Unsettled offsets below the cursor; every one of them is retained.
    pub(crate) pending: BTreeMap<Offset, Entry>,
    pub(crate) dead: BTreeMap<Offset, Dead>,
    /// Identities that are members (group subscriptions only).
    pub(crate) members: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) attempt: u32,
    pub(crate) in_flight: bool,
    /// The ack deadline when in flight, `not_before` when waiting.
    pub(crate) due: Millis,
}

pub(crate) struct Dead {
    /// A copy, so that the dead letter outlives the message's retention.
    pub(crate) message: StoredMessage,
    pub(crate) attempts: u32,
    pub(crate) dead_at: Millis,
}

impl TopicState {
    fn new() -> Self {
        TopicState {
            head: 0,
            messages: MessageRing::default(),
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
fn message_at(messages: &MessageRing, head: Offset, offset: Offset) -> Option<&StoredMessage> {
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
            members: BTreeSet::new(),
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

impl Machine {
    fn topic_mut(&mut self, topic: &Topic) -> Result<&mut TopicState, StoreError> {
        self.topics
            .get_mut(topic)
            .ok_or_else(|| topic_not_found(topic))
    }

    /// [`Store::append`] with the id the message gets if it is not a duplicate.
    pub fn append(
        &mut self,
        topic: &Topic,
        id: MessageId,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> Appended {
        let t = self
            .topics
            .entry(topic.clone())
            .or_insert_with(TopicState::new);
        if let Some(first) = t.duplicate(&msg, dedup_window) {
            return first;
        }
        self.footprint += footprint(&msg.event, &msg.data, &msg.attachments);
        let offset = t.head + 1;
        t.head = offset;
        t.retained_bytes += msg.payload_len();
        if let Some(key) = msg.key {
            let at = msg.published_at;
            t.keys.insert(key, KeyRecord { id, offset, at });
        }
        t.messages.push_back(StoredMessage {
            id,
            offset,
            event: msg.event,
            data: msg.data,
            attachments: msg.attachments,
            published_at: msg.published_at,
        });
        Appended {
            id,
            offset,
            duplicate: false,
        }
    }

    /// [`Store::append_bounded`] with the id the message gets if it is stored.
    pub fn append_bounded(
        &mut self,
        topic: &Topic,
        id: MessageId,
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
        let appended = self.append(topic, id, msg, dedup_window);
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

    /// [`Store::subscribe`].
    pub fn subscribe(
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

    /// [`Store::claim`].
    pub fn claim(
        &mut self,
        topic: &Topic,
        sub: &SubscriptionName,
        opts: ClaimOptions,
    ) -> Result<ClaimResult, StoreError> {
        let Machine { topics, footprint } = self;
        let t = topics
            .get_mut(topic)
            .ok_or_else(|| topic_not_found(topic))?;
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
                *footprint += footprint_of(message);
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
                *footprint += footprint_of(message);
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

    /// [`Store::dead_letters`].
    pub fn dead_letters(&self, topic: &Topic) -> Result<Vec<DeadLetter>, StoreError> {
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

    /// [`Store::requeue_dead`].
    pub fn requeue_dead(
        &mut self,
        topic: &Topic,
        id: MessageId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let Machine { topics, footprint } = self;
        let t = topics
            .get_mut(topic)
            .ok_or_else(|| topic_not_found(topic))?;
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
                if let Some(dead) = s.dead.remove(&offset) {
                    *footprint -= footprint_of(&dead.message);
                }
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

    /// [`Store::enforce_retention`].
    pub fn enforce_retention(
        &mut self,
        topic: &Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> Result<Vec<Gap>, StoreError> {
        let Machine { topics, footprint } = self;
        let t = topics
            .get_mut(topic)
            .ok_or_else(|| topic_not_found(topic))?;
        while let Some(oldest) = t.messages.front() {
            let too_many = t.messages.len() as u64 > retention.max_messages;
            let too_big = t.retained_bytes > retention.max_bytes;
            let too_old = now.saturating_sub(oldest.published_at) > retention.max_age;
            if !(too_many || too_big || too_old) {
                break;
            }
            t.retained_bytes -= oldest.payload_len();
            *footprint -= footprint_of(oldest);
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

    /// [`Store::unsubscribe`].
    pub fn unsubscribe(&mut self, topic: &Topic, sub: &SubscriptionName) -> bool {
        let removed = self.topics.get_mut(topic).and_then(|t| t.subs.remove(sub));
        if let Some(removed) = &removed {
            let dead: u64 = removed
                .dead
                .values()
                .map(|d| footprint_of(&d.message))
                .sum();
            self.footprint -= dead;
        }
        let removed = removed.is_some();
        if removed {
            debug!(topic = %topic, sub = %sub, "subscription removed");
        }
        removed
    }

    /// [`Store::subscriptions`].
    pub fn subscriptions(&self) -> Vec<(Topic, SubscriptionName)> {
        self.topics
            .iter()
            .flat_map(|(topic, t)| t.subs.keys().map(|name| (topic.clone(), name.clone())))
            .collect()
    }

    /// [`Store::set_member`].
    pub fn set_member(
        &mut self,
        topic: &Topic,
        group: &SubscriptionName,
        identity: &str,
        member: bool,
    ) -> Result<(), StoreError> {
        let state = self
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
    }

    /// [`Store::members`].
    pub fn members(&self) -> Vec<(Topic, SubscriptionName, String)> {
        self.topics
            .iter()
            .flat_map(|(topic, t)| {
                t.subs.iter().flat_map(move |(name, sub)| {
                    sub.members
                        .iter()
                        .map(move |m| (topic.clone(), name.clone(), m.clone()))
                })
            })
            .collect()
    }

    /// [`Store::ack`].
    pub fn ack(
        &mut self,
        topic: &Topic,
        sub: &SubscriptionName,
        offset: Offset,
    ) -> Result<bool, StoreError> {
        Ok(self.sub_mut(topic, sub)?.pending.remove(&offset).is_some())
    }

    /// [`Store::requeue`].
    pub fn requeue(
        &mut self,
        topic: &Topic,
        sub: &SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> Result<bool, StoreError> {
        let Some(entry) = self.sub_mut(topic, sub)?.pending.get_mut(&offset) else {
            return Ok(false);
        };
        entry.in_flight = false;
        entry.due = not_before;
        Ok(true)
    }

    /// [`Store::settle`]: each ack or requeue in order.
    pub fn settle(
        &mut self,
        topic: &Topic,
        sub: &SubscriptionName,
        batch: &[Settle],
    ) -> Result<Vec<bool>, StoreError> {
        let s = self.sub_mut(topic, sub)?;
        Ok(batch
            .iter()
            .map(|settle| match *settle {
                Settle::Ack(offset) => s.pending.remove(&offset).is_some(),
                Settle::Requeue { offset, not_before } => match s.pending.get_mut(&offset) {
                    Some(entry) => {
                        entry.in_flight = false;
                        entry.due = not_before;
                        true
                    }
                    None => false,
                },
            })
            .collect())
    }

    /// [`Store::release_in_flight`].
    pub fn release_in_flight(&mut self, now: Millis) -> u64 {
        let mut released = 0;
        for t in self.topics.values_mut() {
            for sub in t.subs.values_mut() {
                for entry in sub.pending.values_mut().filter(|e| e.in_flight) {
                    entry.in_flight = false;
                    entry.due = now;
                    released += 1;
                }
            }
        }
        released
    }

    /// [`Store::history`].
    pub fn history(&self, topic: &Topic, from: Offset, limit: usize) -> Vec<StoredMessage> {
        let Some(t) = self.topics.get(topic) else {
            return Vec::new();
        };
        let skip = usize::try_from(from.saturating_sub(t.first())).unwrap_or(usize::MAX);
        t.messages.iter_from(skip).take(limit).cloned().collect()
    }

    /// [`Store::topic_info`].
    pub fn topic_info(&self, topic: &Topic) -> Option<TopicInfo> {
        self.topics.get(topic).map(|t| t.info(topic))
    }

    /// [`Store::oldest_unsettled`]: per subscription with unsettled entries, the publish
    /// time of its oldest one — its lowest pending offset, else its cursor when the cursor is
    /// at or below the head (every pending offset is retained; a cursor below the first
    /// retained offset is read as the first, which retention left it at).
    pub fn oldest_unsettled(&self, topic: &Topic) -> Vec<(SubscriptionName, Millis)> {
        let Some(t) = self.topics.get(topic) else {
            return Vec::new();
        };
        t.subs
            .iter()
            .filter_map(|(name, sub)| {
                let offset = match sub.pending.keys().next() {
                    Some(&o) => o,
                    None if sub.cursor <= t.head => sub.cursor.max(t.first()),
                    None => return None,
                };
                let at = message_at(&t.messages, t.head, offset)?.published_at;
                Some((name.clone(), at))
            })
            .collect()
    }

    /// [`Store::topics`].
    pub fn topics(&self) -> Vec<Topic> {
        self.topics.keys().cloned().collect()
    }

    /// Whether `sub` exists on `topic`.
    pub fn has_subscription(&self, topic: &Topic, sub: &SubscriptionName) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.subs.contains_key(sub))
    }

    /// What the retained messages and dead letters count against `max_retained_bytes` (the
    /// sum of their [`footprint`]s).
    pub fn footprint(&self) -> u64 {
        self.footprint
    }

    /// [`Machine::footprint`] counted from scratch, over every message and dead letter.
    pub(crate) fn count_footprint(&self) -> u64 {
        self.topics
            .values()
            .map(|t| {
                let messages: u64 = t.messages.iter().map(footprint_of).sum();
                let dead: u64 = t
                    .subs
                    .values()
                    .flat_map(|s| s.dead.values())
                    .map(|d| footprint_of(&d.message))
                    .sum();
                messages + dead
            })
            .sum()
    }

    /// `Ok` when appending `msg` to `topic` stays within `budget` (counted as
    /// [`Machine::footprint`] counts), or stores nothing (a duplicate within `dedup_window`);
    /// [`StoreError::Full`] otherwise. Stores call it before [`Machine::append`] when they
    /// enforce a budget; replay does not, so a budget lowered between runs never refuses
    /// what an earlier run stored.
    pub fn admits(
        &self,
        topic: &Topic,
        msg: &NewMessage,
        dedup_window: Millis,
        budget: Option<u64>,
    ) -> Result<(), StoreError> {
        let Some(budget) = budget else {
            return Ok(());
        };
        if let Some(t) = self.topics.get(topic) {
            if t.duplicate(msg, dedup_window).is_some() {
                return Ok(());
            }
        }
        let needed = footprint(&msg.event, &msg.data, &msg.attachments);
        if self.footprint.saturating_add(needed) <= budget {
            return Ok(());
        }
        Err(StoreError::Full(format!(
            "the store holds {} bytes of messages and dead letters and may hold {budget} \
             (max_retained_bytes); this message counts {needed}: nothing was stored",
            self.footprint
        )))
    }

    /// What [`Machine::enforce_retention`] can change, in brief: the first retained offset
    /// and the number of idempotency keys remembered. Equal before and after a retention pass
    /// means the pass changed nothing (gaps only arise when the first offset moves).
    pub fn retention_fingerprint(&self, topic: &Topic) -> Option<(Offset, usize)> {
        self.topics.get(topic).map(|t| (t.first(), t.keys.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(data: &str, key: Option<&str>) -> NewMessage {
        NewMessage {
            attachments: Vec::new(),
            event: "ev".into(),
            data: data.into(),
            key: key.map(str::to_owned),
            published_at: 0,
        }
    }

    fn claim(m: &mut Machine, topic: &Topic, sub: &SubscriptionName, max_deliveries: u32) {
        let opts = ClaimOptions {
            now: 0,
            max: 100,
            ack_timeout: 0,
            max_deliveries,
        };
        m.claim(topic, sub, opts).unwrap();
    }

    /// The footprint kept up to date by every change equals the one counted from scratch, and
    /// the snapshot's decoder recounts the same.
    fn check(m: &Machine, expected: u64) {
        assert_eq!(m.footprint(), expected);
        assert_eq!(m.count_footprint(), expected);
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(Machine::decode(&buf).unwrap().footprint(), expected);
    }

    #[test]
    fn the_footprint_follows_messages_and_dead_letters() {
        let mut m = Machine::default();
        let topic = Topic::new("t").unwrap();
        let sub = SubscriptionName::identity("a").unwrap();
        let each = footprint("ev", "12345678", &[]);
        assert_eq!(each, 2 + 8 + MESSAGE_OVERHEAD);
        m.subscribe(&topic, &sub, StartFrom::New).unwrap();
        for i in 0..4 {
            m.append(&topic, MessageId::new(), msg("12345678", None), 0);
            check(&m, each * (i + 1));
        }
        // A duplicate stores nothing and counts nothing.
        m.append(&topic, MessageId::new(), msg("12345678", Some("k")), 1000);
        m.append(&topic, MessageId::new(), msg("12345678", Some("k")), 1000);
        check(&m, each * 5);
        // Dead letters are copies: they count on top of the retained messages.
        claim(&mut m, &topic, &sub, 0);
        check(&m, each * 10);
        let dead = m.dead_letters(&topic).unwrap();
        assert!(m.requeue_dead(&topic, dead[0].message.id, 0).unwrap());
        check(&m, each * 9);
        // Retention removes messages (their dead letters stay).
        let keep_two = Retention {
            max_messages: 2,
            ..Retention::default()
        };
        m.enforce_retention(&topic, keep_two, 0, 0).unwrap();
        check(&m, each * 6);
        // Removing the subscription removes its dead letters.
        assert!(m.unsubscribe(&topic, &sub));
        check(&m, each * 2);
    }

    /// Attachments count their bytes and a handle each, in the footprint (and through a
    /// snapshot) and in the retained bytes that byte-based retention reads.
    #[test]
    fn attachments_count_in_the_footprint_and_retained_bytes() {
        let mut m = Machine::default();
        let topic = Topic::new("t").unwrap();
        let sub = SubscriptionName::identity("a").unwrap();
        m.subscribe(&topic, &sub, StartFrom::New).unwrap();
        let mut binary = msg("[1]", None);
        binary.attachments = vec![Bytes::from(vec![7u8; 1000]), Bytes::new()];
        let each = footprint("ev", "[1]", &binary.attachments);
        assert_eq!(
            each,
            2 + 3 + 1000 + 2 * ATTACHMENT_OVERHEAD + MESSAGE_OVERHEAD
        );
        m.append(&topic, MessageId::new(), binary.clone(), 0);
        check(&m, each);
        assert_eq!(m.topic_info(&topic).unwrap().retained_bytes, 1003);
        // Its dead letter is a copy, counted again.
        claim(&mut m, &topic, &sub, 0);
        check(&m, each * 2);
        let keep_none_by_bytes = Retention {
            max_bytes: 1002,
            ..Retention::default()
        };
        m.enforce_retention(&topic, keep_none_by_bytes, 0, 0)
            .unwrap();
        check(&m, each);
        assert!(m.history(&topic, 0, 10).is_empty());
    }

    #[test]
    fn a_budget_refuses_what_does_not_fit_but_answers_duplicates() {
        let mut m = Machine::default();
        let topic = Topic::new("t").unwrap();
        let each = footprint("ev", "x", &[]);
        let budget = Some(each * 2);
        for key in ["a", "b"] {
            m.admits(&topic, &msg("x", Some(key)), 1000, budget)
                .unwrap();
            m.append(&topic, MessageId::new(), msg("x", Some(key)), 1000);
        }
        let err = m
            .admits(&topic, &msg("x", Some("c")), 1000, budget)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Full(text) if text.contains("max_retained_bytes")),
            "{err}"
        );
        // A repeat of a stored key stores nothing, so it is answered even when full.
        m.admits(&topic, &msg("x", Some("a")), 1000, budget)
            .unwrap();
        // No budget, no bound.
        m.admits(&topic, &msg("x", Some("c")), 1000, None).unwrap();
        // Space comes back when retention trims.
        let keep_one = Retention {
            max_messages: 1,
            ..Retention::default()
        };
        m.enforce_retention(&topic, keep_one, 0, 1000).unwrap();
        m.admits(&topic, &msg("x", Some("c")), 1000, budget)
            .unwrap();
    }
}
