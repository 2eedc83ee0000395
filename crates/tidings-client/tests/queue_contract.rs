//! The durable-topic API of the client over the wire, against a real tidings Socket.IO server
//! running a small in-memory MOCK of the queue contract written in this file (`subscribe`,
//! `unsubscribe`, `publish`, `history`, deliveries as `(data, meta)` with an ack id, requeue,
//! `tidings:gap`).
//!
//! The mock follows the contract as specified; it is not the server's delivery engine. Once the
//! server implements the contract, the same scenarios should run against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{TestServer, options, start, start_on, wait_state, within};
use tidings_client::{
    Client, ConnectionState, EmitError, ErrorCode, MessageId, PublishError, StartFrom,
    SubscribeError, SubscribeOptions, Topic,
};
use tidings_server::{AckSender, Server, ServerConfig, Socket};
use tokio::sync::mpsc;

/// How long the mock waits for a delivery's acknowledgement.
const MOCK_ACK_TIMEOUT: Duration = Duration::from_millis(500);

type Reports = mpsc::UnboundedSender<(String, Value)>;

struct Stored {
    id: MessageId,
    offset: u64,
    event: String,
    data: Value,
    published_at: u64,
}

#[derive(Default)]
struct MockState {
    log: HashMap<String, Vec<Arc<Stored>>>,
    keys: HashMap<(String, String), u64>,
    /// (topic, group) → member sockets.
    subs: HashMap<(String, Option<String>), Vec<Socket>>,
}

/// The queue contract, in memory. Shared by the servers of a test, so that a restarted
/// server still knows the topics.
#[derive(Clone)]
struct Mock {
    state: Arc<Mutex<MockState>>,
    reports: Reports,
}

fn error(ack: AckSender, code: &str, message: &str) {
    let _ = ack.send(&json!({ "ok": false, "error": { "code": code, "message": message } }));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Mock {
    fn new(reports: Reports) -> Mock {
        Mock {
            state: Arc::default(),
            reports,
        }
    }

    fn server(&self) -> Server {
        let server = Server::new(ServerConfig::default());
        let mock = self.clone();
        server
            .of("/")
            .on_connect(move |socket| mock.clone().on_connect(socket));
        server
    }

    fn report(&self, kind: &str, value: Value) {
        let _ = self.reports.send((kind.to_owned(), value));
    }

    fn on_connect(self, socket: Socket) {
        let m = self.clone();
        socket.on("subscribe", move |socket, mut event| {
            let m = m.clone();
            async move {
                let Some(ack) = event.take_ack() else { return };
                let payload: Value = event.data().unwrap();
                m.subscribe(socket, payload, ack);
            }
        });
        let m = self.clone();
        socket.on("unsubscribe", move |socket, mut event| {
            let m = m.clone();
            async move {
                let Some(ack) = event.take_ack() else { return };
                let payload: Value = event.data().unwrap();
                m.report("unsubscribe", payload.clone());
                let key = (
                    payload["topic"].as_str().unwrap().to_owned(),
                    payload["group"].as_str().map(str::to_owned),
                );
                let mut state = m.state.lock().unwrap();
                let members = state.subs.entry(key).or_default();
                let before = members.len();
                members.retain(|s| s.id() != socket.id());
                if members.len() < before {
                    let _ = ack.send(&json!({ "ok": true }));
                } else {
                    error(ack, "not_found", "no such subscription");
                }
            }
        });
        let m = self.clone();
        socket.on("publish", move |_socket, mut event| {
            let m = m.clone();
            async move {
                let Some(ack) = event.take_ack() else { return };
                let payload: Value = event.data().unwrap();
                m.publish(payload, ack);
            }
        });
        let m = self.clone();
        socket.on("history", move |_socket, mut event| {
            let m = m.clone();
            async move {
                let Some(ack) = event.take_ack() else { return };
                let payload: Value = event.data().unwrap();
                let topic = payload["topic"].as_str().unwrap();
                let from = payload["from"].as_u64().unwrap_or(1);
                let limit = payload["limit"].as_u64().unwrap_or(100) as usize;
                let state = m.state.lock().unwrap();
                let messages: Vec<Value> = state
                    .log
                    .get(topic)
                    .map(|log| {
                        log.iter()
                            .filter(|s| s.offset >= from)
                            .take(limit)
                            .map(|s| {
                                json!({ "id": s.id.to_string(), "offset": s.offset, "event": s.event, "data": s.data, "publishedAt": s.published_at })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = ack.send(&json!({ "ok": true, "messages": messages }));
            }
        });
        // A delivery the socket did not subscribe for (yet): what a tidings server does on
        // CONNECT for an identity's existing queues.
        let m = self.clone();
        socket.on("push-delivery", move |socket, event| {
            let m = m.clone();
            async move {
                let payload: Value = event.data().unwrap();
                let topic = payload["topic"].as_str().unwrap().to_owned();
                let stored = {
                    let mut state = m.state.lock().unwrap();
                    let log = state.log.entry(topic.clone()).or_default();
                    let stored = Arc::new(Stored {
                        id: MessageId::new(),
                        offset: log.len() as u64 + 1,
                        event: "order".into(),
                        data: payload["data"].clone(),
                        published_at: now_ms(),
                    });
                    log.push(stored.clone());
                    stored
                };
                m.deliver(socket, topic, None, stored, 1);
            }
        });
        socket.on("make-gap", |socket, event| async move {
            let payload: Value = event.data().unwrap();
            let _ = socket.emit("tidings:gap", &payload);
        });
    }

    fn subscribe(&self, socket: Socket, payload: Value, ack: AckSender) {
        let identity = socket.auth().get("clientId").and_then(Value::as_str);
        self.report(
            "subscribe",
            json!({ "payload": payload, "identity": identity }),
        );
        if identity.is_none() {
            return error(
                ack,
                "identity_required",
                "durable subscriptions need a clientId in the auth payload",
            );
        }
        let Some(topic) = payload["topic"].as_str().filter(|t| Topic::new(t).is_ok()) else {
            return error(ack, "bad_request", "`topic` must be a topic name");
        };
        let group = payload["group"].as_str().map(str::to_owned);
        let backlog: Vec<Arc<Stored>> = {
            let mut state = self.state.lock().unwrap();
            let members = state
                .subs
                .entry((topic.to_owned(), group.clone()))
                .or_default();
            members.retain(|s| s.id() != socket.id() && s.is_connected());
            members.push(socket.clone());
            if payload["from"] == "earliest" {
                state.log.get(topic).cloned().unwrap_or_default()
            } else {
                Vec::new()
            }
        };
        let _ = ack
            .send(&json!({ "ok": true, "topic": topic, "group": group, "pending": backlog.len() }));
        for stored in backlog {
            self.deliver(socket.clone(), topic.to_owned(), group.clone(), stored, 1);
        }
    }

    fn publish(&self, payload: Value, ack: AckSender) {
        let topic = payload["topic"].as_str().unwrap().to_owned();
        if topic.starts_with("forbidden") {
            return error(ack, "forbidden", "no publishing here");
        }
        let key = payload["key"].as_str().map(str::to_owned);
        let (stored, duplicate, targets) = {
            let mut state = self.state.lock().unwrap();
            let existing = key
                .as_ref()
                .and_then(|k| state.keys.get(&(topic.clone(), k.clone())).copied());
            if let Some(offset) = existing {
                let stored = state.log[&topic][offset as usize - 1].clone();
                (stored, true, Vec::new())
            } else {
                let log = state.log.entry(topic.clone()).or_default();
                let stored = Arc::new(Stored {
                    id: MessageId::new(),
                    offset: log.len() as u64 + 1,
                    event: payload["event"].as_str().unwrap().to_owned(),
                    data: payload["data"].clone(),
                    published_at: now_ms(),
                });
                log.push(stored.clone());
                if let Some(k) = key {
                    state.keys.insert((topic.clone(), k), stored.offset);
                }
                // An identity subscription: every member socket; a group: its first live member.
                let mut targets = Vec::new();
                for ((t, group), members) in &mut state.subs {
                    members.retain(Socket::is_connected);
                    if *t != topic {
                        continue;
                    }
                    match group {
                        None => targets.extend(members.iter().map(|s| (s.clone(), None))),
                        Some(g) => {
                            targets.extend(members.first().map(|s| (s.clone(), Some(g.clone()))))
                        }
                    }
                }
                (stored, false, targets)
            }
        };
        let _ = ack.send(&json!({ "ok": true, "id": stored.id.to_string(), "offset": stored.offset, "duplicate": duplicate }));
        for (socket, group) in targets {
            self.deliver(socket, topic.clone(), group, stored.clone(), 1);
        }
    }

    fn deliver(
        &self,
        socket: Socket,
        topic: String,
        group: Option<String>,
        stored: Arc<Stored>,
        attempt: u32,
    ) {
        let mock = self.clone();
        tokio::spawn(async move {
            let mut meta =
                json!({ "topic": topic, "id": stored.id.to_string(), "offset": stored.offset });
            if let Some(g) = &group {
                meta["group"] = json!(g);
            }
            meta["attempt"] = json!(attempt);
            meta["publishedAt"] = json!(stored.published_at);
            let outcome = socket
                .emit_args_with_ack(
                    &stored.event,
                    vec![stored.data.clone(), meta],
                    &[],
                    MOCK_ACK_TIMEOUT,
                )
                .await;
            let what = json!({ "topic": topic, "group": group, "offset": stored.offset, "attempt": attempt });
            match outcome {
                Ok(reply) if reply.args.first() == Some(&json!({ "requeue": true })) => {
                    mock.report("requeued", what);
                    mock.deliver(socket, topic, group, stored, attempt + 1);
                }
                Ok(_) => mock.report("settled", what),
                Err(_) => mock.report("unacked", what),
            }
        });
    }
}

async fn next_report(rx: &mut mpsc::UnboundedReceiver<(String, Value)>, kind: &str) -> Value {
    loop {
        let (k, v) = within(rx.recv()).await.expect("reports ended");
        if k == kind {
            return v;
        }
    }
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

async fn setup() -> (Mock, TestServer, mpsc::UnboundedReceiver<(String, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mock = Mock::new(tx);
    let srv = start(mock.server()).await;
    (mock, srv, rx)
}

#[tokio::test]
async fn publish_returns_id_offset_and_dedups_by_key() {
    let (_mock, srv, _rx) = setup().await;
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
        .publish_with_key("pickup", "order", &json!({ "n": 2 }), "order-2")
        .await
        .unwrap();
    assert_eq!(
        (again.id, again.offset, again.duplicate),
        (keyed.id, 2, true)
    );
    assert_ne!(first.id, keyed.id);

    let err = producer
        .publish("not a topic!", "order", &1)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::InvalidTopic(_)), "{err:?}");

    let err = producer
        .publish("forbidden.zone", "order", &1)
        .await
        .unwrap_err();
    match err {
        PublishError::Server { code, message } => {
            assert_eq!(code, ErrorCode::Forbidden);
            assert_eq!(message, "no publishing here");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn subscribe_without_identity_is_identity_required() {
    let (_mock, srv, _rx) = setup().await;
    let anonymous = client(&srv, None).await;
    let err = anonymous
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubscribeError::IdentityRequired { .. }),
        "{err:?}"
    );
    // The failed subscribe left no route behind.
    anonymous
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap_err();
}

#[tokio::test]
async fn deliveries_are_acked_and_requeued() {
    let (_mock, srv, mut rx) = setup().await;
    let consumer = client(&srv, Some("driver-7")).await;
    let producer = client(&srv, None).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    assert_eq!(orders.topic().as_str(), "pickup");
    assert_eq!(orders.group(), None);
    assert_eq!(orders.pending(), 0);
    let seen = next_report(&mut rx, "subscribe").await;
    assert_eq!(seen["identity"], "driver-7");

    let p1 = producer
        .publish("pickup", "order", &json!({ "n": 1 }))
        .await
        .unwrap();
    producer
        .publish("pickup", "order", &json!({ "n": 2 }))
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
    assert_eq!(
        next_report(&mut rx, "settled").await,
        json!({ "topic": "pickup", "group": null, "offset": 1, "attempt": 1 })
    );

    // Through the Stream trait, too.
    let d2 = within(orders.next()).await.unwrap();
    assert_eq!((d2.meta.offset, d2.meta.attempt), (2, 1));
    d2.requeue().await.unwrap();
    next_report(&mut rx, "requeued").await;
    let d2 = within(orders.recv()).await.unwrap();
    assert_eq!((d2.meta.offset, d2.meta.attempt), (2, 2));
    assert_eq!(d2.data::<Value>().unwrap(), json!({ "n": 2 }));
    d2.ack().await.unwrap();
    assert_eq!(
        next_report(&mut rx, "settled").await,
        json!({ "topic": "pickup", "group": null, "offset": 2, "attempt": 2 })
    );
}

#[tokio::test]
async fn from_earliest_history_and_pending() {
    let (_mock, srv, mut rx) = setup().await;
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
    let seen = next_report(&mut rx, "subscribe").await;
    assert_eq!(
        seen["payload"],
        json!({ "topic": "vendor.store-42", "from": "earliest" })
    );
    assert_eq!(stock.pending(), 3);
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let d = within(stock.recv()).await.unwrap();
        offsets.push(d.meta.offset);
        d.ack().await.unwrap();
    }
    offsets.sort_unstable();
    assert_eq!(offsets, [1, 2, 3]);

    let history = consumer
        .history("vendor.store-42", Some(2), Some(1))
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].offset, 2);
    assert_eq!(history[0].event, "stock");
    assert_eq!(history[0].data, json!({ "n": 2 }));
    assert_eq!(
        consumer
            .history("vendor.store-42", None, None)
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn deliveries_route_by_topic_and_group() {
    let (_mock, srv, _rx) = setup().await;
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

    producer.publish("pickup", "order", &1).await.unwrap();
    let mine = within(own.recv()).await.unwrap();
    assert_eq!(mine.meta.group, None);
    let ours = within(team.recv()).await.unwrap();
    assert_eq!(ours.meta.group.as_deref(), Some("drivers"));
    mine.ack().await.unwrap();
    ours.ack().await.unwrap();

    // Once a subscription is dropped, the same topic and group can be subscribed again.
    drop(team);
    let mut team = consumer
        .subscribe(SubscribeOptions::new("pickup").group("drivers"))
        .await
        .unwrap();
    producer.publish("pickup", "order", &2).await.unwrap();
    within(team.recv()).await.unwrap().ack().await.unwrap();
    within(own.recv()).await.unwrap().ack().await.unwrap();
}

#[tokio::test]
async fn subscriptions_resume_after_a_reconnect() {
    let (mock, first, mut rx) = setup().await;
    let addr = first.addr;
    let consumer = client(&first, Some("driver-7")).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup").from(StartFrom::New))
        .await
        .unwrap();
    next_report(&mut rx, "subscribe").await;
    let mut state = consumer.watch_state();

    first.stop().await;
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;
    let second = start_on(mock.server(), addr).await;
    wait_state(&mut state, |s| *s == ConnectionState::Connected).await;

    // Subscribed again by itself: topic only, so that the server resumes where it was.
    let again = next_report(&mut rx, "subscribe").await;
    assert_eq!(again["payload"], json!({ "topic": "pickup" }));
    assert_eq!(again["identity"], "driver-7");

    let producer = client(&second, None).await;
    producer
        .publish("pickup", "order", &json!("after"))
        .await
        .unwrap();
    let d = within(orders.recv()).await.unwrap();
    assert_eq!(d.data, json!("after"));
    d.ack().await.unwrap();
    next_report(&mut rx, "settled").await;
}

#[tokio::test]
async fn an_ack_after_a_reconnect_is_refused_as_connection_lost() {
    let (mock, first, mut rx) = setup().await;
    let addr = first.addr;
    let consumer = client(&first, Some("driver-7")).await;
    let producer = client(&first, None).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    producer.publish("pickup", "order", &1).await.unwrap();
    let d = within(orders.recv()).await.unwrap();

    let mut state = consumer.watch_state();
    first.stop().await;
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;
    let _second = start_on(mock.server(), addr).await;
    wait_state(&mut state, |s| *s == ConnectionState::Connected).await;
    next_report(&mut rx, "subscribe").await;

    let err = d.ack().await.unwrap_err();
    assert!(matches!(err, EmitError::ConnectionLost), "{err:?}");
}

#[tokio::test]
async fn a_dropped_subscription_leaves_its_deliveries_unacked() {
    let (_mock, srv, mut rx) = setup().await;
    let consumer = client(&srv, Some("driver-7")).await;
    let producer = client(&srv, None).await;
    let orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    drop(orders);
    producer.publish("pickup", "order", &1).await.unwrap();
    assert_eq!(
        next_report(&mut rx, "unacked").await,
        json!({ "topic": "pickup", "group": null, "offset": 1, "attempt": 1 })
    );
}

#[tokio::test]
async fn deliveries_before_subscribe_are_held_for_it() {
    let (_mock, srv, mut rx) = setup().await;
    let consumer = client(&srv, Some("driver-7")).await;
    let mut deliveries_seen = consumer.on("order");
    consumer
        .emit(
            "push-delivery",
            &json!({ "topic": "pickup", "data": "early" }),
        )
        .await
        .unwrap();
    consumer
        .emit(
            "push-delivery",
            &json!({ "topic": "elsewhere", "data": "other" }),
        )
        .await
        .unwrap();
    // Let both arrive before anyone subscribes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    let d = within(orders.recv()).await.unwrap();
    assert_eq!(d.data, json!("early"));
    assert_eq!(d.meta.offset, 1);
    d.ack().await.unwrap();
    assert_eq!(next_report(&mut rx, "settled").await["topic"], "pickup");
    // The other topic's delivery is still unclaimed, and deliveries never reach `on`.
    assert_eq!(next_report(&mut rx, "unacked").await["topic"], "elsewhere");
    use futures_util::FutureExt;
    assert!(deliveries_seen.recv().now_or_never().is_none());
}

#[tokio::test]
async fn unsubscribe_ends_the_stream() {
    let (_mock, srv, mut rx) = setup().await;
    let consumer = client(&srv, Some("driver-7")).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new("pickup").group("drivers"))
        .await
        .unwrap();
    consumer
        .unsubscribe("pickup", Some("drivers"))
        .await
        .unwrap();
    assert_eq!(
        next_report(&mut rx, "unsubscribe").await,
        json!({ "topic": "pickup", "group": "drivers" })
    );
    assert!(within(orders.recv()).await.is_none());

    let again = consumer
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    again.unsubscribe().await.unwrap();
    let err = consumer.unsubscribe("pickup", None).await.unwrap_err();
    assert!(
        matches!(
            err,
            SubscribeError::Server {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn gap_notices_are_typed() {
    let (_mock, srv, _rx) = setup().await;
    let consumer = client(&srv, Some("driver-7")).await;
    let mut gaps = consumer.gaps();
    consumer
        .emit(
            "make-gap",
            &json!({ "topic": "pickup", "from": 3, "to": 9 }),
        )
        .await
        .unwrap();
    let gap = within(gaps.recv()).await.unwrap();
    assert_eq!(gap.topic.as_str(), "pickup");
    assert_eq!((gap.from, gap.to), (3, 9));
}
