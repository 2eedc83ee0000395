//! When the client gives up, and how it notices a dead connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{options, start, start_on, wait_state, within};
use tidings_client::{Client, CloseReason, ConnectionState, Sid};
use tidings_server::{ConnectError as RefuseConnect, Server, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_websockets::Message;

#[tokio::test]
async fn gives_up_after_max_reconnect_attempts() {
    let srv = start(Server::new(ServerConfig::default())).await;
    let client = Client::connect(
        options(&srv.url())
            .max_reconnect_attempts(Some(3))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let mut state = client.watch_state();
    srv.stop().await;
    let closed = wait_state(&mut state, |s| matches!(s, ConnectionState::Closed(_))).await;
    assert_eq!(
        closed,
        ConnectionState::Closed(CloseReason::ReconnectAttemptsExhausted)
    );
}

#[tokio::test]
async fn disconnect_while_reconnecting_closes_at_once() {
    let srv = start(Server::new(ServerConfig::default())).await;
    let client = Client::connect(
        options(&srv.url())
            .reconnect_delay(Duration::from_secs(5), Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let mut state = client.watch_state();
    srv.stop().await;
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;
    let started = tokio::time::Instant::now();
    within(client.disconnect()).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        client.state(),
        ConnectionState::Closed(CloseReason::ClientDisconnect)
    );
}

#[tokio::test]
async fn a_refused_reconnect_closes_the_client() {
    let first = start(Server::new(ServerConfig::default())).await;
    let client = Client::connect(
        options(&first.url())
            .auth(json!({ "token": "old" }))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let mut state = client.watch_state();
    let port = first.stop().await;
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;

    let strict = Server::new(ServerConfig::default());
    strict.of("/").use_middleware(|req| async move {
        match req.auth.get("token").and_then(Value::as_str) {
            Some("new") => Ok(()),
            _ => Err(RefuseConnect::new("token expired")),
        }
    });
    let _second = start_on(strict, port).await;
    let closed = wait_state(&mut state, |s| matches!(s, ConnectionState::Closed(_))).await;
    assert_eq!(
        closed,
        ConnectionState::Closed(CloseReason::ReconnectRefused {
            message: "token expired".into()
        })
    );
}

/// A server that completes the handshake and then never sends another byte (no pings): the
/// client must judge the connection dead after pingInterval + pingTimeout and reconnect.
#[tokio::test]
async fn a_silent_server_is_detected_by_the_ping_timeout() {
    support::init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connections_tx, mut connections) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let connections_tx = connections_tx.clone();
            tokio::spawn(async move {
                let (_request, mut ws) = tokio_websockets::ServerBuilder::new()
                    .accept(stream)
                    .await
                    .unwrap();
                let open = r#"0{"sid":"silent","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000000}"#;
                ws.send(Message::text(open)).await.unwrap();
                let connect = ws.next().await.unwrap().unwrap();
                let _ = connections_tx.send(connect.as_text().unwrap().to_owned());
                let reply = format!(r#"40{{"sid":"{}"}}"#, Sid::new());
                ws.send(Message::text(reply)).await.unwrap();
                // Silence, with the TCP connection held open.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(ws);
            });
        }
    });

    let client = Client::connect(
        options(&format!("http://{addr}"))
            .auth(json!({ "clientId": "c" }))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        within(connections.recv()).await.unwrap(),
        r#"40{"clientId":"c"}"#
    );
    let started = tokio::time::Instant::now();
    let mut state = client.watch_state();
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;
    let silent_for = started.elapsed();
    assert!(
        silent_for >= Duration::from_millis(150) && silent_for < Duration::from_secs(2),
        "{silent_for:?}"
    );
    assert_eq!(
        within(connections.recv()).await.unwrap(),
        r#"40{"clientId":"c"}"#
    );
    wait_state(&mut state, |s| *s == ConnectionState::Connected).await;
}
