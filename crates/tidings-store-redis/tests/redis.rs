//! Behaviour specific to the Redis store: losing and regaining Redis, shared stores, prefixes,
//! the key layout operators see, `WAITAOF`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    RedisServer, have_redis_server, random_prefix, store_and_direct_connection, store_with,
};
use tidings_core::store::{
    ClaimOptions, NewMessage, Settle, StartFrom, Store, StoreError, SubscriptionName, Topic,
};
use tidings_store_redis::{RedisConfig, RedisStore};
use tidings_store_tests::block_on;

fn msg(data: &str) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        event: "news".to_owned(),
        data: data.to_owned(),
        key: None,
        published_at: 1_000,
    }
}

fn opts(now: u64, max: usize) -> ClaimOptions {
    ClaimOptions {
        now,
        max,
        ack_timeout: 1_000,
        max_deliveries: 5,
    }
}

/// Subscribes `sub` to `t` from the earliest message, then appends `n` messages ("0", "1", …).
async fn subscribed_with(store: &RedisStore, t: &Topic, sub: &SubscriptionName, n: usize) {
    store.subscribe(t, sub, StartFrom::Earliest).await.unwrap();
    for i in 0..n {
        store.append(t, msg(&format!("{i}")), 0).await.unwrap();
    }
}

/// How many entries a claim hands out.
async fn claimed_count(
    store: &RedisStore,
    t: &Topic,
    sub: &SubscriptionName,
    o: ClaimOptions,
) -> usize {
    store.claim(t, sub, o).await.unwrap().claimed.len()
}

/// Checks each pending entry of `group` in the stream `log` and its delivery count, as Redis's
/// extended `XPENDING` reports them (the first 10).
fn assert_delivery_counts(
    conn: &mut redis::Connection,
    log: &str,
    group: &str,
    expected: &[(&str, u64)],
) {
    let detail: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(log)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(10)
        .query(conn)
        .unwrap();
    let counts: Vec<(&str, u64)> = detail.iter().map(|d| (d.0.as_str(), d.3)).collect();
    assert_eq!(counts, expected, "delivery counts of {group} in {log}");
}

fn private_store(server: &RedisServer, tune: impl FnOnce(&mut RedisConfig)) -> RedisStore {
    let mut config = RedisConfig {
        url: server.url(),
        prefix: random_prefix(),
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    };
    tune(&mut config);
    RedisStore::open(config).unwrap()
}

fn need_redis_server() {
    assert!(
        have_redis_server(),
        "this test starts and kills its own redis-server: put redis-server on PATH \
         (apt-get install redis-server); TIDINGS_REDIS_URL is not enough"
    );
}

/// Redis killed (-9) while the store is in use: operations fail with Unavailable (no panic, no
/// hang); once Redis is back the same store works again, and everything confirmed before the
/// crash is there (AOF with appendfsync always).
#[test]
fn survives_a_redis_crash_without_losing_confirmed_writes() {
    need_redis_server();
    let mut server = RedisServer::start_durable();
    let store = private_store(&server, |_| {});
    let t = Topic::new("orders").unwrap();
    let sub = SubscriptionName::identity("worker").unwrap();
    block_on(async {
        store.ping().await.unwrap();
        store
            .subscribe(&t, &sub, StartFrom::Earliest)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(store.append(&t, msg(&format!("{i}")), 0).await.unwrap().id);
        }
        let claimed = store.claim(&t, &sub, opts(0, 2)).await.unwrap();
        assert_eq!(claimed.claimed.len(), 2);
        assert!(store.ack(&t, &sub, 1).await.unwrap());

        server.kill();
        let started = Instant::now();
        let r = store.append(&t, msg("lost"), 0).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        let r = store.claim(&t, &sub, opts(0, 10)).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        let r = store.topic_info(&t).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "failing took {:?}",
            started.elapsed()
        );

        server.restart();
        let deadline = Instant::now() + Duration::from_secs(20);
        let appended = loop {
            match store.append(&t, msg("3"), 0).await {
                Ok(a) => break a,
                Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("store did not come back: {e}"),
            }
        };
        assert_eq!(appended.offset, 4, "the failed append stored nothing");
        let history = store.history(&t, 1, 10).await.unwrap();
        let got: Vec<_> = history
            .iter()
            .map(|m| (m.offset, m.data.as_str()))
            .collect();
        assert_eq!(got, [(1, "0"), (2, "1"), (3, "2"), (4, "3")]);
        assert_eq!(history[..3].iter().map(|m| m.id).collect::<Vec<_>>(), ids);
        let info = store.topic_info(&t).await.unwrap().unwrap();
        let s = &info.subscriptions[0];
        assert_eq!((s.cursor, s.pending, s.in_flight), (3, 3, 1), "{s:?}");
        assert!(!store.ack(&t, &sub, 1).await.unwrap(), "the ack survived");
        // Offset 2 is still in flight until its deadline, then redelivered.
        let r = store.claim(&t, &sub, opts(1_000, 10)).await.unwrap();
        let offsets: Vec<_> = r
            .claimed
            .iter()
            .map(|c| (c.message.offset, c.attempt))
            .collect();
        assert_eq!(offsets, [(2, 2), (3, 1), (4, 1)]);
    });
}

/// Once Redis answers again, the very first operation succeeds — on a store that failed
/// operations while Redis was down (its last reconnect attempt had failed) and on one that sat
/// idle through the outage (its connection broken without its knowing). Before the fix the
/// first failed with `Connection refused` or `broken pipe`.
#[test]
fn the_first_operation_after_redis_is_back_succeeds() {
    need_redis_server();
    let mut server = RedisServer::start_durable();
    let busy = private_store(&server, |_| {});
    let idle = private_store(&server, |_| {});
    let t = Topic::new("orders").unwrap();
    block_on(async {
        assert_eq!(busy.append(&t, msg("0"), 0).await.unwrap().offset, 1);
        assert_eq!(idle.append(&t, msg("1"), 0).await.unwrap().offset, 1);
        for round in 0..2 {
            server.kill();
            let r = busy.append(&t, msg("lost"), 0).await;
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
            // An outage of 3 s: longer than the reconnect attempt that failure started
            // (connect timeout 0.5 s, one retry after 0.1–2 s), which then fails too.
            tokio::time::sleep(Duration::from_secs(3)).await;
            // `launch` returns once the new server answers PING.
            server.launch();
            let first = busy.append(&t, msg("busy"), 0).await;
            assert!(first.is_ok(), "round {round}: busy store: {first:?}");
            let first = idle.append(&t, msg("idle"), 0).await;
            assert!(first.is_ok(), "round {round}: idle store: {first:?}");
        }
    });
}

/// A store made while Redis is down fails with Unavailable, then works once it is up.
#[test]
fn starts_while_redis_is_down() {
    need_redis_server();
    let mut server = RedisServer::start_durable();
    server.kill();
    let store = private_store(&server, |_| {});
    let t = Topic::new("early").unwrap();
    block_on(async {
        let r = store.append(&t, msg("x"), 0).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
        server.restart();
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.ping().await.is_err() {
            assert!(Instant::now() < deadline, "store did not come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(store.append(&t, msg("x"), 0).await.unwrap().offset, 1);
    });
}

/// A shared store (the default) does not release in-flight deliveries: they wait for their
/// deadlines, which any node's claim honours.
#[test]
fn shared_store_does_not_release_in_flight() {
    let h = store_with(|_| {});
    assert!(h.store.config().is_shared);
    let store = &h.store;
    let t = Topic::new("jobs").unwrap();
    let sub = SubscriptionName::group("workers").unwrap();
    block_on(async {
        store
            .subscribe(&t, &sub, StartFrom::Earliest)
            .await
            .unwrap();
        store.append(&t, msg("1"), 0).await.unwrap();
        assert_eq!(claimed_count(store, &t, &sub, opts(0, 1)).await, 1);
        assert_eq!(store.release_in_flight(5).await.unwrap(), 0);
        assert!(
            store
                .claim(&t, &sub, opts(6, 1))
                .await
                .unwrap()
                .claimed
                .is_empty()
        );
        // Another node (another handle on the same keys) redelivers after the deadline.
        let other = RedisStore::open(store.config().clone()).unwrap();
        let r = other.claim(&t, &sub, opts(1_000, 1)).await.unwrap();
        assert_eq!(r.claimed[0].attempt, 2);
    });
}

/// Stores on different prefixes of one Redis do not see each other.
#[test]
fn prefixes_isolate_stores() {
    let a = store_with(|_| {});
    let b = store_with(|c| {
        if let common::Guard::Private(_) = &a.guard {
            c.url = a.store.config().url.clone();
        }
    });
    let t = Topic::new("shared.name").unwrap();
    block_on(async {
        a.store.append(&t, msg("a"), 0).await.unwrap();
        assert!(b.store.topics().await.unwrap().is_empty());
        assert_eq!(b.store.append(&t, msg("b"), 0).await.unwrap().offset, 1);
        assert_eq!(a.store.topics().await.unwrap(), vec![t.clone()]);
    });
}

/// The layout the crate docs promise: offsets are stream ids, subscriptions consumer groups
/// whose last-delivered id is the cursor - 1 and whose PEL holds the pending entries.
#[test]
fn topics_are_streams_and_subscriptions_consumer_groups() {
    let h = store_with(|_| {});
    let store = &h.store;
    let prefix = store.config().prefix.clone();
    let t = Topic::new("pickup").unwrap();
    let sub = SubscriptionName::identity("driver-7").unwrap();
    block_on(async {
        for i in 0..3 {
            store.append(&t, msg(&format!("{i}")), 0).await.unwrap();
        }
        store
            .subscribe(&t, &sub, StartFrom::Earliest)
            .await
            .unwrap();
        store.claim(&t, &sub, opts(0, 2)).await.unwrap();
        store.ack(&t, &sub, 1).await.unwrap();
        store.claim(&t, &sub, opts(1_000, 2)).await.unwrap();
    });
    let client = redis::Client::open(store.config().url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let log = format!("{prefix}{{pickup}}:log");
    let ids: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(&log)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let ids: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1-0", "2-0", "3-0"]);
    // XPENDING summary: count, smallest, greatest, consumers.
    let pending: (u64, String, String, Vec<(String, String)>) = redis::cmd("XPENDING")
        .arg(&log)
        .arg("id:driver-7")
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        (pending.0, pending.1.as_str(), pending.2.as_str()),
        (2, "2-0", "3-0")
    );
    // Extended form: the delivery counts mirror the attempts (offset 2 was redelivered).
    assert_delivery_counts(&mut conn, &log, "id:driver-7", &[("2-0", 2), ("3-0", 1)]);
    let topics: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}topics"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(topics, ["pickup"]);
}

/// `wait_aof` fails writes as unavailable unless the server has them in its AOF: an
/// in-memory server (or one older than 7.2, without WAITAOF) refuses.
#[test]
fn wait_aof_refuses_a_server_without_aof() {
    need_redis_server();
    let server = RedisServer::start();
    let store = private_store(&server, |c| c.wait_aof = Some(Duration::from_millis(500)));
    let t = Topic::new("t").unwrap();
    block_on(async {
        let r = store.append(&t, msg("x"), 0).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        // Reads do not wait.
        assert!(store.history(&t, 1, 10).await.is_ok());
    });
}

/// Limits the delivery engine may pass as "no limit" reach Redis as integers it accepts.
#[test]
fn huge_limits_are_accepted() {
    let h = store_with(|_| {});
    let store = &h.store;
    let t = Topic::new("t").unwrap();
    let sub = SubscriptionName::identity("a").unwrap();
    block_on(async {
        subscribed_with(store, &t, &sub, 3).await;
        let r = store
            .claim(
                &t,
                &sub,
                ClaimOptions {
                    now: u64::MAX - 1,
                    max: usize::MAX,
                    ack_timeout: u64::MAX,
                    max_deliveries: u32::MAX,
                },
            )
            .await
            .unwrap();
        assert_eq!(r.claimed.len(), 3);
        assert_eq!(store.history(&t, 0, usize::MAX).await.unwrap().len(), 3);
        let gaps = store
            .enforce_retention(
                &t,
                tidings_core::store::Retention {
                    max_age: u64::MAX,
                    max_messages: u64::MAX,
                    max_bytes: u64::MAX,
                },
                u64::MAX,
                u64::MAX,
            )
            .await
            .unwrap();
        assert!(gaps.is_empty());
    });
}

/// The keys a drain leaves behind: an ack removes nothing but the PEL entry, and the runs of
/// settled claims are dropped by the next claim, so a subscription that keeps up holds at
/// most the run of what is in flight — and nothing at all once it is idle.
#[test]
fn a_drain_leaves_no_per_entry_state() {
    let (h, prefix, mut conn) = store_and_direct_connection();
    let store = &h.store;
    let t = Topic::new("t").unwrap();
    let sub = SubscriptionName::identity("a").unwrap();
    let key = |what: &str| format!("{prefix}{{t}}:s:id:a:{what}");
    let mut card =
        |what: &str| -> u64 { redis::cmd("ZCARD").arg(key(what)).query(&mut conn).unwrap() };
    block_on(async {
        subscribed_with(store, &t, &sub, 50).await;
        let mut batch = Vec::new();
        let mut seen = 0;
        for turn in 0..6 {
            let (flags, r) = store
                .settle_and_claim(&t, &sub, &batch, opts(turn, 10))
                .await
                .unwrap();
            assert!(flags.iter().all(|f| *f), "every ack was pending");
            seen += r.claimed.len();
            batch = r
                .claimed
                .iter()
                .map(|c| Settle::Ack(c.message.offset))
                .collect();
        }
        assert_eq!(seen, 50);
    });
    assert_eq!(
        (card("runs"), card("wait")),
        (0, 0),
        "nothing pending, nothing kept"
    );
    for legacy in ["due", "att", "flight"] {
        assert_eq!(card(legacy), 0);
    }
}

/// `requeue_dead` resets an entry's delivery counter, so an older run of the same count that
/// covers it must not claim it: here the run of the first claim (deadline 1,000) covers offset
/// 2, which is back from the dead letters and in flight until 10,003 under a run of its own.
#[test]
fn a_requeued_dead_letter_leaves_the_runs_that_covered_it() {
    let h = store_with(|_| {});
    let store = &h.store;
    let t = Topic::new("t").unwrap();
    let sub = SubscriptionName::identity("a").unwrap();
    let o = |now, ack_timeout| ClaimOptions {
        now,
        max: 10,
        ack_timeout,
        max_deliveries: 1,
    };
    block_on(async {
        subscribed_with(store, &t, &sub, 3).await;
        assert_eq!(claimed_count(store, &t, &sub, o(0, 1_000)).await, 3);
        assert!(store.requeue(&t, &sub, 2, 0).await.unwrap());
        let r = store.claim(&t, &sub, o(1, 1_000)).await.unwrap();
        assert_eq!(r.dead_lettered, [2]);
        let id = store.dead_letters(&t).await.unwrap()[0].message.id;
        assert!(store.requeue_dead(&t, id, 2).await.unwrap());
        let r = store.claim(&t, &sub, o(3, 10_000)).await.unwrap();
        let claimed: Vec<(u64, u32)> = r
            .claimed
            .iter()
            .map(|c| (c.message.offset, c.attempt))
            .collect();
        assert_eq!((claimed, r.next_due), (vec![(2, 1)], Some(1_000)));
        // At 1,000 offsets 1 and 3 are due (and dead, max_deliveries 1); 2 is not.
        let r = store.claim(&t, &sub, o(1_000, 10_000)).await.unwrap();
        assert_eq!(
            (r.dead_lettered.as_slice(), r.next_due),
            (&[1, 3][..], Some(10_003))
        );
        let info = store.topic_info(&t).await.unwrap().unwrap();
        let s = &info.subscriptions[0];
        assert_eq!((s.pending, s.in_flight, s.dead), (1, 1, 2), "{s:?}");
    });
}

/// A pending entry whose message was deleted behind the store's back (`XDEL`) fails the claim
/// as corrupt before the claim writes anything: the other due entry is not handed out, no
/// run is dropped, and the next claim reports the same instead of leaving entries stranded.
#[test]
fn a_pending_entry_without_its_message_fails_the_claim_before_any_write() {
    let (h, prefix, mut conn) = store_and_direct_connection();
    let store = &h.store;
    let t = Topic::new("t").unwrap();
    let sub = SubscriptionName::identity("a").unwrap();
    block_on(async {
        subscribed_with(store, &t, &sub, 2).await;
        assert_eq!(claimed_count(store, &t, &sub, opts(0, 10)).await, 2);
        // Synchronous: the store's connection lives on this runtime, one block_on for all.
        let deleted: u64 = redis::cmd("XDEL")
            .arg(format!("{prefix}{{t}}:log"))
            .arg("2-0")
            .query(&mut conn)
            .unwrap();
        assert_eq!(deleted, 1);
        for _ in 0..2 {
            let r = store.claim(&t, &sub, opts(1_000, 10)).await;
            assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
        }
        let info = store.topic_info(&t).await.unwrap().unwrap();
        let s = &info.subscriptions[0];
        assert_eq!((s.pending, s.in_flight), (2, 2), "{s:?}");
        // Offset 1 was not handed out again by the failed claims: still its first delivery.
        let log = format!("{prefix}{{t}}:log");
        assert_delivery_counts(&mut conn, &log, "id:a", &[("1-0", 1), ("2-0", 1)]);
        assert!(store.ack(&t, &sub, 2).await.unwrap());
        let r = store.claim(&t, &sub, opts(1_000, 10)).await.unwrap();
        assert_eq!(r.claimed[0].message.offset, 1);
        assert_eq!(r.claimed[0].attempt, 2);
    });
}
