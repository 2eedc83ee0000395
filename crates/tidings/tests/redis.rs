//! `tidings serve --redis URL`: two servers sharing one private `redis-server` (on a unix
//! socket) share topics, idempotency keys and queues. Needs `redis-server` on PATH
//! (`apt-get install redis-server`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::server::RedisServer;
use tokio::process::{Child, Command};

/// Starts `tidings serve --port 0 --redis URL` and returns it with its origin.
async fn serve(redis: &str) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command.args(["serve", "--port", "0", "--redis", redis]);
    common::spawn_serve(&mut command).await
}

/// Runs the CLI and returns its standard output.
async fn cli(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("the CLI timed out")
        .unwrap();
    assert!(
        output.status.success(),
        "tidings {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn two_servers_share_topics_and_queues_through_redis() {
    let redis = RedisServer::start();
    let (_a, a) = serve(&redis.url()).await;
    let (_b, b) = serve(&redis.url()).await;

    let first = cli(&[
        "publish",
        "--url",
        &a,
        "--key",
        "k1",
        "pickup",
        "ready",
        r#"{"n":1}"#,
    ])
    .await;
    assert!(
        first.contains(r#""offset":1"#) && first.contains(r#""duplicate":false"#),
        "{first}"
    );
    // The same key on the other server: deduplicated across servers.
    let again = cli(&[
        "publish",
        "--url",
        &b,
        "--key",
        "k1",
        "pickup",
        "ready",
        r#"{"n":1}"#,
    ])
    .await;
    assert!(
        again.contains(r#""offset":1"#) && again.contains(r#""duplicate":true"#),
        "{again}"
    );
    cli(&["publish", "--url", &a, "pickup", "ready", r#"{"n":2}"#]).await;

    // Published on one server, delivered (and acknowledged) through the other.
    let listened = cli(&[
        "listen", "--url", &b, "--group", "workers", "--from", "earliest", "--count", "2", "pickup",
    ])
    .await;
    let offsets: Vec<&str> = listened
        .lines()
        .filter_map(|l| l.split(r#""offset":"#).nth(1))
        .map(|rest| rest.split(',').next().unwrap_or(""))
        .collect();
    assert_eq!(offsets, ["1", "2"], "{listened}");

    let topics = cli(&["topics", "--url", &a]).await;
    assert!(topics.contains("group:workers"), "{topics}");
}

async fn member(url: &str, id: &str) -> (tidings_client::Client, tidings_client::Subscription) {
    use tidings_client::{Client, ClientOptions, StartFrom, SubscribeOptions};
    let options = ClientOptions::builder(url)
        .auth(serde_json::json!({ "clientId": id }))
        .build()
        .unwrap();
    let client = common::within(10, "connect", Client::connect(options))
        .await
        .unwrap();
    let sub = common::within(
        10,
        "subscribe",
        client.subscribe(
            SubscribeOptions::new("handoff")
                .group("g")
                .from(StartFrom::Earliest),
        ),
    )
    .await
    .unwrap();
    (client, sub)
}

/// A group member on one node leaves with a delivery unacknowledged: its node requeues it, and
/// a member on the other node gets it at once — the other node's dispatcher is told, not left
/// asleep until the delivery's store deadline (2 × ack timeout + 5 s).
#[tokio::test]
async fn a_delivery_requeued_on_one_node_reaches_a_member_on_another() {
    let redis = RedisServer::start();
    let (_a, a) = serve(&redis.url()).await;
    let (_b, b) = serve(&redis.url()).await;
    let (client_x, mut sub_x) = member(&a, "x").await;
    let (client_y, mut sub_y) = member(&b, "y").await;
    cli(&["publish", "--url", &a, "handoff", "job", r#"{"n":1}"#]).await;

    // One member gets it (which one is the nodes' race); it leaves without acknowledging.
    let (first, rest) = common::within(10, "first delivery", async {
        tokio::select! {
            d = sub_x.recv() => ("x", d),
            d = sub_y.recv() => ("y", d),
        }
    })
    .await;
    let delivery = rest.expect("subscription ended");
    assert_eq!(delivery.meta.attempt, 1);
    let (other, mut other_sub, _kept) = if first == "x" {
        drop((client_x, sub_x));
        ("y", sub_y, client_y)
    } else {
        drop((client_y, sub_y));
        ("x", sub_x, client_x)
    };
    drop(delivery);

    let again = common::within(
        10,
        "redelivery to the other node's member",
        other_sub.recv(),
    )
    .await
    .expect("subscription ended");
    assert_eq!(
        (again.meta.offset, again.meta.attempt),
        (1, 2),
        "{other} got the requeued delivery"
    );
    again.ack().await.unwrap();
}
