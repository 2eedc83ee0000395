//! Data written by the store script before the pending entries moved into the PEL (the legacy
//! layout: `due`, `att` and `flight` per subscription) is read correctly by the current store,
//! which migrates a subscription on its first touch. The legacy data is written here by the
//! legacy script itself (`tests/fixtures/store-legacy.lua`, the script as it was).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::store_and_direct_connection;
use redis::Value;
use tidings_core::store::{ClaimOptions, ClaimResult, Settle, Store, SubscriptionName, Topic};
use tidings_store_tests::block_on;

const LEGACY: &str = include_str!("fixtures/store-legacy.lua");

/// Runs one operation of the legacy script; panics unless it answers `ok`.
fn legacy(conn: &mut redis::Connection, prefix: &str, op: &str, topic: &str, args: &[&str]) {
    let script = redis::Script::new(LEGACY);
    let mut invocation = script.prepare_invoke();
    invocation.arg(op).arg(prefix).arg(topic);
    for a in args {
        invocation.arg(*a);
    }
    let reply: Value = invocation.invoke(conn).unwrap();
    let Value::Array(items) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(items[0], Value::BulkString(b"ok".to_vec()), "{reply:?}");
}

fn claim_opts(now: u64) -> ClaimOptions {
    ClaimOptions {
        now,
        max: 10,
        ack_timeout: 500,
        max_deliveries: 5,
    }
}

fn claimed(r: &ClaimResult) -> Vec<(u64, u32)> {
    r.claimed
        .iter()
        .map(|c| (c.message.offset, c.attempt))
        .collect()
}

#[test]
fn a_subscription_in_the_legacy_layout_is_migrated_on_first_touch() {
    let (h, prefix, mut conn) = store_and_direct_connection();
    let store = &h.store;
    let mut run = |op: &str, args: &[&str]| legacy(&mut conn, &prefix, op, "jobs", args);
    let t = Topic::new("jobs").unwrap();
    let sub = SubscriptionName::identity("a").unwrap();

    // The legacy script: 6 messages; 1, 2, 3 claimed at 1000 (deadline 1500); 2 requeued
    // until 2000; at 1600 a claim of one entry redelivers 1 (attempt 2, deadline 2100) and
    // leaves 3 in flight past its deadline.
    for i in 1..=6 {
        let id = format!("{i:032x}");
        let data = format!("[{i}]");
        run("append", &[&id, "e", &data, "5", "", "0", ""]);
    }
    run("subscribe", &["id:a", "earliest", "0"]);
    run("claim", &["id:a", "1000", "3", "1500", "5"]);
    run("requeue", &["id:a", "2", "2000"]);
    run("claim", &["id:a", "1600", "1", "2100", "5"]);
    let sub_key = |what: &str| format!("{prefix}{{jobs}}:s:id:a:{what}");
    let legacy_keys = [sub_key("due"), sub_key("att"), sub_key("flight")];
    let present: u64 = redis::cmd("EXISTS")
        .arg(&legacy_keys)
        .query(&mut conn)
        .unwrap();
    assert_eq!(present, 3, "the legacy script wrote its layout");

    block_on(async {
        // A read first: 3 pending (1 and 3 in flight, 2 waiting), 3 never delivered.
        let info = store.topic_info(&t).await.unwrap().unwrap();
        let s = &info.subscriptions[0];
        assert_eq!((s.pending, s.in_flight, s.cursor), (6, 2, 4), "{s:?}");

        // 3 is due (its deadline 1500 passed) with its attempt count, then the new messages.
        let r = store.claim(&t, &sub, claim_opts(1700)).await.unwrap();
        assert_eq!(claimed(&r), [(3, 2), (4, 1), (5, 1), (6, 1)]);
        assert_eq!(r.claimed[0].message.data, "[3]");
        assert_eq!(r.next_due, Some(2000), "2 waits until 2000");
        let r = store.claim(&t, &sub, claim_opts(2000)).await.unwrap();
        assert_eq!((claimed(&r), r.next_due), (vec![(2, 2)], Some(2100)));
        let r = store.claim(&t, &sub, claim_opts(2100)).await.unwrap();
        assert_eq!((claimed(&r), r.next_due), (vec![(1, 3)], Some(2200)));
        let acks: Vec<Settle> = (1..=6).map(Settle::Ack).collect();
        assert_eq!(store.settle(&t, &sub, &acks).await.unwrap(), [true; 6]);
        let r = store.claim(&t, &sub, claim_opts(2200)).await.unwrap();
        assert_eq!((claimed(&r), r.next_due), (vec![], None));
    });
    let present: u64 = redis::cmd("EXISTS")
        .arg(&legacy_keys)
        .query(&mut conn)
        .unwrap();
    assert_eq!(present, 0, "the legacy keys are gone");
}

/// A legacy entry's attempt count survives the migration: at `max_deliveries` it goes to the
/// dead letters with that count, and `requeue_dead` brings it back with none.
#[test]
fn legacy_attempt_counts_reach_the_dead_letters() {
    let (h, prefix, mut conn) = store_and_direct_connection();
    let store = &h.store;
    let mut run = |op: &str, args: &[&str]| legacy(&mut conn, &prefix, op, "jobs", args);
    let t = Topic::new("jobs").unwrap();
    let sub = SubscriptionName::identity("a").unwrap();
    let id = format!("{:032x}", 7);
    run("append", &[&id, "e", "[1]", "5", "", "0", ""]);
    run("subscribe", &["id:a", "earliest", "0"]);
    // Two deliveries in the legacy layout, the second still in flight.
    run("claim", &["id:a", "0", "1", "100", "3"]);
    run("claim", &["id:a", "100", "1", "200", "3"]);
    block_on(async {
        let opts = |now| ClaimOptions {
            max_deliveries: 3,
            ..claim_opts(now)
        };
        let r = store.claim(&t, &sub, opts(200)).await.unwrap();
        assert_eq!(claimed(&r), [(1, 3)]);
        let r = store.claim(&t, &sub, opts(700)).await.unwrap();
        assert_eq!(
            (claimed(&r), r.dead_lettered.as_slice()),
            (vec![], &[1][..])
        );
        let dead = store.dead_letters(&t).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 3);
        assert!(
            store
                .requeue_dead(&t, dead[0].message.id, 800)
                .await
                .unwrap()
        );
        let r = store.claim(&t, &sub, opts(800)).await.unwrap();
        assert_eq!((claimed(&r), r.next_due), (vec![(1, 1)], Some(1300)));
    });
}
