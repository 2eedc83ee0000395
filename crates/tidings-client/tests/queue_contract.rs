//! The durable-topic API of the client against the REAL delivery engine: an in-process
//! `tidings_server::Server` with the built-in events and `enable_queues` over the memory store
//! or an SQLite file in a temporary directory, with short timeouts. What the server did is read
//! back from its store (`server.queues().store()`), never from a stand-in.
//!
//! Covered: publish and dedup by key; identity required (and an invalid `clientId` refused);
//! ack, requeue → attempt 2; `from: earliest` with `pending`; history; routing by topic and
//! group, and a group's messages going to exactly one member; resuming after a server restart
//! on the same SQLite file; a stale ack after a reconnect; a dropped subscription leaving its
//! deliveries unacknowledged; deliveries that arrive before `subscribe` being held for it;
//! unsubscribe; retention gaps as typed `tidings:gap` notices. Every test runs on the
//! multi-threaded runtime, as `tidings serve` does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use support::{TestServer, options, start, start_on, wait_state, within};
use tidings_client::{
    Client, ConnectError, ConnectionState, EmitError, ErrorCode, PublishError, StartFrom,
    SubscribeError, SubscribeOptions, Topic,
};
use tidings_core::store::{Store, SubscriptionInfo};
use tidings_server::{QueueConfig, Server, ServerConfig};
use tidings_store_journal::{JournalConfig, JournalStore};
use tidings_store_memory::MemoryStore;
use tidings_store_sqlite::{SqliteConfig, SqliteStore};

/// Short timeouts, so that redeliveries happen within a test.
fn fast() -> QueueConfig {
    let mut c = QueueConfig::default();
    c.ack_timeout = Duration::from_millis(500);
    c.requeue_backoff = Duration::from_millis(50);
    c.requeue_backoff_max = Duration::from_millis(200);
    c
}

/// A server with the built-in events and durable topics over `store`.
async fn engine(store: Arc<dyn Store>, config: QueueConfig) -> Server {
    let server = Server::new(
        ServerConfig::builder()
            .builtin_events(true)
            .build()
            .unwrap(),
    );
    server.enable_queues(store, config).await.unwrap();
    server
}

async fn memory_engine(config: QueueConfig) -> TestServer {
    start(engine(Arc::new(MemoryStore::new()), config).await).await
}

fn sqlite(path: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(path, SqliteConfig::default()).unwrap())
}

async fn client(srv: &TestServer, client_id: Option<&str>) -> Client {
    let auth = match client_id {
        Some(id) => json!({ "clientId": id }),
        None => json!({}),
    };
    Client::connect(options(&srv.url()).auth(auth).build().unwrap())
        .await
        .unwrap()
}

/// The store's view of subscription `name` (`id:…` or `group:…`) of `topic`, if it exists.
async fn info(server: &Server, topic: &str, name: &str) -> Option<SubscriptionInfo> {
    let topic = Topic::new(topic).unwrap();
    let info = server
        .queues()
        .unwrap()
        .store()
        .topic_info(&topic)
        .await
        .unwrap()?;
    info.subscriptions
        .into_iter()
        .find(|s| s.name.to_string() == name)
}

/// Polls the store (bounded, 10 s) until subscription `name` satisfies `done`.
async fn wait_info(
    server: &Server,
    topic: &str,
    name: &str,
    done: impl Fn(&SubscriptionInfo) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = info(server, topic, name).await;
        if now.as_ref().is_some_and(&done) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} {name} never got there: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_returns_id_offset_and_dedups_by_key() {
    let srv = memory_engine(fast()).await;
    // Publishing needs no identity.
    let producer = client(&srv, None).await;

    let first = producer
        .publish("pickup", "order", &json!({ "n": 1 }))
        .await
        .unwrap();
    assert_eq!((first.offset, first.duplicate), (1, false));

    let keyed = producer
        .publish_with_key("pickup", "order", &json!({ "n": 2 }), "order-2")
        .await
        .unwrap();
    assert_eq!((keyed.offset, keyed.duplicate), (2, false));
    let again = producer
        .publish_with_key("pickup", "order", &json!({ "n": 99 }), "order-2")
        .await
        .unwrap();
    assert_eq!(
        (again.id, again.offset, again.duplicate),
        (keyed.id, 2, true)
    );
    assert_ne!(first.id, keyed.id);
    // The repeat stored nothing.
    let stored = producer.history("pickup", None, None).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].data, json!({ "n": 2 }));

    let err = producer
        .publish("not a topic!", "order", &1)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::InvalidTopic(_)), "{err:?}");

    // Refused by the server, with its code and message.
    for (event, says) in [
        ("", "`event` must be a non-empty string"),
        ("connect", "reserved"),
    ] {
        match producer.publish("pickup", event, &1).await.unwrap_err() {
            PublishError::Server { code, message } => {
                assert_eq!(code, ErrorCode::BadRequest, "{event:?}");
                assert!(message.contains(says), "{event:?}: {message}");
            }
            other => panic!("{event:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_without_identity_is_identity_required() {
    let srv = memory_engine(fast()).await;
    let anonymous = client(&srv, None).await;
    let err = anonymous
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubscribeError::IdentityRequired { .. }),
        "{err:?}"
    );
    // The failed subscribe left no route behind (not `AlreadySubscribed`).
    let err = anonymous
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubscribeError::IdentityRequired { .. }),
        "{err:?}"
    );
    // And nothing was created on the server.
    let topic = Topic::new("pickup").unwrap();
    let store = srv.server.queues().unwrap().store();
    assert!(store.topic_info(&topic).await.unwrap().is_none());

    // A `clientId` that is not a usable identity refuses the connection.
    let bad = options(&srv.url())
        .auth(json!({ "clientId": 7 }))
        .build()
        .unwrap();
    match Client::connect(bad).await {
        Err(ConnectError::Refused { message, .. }) => assert_eq!(message, "invalid clientId"),
        other => panic!("{:?}", other.map(|_| "connected")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_acked_and_requeued() {
    let srv = memory_engine(fast()).await;
    let consumer = client(&srv, Some("driver-7")).await;
    let producer = client(&srv, None).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    assert_eq!(orders.topic().as_str(), "pickup");
    assert_eq!(orders.group(), None);
    assert_eq!(orders.pending(), 0);

    let p1 = producer
        .publish("pickup", "order", &json!({ "n": 1 }))
        .await
        .unwrap();
    let d1 = within(orders.recv()).await.unwrap();
    assert_eq!(d1.event, "order");
    assert_eq!(d1.data, json!({ "n": 1 }));
    assert_eq!(d1.meta.topic.as_str(), "pickup");
    assert_eq!(d1.meta.id, p1.id);
    assert_eq!((d1.meta.offset, d1.meta.attempt), (1, 1));
    assert_eq!(d1.meta.group, None);
    assert!(d1.meta.published_at > 0);
    d1.ack().await.unwrap();
    wait_info(&srv.server, "pickup", "id:driver-7", |s| s.pending == 0).await;

    producer
        .publish("pickup", "order", &json!({ "n": 2 }))
        .await
        .unwrap();
    // Through the Stream trait, too.
    let d2 = within(orders.next()).await.unwrap();
    assert_eq!((d2.meta.offset, d2.meta.attempt), (2, 1));
    d2.requeue().await.unwrap();
    let d2 = within(orders.recv()).await.unwrap();
    assert_eq!((d2.meta.offset, d2.meta.attempt), (2, 2));
    assert_eq!(d2.data::<Value>().unwrap(), json!({ "n": 2 }));
    d2.ack().await.unwrap();
    wait_info(&srv.server, "pickup", "id:driver-7", |s| {
        s.pending == 0 && s.in_flight == 0 && s.dead == 0 && s.cursor == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_earliest_history_and_pending() {
    let srv = memory_engine(fast()).await;
    let producer = client(&srv, None).await;
    for n in 1..=3 {
        producer
            .publish("vendor.store-42", "stock", &json!({ "n": n }))
            .await
            .unwrap();
    }
    let consumer = client(&srv, Some("auditor")).await;
    let mut stock = consumer
        .subscribe(SubscribeOptions::new("vendor.store-42").from(StartFrom::Earliest))
        .await
        .unwrap();
    assert_eq!(stock.pending(), 3);
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let d = within(stock.recv()).await.unwrap();
        assert_eq!(d.data, json!({ "n": d.meta.offset }));
        offsets.push(d.meta.offset);
        d.ack().await.unwrap();
    }
    // Offset order is `deliveries_arrive_in_offset_order`'s business.
    offsets.sort_unstable();
    assert_eq!(offsets, [1, 2, 3]);
    wait_info(&srv.server, "vendor.store-42", "id:auditor", |s| {
        s.pending == 0
    })
    .await;

    // From an offset: only what follows.
    let late = client(&srv, Some("late")).await;
    let from_3 = late
        .subscribe(SubscribeOptions::new("vendor.store-42").from(StartFrom::Offset(3)))
        .await
        .unwrap();
    assert_eq!(from_3.pending(), 1);

    let history = consumer
        .history("vendor.store-42", Some(2), Some(1))
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].offset, 2);
    assert_eq!(history[0].event, "stock");
    assert_eq!(history[0].data, json!({ "n": 2 }));
    assert!(history[0].published_at > 0);
    let all = consumer
        .history("vendor.store-42", None, None)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|m| m.offset).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        consumer
            .history("nowhere", None, None)
            .await
            .unwrap()
            .is_empty()
    );
}

// Needs the multi-threaded runtime (as `tidings serve` uses): the single-threaded one happens
// to run the delivery tasks in spawn order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_arrive_in_offset_order() {
    let srv = memory_engine(fast()).await;
    let producer = client(&srv, None).await;
    for n in 1..=20 {
        producer.publish("pickup", "order", &n).await.unwrap();
    }
    let consumer = client(&srv, Some("driver-7")).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup").from(StartFrom::Earliest))
        .await
        .unwrap();
    let mut offsets = Vec::new();
    for _ in 0..20 {
        let d = within(orders.recv()).await.unwrap();
        offsets.push(d.meta.offset);
        d.ack().await.unwrap();
    }
    assert_eq!(offsets, (1..=20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_route_by_topic_and_group() {
    let srv = memory_engine(fast()).await;
    let consumer = client(&srv, Some("driver-7")).await;
    let producer = client(&srv, None).await;
    let mut own = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    let mut team = consumer
        .subscribe(SubscribeOptions::new("pickup").group("drivers"))
        .await
        .unwrap();
    assert_eq!(team.group(), Some("drivers"));
    let err = consumer
        .subscribe(SubscribeOptions::new("pickup").group("drivers"))
        .await
        .unwrap_err();
    assert!(matches!(err, SubscribeError::AlreadySubscribed), "{err:?}");
    let mut elsewhere = consumer
        .subscribe(SubscribeOptions::new("dropoff"))
        .await
        .unwrap();

    producer.publish("pickup", "order", &1).await.unwrap();
    producer.publish("dropoff", "parcel", &"d").await.unwrap();
    let mine = within(own.recv()).await.unwrap();
    assert_eq!(
        (mine.meta.group.as_deref(), mine.meta.topic.as_str()),
        (None, "pickup")
    );
    let ours = within(team.recv()).await.unwrap();
    assert_eq!(ours.meta.group.as_deref(), Some("drivers"));
    assert_eq!(ours.meta.id, mine.meta.id);
    let there = within(elsewhere.recv()).await.unwrap();
    assert_eq!(
        (there.event.as_str(), there.meta.topic.as_str()),
        ("parcel", "dropoff")
    );
    mine.ack().await.unwrap();
    ours.ack().await.unwrap();
    there.ack().await.unwrap();

    // Once a subscription is dropped, the same topic and group can be subscribed again.
    drop(team);
    let mut team = consumer
        .subscribe(SubscribeOptions::new("pickup").group("drivers"))
        .await
        .unwrap();
    producer.publish("pickup", "order", &2).await.unwrap();
    within(team.recv()).await.unwrap().ack().await.unwrap();
    within(own.recv()).await.unwrap().ack().await.unwrap();
    wait_info(&srv.server, "pickup", "group:drivers", |s| s.pending == 0).await;
    wait_info(&srv.server, "pickup", "id:driver-7", |s| s.pending == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_goes_to_exactly_one_member() {
    const N: u64 = 30;
    let mut config = fast();
    // Long enough that nothing is redelivered to a second member by timeout.
    config.ack_timeout = Duration::from_secs(10);
    let srv = memory_engine(config).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut members = Vec::new();
    for id in ["driver-1", "driver-2", "driver-3"] {
        let member = client(&srv, Some(id)).await;
        let mut sub = member
            .subscribe(SubscribeOptions::new("pickup").group("drivers"))
            .await
            .unwrap();
        let tx = tx.clone();
        // Each member acks what it gets at once.
        members.push(tokio::spawn(async move {
            while let Some(d) = sub.recv().await {
                tx.send((id, d.meta.offset, d.meta.attempt)).unwrap();
                d.ack().await.unwrap();
            }
            drop(member);
        }));
    }
    let producer = client(&srv, None).await;
    for n in 1..=N {
        producer.publish("pickup", "order", &n).await.unwrap();
    }
    let mut seen = Vec::new();
    while (seen.len() as u64) < N {
        let (id, offset, attempt) = within(rx.recv()).await.unwrap();
        assert_eq!(attempt, 1, "offset {offset} redelivered (to {id})");
        seen.push(offset);
    }
    wait_info(&srv.server, "pickup", "group:drivers", |s| s.pending == 0).await;
    // Every delivery was acked, so any further one would be a second copy.
    assert!(rx.try_recv().is_err());
    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(
        seen.len(),
        distinct.len(),
        "a message went to two members: {seen:?}"
    );
    assert_eq!(distinct, (1..=N).collect());
    for member in members {
        member.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resume_after_a_server_restart_on_the_same_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tidings.sqlite3");
    let first = start(engine(sqlite(&db), fast()).await).await;
    let consumer = client(&first, Some("driver-7")).await;
    let producer = client(&first, None).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup").from(StartFrom::New))
        .await
        .unwrap();
    let m1 = producer
        .publish("pickup", "order", &json!("acked"))
        .await
        .unwrap();
    let d = within(orders.recv()).await.unwrap();
    assert_eq!(d.meta.id, m1.id);
    d.ack().await.unwrap();
    wait_info(&first.server, "pickup", "id:driver-7", |s| s.pending == 0).await;
    // Received, not acknowledged, when the server goes away.
    let m2 = producer
        .publish("pickup", "order", &json!("unacked"))
        .await
        .unwrap();
    let held = within(orders.recv()).await.unwrap();
    assert_eq!(held.meta.id, m2.id);
    drop(producer);

    let mut state = consumer.watch_state();
    let port = first.stop().await;
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;
    // A new server process would open the same file: so does this one.
    let second = start_on(engine(sqlite(&db), fast()).await, port).await;
    wait_state(&mut state, |s| *s == ConnectionState::Connected).await;
    drop(held);

    let producer = client(&second, None).await;
    let m3 = producer
        .publish("pickup", "order", &json!("after"))
        .await
        .unwrap();
    // Offsets continue from the file.
    assert_eq!((m1.offset, m2.offset, m3.offset), (1, 2, 3));
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = within(orders.recv()).await.unwrap();
        got.push((d.meta.offset, d.meta.attempt, d.data.clone()));
        d.ack().await.unwrap();
    }
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got,
        [(2, 2, json!("unacked")), (3, 1, json!("after"))],
        "the acked message must not come back"
    );
    wait_info(&second.server, "pickup", "id:driver-7", |s| {
        s.pending == 0 && s.cursor == 4
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_after_a_reconnect_is_refused_as_connection_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tidings.sqlite3");
    let first = start(engine(sqlite(&db), fast()).await).await;
    let consumer = client(&first, Some("driver-7")).await;
    let producer = client(&first, None).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    producer.publish("pickup", "order", &1).await.unwrap();
    let d = within(orders.recv()).await.unwrap();

    let mut state = consumer.watch_state();
    let port = first.stop().await;
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;
    let second = start_on(engine(sqlite(&db), fast()).await, port).await;
    wait_state(&mut state, |s| *s == ConnectionState::Connected).await;

    let err = d.ack().await.unwrap_err();
    assert!(matches!(err, EmitError::ConnectionLost), "{err:?}");
    // The server redelivers it on the new connection, where the ack counts.
    let again = within(orders.recv()).await.unwrap();
    assert_eq!((again.meta.offset, again.meta.attempt), (1, 2));
    again.ack().await.unwrap();
    wait_info(&second.server, "pickup", "id:driver-7", |s| s.pending == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_leaves_its_deliveries_unacked() {
    let mut config = fast();
    config.ack_timeout = Duration::from_millis(200);
    config.max_deliveries = 2;
    // A requeue would not come back within the test: only unanswered deliveries do.
    config.requeue_backoff = Duration::from_secs(60);
    config.requeue_backoff_max = Duration::from_secs(60);
    let srv = memory_engine(config).await;
    let consumer = client(&srv, Some("driver-7")).await;
    let producer = client(&srv, None).await;
    let orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    drop(orders);
    let published = producer.publish("pickup", "order", &1).await.unwrap();

    // Delivered twice, answered never: dead-lettered after its second ack timeout.
    let topic = Topic::new("pickup").unwrap();
    let store = srv.server.queues().unwrap().store().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = store.dead_letters(&topic).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].message.id, dead[0].attempts), (published.id, 2));
    assert_eq!(dead[0].subscription.to_string(), "id:driver-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_before_subscribe_are_held_for_it() {
    let srv = memory_engine(fast()).await;
    // The identity's durable subscriptions exist from an earlier session.
    let earlier = client(&srv, Some("driver-7")).await;
    earlier
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    earlier
        .subscribe(SubscribeOptions::new("elsewhere"))
        .await
        .unwrap();
    earlier.disconnect().await;
    let producer = client(&srv, None).await;
    producer
        .publish("pickup", "order", &json!("early"))
        .await
        .unwrap();
    producer
        .publish("elsewhere", "order", &json!("other"))
        .await
        .unwrap();

    // On connect the server delivers the backlog at once, before any `subscribe`.
    let consumer = client(&srv, Some("driver-7")).await;
    let mut deliveries_seen = consumer.on("order");
    wait_info(&srv.server, "pickup", "id:driver-7", |s| s.in_flight == 1).await;
    wait_info(&srv.server, "elsewhere", "id:driver-7", |s| {
        s.in_flight == 1
    })
    .await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    let d = within(orders.recv()).await.unwrap();
    assert_eq!(d.data, json!("early"));
    assert_eq!((d.meta.offset, d.meta.attempt), (1, 1));
    d.ack().await.unwrap();
    wait_info(&srv.server, "pickup", "id:driver-7", |s| s.pending == 0).await;
    // The other topic's delivery is still unclaimed, hence unacknowledged on the server, and
    // deliveries never reach `on`.
    let other = info(&srv.server, "elsewhere", "id:driver-7").await.unwrap();
    assert_eq!((other.pending, other.in_flight), (1, 1));
    assert!(deliveries_seen.recv().now_or_never().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_ends_the_stream() {
    let srv = memory_engine(fast()).await;
    let consumer = client(&srv, Some("driver-7")).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup").group("drivers"))
        .await
        .unwrap();
    assert!(info(&srv.server, "pickup", "group:drivers").await.is_some());
    consumer
        .unsubscribe("pickup", Some("drivers"))
        .await
        .unwrap();
    assert!(within(orders.recv()).await.is_none());
    // Its last member left: the group's queue is gone.
    assert!(info(&srv.server, "pickup", "group:drivers").await.is_none());

    let again = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    assert!(info(&srv.server, "pickup", "id:driver-7").await.is_some());
    again.unsubscribe().await.unwrap();
    assert!(info(&srv.server, "pickup", "id:driver-7").await.is_none());
    // Unsubscribing again is harmless on the real server (the mock answered `not_found`).
    consumer.unsubscribe("pickup", None).await.unwrap();
    let err = consumer.unsubscribe("not a topic", None).await.unwrap_err();
    assert!(matches!(err, SubscribeError::InvalidTopic(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_notices_are_typed() {
    let mut config = fast();
    config.retention.max_messages = 2;
    config.retention_interval = Duration::from_millis(20);
    config.ack_timeout = Duration::from_secs(30);
    let srv = memory_engine(config).await;
    let consumer = client(&srv, Some("driver-7")).await;
    let mut gaps = consumer.gaps();
    // Deliveries stay unsettled: retention removes them anyway, and says so.
    let _orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    let producer = client(&srv, None).await;
    for n in 1..=5 {
        producer.publish("pickup", "order", &n).await.unwrap();
    }
    let mut lost = HashSet::new();
    while lost.len() < 3 {
        let gap = within(gaps.recv()).await.unwrap();
        assert_eq!(gap.topic.as_str(), "pickup");
        assert!(gap.from <= gap.to && gap.to <= 3, "{gap:?}");
        for offset in gap.from..=gap.to {
            assert!(lost.insert(offset), "offset {offset} announced twice");
        }
    }
    assert_eq!(lost, HashSet::from([1, 2, 3]));
    let sub = info(&srv.server, "pickup", "id:driver-7").await.unwrap();
    assert_eq!((sub.gaps, sub.pending), (3, 2));
}

/// Publishes pipeline: one client keeps 256 publishes in flight on one connection (each call
/// waits for its own ack, as Socket.IO acks allow), on the journal store with full durability.
/// Every one is confirmed once, at its own offset, and the topic holds exactly what was
/// confirmed where it was confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_from_one_client_are_each_confirmed_at_their_offset() {
    const IN_FLIGHT: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Store> = Arc::new(
        JournalStore::open(&dir.path().join("journal"), JournalConfig::default()).unwrap(),
    );
    let srv = start(engine(journal, QueueConfig::default()).await).await;
    let publisher = client(&srv, None).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..IN_FLIGHT {
        let publisher = publisher.clone();
        tasks.spawn(async move {
            let done = publisher
                .publish("pipelined", "n", &json!({ "i": i }))
                .await
                .unwrap();
            (done.offset, (i, done.id))
        });
    }
    let mut confirmed = std::collections::BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (offset, what) = done.unwrap();
        assert!(
            confirmed.insert(offset, what).is_none(),
            "offset {offset} twice"
        );
    }
    assert_eq!(
        confirmed.keys().copied().collect::<Vec<_>>(),
        (1..=IN_FLIGHT).collect::<Vec<_>>()
    );
    let stored = publisher
        .history("pipelined", Some(1), Some(1000))
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, IN_FLIGHT);
    for m in &stored {
        let (i, id) = confirmed[&m.offset];
        assert_eq!(m.id, id, "offset {}", m.offset);
        assert_eq!(m.data, json!({ "i": i }), "offset {}", m.offset);
    }
}
