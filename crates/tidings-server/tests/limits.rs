//! The library side of the limits of issue 19 (docs/SECURITY.md): `Socket::join` returns an
//! error past `max_rooms_per_socket` instead of growing silently, an emit asking for an ack
//! fails past `max_pending_acks_per_socket`, and a namespace created on demand is removed —
//! with its handlers — when its last socket leaves, while a static one stays. The clients are
//! tidings-client connections; the `tidings serve` side (socket.io-client) is in
//! crates/tidings/tests/limits.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tidings_client::{Client, ClientOptions};
use tidings_server::{AckError, JoinError, Limits, Server, ServerConfig};
use tokio::sync::mpsc;

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 10 s"))
}

async fn client(url: &str, namespace: &str) -> Client {
    let options = ClientOptions::builder(url)
        .namespace(namespace)
        .reconnect(false)
        .build()
        .unwrap();
    within("connect", Client::connect(options)).await.unwrap()
}

#[tokio::test]
async fn join_past_max_rooms_per_socket_is_an_error() {
    let limits = Limits::default().max_rooms_per_socket(Some(3));
    let config = ServerConfig::builder().limits(limits).build().unwrap();
    let server = Server::new(config);
    let (tx, mut rx) = mpsc::unbounded_channel();
    server.of("/").on_connect(move |socket| {
        let results = vec![
            socket.join("a"),
            socket.join("b"),
            socket.join("c"),
            socket.join("a"),
        ];
        socket.leave("a");
        let after_leave = socket.join("c");
        let _ = tx.send((results, after_leave, socket.rooms().len()));
    });
    let running = support::start(server).await;
    let _client = client(&running.url(), "/").await;
    let (results, after_leave, rooms) = within("connect handler", rx.recv()).await.unwrap();
    assert_eq!(
        results,
        [
            Ok(()),
            Ok(()),
            Err(JoinError::TooManyRooms { max: 3 }),
            Ok(()),
        ],
        "its own room counts; joining a room it is in is not growing"
    );
    assert_eq!(after_leave, Ok(()), "leaving makes room");
    assert_eq!(rooms, 3);
    assert_eq!(running.server.stats().joins_refused, 1);
}

#[tokio::test]
async fn acks_past_max_pending_acks_per_socket_are_refused() {
    let limits = Limits::default().max_pending_acks_per_socket(Some(2));
    let config = ServerConfig::builder().limits(limits).build().unwrap();
    let server = Server::new(config);
    let (tx, mut rx) = mpsc::unbounded_channel();
    server.of("/").on_connect(move |socket| {
        let sent: Vec<_> = (0..3)
            .map(|i| socket.send_with_ack("ask", vec![json!(i)], &[]))
            .collect();
        let owed = socket.pending_acks();
        let refused = sent.iter().filter(|s| s.is_err()).count();
        let third = sent.into_iter().nth(2).map(|s| s.err());
        let _ = tx.send((owed, refused, third));
    });
    let running = support::start(server).await;
    let _client = client(&running.url(), "/").await;
    let (owed, refused, third) = within("connect handler", rx.recv()).await.unwrap();
    assert_eq!((owed, refused), (2, 1));
    assert_eq!(third, Some(Some(AckError::TooManyPending(2))));
}

#[tokio::test]
async fn on_demand_namespaces_are_removed_with_their_last_socket() {
    let server = Server::new(ServerConfig::default());
    server.of("/static");
    let setups = Arc::new(AtomicUsize::new(0));
    let counted = setups.clone();
    server.of_dynamic(
        |name| name.starts_with("/t-"),
        move |ns| {
            counted.fetch_add(1, Ordering::SeqCst);
            ns.on_connect(|socket| {
                socket.on("echo", |_, mut event| async move {
                    if let Some(ack) = event.take_ack() {
                        let _ = ack.send(&"back");
                    }
                });
            });
        },
    );
    let running = support::start(server).await;
    let url = running.url();
    let base = running.server.stats().namespaces;
    assert_eq!(base, 2, "/ and /static");

    let first = client(&url, "/t-1").await;
    let second = client(&url, "/t-1").await;
    assert_eq!(running.server.stats().namespaces, base + 1);
    assert_eq!(setups.load(Ordering::SeqCst), 1, "set up once for both");

    first.disconnect().await;
    let ns = running.server.namespace("/t-1").unwrap();
    wait_until("one socket left", || ns.sockets().len() == 1).await;
    assert!(
        running.server.namespace("/t-1").is_some(),
        "a socket is still in it"
    );
    second.disconnect().await;
    wait_until("namespace removed", || {
        running.server.namespace("/t-1").is_none()
    })
    .await;
    assert_eq!(running.server.stats().namespaces, base);
    assert!(
        running.server.namespace("/static").is_some(),
        "static stays"
    );

    // Used again: set up afresh, its handlers work.
    let again = client(&url, "/t-1").await;
    let reply = within(
        "echo",
        again.emit_with_ack("echo", &json!(1), Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(reply, [json!("back")]);
    assert_eq!(setups.load(Ordering::SeqCst), 2);
    assert_eq!(running.server.stats().namespaces, base + 1);
}

/// Polls server state no event announces (bounded: 250 × 20 ms).
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..250 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 5 s");
}
