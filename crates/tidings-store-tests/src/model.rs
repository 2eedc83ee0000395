//! Model-based property test: random sequences of store operations run against the backend
//! and against [`Model`], a plain `BTreeMap` implementation of the trait's contract written
//! here independently of every backend. Every result is compared, and after every step the
//! whole visible state (topics, subscriptions, topic infos, histories, dead letters) too.

use std::collections::BTreeMap;
use std::fmt::Debug;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, Claimed, DeadLetter, Gap, MessageId,
    Millis, NewMessage, Offset, Overflow, QueueBound, Retention, Settle, StartFrom, Store,
    StoreError, StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};

use crate::Harness;

/// Runs `cases` random operation sequences (the `PROPTEST_CASES` environment variable
/// overrides it), each on a fresh store from `make`, and panics with the minimal failing
/// sequence on the first difference from the model.
///
/// # Panics
///
/// When the backend and the model disagree.
pub fn check<H: Harness>(make: impl Fn() -> H, cases: u32) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for the model test");
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case_strategy(), |case| {
        let harness = make();
        rt.block_on(run_case(harness.store(), &case))
    });
    if let Err(e) = result {
        panic!("store differs from the model: {e}");
    }
}

const TOPICS: [&str; 2] = ["t0", "t1.sub"];

fn topic(i: u8) -> Topic {
    Topic::new(TOPICS[usize::from(i) % TOPICS.len()]).unwrap()
}

fn sub(i: u8) -> SubscriptionName {
    match i % 3 {
        0 => SubscriptionName::identity("a").unwrap(),
        1 => SubscriptionName::identity("b").unwrap(),
        // Same name as the first identity: a different queue.
        _ => SubscriptionName::group("a").unwrap(),
    }
}

/// One random test case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The dedup window of every append and retention run.
    pub dedup_window: Millis,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// One operation. Small integers index topics (2) and subscriptions (3: two identities and a
/// group named like one of them); times are relative to a clock that only `Tick` advances.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Op {
    Tick(Millis),
    Append {
        topic: u8,
        key: Option<u8>,
        len: u8,
        skew: u8,
    },
    /// [`Store::append_bounded`] with `max_depth`, dropping the oldest when `drop_oldest`.
    AppendBounded {
        topic: u8,
        key: Option<u8>,
        len: u8,
        max_depth: u8,
        drop_oldest: bool,
    },
    Subscribe {
        topic: u8,
        sub: u8,
        from: StartFrom,
    },
    Unsubscribe {
        topic: u8,
        sub: u8,
    },
    Claim {
        topic: u8,
        sub: u8,
        max: u8,
        ack_timeout: u8,
        max_deliveries: u8,
    },
    Ack {
        topic: u8,
        sub: u8,
        offset: u8,
    },
    Requeue {
        topic: u8,
        sub: u8,
        offset: u8,
        delay: u8,
    },
    RequeueDead {
        topic: u8,
        pick: u8,
    },
    /// [`Store::settle`] of `entries` (offset, and the requeue delay or None for an ack) —
    /// then, with `claim` (max, ack timeout, max deliveries), the claim, by
    /// [`Store::settle_and_claim`].
    Settle {
        topic: u8,
        sub: u8,
        entries: Vec<(u8, Option<u8>)>,
        claim: Option<(u8, u8, u8)>,
    },
    Retention {
        topic: u8,
        max_age: u16,
        max_messages: u8,
        max_bytes: u8,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    use proptest::sample::select;
    // Times come from a few coarse values so that boundaries (a deadline reached exactly, a
    // key exactly `dedup_window` old) are hit often.
    let from = prop_oneof![
        Just(StartFrom::New),
        Just(StartFrom::Earliest),
        (0..12u64).prop_map(StartFrom::Offset),
    ];
    let short = || select(vec![0u8, 1, 5, 10, 20]);
    prop_oneof![
        3 => select(vec![0u64, 1, 2, 5, 10, 20]).prop_map(Op::Tick),
        4 => (0..2u8, proptest::option::of(0..3u8), 0..6u8, select(vec![0u8, 0, 1, 5]))
            .prop_map(|(topic, key, len, skew)| Op::Append { topic, key, len, skew }),
        3 => (0..2u8, proptest::option::of(0..3u8), 0..6u8, 0..4u8, any::<bool>())
            .prop_map(|(topic, key, len, max_depth, drop_oldest)| Op::AppendBounded {
                topic, key, len, max_depth, drop_oldest,
            }),
        2 => (0..2u8, 0..3u8, from).prop_map(|(topic, sub, from)| Op::Subscribe { topic, sub, from }),
        1 => (0..2u8, 0..3u8).prop_map(|(topic, sub)| Op::Unsubscribe { topic, sub }),
        4 => (0..2u8, 0..3u8, 0..4u8, short(), 0..4u8).prop_map(
            |(topic, sub, max, ack_timeout, max_deliveries)| Op::Claim {
                topic, sub, max, ack_timeout, max_deliveries,
            }
        ),
        3 => (0..2u8, 0..3u8, 0..10u8).prop_map(|(topic, sub, offset)| Op::Ack { topic, sub, offset }),
        2 => (0..2u8, 0..3u8, 0..10u8, short())
            .prop_map(|(topic, sub, offset, delay)| Op::Requeue { topic, sub, offset, delay }),
        2 => (0..2u8, any::<u8>()).prop_map(|(topic, pick)| Op::RequeueDead { topic, pick }),
        3 => (
            0..2u8,
            0..3u8,
            proptest::collection::vec((0..10u8, proptest::option::of(short())), 0..5),
            proptest::option::of((0..4u8, short(), 0..4u8)),
        )
            .prop_map(|(topic, sub, entries, claim)| Op::Settle { topic, sub, entries, claim }),
        2 => (
            0..2u8,
            select(vec![0u16, 5, 10, 20, 50, 1000]),
            select(vec![0u8, 1, 2, 4, 8, 100]),
            select(vec![0u8, 5, 10, 20, 50, 255]),
        )
            .prop_map(|(topic, max_age, max_messages, max_bytes)| Op::Retention {
                topic, max_age, max_messages, max_bytes,
            }),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        proptest::sample::select(vec![0u64, 1, 5, 10, 20]),
        proptest::collection::vec(op_strategy(), 1..80),
    )
        .prop_map(|(dedup_window, ops)| Case { dedup_window, ops })
}

/// The kind of an error: backends word their messages freely.
fn kind(e: &StoreError) -> String {
    match e {
        StoreError::NotFound(_) => "NotFound".to_owned(),
        StoreError::Invalid(_) => "Invalid".to_owned(),
        other => format!("{other:?}"),
    }
}

type Outcome<T> = Result<T, String>;

fn same<T: PartialEq + Debug>(what: &str, got: T, want: T) -> Result<(), TestCaseError> {
    if got == want {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}:\n  store: {got:?}\n  model: {want:?}"
        )))
    }
}

/// The subscriptions that refused a bounded append, with their depths.
type FullQueues = Vec<(SubscriptionName, u64)>;

/// The reference: the trait's contract, directly.
#[derive(Debug, Default, Clone)]
pub struct Model {
    topics: BTreeMap<Topic, MTopic>,
}

#[derive(Debug, Default, Clone)]
struct MTopic {
    head: Offset,
    messages: BTreeMap<Offset, StoredMessage>,
    keys: BTreeMap<String, (Offset, MessageId, Millis)>,
    subs: BTreeMap<SubscriptionName, MSub>,
}

#[derive(Debug, Default, Clone)]
struct MSub {
    cursor: Offset,
    gaps: u64,
    pending: BTreeMap<Offset, MEntry>,
    dead: BTreeMap<Offset, (StoredMessage, u32, Millis)>,
}

#[derive(Debug, Clone, Copy)]
struct MEntry {
    attempt: u32,
    in_flight: bool,
    due: Millis,
}

impl MTopic {
    fn first(&self) -> Offset {
        self.messages
            .keys()
            .next()
            .copied()
            .unwrap_or(self.head + 1)
    }

    fn info(&self, topic: &Topic) -> TopicInfo {
        TopicInfo {
            topic: topic.clone(),
            head: self.head,
            first: self.first(),
            retained: self.messages.len() as u64,
            retained_bytes: self.messages.values().map(|m| m.payload_len()).sum(),
            subscriptions: self
                .subs
                .iter()
                .map(|(name, s)| SubscriptionInfo {
                    name: name.clone(),
                    pending: s.pending.len() as u64 + (self.head + 1 - s.cursor),
                    in_flight: s.pending.values().filter(|e| e.in_flight).count() as u64,
                    dead: s.dead.len() as u64,
                    gaps: s.gaps,
                    cursor: s.cursor,
                })
                .collect(),
        }
    }
}

impl MTopic {
    /// [`Store::oldest_unsettled`]: the lowest pending offset, else the cursor at or below
    /// the head; its message's publish time.
    fn oldest_unsettled(&self) -> Vec<(SubscriptionName, Millis)> {
        self.subs
            .iter()
            .filter_map(|(name, s)| {
                let offset = match s.pending.keys().next() {
                    Some(&o) => o,
                    None if s.cursor <= self.head => s.cursor.max(self.first()),
                    None => return None,
                };
                let at = self.messages.get(&offset)?.published_at;
                Some((name.clone(), at))
            })
            .collect()
    }
}

fn not_found() -> String {
    "NotFound".to_owned()
}

impl Model {
    /// Appends; `new_id` is the id the backend chose (ids are random).
    fn append(
        &mut self,
        topic: &Topic,
        msg: NewMessage,
        window: Millis,
        new_id: MessageId,
    ) -> Appended {
        let t = self.topics.entry(topic.clone()).or_default();
        if let Some(&(offset, id, at)) = msg.key.as_ref().and_then(|k| t.keys.get(k)) {
            if msg.published_at.saturating_sub(at) <= window {
                return Appended {
                    id,
                    offset,
                    duplicate: true,
                };
            }
        }
        t.head += 1;
        let offset = t.head;
        if let Some(k) = &msg.key {
            t.keys.insert(k.clone(), (offset, new_id, msg.published_at));
        }
        t.messages.insert(
            offset,
            StoredMessage {
                id: new_id,
                offset,
                event: msg.event,
                data: msg.data,
                attachments: msg.attachments,
                published_at: msg.published_at,
            },
        );
        Appended {
            id: new_id,
            offset,
            duplicate: false,
        }
    }

    /// The bounded append: Err(the full subscriptions with their depths) when refused;
    /// otherwise what `append` answers and the entries dropped.
    fn append_bounded(
        &mut self,
        topic: &Topic,
        msg: NewMessage,
        window: Millis,
        bound: QueueBound,
        new_id: MessageId,
    ) -> Result<(Appended, Vec<Gap>), FullQueues> {
        if let Some(t) = self.topics.get(topic) {
            let duplicate = msg
                .key
                .as_ref()
                .and_then(|k| t.keys.get(k))
                .is_some_and(|&(_, _, at)| msg.published_at.saturating_sub(at) <= window);
            if !duplicate && bound.overflow == Overflow::Reject {
                let full: Vec<(SubscriptionName, u64)> = t
                    .subs
                    .iter()
                    .map(|(name, s)| {
                        (
                            name.clone(),
                            s.pending.len() as u64 + (t.head + 1 - s.cursor),
                        )
                    })
                    .filter(|(_, depth)| *depth >= bound.max_depth)
                    .collect();
                if !full.is_empty() {
                    return Err(full);
                }
            }
        }
        let appended = self.append(topic, msg, window, new_id);
        let mut dropped = Vec::new();
        if appended.duplicate || bound.overflow == Overflow::Reject {
            return Ok((appended, dropped));
        }
        let t = self.topics.entry(topic.clone()).or_default();
        let head = t.head;
        for (name, s) in &mut t.subs {
            // The unsettled offsets, oldest first: pending entries, then never delivered.
            let unsettled: Vec<Offset> = s.pending.keys().copied().chain(s.cursor..=head).collect();
            let excess = (unsettled.len() as u64).saturating_sub(bound.max_depth);
            for &offset in unsettled.iter().take(excess as usize) {
                s.gaps += 1;
                if s.pending.remove(&offset).is_none() {
                    s.cursor = offset + 1;
                }
                match dropped.last_mut() {
                    Some(Gap {
                        subscription, to, ..
                    }) if subscription == name && *to + 1 == offset => {
                        *to = offset;
                    }
                    _ => dropped.push(Gap {
                        topic: topic.clone(),
                        subscription: name.clone(),
                        from: offset,
                        to: offset,
                    }),
                }
            }
        }
        Ok((appended, sorted_gaps(dropped)))
    }

    fn subscribe(
        &mut self,
        topic: &Topic,
        name: &SubscriptionName,
        from: StartFrom,
    ) -> Outcome<SubscriptionInfo> {
        let (head, first) = self
            .topics
            .get(topic)
            .map_or((0, 1), |t| (t.head, t.first()));
        if let Some(t) = self.topics.get(topic) {
            if t.subs.contains_key(name) {
                return Ok(self.sub_info(topic, name));
            }
        }
        let cursor = match from {
            StartFrom::New => head + 1,
            StartFrom::Earliest => first,
            StartFrom::Offset(o) if o > head + 1 => return Err("Invalid".to_owned()),
            StartFrom::Offset(o) => o.max(first),
        };
        let t = self.topics.entry(topic.clone()).or_default();
        t.subs.insert(
            name.clone(),
            MSub {
                cursor,
                ..MSub::default()
            },
        );
        Ok(self.sub_info(topic, name))
    }

    fn sub_info(&self, topic: &Topic, name: &SubscriptionName) -> SubscriptionInfo {
        self.topics[topic]
            .info(topic)
            .subscriptions
            .into_iter()
            .find(|s| &s.name == name)
            .unwrap()
    }

    fn unsubscribe(&mut self, topic: &Topic, name: &SubscriptionName) -> bool {
        self.topics
            .get_mut(topic)
            .is_some_and(|t| t.subs.remove(name).is_some())
    }

    fn sub_mut(
        &mut self,
        topic: &Topic,
        name: &SubscriptionName,
    ) -> Outcome<(&mut MSub, Offset, &BTreeMap<Offset, StoredMessage>)> {
        let t = self.topics.get_mut(topic).ok_or_else(not_found)?;
        let s = t.subs.get_mut(name).ok_or_else(not_found)?;
        Ok((s, t.head, &t.messages))
    }

    fn claim(
        &mut self,
        topic: &Topic,
        name: &SubscriptionName,
        o: ClaimOptions,
    ) -> Outcome<ClaimResult> {
        let (s, head, messages) = self.sub_mut(topic, name)?;
        let mut out = ClaimResult::default();
        let due: Vec<Offset> = s
            .pending
            .iter()
            .filter(|(_, e)| e.due <= o.now)
            .map(|(&off, _)| off)
            .collect();
        for off in due {
            if out.claimed.len() >= o.max {
                break;
            }
            let e = s.pending[&off];
            let message = messages[&off].clone();
            if e.attempt >= o.max_deliveries {
                s.pending.remove(&off);
                s.dead.insert(off, (message, e.attempt, o.now));
                out.dead_lettered.push(off);
            } else {
                let entry = MEntry {
                    attempt: e.attempt + 1,
                    in_flight: true,
                    due: o.now + o.ack_timeout,
                };
                s.pending.insert(off, entry);
                out.claimed.push(Claimed {
                    message,
                    attempt: e.attempt + 1,
                });
            }
        }
        while out.claimed.len() < o.max && s.cursor <= head {
            let off = s.cursor;
            s.cursor += 1;
            let message = messages[&off].clone();
            if o.max_deliveries == 0 {
                s.dead.insert(off, (message, 0, o.now));
                out.dead_lettered.push(off);
            } else {
                let entry = MEntry {
                    attempt: 1,
                    in_flight: true,
                    due: o.now + o.ack_timeout,
                };
                s.pending.insert(off, entry);
                out.claimed.push(Claimed {
                    message,
                    attempt: 1,
                });
            }
        }
        out.next_due = s.pending.values().map(|e| e.due).min();
        Ok(out)
    }

    fn ack(&mut self, topic: &Topic, name: &SubscriptionName, offset: Offset) -> Outcome<bool> {
        Ok(self
            .sub_mut(topic, name)?
            .0
            .pending
            .remove(&offset)
            .is_some())
    }

    fn requeue(
        &mut self,
        topic: &Topic,
        name: &SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> Outcome<bool> {
        let (s, _, _) = self.sub_mut(topic, name)?;
        Ok(match s.pending.get_mut(&offset) {
            Some(e) => {
                *e = MEntry {
                    in_flight: false,
                    due: not_before,
                    ..*e
                };
                true
            }
            None => false,
        })
    }

    fn dead_letters(&self, topic: &Topic) -> Outcome<Vec<DeadLetter>> {
        let t = self.topics.get(topic).ok_or_else(not_found)?;
        let mut out: Vec<DeadLetter> = t
            .subs
            .iter()
            .flat_map(|(name, s)| {
                s.dead.values().map(|(m, attempts, dead_at)| DeadLetter {
                    message: m.clone(),
                    subscription: name.clone(),
                    attempts: *attempts,
                    dead_at: *dead_at,
                })
            })
            .collect();
        DeadLetter::sort(&mut out);
        Ok(out)
    }

    fn requeue_dead(&mut self, topic: &Topic, id: MessageId, now: Millis) -> Outcome<bool> {
        let t = self.topics.get_mut(topic).ok_or_else(not_found)?;
        let mut found = false;
        for s in t.subs.values_mut() {
            let hits: Vec<Offset> = s
                .dead
                .iter()
                .filter(|(off, (m, _, _))| m.id == id && t.messages.contains_key(off))
                .map(|(&off, _)| off)
                .collect();
            for off in hits {
                s.dead.remove(&off);
                s.pending.insert(
                    off,
                    MEntry {
                        attempt: 0,
                        in_flight: false,
                        due: now,
                    },
                );
                found = true;
            }
        }
        Ok(found)
    }

    fn enforce_retention(
        &mut self,
        topic: &Topic,
        r: Retention,
        now: Millis,
        window: Millis,
    ) -> Outcome<Vec<Gap>> {
        let t = self.topics.get_mut(topic).ok_or_else(not_found)?;
        while let Some((&off, m)) = t.messages.iter().next() {
            let bytes: u64 = t.messages.values().map(|m| m.payload_len()).sum();
            let remove = t.messages.len() as u64 > r.max_messages
                || bytes > r.max_bytes
                || now.saturating_sub(m.published_at) > r.max_age;
            if !remove {
                break;
            }
            t.messages.remove(&off);
        }
        let first = t.first();
        let mut gaps = Vec::new();
        for (name, s) in &mut t.subs {
            let mut lost: Vec<Offset> = s.pending.keys().copied().filter(|&o| o < first).collect();
            lost.extend(s.cursor..first);
            for o in &lost {
                s.pending.remove(o);
            }
            s.cursor = s.cursor.max(first);
            s.gaps += lost.len() as u64;
            // Offsets to maximal runs.
            for o in lost {
                match gaps.last_mut() {
                    Some(Gap {
                        subscription, to, ..
                    }) if subscription == name && *to + 1 == o => *to = o,
                    _ => gaps.push(Gap {
                        topic: topic.clone(),
                        subscription: name.clone(),
                        from: o,
                        to: o,
                    }),
                }
            }
        }
        t.keys
            .retain(|_, (_, _, at)| now.saturating_sub(*at) <= window);
        Ok(gaps)
    }

    fn history(&self, topic: &Topic) -> Vec<StoredMessage> {
        self.topics
            .get(topic)
            .map(|t| t.messages.values().cloned().collect())
            .unwrap_or_default()
    }

    fn subscriptions(&self) -> Vec<(Topic, SubscriptionName)> {
        self.topics
            .iter()
            .flat_map(|(t, mt)| mt.subs.keys().map(move |s| (t.clone(), s.clone())))
            .collect()
    }
}

fn sorted_gaps(mut gaps: Vec<Gap>) -> Vec<Gap> {
    gaps.sort_by(|a, b| (&a.subscription, a.from).cmp(&(&b.subscription, b.from)));
    gaps
}

/// Runs one case against the store and the model.
async fn run_case<S: Store>(store: &S, case: &Case) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut now: Millis = 1_000;
    for (step, op) in case.ops.iter().enumerate() {
        let ctx = format!("step {step} {op:?} at {now}");
        apply(store, &mut model, op, &mut now, case.dedup_window, &ctx).await?;
        compare_state(store, &model)
            .await
            .map_err(|e| TestCaseError::fail(format!("after {ctx}: {e}")))?;
    }
    Ok(())
}

/// Runs one case like the model-based test, and crashes the store before every step in
/// `crash_before` (and after the last step when it holds `case.ops.len()`): `crash` takes the
/// running store and must return a store opened on what a crash at that instant leaves on disk
/// (e.g. a copy of the files taken while the store still runs, as `kill -9` leaves them).
///
/// Every step returned before the crash, so everything it confirmed must still be there: the
/// reopened store's whole visible state must equal the model's, which a crash does not touch.
///
/// # Errors
///
/// The first difference from the model, or why `crash` could not reopen the store.
pub async fn run_case_with_crashes<S: Store>(
    mut store: S,
    case: &Case,
    crash_before: &[usize],
    mut crash: impl FnMut(S) -> Result<S, String>,
) -> Result<(), String> {
    let mut model = Model::default();
    let mut now: Millis = 1_000;
    for step in 0..=case.ops.len() {
        if crash_before.contains(&step) {
            store = crash(store).map_err(|e| format!("reopening before step {step}: {e}"))?;
            compare_state(&store, &model)
                .await
                .map_err(|e| format!("after a crash before step {step}: {e}"))?;
        }
        let Some(op) = case.ops.get(step) else {
            break;
        };
        let ctx = format!("step {step} {op:?} at {now}");
        apply(&store, &mut model, op, &mut now, case.dedup_window, &ctx)
            .await
            .map_err(|e| e.to_string())?;
    }
    compare_state(&store, &model)
        .await
        .map_err(|e| format!("at the end: {e}"))
}

/// Whether the store confirms `op` only once it is durable (publishes and subscription
/// changes); acks, requeues, claims and retention may be lost by a crash (a store that answers
/// them before they are durable turns a crash into redeliveries, never into a loss).
pub fn confirmed_durable(op: &Op) -> bool {
    matches!(
        op,
        Op::Append { .. } | Op::Subscribe { .. } | Op::Unsubscribe { .. } | Op::RequeueDead { .. }
    )
}

/// [`run_case_with_crashes`] for a store whose crash may lose the last changes it did not
/// confirm as durable (see [`confirmed_durable`]). `position` reads the store's position in
/// its own log of changes (one more per operation that changed something); `crash` gets the
/// position of the newest change whose operation was confirmed durable and returns the store
/// reopened on what the crash left, which must hold at least that.
///
/// After each crash the reopened store's whole visible state must equal the model's as it was
/// after the operation that brought the log to the reopened position: what a crash keeps is a
/// prefix of the changes, never a mix. The run then goes on from there.
///
/// # Errors
///
/// The first difference from the model, a confirmed change lost, or a position no prefix of
/// the operations produced.
pub async fn run_case_with_lossy_crashes<S: Store>(
    mut store: S,
    case: &Case,
    crash_before: &[usize],
    position: impl Fn(&S) -> u64,
    mut crash: impl FnMut(S, u64) -> Result<S, String>,
) -> Result<(), String> {
    let mut model = Model::default();
    let mut now: Millis = 1_000;
    // (position after a step, the model after it) since the last crash.
    let mut prefixes: Vec<(u64, Model)> = vec![(position(&store), model.clone())];
    let mut must_keep = position(&store);
    for step in 0..=case.ops.len() {
        if crash_before.contains(&step) {
            store = crash(store, must_keep)
                .map_err(|e| format!("reopening before step {step}: {e}"))?;
            let kept = position(&store);
            if kept < must_keep {
                return Err(format!(
                    "a crash before step {step} lost changes {}..={must_keep} of confirmed operations",
                    kept + 1
                ));
            }
            let Some((_, at)) = prefixes.iter().rev().find(|(p, _)| *p == kept) else {
                let known: Vec<u64> = prefixes.iter().map(|p| p.0).collect();
                return Err(format!(
                    "after a crash before step {step} the store is at change {kept}, which no \
                     prefix of the operations reached ({known:?})"
                ));
            };
            model = at.clone();
            compare_state(&store, &model).await.map_err(|e| {
                format!("after a crash before step {step} (changes up to {kept} kept): {e}")
            })?;
            prefixes = vec![(kept, model.clone())];
            must_keep = kept;
        }
        let Some(op) = case.ops.get(step) else {
            break;
        };
        let ctx = format!("step {step} {op:?} at {now}");
        apply(&store, &mut model, op, &mut now, case.dedup_window, &ctx)
            .await
            .map_err(|e| e.to_string())?;
        let at = position(&store);
        if confirmed_durable(op) {
            must_keep = at;
        }
        prefixes.push((at, model.clone()));
    }
    compare_state(&store, &model)
        .await
        .map_err(|e| format!("at the end: {e}"))
}

/// Runs `op` on the store and on the model and compares their answers.
async fn apply<S: Store>(
    store: &S,
    model: &mut Model,
    op: &Op,
    now: &mut Millis,
    window: Millis,
    ctx: &str,
) -> Result<(), TestCaseError> {
    let now = {
        if let Op::Tick(d) = *op {
            *now += d;
        }
        *now
    };
    match *op {
        Op::Tick(_) => {}
        Op::Append {
            topic: ti,
            key,
            len,
            skew,
        } => {
            let t = topic(ti);
            // Every third message carries binary attachments (0 to 2 bytes long, so that one is
            // empty), referenced by placeholders in its data.
            let attachments: Vec<bytes::Bytes> = if len % 3 == 1 {
                (0..=len % 4)
                    .map(|i| bytes::Bytes::from(vec![len ^ i; usize::from(i % 3)]))
                    .collect()
            } else {
                Vec::new()
            };
            let placeholders: String = (0..attachments.len())
                .map(|n| format!(",{{\"_placeholder\":true,\"num\":{n}}}"))
                .collect();
            let msg = NewMessage {
                event: format!("e{len}"),
                data: format!(
                    "[\"{}{}\"{placeholders}]",
                    "é".repeat(usize::from(len % 3)),
                    "d".repeat(usize::from(len))
                ),
                attachments,
                key: key.map(|k| format!("k{k}")),
                published_at: now - Millis::from(skew),
            };
            let got = store
                .append(&t, msg.clone(), window)
                .await
                .map_err(|e| kind(&e));
            let want = match &got {
                Ok(r) => Ok(model.append(&t, msg, window, r.id)),
                Err(_) => Ok(model.append(&t, msg, window, MessageId(0))),
            };
            same(ctx, got, want)?;
        }
        Op::AppendBounded {
            topic: ti,
            key,
            len,
            max_depth,
            drop_oldest,
        } => {
            let t = topic(ti);
            let msg = NewMessage {
                attachments: Vec::new(),
                event: format!("b{len}"),
                data: format!("\"{}\"", "b".repeat(usize::from(len))),
                key: key.map(|k| format!("k{k}")),
                published_at: now,
            };
            let bound = QueueBound {
                max_depth: u64::from(max_depth),
                overflow: if drop_oldest {
                    Overflow::DropOldest
                } else {
                    Overflow::Reject
                },
            };
            let got = store
                .append_bounded(&t, msg.clone(), window, bound)
                .await
                .map_err(|e| kind(&e));
            match got {
                Err(e) => same(ctx, Err(e), Ok(()))?,
                Ok(BoundedAppend::Full {
                    subscription,
                    depth,
                }) => {
                    // The store names one of the full subscriptions.
                    let full = model
                        .append_bounded(&t, msg, window, bound, MessageId(0))
                        .err()
                        .unwrap_or_default();
                    same(ctx, full.contains(&(subscription.clone(), depth)), true).map_err(
                        |e| TestCaseError::fail(format!("{e}\n  full: {subscription} {depth}")),
                    )?;
                }
                Ok(BoundedAppend::Appended { appended, dropped }) => {
                    let want = model.append_bounded(&t, msg, window, bound, appended.id);
                    same(ctx, Ok((appended, sorted_gaps(dropped))), want)?;
                }
            }
        }
        Op::Subscribe {
            topic: ti,
            sub: si,
            from,
        } => {
            let (t, s) = (topic(ti), sub(si));
            let got = store.subscribe(&t, &s, from).await.map_err(|e| kind(&e));
            same(ctx, got, model.subscribe(&t, &s, from))?;
        }
        Op::Unsubscribe { topic: ti, sub: si } => {
            let (t, s) = (topic(ti), sub(si));
            let got = store.unsubscribe(&t, &s).await.map_err(|e| kind(&e));
            same(ctx, got, Ok(model.unsubscribe(&t, &s)))?;
        }
        Op::Claim {
            topic: ti,
            sub: si,
            max,
            ack_timeout,
            max_deliveries,
        } => {
            let (t, s) = (topic(ti), sub(si));
            let o = ClaimOptions {
                now,
                max: usize::from(max),
                ack_timeout: Millis::from(ack_timeout),
                max_deliveries: u32::from(max_deliveries),
            };
            let got = store.claim(&t, &s, o).await.map_err(|e| kind(&e));
            same(ctx, got, model.claim(&t, &s, o))?;
        }
        Op::Ack {
            topic: ti,
            sub: si,
            offset,
        } => {
            let (t, s) = (topic(ti), sub(si));
            let got = store
                .ack(&t, &s, Offset::from(offset))
                .await
                .map_err(|e| kind(&e));
            same(ctx, got, model.ack(&t, &s, Offset::from(offset)))?;
        }
        Op::Requeue {
            topic: ti,
            sub: si,
            offset,
            delay,
        } => {
            let (t, s) = (topic(ti), sub(si));
            let not_before = now + Millis::from(delay);
            let got = store
                .requeue(&t, &s, Offset::from(offset), not_before)
                .await
                .map_err(|e| kind(&e));
            same(
                ctx,
                got,
                model.requeue(&t, &s, Offset::from(offset), not_before),
            )?;
        }
        Op::Settle {
            topic: ti,
            sub: si,
            ref entries,
            claim,
        } => {
            let (t, s) = (topic(ti), sub(si));
            let batch: Vec<Settle> = entries
                .iter()
                .map(|&(offset, delay)| match delay {
                    None => Settle::Ack(Offset::from(offset)),
                    Some(d) => Settle::Requeue {
                        offset: Offset::from(offset),
                        not_before: now + Millis::from(d),
                    },
                })
                .collect();
            let mut want = Vec::new();
            let mut model_err = None;
            for settle in &batch {
                let r = match *settle {
                    Settle::Ack(offset) => model.ack(&t, &s, offset),
                    Settle::Requeue { offset, not_before } => {
                        model.requeue(&t, &s, offset, not_before)
                    }
                };
                match r {
                    Ok(flag) => want.push(flag),
                    Err(e) => {
                        model_err = Some(e);
                        break;
                    }
                }
            }
            match claim {
                // The trait leaves an empty settle of an unknown subscription open.
                None if batch.is_empty() => {}
                None => {
                    let got = store.settle(&t, &s, &batch).await.map_err(|e| kind(&e));
                    same(ctx, got, model_err.map_or(Ok(want), Err))?;
                }
                Some((max, ack_timeout, max_deliveries)) => {
                    let o = ClaimOptions {
                        now,
                        max: usize::from(max),
                        ack_timeout: Millis::from(ack_timeout),
                        max_deliveries: u32::from(max_deliveries),
                    };
                    let got = store
                        .settle_and_claim(&t, &s, &batch, o)
                        .await
                        .map_err(|e| kind(&e));
                    let want = match model_err {
                        Some(e) => Err(e),
                        None => model.claim(&t, &s, o).map(|c| (want, c)),
                    };
                    same(ctx, got, want)?;
                }
            }
        }
        Op::RequeueDead { topic: ti, pick } => {
            let t = topic(ti);
            // Mostly a listed dead letter; otherwise a retained message's id or a random one.
            let dead = model.dead_letters(&t).unwrap_or_default();
            let history = model.history(&t);
            let id = if !dead.is_empty() && pick < 192 {
                dead[usize::from(pick) % dead.len()].message.id
            } else if !history.is_empty() && pick < 224 {
                history[usize::from(pick) % history.len()].id
            } else {
                MessageId(u128::from(pick) + 1)
            };
            let got = store.requeue_dead(&t, id, now).await.map_err(|e| kind(&e));
            same(ctx, got, model.requeue_dead(&t, id, now))?;
        }
        Op::Retention {
            topic: ti,
            max_age,
            max_messages,
            max_bytes,
        } => {
            let t = topic(ti);
            let r = Retention {
                max_age: Millis::from(max_age),
                max_messages: u64::from(max_messages),
                max_bytes: u64::from(max_bytes),
            };
            let got = store
                .enforce_retention(&t, r, now, window)
                .await
                .map(sorted_gaps)
                .map_err(|e| kind(&e));
            let want = model.enforce_retention(&t, r, now, window).map(sorted_gaps);
            same(ctx, got, want)?;
        }
    }
    Ok(())
}

/// Compares everything the trait lets a caller see.
async fn compare_state<S: Store>(store: &S, model: &Model) -> Result<(), TestCaseError> {
    let mut topics = store.topics().await.map_err(|e| kind(&e));
    if let Ok(t) = &mut topics {
        t.sort();
    }
    same("topics", topics, Ok(model.topics.keys().cloned().collect()))?;
    let mut subs = store.subscriptions().await.map_err(|e| kind(&e));
    if let Ok(s) = &mut subs {
        s.sort();
    }
    same("subscriptions", subs, Ok(model.subscriptions()))?;
    for i in 0..TOPICS.len() as u8 {
        let t = topic(i);
        let mut info = store.topic_info(&t).await.map_err(|e| kind(&e));
        if let Ok(Some(info)) = &mut info {
            info.subscriptions.sort_by(|a, b| a.name.cmp(&b.name));
        }
        same(
            "topic_info",
            info,
            Ok(model.topics.get(&t).map(|mt| mt.info(&t))),
        )?;
        let history = store.history(&t, 0, usize::MAX).await.map_err(|e| kind(&e));
        same("history", history, Ok(model.history(&t)))?;
        let mut dead = store.dead_letters(&t).await.map_err(|e| kind(&e));
        if let Ok(d) = &mut dead {
            if d.windows(2).any(|w| w[0].dead_at > w[1].dead_at) {
                return Err(TestCaseError::fail(format!(
                    "dead letters not oldest first: {d:?}"
                )));
            }
            DeadLetter::sort(d);
        }
        same("dead_letters", dead, model.dead_letters(&t))?;
        // Consumer lag's input, when the backend reports it.
        if let Ok(Some(mut oldest)) = store.oldest_unsettled(&t).await {
            oldest.sort();
            let want = model
                .topics
                .get(&t)
                .map(MTopic::oldest_unsettled)
                .unwrap_or_default();
            same("oldest_unsettled", oldest, want)?;
        }
    }
    Ok(())
}
