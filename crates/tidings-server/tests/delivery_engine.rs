//! The delivery engine's own promises, seen from the store and from a real client (the Rust
//! client against the interop app with queues on SQLite): connected subscribers with nothing
//! to receive cost no store operation, a requeued delivery comes back when its backoff ends,
//! not at some later poll, and under load slow deliveries do not hold the answered ones'
//! slots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod queue_support;
mod support;

use std::time::{Duration, Instant};

use queue_support::{Profile, QueueServer};
use tidings_client::{Client, ClientOptions, StartFrom, SubscribeOptions, Subscription};

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within 10 s"))
}

async fn consumer(server: &QueueServer, id: &str) -> Client {
    let options = ClientOptions::builder(server.url())
        .auth(serde_json::json!({ "clientId": id }))
        .build()
        .unwrap();
    within("connect", Client::connect(options)).await.unwrap()
}

async fn subscribe(client: &Client, topic: &str) -> Subscription {
    within(
        "subscribe",
        client.subscribe(SubscribeOptions::new(topic).from(StartFrom::Earliest)),
    )
    .await
    .unwrap()
}

/// Waits (bounded) until the engine has made no claim for `quiet`: every dispatcher asleep.
async fn until_quiet(server: &QueueServer, quiet: Duration) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (server.claims(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = server.claims();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= quiet {
            return;
        }
        assert!(Instant::now() < deadline, "the engine never went quiet");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscribers_cost_no_store_operation() {
    const SUBSCRIBERS: usize = 20;
    let server = queue_support::start(Profile::Long).await;
    let publisher = consumer(&server, "publisher").await;
    let mut subscribers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let client = consumer(&server, &format!("idle-{i}")).await;
        let mut sub = subscribe(&client, &format!("idle.{i}")).await;
        // Each queue has had traffic: a delivery, settled.
        publisher
            .publish(&format!("idle.{i}"), "tick", &i)
            .await
            .unwrap();
        let delivery = within("delivery", sub.recv()).await.unwrap();
        delivery.ack().await.unwrap();
        subscribers.push((client, sub));
    }
    until_quiet(&server, Duration::from_millis(300)).await;

    // The observation window: with a polling engine every dispatcher claimed several times a
    // second here (200 ms poll: about 100 claims for 20 subscribers).
    let before = server.claims();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        server.claims() - before,
        0,
        "{SUBSCRIBERS} idle subscribers made the engine claim"
    );

    // Still served at once.
    publisher.publish("idle.7", "tick", &"late").await.unwrap();
    let (_, sub) = &mut subscribers[7];
    let delivery = within("late delivery", sub.recv()).await.unwrap();
    assert_eq!(delivery.data, serde_json::json!("late"));
    delivery.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_delivery_returns_when_its_backoff_ends() {
    let server = queue_support::start(Profile::Long).await;
    let backoff = server.config.requeue_backoff;
    let client = consumer(&server, "requeuer").await;
    let mut sub = subscribe(&client, "backoff").await;
    client.publish("backoff", "job", &1).await.unwrap();
    let mut delivery = within("first delivery", sub.recv()).await.unwrap();
    let mut late = Vec::new();
    for round in 1..=3u32 {
        assert_eq!(delivery.meta.attempt, round);
        // The backoff doubles per attempt.
        let expected = backoff * 2u32.pow(round - 1);
        let requeued = Instant::now();
        delivery.requeue().await.unwrap();
        delivery = within("redelivery", sub.recv()).await.unwrap();
        let took = requeued.elapsed();
        // (Stored times are whole milliseconds: allow the truncation.)
        assert!(
            took + Duration::from_millis(2) >= expected,
            "round {round}: back after {took:?}, before the backoff of {expected:?} ended"
        );
        late.push(took.saturating_sub(expected));
    }
    delivery.ack().await.unwrap();
    // Woken by the due time itself, not by a poll: within 100 ms of it (the best of three
    // rounds, so that one slow moment of a loaded machine does not decide).
    let best = late.iter().min().unwrap();
    assert!(
        *best <= Duration::from_millis(100),
        "redelivered {late:?} after the backoff ended"
    );
}

/// Under load (the window of `max_in_flight` deliveries full) a turn waits a little for more
/// answers, but deliveries a consumer works on for long do not hold the answered ones' slots:
/// with half the window unanswered (for longer than the ack timeout would allow to wait), the
/// other half acknowledged is refilled at once, in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_slow_deliveries_do_not_hold_the_answered_slots() {
    let server = queue_support::start(Profile::Long).await;
    let window = server.config.max_in_flight;
    let publisher = consumer(&server, "batch-publisher").await;
    for i in 0..window * 2 {
        publisher.publish("batch", "job", &i).await.unwrap();
    }
    let client = consumer(&server, "batcher").await;
    let mut sub = subscribe(&client, "batch").await;
    let mut held = Vec::new();
    for _ in 0..window {
        held.push(within("delivery", sub.recv()).await.unwrap());
    }
    until_quiet(&server, Duration::from_millis(200)).await;
    let before = server.claims();

    // Every other delivery acknowledged; the rest stay with the consumer (the ack timeout is
    // 20 s, and `within` gives the refill 10 s).
    let (slow, fast): (Vec<_>, Vec<_>) =
        held.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, delivery) in fast {
        delivery.ack().await.unwrap();
    }
    for i in 0..window / 2 {
        let delivery = within("refill", sub.recv()).await.unwrap();
        assert_eq!(delivery.meta.offset, (window + i + 1) as u64);
        assert_eq!(delivery.meta.attempt, 1);
        delivery.ack().await.unwrap();
    }
    assert!(server.claims() > before);
    for (_, delivery) in slow {
        delivery.ack().await.unwrap();
    }
}
