//! One function per behaviour of the [`Store`] contract. Each takes a fresh, empty store and
//! panics on the first difference.
//!
//! Where the trait's docs leave a choice open, these tests pin the choice every backend makes
//! (see `tidings-store-memory`'s crate docs for the list): inclusive time boundaries, clamping
//! of start offsets, retention trimming from the front, `requeue_dead` across subscriptions.
//! Lists whose order the trait does not specify are compared sorted.

use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, DeadLetter, Gap, Millis, NewMessage,
    Offset, Overflow, QueueBound, Retention, Settle, StartFrom, Store, StoreError, StoredMessage,
    SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

fn id(name: &str) -> SubscriptionName {
    SubscriptionName::identity(name).unwrap()
}

fn group(name: &str) -> SubscriptionName {
    SubscriptionName::group(name).unwrap()
}

fn msg(data: &str, at: Millis) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        event: "news".to_owned(),
        data: data.to_owned(),
        key: None,
        published_at: at,
    }
}

fn keyed(data: &str, key: &str, at: Millis) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        key: Some(key.to_owned()),
        ..msg(data, at)
    }
}

/// Claim options: ack timeout 1000 ms, 5 deliveries.
fn opts(now: Millis, max: usize) -> ClaimOptions {
    ClaimOptions {
        now,
        max,
        ack_timeout: 1000,
        max_deliveries: 5,
    }
}

/// `(offset, attempt)` of each claimed entry.
fn claimed(r: &ClaimResult) -> Vec<(Offset, u32)> {
    r.claimed
        .iter()
        .map(|c| (c.message.offset, c.attempt))
        .collect()
}

async fn append_n<S: Store>(store: &S, t: &Topic, n: u64, at: Millis) {
    for i in 0..n {
        store
            .append(t, msg(&format!("{{\"n\":{i}}}"), at), 0)
            .await
            .unwrap();
    }
}

async fn info<S: Store>(store: &S, t: &Topic) -> TopicInfo {
    store.topic_info(t).await.unwrap().expect("topic exists")
}

async fn sub_info<S: Store>(store: &S, t: &Topic, sub: &SubscriptionName) -> SubscriptionInfo {
    info(store, t)
        .await
        .subscriptions
        .into_iter()
        .find(|s| &s.name == sub)
        .expect("subscription listed in topic_info")
}

async fn history_offsets<S: Store>(
    store: &S,
    t: &Topic,
    from: Offset,
    limit: usize,
) -> Vec<Offset> {
    store
        .history(t, from, limit)
        .await
        .unwrap()
        .iter()
        .map(|m| m.offset)
        .collect()
}

fn retention(max_age: Millis, max_messages: u64, max_bytes: u64) -> Retention {
    Retention {
        max_age,
        max_messages,
        max_bytes,
    }
}

fn sorted_gaps(mut gaps: Vec<Gap>) -> Vec<(SubscriptionName, Offset, Offset)> {
    gaps.sort_by(|a, b| (&a.subscription, a.from).cmp(&(&b.subscription, b.from)));
    gaps.into_iter()
        .map(|g| (g.subscription, g.from, g.to))
        .collect()
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound(_)))
}

/// Offsets are 1, 2, 3… per topic; ids are distinct; messages read back in order.
pub async fn append_assigns_offsets_per_topic<S: Store>(store: &S) {
    let a = topic("a");
    let b = topic("b.x");
    let mut ids = Vec::new();
    for expected in 1..=3u64 {
        let r = store
            .append(&a, msg(&format!("[{expected}]"), 10 * expected), 0)
            .await
            .unwrap();
        assert_eq!(r.offset, expected);
        assert!(!r.duplicate);
        ids.push(r.id);
    }
    let rb = store.append(&b, msg("1", 5), 0).await.unwrap();
    assert_eq!(rb.offset, 1, "offsets are per topic");
    ids.push(rb.id);
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "message ids are distinct");

    let h = store.history(&a, 1, 10).await.unwrap();
    let got: Vec<_> = h
        .iter()
        .map(|m| (m.offset, m.id, m.data.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![(1, ids[0], "[1]"), (2, ids[1], "[2]"), (3, ids[2], "[3]")]
    );
    assert_eq!(
        h.iter().map(|m| m.published_at).collect::<Vec<_>>(),
        [10, 20, 30]
    );
    let i = info(store, &a).await;
    assert_eq!(
        (i.head, i.first, i.retained, i.retained_bytes),
        (3, 1, 3, 9)
    );
    assert!(i.subscriptions.is_empty());
    let mut topics = store.topics().await.unwrap();
    topics.sort();
    assert_eq!(topics, vec![a, b]);
}

/// Event and data come back exactly as appended; retained bytes count UTF-8 bytes of data.
pub async fn append_keeps_payloads_byte_for_byte<S: Store>(store: &S) {
    let t = topic("payloads");
    let data = "{ \"é\" : [1, 2.50, 1e3],\n\t\"z\": null }";
    let event = "évènement:2";
    let r = store
        .append(
            &t,
            NewMessage {
                attachments: Vec::new(),
                event: event.to_owned(),
                data: data.to_owned(),
                key: None,
                published_at: 1_700_000_000_000,
            },
            0,
        )
        .await
        .unwrap();
    let h = store.history(&t, 1, 1).await.unwrap();
    assert_eq!(
        h,
        vec![StoredMessage {
            id: r.id,
            offset: 1,
            event: event.to_owned(),
            data: data.to_owned(),
            attachments: Vec::new(),
            published_at: 1_700_000_000_000,
        }]
    );
    assert_eq!(info(store, &t).await.retained_bytes, data.len() as u64);
}

/// A message with binary attachments (Socket.IO placeholders in `data`): every byte value, an
/// empty attachment and a 256 KiB one, in order.
fn binary_message(at: Millis) -> NewMessage {
    let all: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..256 * 1024).map(|i: u32| (i * 7 % 251) as u8).collect();
    NewMessage {
        event: "file".to_owned(),
        data: r#"{"a":{"_placeholder":true,"num":0},"list":[{"_placeholder":true,"num":1},"x",{"deep":{"_placeholder":true,"num":2}}]}"#.to_owned(),
        attachments: vec![
            bytes::Bytes::from(all),
            bytes::Bytes::new(),
            bytes::Bytes::from(big),
        ],
        key: None,
        published_at: at,
    }
}

/// Binary attachments come back byte for byte, in order, from history, claims (new and
/// redelivered) and dead letters, and after a dead letter is requeued; retained bytes count
/// them.
pub async fn binary_attachments_are_kept<S: Store>(store: &S) {
    let t = topic("files");
    let sub = id("a");
    store.subscribe(&t, &sub, StartFrom::New).await.unwrap();
    let sent = binary_message(5);
    let plain = msg("1", 6);
    let r = store.append(&t, sent.clone(), 0).await.unwrap();
    store.append(&t, plain.clone(), 0).await.unwrap();
    let want = StoredMessage {
        id: r.id,
        offset: 1,
        event: sent.event.clone(),
        data: sent.data.clone(),
        attachments: sent.attachments.clone(),
        published_at: 5,
    };
    let h = store.history(&t, 1, 10).await.unwrap();
    assert_eq!(h[0], want);
    assert!(
        h[1].attachments.is_empty(),
        "a message without binary has none"
    );
    assert_eq!(
        info(store, &t).await.retained_bytes,
        sent.payload_len() + plain.payload_len()
    );
    assert_eq!(
        sent.payload_len(),
        sent.data.len() as u64 + 256 + 256 * 1024
    );
    let o = |now| ClaimOptions {
        now,
        max: 1,
        ack_timeout: 10,
        max_deliveries: 2,
    };
    let first = store.claim(&t, &sub, o(0)).await.unwrap();
    assert_eq!(first.claimed[0].message, want);
    let again = store.claim(&t, &sub, o(10)).await.unwrap();
    assert_eq!(
        (again.claimed[0].attempt, &again.claimed[0].message),
        (2, &want)
    );
    let dead = store.claim(&t, &sub, o(20)).await.unwrap();
    assert_eq!(dead.dead_lettered, [1]);
    let letters = store.dead_letters(&t).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message, want);
    assert!(store.requeue_dead(&t, r.id, 30).await.unwrap());
    let requeued = store.claim(&t, &sub, o(30)).await.unwrap();
    assert_eq!(requeued.claimed[0].message, want);
}

/// A bounded append and a duplicate keep attachments as an append does: the first append's
/// attachments stay, a duplicate's are not stored.
pub async fn bounded_and_duplicate_appends_keep_attachments<S: Store>(store: &S) {
    let t = topic("files");
    let sub = id("a");
    store.subscribe(&t, &sub, StartFrom::New).await.unwrap();
    let mut sent = binary_message(1);
    sent.key = Some("k".to_owned());
    let bound = QueueBound {
        max_depth: 10,
        overflow: Overflow::Reject,
    };
    let first = match store
        .append_bounded(&t, sent.clone(), 100, bound)
        .await
        .unwrap()
    {
        BoundedAppend::Appended { appended, .. } => appended,
        other => panic!("expected an append, got {other:?}"),
    };
    let mut repeat = sent.clone();
    repeat.attachments = vec![bytes::Bytes::from_static(b"other")];
    let dup = store.append(&t, repeat, 100).await.unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.offset, first.offset);
    let h = store.history(&t, 1, 10).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].attachments, sent.attachments);
    assert_eq!(h[0].data, sent.data);
}

/// A key seen within the window (`published_at - seen <= dedup_window`) returns the first
/// append and stores nothing; keys are per topic.
pub async fn duplicate_key_within_window_stores_nothing<S: Store>(store: &S) {
    let t = topic("orders");
    let first = store.append(&t, keyed("1", "k1", 1000), 500).await.unwrap();
    assert!(!first.duplicate);
    let dup = store
        .append(&t, keyed("other payload", "k1", 1500), 500)
        .await
        .unwrap();
    assert_eq!((dup.id, dup.offset, dup.duplicate), (first.id, 1, true));
    // A publisher's clock may be behind the first append's: still a duplicate.
    let early = store.append(&t, keyed("x", "k1", 900), 500).await.unwrap();
    assert_eq!((early.offset, early.duplicate), (1, true));
    let h = store.history(&t, 1, 10).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].data, "1");
    assert_eq!(info(store, &t).await.head, 1);

    let other_key = store.append(&t, keyed("2", "k2", 1500), 500).await.unwrap();
    assert_eq!((other_key.offset, other_key.duplicate), (2, false));
    let no_key = store.append(&t, msg("3", 1500), 500).await.unwrap();
    assert_eq!((no_key.offset, no_key.duplicate), (3, false));
    let other_topic = store
        .append(&topic("orders.eu"), keyed("1", "k1", 1500), 500)
        .await
        .unwrap();
    assert_eq!((other_topic.offset, other_topic.duplicate), (1, false));
}

/// Past the window the key appends again, and then refers to the new message.
pub async fn duplicate_key_after_window_appends<S: Store>(store: &S) {
    let t = topic("orders");
    let first = store.append(&t, keyed("1", "k", 1000), 500).await.unwrap();
    let later = store.append(&t, keyed("2", "k", 1501), 500).await.unwrap();
    assert_eq!((later.offset, later.duplicate), (2, false));
    assert_ne!(later.id, first.id);
    let dup = store.append(&t, keyed("3", "k", 1600), 500).await.unwrap();
    assert_eq!((dup.id, dup.offset, dup.duplicate), (later.id, 2, true));
    // A zero window still catches a repeat in the same millisecond.
    let same_ms = store.append(&t, keyed("4", "k", 1501), 0).await.unwrap();
    assert_eq!((same_ms.offset, same_ms.duplicate), (2, true));
    assert_eq!(history_offsets(store, &t, 1, 10).await, [1, 2]);
}

/// `enforce_retention` forgets keys older than its `dedup_window` (as of `now`), keeps younger.
pub async fn retention_forgets_idempotency_keys<S: Store>(store: &S) {
    let t = topic("orders");
    store.append(&t, keyed("1", "old", 0), 1000).await.unwrap();
    store
        .append(&t, keyed("2", "young", 1900), 1000)
        .await
        .unwrap();
    store
        .append(&t, keyed("3", "edge", 1000), 1000)
        .await
        .unwrap();
    let gaps = store
        .enforce_retention(&t, Retention::default(), 2000, 1000)
        .await
        .unwrap();
    assert!(gaps.is_empty());
    assert_eq!(info(store, &t).await.retained, 3, "young messages are kept");
    // Within the append's window of the first, but the key was forgotten.
    let again = store
        .append(&t, keyed("4", "old", 500), 1000)
        .await
        .unwrap();
    assert_eq!((again.offset, again.duplicate), (4, false));
    let dup = store
        .append(&t, keyed("5", "young", 1950), 1000)
        .await
        .unwrap();
    assert_eq!((dup.offset, dup.duplicate), (2, true));
    // Exactly `dedup_window` old at `now` is still within the window.
    let edge = store
        .append(&t, keyed("6", "edge", 2000), 1000)
        .await
        .unwrap();
    assert_eq!((edge.offset, edge.duplicate), (3, true));
}

/// New starts after the head, Earliest at the first retained offset, Offset(o) at o clamped
/// to what is retained; subscribing creates the topic.
pub async fn subscribe_start_positions<S: Store>(store: &S) {
    let t = topic("jobs");
    append_n(store, &t, 5, 0).await;
    let cases = [
        (id("new"), StartFrom::New, 6, 0),
        (id("earliest"), StartFrom::Earliest, 1, 5),
        (id("three"), StartFrom::Offset(3), 3, 3),
        (id("after-head"), StartFrom::Offset(6), 6, 0),
        (id("zero"), StartFrom::Offset(0), 1, 5),
    ];
    for (sub, from, cursor, pending) in &cases {
        let i = store.subscribe(&t, sub, *from).await.unwrap();
        assert_eq!(&i.name, sub);
        assert_eq!(
            (i.cursor, i.pending, i.in_flight, i.dead, i.gaps),
            (*cursor, *pending, 0, 0, 0),
            "{sub}"
        );
    }
    let r = store.claim(&t, &id("three"), opts(0, 10)).await.unwrap();
    assert_eq!(claimed(&r), [(3, 1), (4, 1), (5, 1)]);

    store
        .enforce_retention(&t, retention(u64::MAX, 3, u64::MAX), 0, 0)
        .await
        .unwrap();
    let late = store
        .subscribe(&t, &id("late-earliest"), StartFrom::Earliest)
        .await
        .unwrap();
    assert_eq!(late.cursor, 3);
    let clamped = store
        .subscribe(&t, &id("late-one"), StartFrom::Offset(1))
        .await
        .unwrap();
    assert_eq!((clamped.cursor, clamped.pending), (3, 3));

    let fresh = topic("fresh");
    let i = store
        .subscribe(&fresh, &group("g"), StartFrom::New)
        .await
        .unwrap();
    assert_eq!((i.cursor, i.pending), (1, 0));
    let ti = info(store, &fresh).await;
    assert_eq!(
        (ti.head, ti.first, ti.retained, ti.retained_bytes),
        (0, 1, 0, 0)
    );
    assert_eq!(ti.subscriptions.len(), 1);
    let earliest = store
        .subscribe(&topic("fresh2"), &id("a"), StartFrom::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest.cursor, 1);
    store.append(&fresh, msg("1", 0), 0).await.unwrap();
    let r = store.claim(&fresh, &group("g"), opts(0, 10)).await.unwrap();
    assert_eq!(claimed(&r), [(1, 1)]);
}

/// A start offset beyond `head + 1` is Invalid and creates neither subscription nor topic.
pub async fn subscribe_invalid_offset_changes_nothing<S: Store>(store: &S) {
    let t = topic("jobs");
    append_n(store, &t, 2, 0).await;
    let r = store.subscribe(&t, &id("a"), StartFrom::Offset(4)).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert!(store.subscriptions().await.unwrap().is_empty());
    let unknown = topic("nothing.here");
    let r = store
        .subscribe(&unknown, &id("a"), StartFrom::Offset(2))
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!(store.topic_info(&unknown).await.unwrap(), None);
    assert_eq!(store.topics().await.unwrap(), vec![t]);
}

/// Subscribing again leaves an existing subscription as it is, whatever `from` says.
pub async fn resubscribe_keeps_state<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 3, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    store.claim(&t, &sub, opts(0, 2)).await.unwrap();
    assert!(store.ack(&t, &sub, 1).await.unwrap());
    let before = sub_info(store, &t, &sub).await;
    assert_eq!((before.cursor, before.pending, before.in_flight), (3, 2, 1));
    for from in [
        StartFrom::New,
        StartFrom::Earliest,
        StartFrom::Offset(1),
        StartFrom::Offset(99),
    ] {
        let again = store.subscribe(&t, &sub, from).await.unwrap();
        assert_eq!(again, before, "{from:?}");
    }
    let r = store.claim(&t, &sub, opts(0, 10)).await.unwrap();
    assert_eq!(claimed(&r), [(3, 1)]);
}

/// New messages are handed out from the cursor in order, at most `max`, with attempt 1.
pub async fn claim_hands_out_new_messages_in_order<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    append_n(store, &t, 5, 7).await;
    let history = store.history(&t, 1, 10).await.unwrap();
    let r = store.claim(&t, &sub, opts(0, 2)).await.unwrap();
    assert_eq!(claimed(&r), [(1, 1), (2, 1)]);
    assert_eq!(r.claimed[0].message, history[0]);
    assert_eq!(r.claimed[1].message, history[1]);
    assert!(r.dead_lettered.is_empty());
    let none = store.claim(&t, &sub, opts(0, 0)).await.unwrap();
    assert_eq!(
        none,
        ClaimResult {
            next_due: Some(1000),
            ..ClaimResult::default()
        },
        "max 0 hands out nothing; the two in flight are due at their deadline"
    );
    assert_eq!(sub_info(store, &t, &sub).await.cursor, 3);
    let r = store.claim(&t, &sub, opts(0, 10)).await.unwrap();
    assert_eq!(claimed(&r), [(3, 1), (4, 1), (5, 1)]);
    assert!(
        store
            .claim(&t, &sub, opts(0, 10))
            .await
            .unwrap()
            .claimed
            .is_empty()
    );
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.cursor, i.pending, i.in_flight), (6, 5, 5));
    store.append(&t, msg("6", 8), 0).await.unwrap();
    let r = store.claim(&t, &sub, opts(0, 10)).await.unwrap();
    assert_eq!(claimed(&r), [(6, 1)]);
}

/// An in-flight entry is handed out again once `now >= now_at_claim + ack_timeout`, with
/// attempt + 1; acknowledged entries never are.
pub async fn claim_redelivers_after_ack_deadline<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 2, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    let o = |now| ClaimOptions {
        ack_timeout: 100,
        ..opts(now, 10)
    };
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(1000)).await.unwrap()),
        [(1, 1), (2, 1)]
    );
    assert!(
        store
            .claim(&t, &sub, o(1099))
            .await
            .unwrap()
            .claimed
            .is_empty()
    );
    assert!(store.ack(&t, &sub, 2).await.unwrap());
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(1100)).await.unwrap()),
        [(1, 2)]
    );
    assert!(
        store
            .claim(&t, &sub, o(1199))
            .await
            .unwrap()
            .claimed
            .is_empty()
    );
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(1200)).await.unwrap()),
        [(1, 3)]
    );
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.pending, i.in_flight, i.cursor), (1, 1, 3));
}

/// `next_due` is the earliest due time of what stays pending after the claim: an entry in
/// flight is due at its deadline, a requeued one when its backoff ends; None with nothing
/// pending. A dispatcher sleeps until then instead of polling, so it must be exact.
pub async fn claim_reports_the_next_due_time<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 2, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    let o = |now, max| ClaimOptions {
        ack_timeout: 500,
        ..opts(now, max)
    };
    let r = store.claim(&t, &sub, o(1000, 1)).await.unwrap();
    assert_eq!((claimed(&r), r.next_due), (vec![(1, 1)], Some(1500)));
    let r = store.claim(&t, &sub, o(1100, 1)).await.unwrap();
    assert_eq!((claimed(&r), r.next_due), (vec![(2, 1)], Some(1500)));
    assert!(store.ack(&t, &sub, 1).await.unwrap());
    let r = store.claim(&t, &sub, o(1200, 10)).await.unwrap();
    assert_eq!((claimed(&r), r.next_due), (vec![], Some(1600)));
    assert!(store.requeue(&t, &sub, 2, 3000).await.unwrap());
    let r = store.claim(&t, &sub, o(1300, 10)).await.unwrap();
    assert_eq!((claimed(&r), r.next_due), (vec![], Some(3000)));
    let r = store.claim(&t, &sub, o(3000, 10)).await.unwrap();
    assert_eq!((claimed(&r), r.next_due), (vec![(2, 2)], Some(3500)));
    assert!(store.ack(&t, &sub, 2).await.unwrap());
    let r = store.claim(&t, &sub, o(3100, 10)).await.unwrap();
    assert_eq!((claimed(&r), r.next_due), (vec![], None));
}

/// Due entries come first, in offset order, then new messages; `max` counts both.
pub async fn claim_hands_out_due_entries_before_new<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 6, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    assert_eq!(
        claimed(&store.claim(&t, &sub, opts(0, 2)).await.unwrap()),
        [(1, 1), (2, 1)]
    );
    assert!(store.requeue(&t, &sub, 2, 0).await.unwrap());
    assert!(store.requeue(&t, &sub, 1, 0).await.unwrap());
    let r = store.claim(&t, &sub, opts(0, 3)).await.unwrap();
    assert_eq!(claimed(&r), [(1, 2), (2, 2), (3, 1)]);
    assert!(store.requeue(&t, &sub, 2, 0).await.unwrap());
    assert!(store.requeue(&t, &sub, 3, 0).await.unwrap());
    assert_eq!(
        claimed(&store.claim(&t, &sub, opts(0, 1)).await.unwrap()),
        [(2, 3)]
    );
    let r = store.claim(&t, &sub, opts(0, 2)).await.unwrap();
    assert_eq!(claimed(&r), [(3, 2), (4, 1)]);
}

/// A requeued entry waits until `not_before` (its in-flight deadline no longer applies);
/// requeue of an entry that is not pending is Ok(false).
pub async fn requeue_waits_until_not_before<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 2, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    let o = |now| ClaimOptions {
        ack_timeout: 10_000,
        ..opts(now, 1)
    };
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(0)).await.unwrap()),
        [(1, 1)]
    );
    assert!(store.requeue(&t, &sub, 1, 500).await.unwrap());
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.pending, i.in_flight), (2, 0));
    // Not before 500: the claim takes the next new message instead.
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(499)).await.unwrap()),
        [(2, 1)]
    );
    assert!(
        store
            .claim(&t, &sub, o(499))
            .await
            .unwrap()
            .claimed
            .is_empty()
    );
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(500)).await.unwrap()),
        [(1, 2)]
    );
    // Requeue replaces the deadline: not handed out at the old deadline.
    assert!(store.requeue(&t, &sub, 1, 50_000).await.unwrap());
    assert!(
        store
            .claim(&t, &sub, o(10_500))
            .await
            .unwrap()
            .claimed
            .iter()
            .all(|c| c.message.offset != 1)
    );
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(50_000)).await.unwrap()),
        [(1, 3)]
    );
    // Requeueing a waiting entry moves its time.
    assert!(store.requeue(&t, &sub, 1, 60_000).await.unwrap());
    assert!(store.requeue(&t, &sub, 1, 55_000).await.unwrap());
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(55_000)).await.unwrap()),
        [(1, 4)]
    );

    assert!(
        !store.requeue(&t, &sub, 3, 0).await.unwrap(),
        "beyond the head"
    );
    assert!(store.ack(&t, &sub, 1).await.unwrap());
    assert!(
        !store.requeue(&t, &sub, 1, 0).await.unwrap(),
        "acknowledged"
    );
}

/// Ack settles a pending entry (in flight or waiting) once; anything else is Ok(false).
pub async fn ack_settles_once<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 3, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    store.claim(&t, &sub, opts(0, 2)).await.unwrap();
    assert!(store.ack(&t, &sub, 1).await.unwrap());
    assert!(!store.ack(&t, &sub, 1).await.unwrap(), "second ack");
    assert!(!store.ack(&t, &sub, 3).await.unwrap(), "never delivered");
    assert!(!store.ack(&t, &sub, 0).await.unwrap());
    assert!(!store.ack(&t, &sub, u64::MAX).await.unwrap());
    assert!(store.requeue(&t, &sub, 2, 100).await.unwrap());
    assert!(
        store.ack(&t, &sub, 2).await.unwrap(),
        "a waiting entry is pending"
    );
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.pending, i.in_flight, i.cursor), (1, 0, 3));
    let r = store.claim(&t, &sub, opts(1_000_000, 10)).await.unwrap();
    assert_eq!(
        claimed(&r),
        [(3, 1)],
        "acknowledged entries are never redelivered"
    );
}

/// `settle` applies a batch of acks and requeues in order, answering each as `ack` or
/// `requeue` would: a repeat within the batch or an entry never delivered answers false.
pub async fn settle_applies_a_batch_in_order<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 5, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    store.claim(&t, &sub, opts(0, 4)).await.unwrap();
    let batch = [
        Settle::Ack(1),
        Settle::Requeue {
            offset: 2,
            not_before: 500,
        },
        Settle::Ack(1),
        Settle::Ack(5),
        Settle::Requeue {
            offset: 3,
            not_before: 0,
        },
        Settle::Ack(3),
    ];
    let answers = store.settle(&t, &sub, &batch).await.unwrap();
    assert_eq!(answers, [true, true, false, false, true, true]);
    let i = sub_info(store, &t, &sub).await;
    // Left: 2 (waiting until 500), 4 (in flight), 5 (never handed out).
    assert_eq!((i.pending, i.in_flight, i.cursor), (3, 1, 5));
    let r = store.claim(&t, &sub, opts(499, 10)).await.unwrap();
    assert_eq!(
        claimed(&r),
        [(5, 1)],
        "2 waits until 500; 1 and 3 are settled"
    );
    let r = store.claim(&t, &sub, opts(500, 10)).await.unwrap();
    assert_eq!(claimed(&r), [(2, 2)]);
    assert!(store.settle(&t, &sub, &[]).await.unwrap().is_empty());
    let unknown = id("nobody");
    assert!(matches!(
        store.settle(&t, &unknown, &[Settle::Ack(1)]).await,
        Err(StoreError::NotFound(_))
    ));
}

/// `settle_and_claim` is `settle` then `claim`: the flags of the batch (repeats and entries
/// never delivered answer false, nothing follows an ack), then a claim that sees the batch
/// applied — a requeue due now is handed out again, an acknowledged entry never.
pub async fn settle_and_claim_is_settle_then_claim<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 6, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    store.claim(&t, &sub, opts(0, 4)).await.unwrap();
    let batch = [
        Settle::Ack(1),
        Settle::Ack(1),
        Settle::Requeue {
            offset: 2,
            not_before: 500,
        },
        Settle::Ack(3),
        Settle::Requeue {
            offset: 3,
            not_before: 0,
        },
        Settle::Requeue {
            offset: 4,
            not_before: 900,
        },
        Settle::Requeue {
            offset: 4,
            not_before: 10,
        },
        Settle::Ack(6),
    ];
    let (flags, r) = store
        .settle_and_claim(&t, &sub, &batch, opts(20, 2))
        .await
        .unwrap();
    assert_eq!(flags, [true, false, true, true, false, true, true, false]);
    assert_eq!(
        claimed(&r),
        [(4, 2), (5, 1)],
        "4 is due at 10 (its last requeue), then the cursor; 1 and 3 are settled, 2 waits"
    );
    assert_eq!(r.next_due, Some(500));
    let (flags, r) = store
        .settle_and_claim(&t, &sub, &[], opts(500, 10))
        .await
        .unwrap();
    assert!(flags.is_empty());
    assert_eq!(claimed(&r), [(2, 2), (6, 1)]);
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.pending, i.in_flight, i.cursor), (4, 4, 7));
    let unknown = id("nobody");
    assert!(matches!(
        store
            .settle_and_claim(&t, &unknown, &[Settle::Ack(1)], opts(0, 1))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.settle_and_claim(&t, &unknown, &[], opts(0, 1)).await,
        Err(StoreError::NotFound(_))
    ));
}

/// An entry delivered `max_deliveries` times goes to the dead letters on the next claim that
/// finds it due; `requeue_dead` brings it back as a fresh entry.
pub async fn max_deliveries_dead_letters<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    let appended = store.append(&t, msg("payload", 42), 0).await.unwrap();
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    let o = |now| ClaimOptions {
        now,
        max: 10,
        ack_timeout: 10,
        max_deliveries: 2,
    };
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(0)).await.unwrap()),
        [(1, 1)]
    );
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(10)).await.unwrap()),
        [(1, 2)]
    );
    let r = store.claim(&t, &sub, o(20)).await.unwrap();
    assert!(r.claimed.is_empty());
    assert_eq!(r.dead_lettered, [1]);
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.pending, i.in_flight, i.dead, i.cursor), (0, 0, 1, 2));
    let message = store.history(&t, 1, 1).await.unwrap().remove(0);
    assert_eq!(
        store.dead_letters(&t).await.unwrap(),
        vec![DeadLetter {
            message,
            subscription: sub.clone(),
            attempts: 2,
            dead_at: 20,
        }]
    );
    assert_eq!(
        store.claim(&t, &sub, o(100)).await.unwrap(),
        ClaimResult::default()
    );
    assert!(
        !store.ack(&t, &sub, 1).await.unwrap(),
        "a dead letter is settled"
    );
    assert!(!store.requeue(&t, &sub, 1, 0).await.unwrap());

    assert!(store.requeue_dead(&t, appended.id, 200).await.unwrap());
    assert!(store.dead_letters(&t).await.unwrap().is_empty());
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.pending, i.in_flight, i.dead), (1, 0, 0));
    assert!(!store.requeue_dead(&t, appended.id, 200).await.unwrap());
    assert!(
        store
            .claim(&t, &sub, o(199))
            .await
            .unwrap()
            .claimed
            .is_empty(),
        "due at `now`"
    );
    assert_eq!(
        claimed(&store.claim(&t, &sub, o(200)).await.unwrap()),
        [(1, 1)]
    );
    let unknown = tidings_core::store::MessageId(appended.id.0 ^ 1);
    assert!(!store.requeue_dead(&t, unknown, 300).await.unwrap());
}

/// Entries moved to the dead letters do not count against `max`.
pub async fn dead_letters_do_not_count_against_max<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 4, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    let o = |now, max| ClaimOptions {
        now,
        max,
        ack_timeout: 10,
        max_deliveries: 1,
    };
    let r = store.claim(&t, &sub, o(0, 3)).await.unwrap();
    assert_eq!(claimed(&r), [(1, 1), (2, 1), (3, 1)]);
    let r = store.claim(&t, &sub, o(10, 1)).await.unwrap();
    assert_eq!(r.dead_lettered, [1, 2, 3]);
    assert_eq!(claimed(&r), [(4, 1)]);
    let dead = store.dead_letters(&t).await.unwrap();
    let mut offsets: Vec<_> = dead
        .iter()
        .map(|d| (d.message.offset, d.attempts, d.dead_at))
        .collect();
    offsets.sort();
    assert_eq!(offsets, [(1, 1, 10), (2, 1, 10), (3, 1, 10)]);
}

/// With `max_deliveries == 0` even the first delivery is refused: new messages go straight
/// to the dead letters (and do not count against `max`).
pub async fn max_deliveries_zero_dead_letters_new_messages<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 2, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    let r = store
        .claim(
            &t,
            &sub,
            ClaimOptions {
                max_deliveries: 0,
                ..opts(5, 1)
            },
        )
        .await
        .unwrap();
    assert!(r.claimed.is_empty());
    assert_eq!(r.dead_lettered, [1, 2]);
    let i = sub_info(store, &t, &sub).await;
    assert_eq!((i.pending, i.dead, i.cursor), (0, 2, 3));
    assert!(
        store
            .dead_letters(&t)
            .await
            .unwrap()
            .iter()
            .all(|d| d.attempts == 0 && d.dead_at == 5)
    );
}

/// The same message dead-lettered by two subscriptions: both are listed, oldest first, and
/// `requeue_dead` (which names only the message) requeues it for both.
pub async fn requeue_dead_requeues_every_subscription<S: Store>(store: &S) {
    let t = topic("jobs");
    let (a, g) = (id("a"), group("a"));
    let appended = store.append(&t, msg("1", 0), 0).await.unwrap();
    for sub in [&a, &g] {
        store.subscribe(&t, sub, StartFrom::Earliest).await.unwrap();
    }
    let o = |now| ClaimOptions {
        now,
        max: 10,
        ack_timeout: 10,
        max_deliveries: 1,
    };
    store.claim(&t, &g, o(0)).await.unwrap();
    store.claim(&t, &a, o(0)).await.unwrap();
    assert_eq!(store.claim(&t, &g, o(20)).await.unwrap().dead_lettered, [1]);
    assert_eq!(store.claim(&t, &a, o(30)).await.unwrap().dead_lettered, [1]);
    let dead = store.dead_letters(&t).await.unwrap();
    let listed: Vec<_> = dead
        .iter()
        .map(|d| (d.subscription.clone(), d.dead_at))
        .collect();
    assert_eq!(listed, [(g.clone(), 20), (a.clone(), 30)], "oldest first");
    assert!(store.requeue_dead(&t, appended.id, 40).await.unwrap());
    assert!(store.dead_letters(&t).await.unwrap().is_empty());
    for sub in [&a, &g] {
        assert_eq!(
            claimed(&store.claim(&t, sub, opts(40, 10)).await.unwrap()),
            [(1, 1)]
        );
    }
}

/// Dead letters keep a copy of their message: still listed after retention removed it, but
/// `requeue_dead` is Ok(false). A dead letter is settled: retention reports no gap for it.
pub async fn dead_letter_outlives_retention<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    let appended = store.append(&t, msg("keep me", 3), 0).await.unwrap();
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    let o = |now| ClaimOptions {
        now,
        max: 10,
        ack_timeout: 10,
        max_deliveries: 1,
    };
    store.claim(&t, &sub, o(0)).await.unwrap();
    assert_eq!(
        store.claim(&t, &sub, o(10)).await.unwrap().dead_lettered,
        [1]
    );
    let gaps = store
        .enforce_retention(&t, retention(u64::MAX, 0, u64::MAX), 10, 0)
        .await
        .unwrap();
    assert!(gaps.is_empty(), "{gaps:?}");
    let ti = info(store, &t).await;
    assert_eq!((ti.head, ti.first, ti.retained), (1, 2, 0));
    let dead = store.dead_letters(&t).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].message.id, dead[0].message.data.as_str()),
        (appended.id, "keep me")
    );
    assert!(!store.requeue_dead(&t, appended.id, 20).await.unwrap());
    assert_eq!(store.dead_letters(&t).await.unwrap().len(), 1);
}

/// Unsubscribe removes the queue with its pending entries and dead letters.
pub async fn unsubscribe_removes_queue_and_dead_letters<S: Store>(store: &S) {
    let t = topic("jobs");
    let (a, b) = (id("a"), id("b"));
    append_n(store, &t, 3, 0).await;
    for sub in [&a, &b] {
        store.subscribe(&t, sub, StartFrom::Earliest).await.unwrap();
    }
    let o = |now| ClaimOptions {
        now,
        max: 1,
        ack_timeout: 10,
        max_deliveries: 1,
    };
    store.claim(&t, &a, o(0)).await.unwrap();
    store.claim(&t, &a, o(10)).await.unwrap();
    store.claim(&t, &b, o(0)).await.unwrap();
    let i = sub_info(store, &t, &a).await;
    assert_eq!((i.dead, i.in_flight), (1, 1));
    assert!(store.unsubscribe(&t, &a).await.unwrap());
    assert!(!store.unsubscribe(&t, &a).await.unwrap());
    assert!(!store.unsubscribe(&topic("unknown"), &a).await.unwrap());
    assert!(is_not_found(store.claim(&t, &a, opts(0, 1)).await));
    assert!(is_not_found(store.ack(&t, &a, 2).await));
    assert!(store.dead_letters(&t).await.unwrap().is_empty());
    assert_eq!(
        store.subscriptions().await.unwrap(),
        vec![(t.clone(), b.clone())]
    );
    let ti = info(store, &t).await;
    assert_eq!(ti.subscriptions.len(), 1);
    // b is untouched.
    assert!(store.ack(&t, &b, 1).await.unwrap());
    // Subscribing again starts a new queue.
    let fresh = store.subscribe(&t, &a, StartFrom::New).await.unwrap();
    assert_eq!(
        (fresh.cursor, fresh.pending, fresh.in_flight, fresh.dead),
        (4, 0, 0, 0)
    );
}

/// An identity and a group of the same name on one topic are two independent queues.
pub async fn group_and_identity_are_independent<S: Store>(store: &S) {
    let t = topic("jobs");
    let (i, g) = (id("a"), group("a"));
    store.subscribe(&t, &i, StartFrom::Earliest).await.unwrap();
    store.subscribe(&t, &g, StartFrom::Earliest).await.unwrap();
    append_n(store, &t, 2, 0).await;
    assert_eq!(
        claimed(&store.claim(&t, &i, opts(0, 1)).await.unwrap()),
        [(1, 1)]
    );
    assert_eq!(
        claimed(&store.claim(&t, &g, opts(0, 2)).await.unwrap()),
        [(1, 1), (2, 1)]
    );
    assert!(store.ack(&t, &i, 1).await.unwrap());
    assert!(store.ack(&t, &g, 2).await.unwrap());
    assert!(
        !store.ack(&t, &i, 2).await.unwrap(),
        "never delivered to the identity"
    );
    let si = sub_info(store, &t, &i).await;
    assert_eq!((si.pending, si.in_flight, si.cursor), (1, 0, 2));
    let sg = sub_info(store, &t, &g).await;
    assert_eq!((sg.pending, sg.in_flight, sg.cursor), (1, 1, 3));
    let mut subs = store.subscriptions().await.unwrap();
    subs.sort();
    assert_eq!(subs, vec![(t.clone(), i.clone()), (t.clone(), g.clone())]);
}

/// Releasing in-flight entries makes them due at once with their attempt counts; waiting
/// entries are untouched.
pub async fn release_in_flight_redelivers_at_once<S: Store>(store: &S) {
    let t = topic("jobs");
    let s = id("a");
    store.subscribe(&t, &s, StartFrom::Earliest).await.unwrap();
    append_n(store, &t, 3, 0).await;
    assert_eq!(
        claimed(&store.claim(&t, &s, opts(0, 3)).await.unwrap()),
        [(1, 1), (2, 1), (3, 1)]
    );
    assert!(store.requeue(&t, &s, 3, 1_000_000).await.unwrap());
    assert_eq!(store.release_in_flight(5).await.unwrap(), 2);
    assert_eq!(store.release_in_flight(5).await.unwrap(), 0);
    // Long before the ack deadline, the released entries come back; the waiting one does not.
    assert_eq!(
        claimed(&store.claim(&t, &s, opts(6, 10)).await.unwrap()),
        [(1, 2), (2, 2)]
    );
}

/// Group memberships are recorded idempotently, listed sorted, removed one by one and with
/// their group; they need an existing group subscription.
pub async fn group_memberships<S: Store>(store: &S) {
    let t = topic("jobs");
    let (g, h) = (group("drivers"), group("other"));
    assert!(matches!(
        store.set_member(&t, &g, "d1", true).await,
        Err(StoreError::NotFound(_))
    ));
    store.subscribe(&t, &g, StartFrom::New).await.unwrap();
    store.subscribe(&t, &h, StartFrom::New).await.unwrap();
    for (grp, who) in [(&g, "d2"), (&g, "d1"), (&g, "d1"), (&h, "x")] {
        store.set_member(&t, grp, who, true).await.unwrap();
    }
    let expected = vec![
        (t.clone(), g.clone(), "d1".to_owned()),
        (t.clone(), g.clone(), "d2".to_owned()),
        (t.clone(), h.clone(), "x".to_owned()),
    ];
    assert_eq!(store.members().await.unwrap(), expected);
    store.set_member(&t, &g, "d2", false).await.unwrap();
    store.set_member(&t, &g, "d2", false).await.unwrap();
    assert!(store.unsubscribe(&t, &h).await.unwrap());
    assert_eq!(
        store.members().await.unwrap(),
        vec![(t.clone(), g.clone(), "d1".to_owned())]
    );
    let i = id("d1");
    store.subscribe(&t, &i, StartFrom::New).await.unwrap();
    assert!(matches!(
        store.set_member(&t, &i, "d1", true).await,
        Err(StoreError::NotFound(_))
    ));
}

/// History: retained messages with offset >= from, at most limit, in order; an unknown topic
/// has none.
pub async fn history_from_and_limit<S: Store>(store: &S) {
    let t = topic("jobs");
    append_n(store, &t, 5, 0).await;
    assert_eq!(history_offsets(store, &t, 0, 10).await, [1, 2, 3, 4, 5]);
    assert_eq!(history_offsets(store, &t, 3, 2).await, [3, 4]);
    assert_eq!(history_offsets(store, &t, 5, 2).await, [5]);
    assert!(history_offsets(store, &t, 6, 10).await.is_empty());
    assert!(history_offsets(store, &t, u64::MAX, 10).await.is_empty());
    assert!(history_offsets(store, &t, 1, 0).await.is_empty());
    assert!(
        history_offsets(store, &topic("unknown"), 1, 10)
            .await
            .is_empty()
    );
    store
        .enforce_retention(&t, retention(u64::MAX, 2, u64::MAX), 0, 0)
        .await
        .unwrap();
    assert_eq!(history_offsets(store, &t, 1, 10).await, [4, 5]);
    assert_eq!(history_offsets(store, &t, 1, usize::MAX).await, [4, 5]);
}

/// Topic and subscription counters: pending = never delivered + in flight + waiting.
pub async fn topic_info_counts<S: Store>(store: &S) {
    let t = topic("jobs");
    assert_eq!(store.topic_info(&t).await.unwrap(), None);
    for data in ["a", "bb", "ccc", "dddd"] {
        store.append(&t, msg(data, 0), 0).await.unwrap();
    }
    let (a, b) = (id("a"), id("b"));
    store.subscribe(&t, &a, StartFrom::Earliest).await.unwrap();
    store.subscribe(&t, &b, StartFrom::New).await.unwrap();
    store.claim(&t, &a, opts(0, 2)).await.unwrap();
    store.requeue(&t, &a, 2, 100).await.unwrap();
    let expect = |name: &SubscriptionName, pending, in_flight, cursor| SubscriptionInfo {
        name: name.clone(),
        pending,
        in_flight,
        dead: 0,
        gaps: 0,
        cursor,
    };
    let mut ti = info(store, &t).await;
    ti.subscriptions.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(
        ti,
        TopicInfo {
            topic: t.clone(),
            head: 4,
            first: 1,
            retained: 4,
            retained_bytes: 10,
            subscriptions: vec![expect(&a, 4, 1, 3), expect(&b, 0, 0, 5)],
        }
    );
    store.append(&t, msg("e", 0), 0).await.unwrap();
    store.ack(&t, &a, 1).await.unwrap();
    assert_eq!(sub_info(store, &t, &a).await, expect(&a, 4, 0, 3));
    assert_eq!(sub_info(store, &t, &b).await, expect(&b, 1, 0, 5));
}

/// Retention by count: unsettled offsets each subscription loses are reported as gaps (and
/// settled); settled offsets produce none.
pub async fn retention_by_count_reports_gaps<S: Store>(store: &S) {
    let t = topic("jobs");
    let (settled, lagging, fresh) = (id("settled"), id("lagging"), id("fresh"));
    for sub in [&settled, &lagging] {
        store.subscribe(&t, sub, StartFrom::Earliest).await.unwrap();
    }
    append_n(store, &t, 6, 0).await;
    store.subscribe(&t, &fresh, StartFrom::New).await.unwrap();
    store.claim(&t, &settled, opts(0, 4)).await.unwrap();
    for offset in 1..=4 {
        assert!(store.ack(&t, &settled, offset).await.unwrap());
    }
    store.claim(&t, &lagging, opts(0, 2)).await.unwrap();
    assert!(store.ack(&t, &lagging, 2).await.unwrap());

    let gaps = store
        .enforce_retention(&t, retention(u64::MAX, 2, u64::MAX), 0, 0)
        .await
        .unwrap();
    assert!(gaps.iter().all(|g| g.topic == t));
    assert_eq!(
        sorted_gaps(gaps),
        [(lagging.clone(), 1, 1), (lagging.clone(), 3, 4)]
    );
    let ti = info(store, &t).await;
    assert_eq!((ti.head, ti.first, ti.retained), (6, 5, 2));
    let l = sub_info(store, &t, &lagging).await;
    assert_eq!((l.gaps, l.cursor, l.pending, l.in_flight), (3, 5, 2, 0));
    let s = sub_info(store, &t, &settled).await;
    assert_eq!((s.gaps, s.cursor, s.pending), (0, 5, 2));
    assert_eq!(sub_info(store, &t, &fresh).await.gaps, 0);
    assert!(
        !store.ack(&t, &lagging, 1).await.unwrap(),
        "a gap is settled"
    );
    assert_eq!(
        claimed(&store.claim(&t, &lagging, opts(5000, 10)).await.unwrap()),
        [(5, 1), (6, 1)]
    );
    let again = store
        .enforce_retention(&t, retention(u64::MAX, 2, u64::MAX), 0, 0)
        .await
        .unwrap();
    assert!(again.is_empty());
}

/// Retention by age: a message with `now - published_at > max_age` is removed.
pub async fn retention_by_age<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    for at in [100, 200, 250, 300] {
        store.append(&t, msg("x", at), 0).await.unwrap();
    }
    let gaps = store
        .enforce_retention(&t, retention(150, u64::MAX, u64::MAX), 400, 0)
        .await
        .unwrap();
    assert_eq!(sorted_gaps(gaps), [(sub.clone(), 1, 2)]);
    assert_eq!(history_offsets(store, &t, 0, 10).await, [3, 4]);
    let ti = info(store, &t).await;
    assert_eq!((ti.first, ti.retained, ti.retained_bytes), (3, 2, 2));
}

/// Retention by bytes: the oldest messages go until the retained payload bytes fit.
pub async fn retention_by_bytes<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    for data in ["aaaa", "bb", "c", "ddd"] {
        store.append(&t, msg(data, 0), 0).await.unwrap();
    }
    store.claim(&t, &sub, opts(0, 10)).await.unwrap();
    for offset in 1..=4 {
        store.ack(&t, &sub, offset).await.unwrap();
    }
    let gaps = store
        .enforce_retention(&t, retention(u64::MAX, u64::MAX, 4), 0, 0)
        .await
        .unwrap();
    assert!(gaps.is_empty(), "everything was settled: {gaps:?}");
    let ti = info(store, &t).await;
    assert_eq!((ti.first, ti.retained, ti.retained_bytes), (3, 2, 4));
    assert_eq!(sub_info(store, &t, &sub).await.gaps, 0);
}

/// Retention trims from the oldest offset and stops at the first message that may stay, so
/// retained offsets are always `first..=head`.
pub async fn retention_trims_from_the_front<S: Store>(store: &S) {
    let t = topic("jobs");
    for at in [1000, 0, 0] {
        store.append(&t, msg("x", at), 0).await.unwrap();
    }
    let gaps = store
        .enforce_retention(&t, retention(500, u64::MAX, u64::MAX), 1000, 0)
        .await
        .unwrap();
    assert!(gaps.is_empty());
    assert_eq!(history_offsets(store, &t, 0, 10).await, [1, 2, 3]);
    store.append(&t, msg("x", 2000), 0).await.unwrap();
    store
        .enforce_retention(&t, retention(500, u64::MAX, u64::MAX), 2000, 0)
        .await
        .unwrap();
    assert_eq!(history_offsets(store, &t, 0, 10).await, [4]);
    let ti = info(store, &t).await;
    assert_eq!((ti.first, ti.head, ti.retained), (4, 4, 1));
}

/// Removing everything leaves `first == head + 1`; offsets go on from the head.
pub async fn retention_of_everything<S: Store>(store: &S) {
    let t = topic("jobs");
    let sub = id("a");
    append_n(store, &t, 3, 0).await;
    store
        .subscribe(&t, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    store.claim(&t, &sub, opts(0, 1)).await.unwrap();
    let gaps = store
        .enforce_retention(&t, retention(u64::MAX, 0, u64::MAX), 0, 0)
        .await
        .unwrap();
    assert_eq!(sorted_gaps(gaps), [(sub.clone(), 1, 3)]);
    let ti = info(store, &t).await;
    assert_eq!(
        (ti.head, ti.first, ti.retained, ti.retained_bytes),
        (3, 4, 0, 0)
    );
    let s = sub_info(store, &t, &sub).await;
    assert_eq!((s.pending, s.in_flight, s.gaps, s.cursor), (0, 0, 3, 4));
    assert_eq!(store.append(&t, msg("4", 0), 0).await.unwrap().offset, 4);
    let ti = info(store, &t).await;
    assert_eq!((ti.head, ti.first, ti.retained), (4, 4, 1));
    let late = store
        .subscribe(&t, &id("late"), StartFrom::Offset(1))
        .await
        .unwrap();
    assert_eq!(late.cursor, 4);
    assert_eq!(
        claimed(&store.claim(&t, &sub, opts(0, 10)).await.unwrap()),
        [(4, 1)]
    );
}

/// Unknown topics and subscriptions: NotFound, except where the trait says otherwise.
pub async fn not_found_errors<S: Store>(store: &S) {
    let t = topic("unknown");
    let sub = id("a");
    assert!(is_not_found(store.claim(&t, &sub, opts(0, 1)).await));
    assert!(is_not_found(store.ack(&t, &sub, 1).await));
    assert!(is_not_found(store.requeue(&t, &sub, 1, 0).await));
    assert!(is_not_found(store.dead_letters(&t).await));
    assert!(is_not_found(
        store
            .requeue_dead(&t, tidings_core::store::MessageId(1), 0)
            .await
    ));
    assert!(is_not_found(
        store
            .enforce_retention(&t, Retention::default(), 0, 0)
            .await
    ));
    assert_eq!(store.topic_info(&t).await.unwrap(), None);
    assert!(store.history(&t, 1, 10).await.unwrap().is_empty());
    assert!(!store.unsubscribe(&t, &sub).await.unwrap());
    assert!(
        store.topics().await.unwrap().is_empty(),
        "nothing above created a topic"
    );

    let known = topic("known");
    store.append(&known, msg("1", 0), 0).await.unwrap();
    assert!(is_not_found(store.claim(&known, &sub, opts(0, 1)).await));
    assert!(is_not_found(store.ack(&known, &sub, 1).await));
    assert!(is_not_found(store.requeue(&known, &sub, 1, 0).await));
    assert!(store.dead_letters(&known).await.unwrap().is_empty());
    assert!(store.subscriptions().await.unwrap().is_empty());
}

/// `topics()` and `subscriptions()` list everything.
pub async fn topics_and_subscriptions<S: Store>(store: &S) {
    assert!(store.topics().await.unwrap().is_empty());
    assert!(store.subscriptions().await.unwrap().is_empty());
    let (a, b) = (topic("a"), topic("b"));
    store.append(&b, msg("1", 0), 0).await.unwrap();
    store.subscribe(&a, &id("x"), StartFrom::New).await.unwrap();
    store
        .subscribe(&b, &group("x"), StartFrom::New)
        .await
        .unwrap();
    store.subscribe(&b, &id("y"), StartFrom::New).await.unwrap();
    let mut topics = store.topics().await.unwrap();
    topics.sort();
    assert_eq!(topics, vec![a.clone(), b.clone()]);
    let mut subs = store.subscriptions().await.unwrap();
    subs.sort();
    assert_eq!(
        subs,
        vec![(a, id("x")), (b.clone(), id("y")), (b, group("x"))]
    );
}

fn bound(max_depth: u64, overflow: Overflow) -> QueueBound {
    QueueBound {
        max_depth,
        overflow,
    }
}

/// The appended result of a bounded append that must have stored (or deduplicated).
fn stored(r: BoundedAppend) -> (Appended, Vec<(SubscriptionName, Offset, Offset)>) {
    match r {
        BoundedAppend::Appended { appended, dropped } => {
            assert!(dropped.iter().all(|g| g.topic.as_str() == "jobs"));
            (appended, sorted_gaps(dropped))
        }
        full @ BoundedAppend::Full { .. } => panic!("expected a stored message, got {full:?}"),
    }
}

/// `reject`: a publish is refused — nothing stored, no key recorded — while any subscription
/// holds `max_depth` entries (pending, in flight or never delivered); a duplicate is still
/// answered as a duplicate; a topic without subscriptions (or a new one) is never full.
pub async fn bounded_append_rejects_when_a_queue_is_full<S: Store>(store: &S) {
    let t = topic("jobs");
    let reject = bound(2, Overflow::Reject);
    let (fast, slow) = (id("fast"), id("slow"));
    // New topic, then no subscription: not bounded at all.
    for i in 0..3 {
        let (a, dropped) = stored(
            store
                .append_bounded(&t, keyed("{}", &format!("k{i}"), 0), 1000, reject)
                .await
                .unwrap(),
        );
        assert_eq!((a.offset, a.duplicate, dropped.len()), (i + 1, false, 0));
    }
    for sub in [&fast, &slow] {
        store.subscribe(&t, sub, StartFrom::New).await.unwrap();
    }
    for offset in 4..=5 {
        let (a, _) = stored(
            store
                .append_bounded(&t, msg("{}", 0), 1000, reject)
                .await
                .unwrap(),
        );
        assert_eq!(a.offset, offset);
    }
    // Both hold 2 now.
    let refused = store
        .append_bounded(&t, keyed("{}", "late", 0), 1000, reject)
        .await
        .unwrap();
    let BoundedAppend::Full {
        subscription,
        depth,
    } = refused
    else {
        panic!("expected full, got {refused:?}");
    };
    assert!(
        subscription == fast || subscription == slow,
        "{subscription}"
    );
    assert_eq!(depth, 2);
    assert_eq!(info(store, &t).await.head, 5, "nothing stored");
    assert_eq!(history_offsets(store, &t, 1, 10).await, [1, 2, 3, 4, 5]);
    // A duplicate is answered even when full.
    let (dup, _) = stored(
        store
            .append_bounded(&t, keyed("{}", "k1", 0), 1000, reject)
            .await
            .unwrap(),
    );
    assert_eq!((dup.offset, dup.duplicate), (2, true));

    // In flight still counts; only settling makes room.
    assert_eq!(
        claimed(&store.claim(&t, &fast, opts(0, 10)).await.unwrap()),
        [(4, 1), (5, 1)]
    );
    assert!(matches!(
        store
            .append_bounded(&t, msg("{}", 0), 1000, reject)
            .await
            .unwrap(),
        BoundedAppend::Full { depth: 2, .. }
    ));
    assert!(store.ack(&t, &fast, 4).await.unwrap());
    let still = store
        .append_bounded(&t, msg("{}", 0), 1000, reject)
        .await
        .unwrap();
    assert_eq!(
        still,
        BoundedAppend::Full {
            subscription: slow.clone(),
            depth: 2
        }
    );
    store.claim(&t, &slow, opts(0, 10)).await.unwrap();
    assert!(store.ack(&t, &slow, 4).await.unwrap());
    // The refused key was never recorded: it stores now, as a new message.
    let (a, dropped) = stored(
        store
            .append_bounded(&t, keyed("{}", "late", 0), 1000, reject)
            .await
            .unwrap(),
    );
    assert_eq!((a.offset, a.duplicate, dropped.len()), (6, false, 0));
    for sub in [&fast, &slow] {
        let s = sub_info(store, &t, sub).await;
        assert_eq!((s.pending, s.gaps), (2, 0), "{sub}");
    }
    // The unbounded append is not held back by a bound it does not have.
    assert_eq!(
        store.append(&t, msg("{}", 0), 1000).await.unwrap().offset,
        7
    );
}

/// `drop-oldest`: the publish is stored and each subscription over `max_depth` loses its oldest
/// unsettled entries — pending ones (in flight or waiting) first, then undelivered ones by
/// moving its cursor — reported as gaps and counted; the messages stay in the topic.
pub async fn bounded_append_drops_oldest<S: Store>(store: &S) {
    let t = topic("jobs");
    let drop2 = bound(2, Overflow::DropOldest);
    let (a, b, g) = (id("a"), id("b"), group("g"));
    store.subscribe(&t, &a, StartFrom::New).await.unwrap();
    append_n(store, &t, 3, 0).await;
    // a: 1 and 2 in flight, 3 never delivered.
    assert_eq!(
        claimed(&store.claim(&t, &a, opts(0, 2)).await.unwrap()),
        [(1, 1), (2, 1)]
    );
    let (appended, dropped) = stored(
        store
            .append_bounded(&t, msg("{}", 0), 0, drop2)
            .await
            .unwrap(),
    );
    assert_eq!((appended.offset, appended.duplicate), (4, false));
    assert_eq!(dropped, [(a.clone(), 1, 2)]);
    let s = sub_info(store, &t, &a).await;
    assert_eq!((s.pending, s.in_flight, s.gaps, s.cursor), (2, 0, 2, 3));
    assert!(
        !store.ack(&t, &a, 1).await.unwrap(),
        "a dropped entry is settled"
    );
    assert_eq!(
        claimed(&store.claim(&t, &a, opts(0, 10)).await.unwrap()),
        [(3, 1), (4, 1)]
    );

    // a: 3 acked, 4 waiting (requeued); b and g from the start: 4 never delivered each.
    assert!(store.ack(&t, &a, 3).await.unwrap());
    assert!(store.requeue(&t, &a, 4, 10_000).await.unwrap());
    store.subscribe(&t, &b, StartFrom::Earliest).await.unwrap();
    store.subscribe(&t, &g, StartFrom::Offset(4)).await.unwrap();
    let (appended, dropped) = stored(
        store
            .append_bounded(&t, msg("{}", 0), 0, bound(1, Overflow::DropOldest))
            .await
            .unwrap(),
    );
    assert_eq!(appended.offset, 5);
    // a held 4 (waiting) and 5: loses 4. b held 1..=5: loses 1..=4. g held 4, 5: loses 4.
    assert_eq!(
        dropped,
        [(a.clone(), 4, 4), (b.clone(), 1, 4), (g.clone(), 4, 4)]
    );
    for (sub, gaps, cursor) in [(&a, 3, 5), (&b, 4, 5), (&g, 1, 5)] {
        let s = sub_info(store, &t, sub).await;
        assert_eq!((s.pending, s.gaps, s.cursor), (1, gaps, cursor), "{sub}");
    }
    for sub in [&a, &b, &g] {
        let got = claimed(&store.claim(&t, sub, opts(20_000, 10)).await.unwrap());
        assert_eq!(got, [(5, 1)], "{sub}: only the newest is left");
    }
    assert_eq!(
        history_offsets(store, &t, 1, 10).await,
        [1, 2, 3, 4, 5],
        "dropping from queues removes no message"
    );
    // Under the bound nothing is dropped; a duplicate drops nothing either.
    let (k, dropped) = stored(
        store
            .append_bounded(
                &t,
                keyed("{}", "k", 0),
                1000,
                bound(10, Overflow::DropOldest),
            )
            .await
            .unwrap(),
    );
    assert!(dropped.is_empty());
    let (dup, dropped) = stored(
        store
            .append_bounded(
                &t,
                keyed("{}", "k", 0),
                1000,
                bound(0, Overflow::DropOldest),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        (dup.offset, dup.duplicate, dropped.len()),
        (k.offset, true, 0)
    );
}

/// `oldest_unsettled` (consumer lag): a backend may not report it (`None`); when it does, it
/// names the publish time of each subscription's lowest unsettled entry — pending (in flight
/// or waiting) or not handed out yet — and leaves out subscriptions with nothing unsettled.
pub async fn oldest_unsettled_is_right_when_reported<S: Store>(store: &S) {
    let t = topic("lag");
    let (a, b, c) = (id("a"), id("b"), group("c"));
    for sub in [&a, &b, &c] {
        store.subscribe(&t, sub, StartFrom::Earliest).await.unwrap();
    }
    for (i, at) in [100, 200, 300].into_iter().enumerate() {
        store
            .append(&t, msg(&format!("{{\"n\":{i}}}"), at), 0)
            .await
            .unwrap();
    }
    // a: 1 and 2 handed out, 1 acked → oldest unsettled is 2 (in flight).
    store.claim(&t, &a, opts(1000, 2)).await.unwrap();
    assert!(store.ack(&t, &a, 1).await.unwrap());
    // b: everything handed out and acked → nothing unsettled.
    store.claim(&t, &b, opts(1000, 3)).await.unwrap();
    for o in 1..=3 {
        assert!(store.ack(&t, &b, o).await.unwrap());
    }
    // c: nothing handed out → its oldest is the first message.
    let Some(mut got) = store.oldest_unsettled(&t).await.unwrap() else {
        return;
    };
    got.sort();
    let mut want = vec![(a.clone(), 200), (c.clone(), 100)];
    want.sort();
    assert_eq!(got, want);
    // An unknown topic has no subscriptions.
    let none = store.oldest_unsettled(&topic("nope")).await.unwrap();
    assert_eq!(none, Some(Vec::new()));
}
