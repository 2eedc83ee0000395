//! Store failures against the REAL engine and a real SQLite file, through a fault-injecting
//! wrapper (`tidings_store_tests::faulty::FaultyStore`):
//!
//! - while the store is unavailable, publishes are refused with `store_unavailable` and never
//!   confirmed, subscribes are refused the same way, and volatile traffic (a room broadcast)
//!   keeps flowing between other clients;
//! - a publish whose write took effect but whose answer was lost is not confirmed either;
//! - once the store works again, the same connections publish and the durable subscriber
//!   receives every confirmed message (deliveries stalled by the fault resume by themselves);
//!   nothing that was refused before reaching the store was stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{options, start, within};
use tidings_client::{Client, ErrorCode, PublishError, SubscribeError, SubscribeOptions};
use tidings_core::store::{Store, Topic};
use tidings_server::{QueueConfig, Server, ServerConfig};
use tidings_store_sqlite::{SqliteConfig, SqliteStore};
use tidings_store_tests::faulty::{Fault, FaultyStore};

const TOPIC: &str = "faults.orders";

async fn client(url: &str, client_id: Option<&str>) -> Client {
    let auth = client_id.map_or_else(|| json!({}), |id| json!({ "clientId": id }));
    Client::connect(options(url).auth(auth).build().unwrap())
        .await
        .unwrap()
}

fn assert_unavailable(err: PublishError) {
    match err {
        PublishError::Server { code, message } => {
            assert_eq!(code, ErrorCode::StoreUnavailable, "{message}");
        }
        other => panic!("expected store_unavailable, got {other:?}"),
    }
}

/// Broadcasts `n` from `from` to room `room` and checks that `to` receives it.
async fn broadcast_flows(from: &Client, to: &mut tidings_client::EventStream, room: &str, n: u32) {
    let ack = within(from.emit_with_ack(
        "broadcast",
        &json!({ "room": room, "event": "chat", "data": { "n": n } }),
        Duration::from_secs(5),
    ))
    .await
    .unwrap();
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    assert_eq!(ack[0]["recipients"], json!(1), "{ack:?}");
    let got = within(to.recv()).await.unwrap();
    assert_eq!(got.args[0], json!({ "n": n }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_refuse_publishes_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("t.sqlite3"), SqliteConfig::default()).unwrap();
    let store = Arc::new(FaultyStore::new(sqlite));
    let server = Server::new(
        ServerConfig::builder()
            .builtin_events(true)
            .build()
            .unwrap(),
    );
    let mut config = QueueConfig::default();
    // A claim whose answer is lost (Fault::LostAnswer) stays in flight in the store until its
    // store deadline (2 × ack timeout + 5 s) passes; keep that short.
    config.ack_timeout = Duration::from_millis(500);
    server
        .enable_queues(store.clone() as Arc<dyn Store>, config)
        .await
        .unwrap();
    let srv = start(server).await;
    let url = srv.url();

    let consumer = client(&url, Some("auditor")).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new(TOPIC))
        .await
        .unwrap();
    let producer = client(&url, None).await;
    // Two plain Socket.IO clients in a room: the volatile traffic that must keep flowing.
    let alice = client(&url, None).await;
    let bob = client(&url, None).await;
    let mut bob_chat = bob.on("chat");
    for c in [&alice, &bob] {
        let ack = c
            .emit_with_ack("join", &json!({ "room": "lobby" }), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ack[0], json!({ "ok": true }));
    }

    let mut confirmed = BTreeSet::new();
    let first = producer
        .publish(TOPIC, "order", &json!({ "n": 1 }))
        .await
        .unwrap();
    confirmed.insert(first.offset);
    let d = within(orders.recv()).await.unwrap();
    assert_eq!(d.data, json!({ "n": 1 }));
    d.ack().await.unwrap();

    // The disk breaks: nothing reaches the store.
    store.set_fault(Fault::Unavailable);
    for n in 2..=4 {
        let err = producer
            .publish(TOPIC, "order", &json!({ "n": n }))
            .await
            .unwrap_err();
        assert_unavailable(err);
        // Rooms and broadcasts do not need the store.
        broadcast_flows(&alice, &mut bob_chat, "lobby", n).await;
    }
    // A new subscriber is refused the same way, and told why.
    let newcomer = client(&url, Some("newcomer")).await;
    match newcomer.subscribe(SubscribeOptions::new(TOPIC)).await {
        Err(SubscribeError::Server { code, .. }) => assert_eq!(code, ErrorCode::StoreUnavailable),
        other => panic!(
            "expected store_unavailable, got {:?}",
            other.map(|_| "subscribed")
        ),
    }

    // The write happens but its answer is lost: still not confirmed.
    store.set_fault(Fault::LostAnswer);
    let err = producer
        .publish(TOPIC, "order", &json!({ "n": 5, "lost_answer": true }))
        .await
        .unwrap_err();
    assert_unavailable(err);
    broadcast_flows(&alice, &mut bob_chat, "lobby", 5).await;
    assert!(
        store.injected() >= 5,
        "faults injected: {}",
        store.injected()
    );

    // The disk is back: the same connections carry on.
    store.set_fault(Fault::None);
    for n in 6..=8 {
        let ok = producer
            .publish(TOPIC, "order", &json!({ "n": n }))
            .await
            .unwrap();
        confirmed.insert(ok.offset);
    }

    // The subscriber gets every confirmed message; the lost-answer one may come too (it was
    // stored), the refused ones cannot (they never were).
    let mut received = BTreeSet::new();
    let mut ns = Vec::new();
    while !confirmed.iter().skip(1).all(|o| received.contains(o)) {
        let d = tokio::time::timeout(Duration::from_secs(20), orders.recv())
            .await
            .expect("a confirmed message was not delivered within 20 s")
            .unwrap();
        received.insert(d.meta.offset);
        ns.push(d.data["n"].clone());
        d.ack().await.unwrap();
    }
    for n in 2..=4 {
        assert!(
            !ns.contains(&Value::from(n)),
            "refused publish {n} was delivered: {ns:?}"
        );
    }

    // What the store holds: the confirmed messages, the lost-answer one, and none refused.
    let topic = Topic::new(TOPIC).unwrap();
    let stored: Vec<Value> = store
        .inner()
        .history(&topic, 1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| serde_json::from_str::<Value>(&m.data).unwrap()["n"].clone())
        .collect();
    assert_eq!(
        stored,
        vec![json!(1), json!(5), json!(6), json!(7), json!(8)]
    );
    for offset in &confirmed {
        assert!(
            store.inner().history(&topic, *offset, 1).await.unwrap()[0].offset == *offset,
            "confirmed offset {offset} is missing"
        );
    }
    // And the newcomer can subscribe now.
    newcomer
        .subscribe(SubscribeOptions::new(TOPIC))
        .await
        .unwrap();
}
