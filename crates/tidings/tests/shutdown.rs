//! Graceful shutdown of `tidings serve` on SIGTERM (docs/SECURITY.md): the real binary with the
//! SQLite store, publishers (tidings-client) publishing as fast as they can; on SIGTERM the
//! clients are disconnected, the process exits 0, and after a restart on the same data
//! directory every publish that was confirmed is there with its data.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tidings_client::{Client, ClientOptions, CloseReason, ConnectionState};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

async fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--port", "0", "--store", "sqlite", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within(20, "tidings serve address", lines.next_line())
        .await
        .unwrap()
        .expect("tidings serve exited before listening");
    let url = line.strip_prefix("listening on ").unwrap();
    (child, url.split('/').take(3).collect::<Vec<_>>().join("/"))
}

async fn client(url: &str) -> Client {
    let options = ClientOptions::builder(url)
        .auth(json!({}))
        .reconnect(false)
        .build()
        .unwrap();
    within(10, "connect", Client::connect(options))
        .await
        .unwrap()
}

#[tokio::test]
async fn sigterm_disconnects_clients_and_loses_nothing_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start(dir.path()).await;
    let (confirmed_tx, mut confirmed) = mpsc::unbounded_channel::<(u64, Value)>();
    let mut publishers = Vec::new();
    for p in 0..4u64 {
        let c = client(&url).await;
        let tx = confirmed_tx.clone();
        publishers.push(tokio::spawn(async move {
            // Bounded: the server stops long before; each publish waits at most its timeout.
            for i in 0..100_000u64 {
                let data = json!({ "p": p, "i": i });
                match c.publish("shutdown.t", "e", &data).await {
                    Ok(published) => {
                        let _ = tx.send((published.offset, data));
                    }
                    Err(_) => return c,
                }
            }
            c
        }));
    }
    drop(confirmed_tx);
    let watcher = client(&url).await;
    let mut state = watcher.watch_state();
    // A raw WebSocket too, to read the close frame itself.
    let uri = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        url.trim_start_matches("http://")
    );
    let (mut raw, _) = tokio_websockets::ClientBuilder::new()
        .uri(&uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    raw.send(tokio_websockets::Message::text("40".to_owned()))
        .await
        .unwrap();

    let mut stored = BTreeMap::new();
    while stored.len() < 200 {
        let (offset, data) = within(20, "200 confirmed publishes", confirmed.recv())
            .await
            .expect("publishers stopped early");
        stored.insert(offset, data);
    }
    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());

    // Every client is let go, with a reason, and the process exits cleanly.
    let closed = within(
        10,
        "watcher disconnected",
        state.wait_for(|s| *s != ConnectionState::Connected),
    )
    .await
    .unwrap()
    .clone();
    assert_eq!(
        closed,
        ConnectionState::Closed(CloseReason::ConnectionLost),
        "the watcher (reconnect off) must be closed by the server going away"
    );
    let mut close = None;
    for _ in 0..100 {
        match within(10, "raw websocket close", raw.next()).await {
            Some(Ok(msg)) if msg.is_close() => {
                close = msg
                    .as_close()
                    .map(|(code, reason)| (u16::from(code), reason.to_owned()));
                break;
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    assert_eq!(close, Some((1001, "server shutting down".to_owned())));
    for publisher in publishers {
        within(15, "publisher stopped", publisher).await.unwrap();
    }
    while let Some((offset, data)) = confirmed.recv().await {
        stored.insert(offset, data);
    }
    let status = within(15, "tidings serve exit", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");

    // Restart on the same directory: every confirmed publish is there, unchanged.
    let (_child, url) = start(dir.path()).await;
    let mut from = 1;
    let mut found = BTreeMap::new();
    let mut read_to_the_end = false;
    for _ in 0..1000 {
        let answer = http(
            &url,
            "GET",
            &format!("/v1/topics/shutdown.t/messages?from={from}&limit=1000"),
            None,
            b"",
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let messages = answer.body["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            read_to_the_end = true;
            break;
        }
        for m in &messages {
            found.insert(m["offset"].as_u64().unwrap(), m["data"].clone());
        }
        from = messages.last().unwrap()["offset"].as_u64().unwrap() + 1;
    }
    assert!(read_to_the_end, "more than 1,000 pages of messages");
    for (offset, data) in &stored {
        assert_eq!(
            found.get(offset),
            Some(data),
            "confirmed offset {offset} lost"
        );
    }
    // Nothing else is there but, per publisher, at most the one publish it had in flight when
    // the server stopped (publishers wait for each confirmation): publisher p's messages are
    // exactly i = 0..n with n its confirmed count or one more, each stored once.
    let mut per_publisher: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for data in found.values() {
        per_publisher
            .entry(data["p"].as_u64().unwrap())
            .or_default()
            .push(data["i"].as_u64().unwrap());
    }
    for p in 0..4u64 {
        let confirmed = stored.values().filter(|d| d["p"] == json!(p)).count() as u64;
        let mut is = per_publisher.remove(&p).unwrap_or_default();
        is.sort_unstable();
        let n = is.len() as u64;
        assert!(
            is == (0..n).collect::<Vec<_>>() && (n == confirmed || n == confirmed + 1),
            "publisher {p}: {confirmed} confirmed, stored i = {is:?}"
        );
    }
    assert!(
        per_publisher.is_empty(),
        "messages of no publisher: {per_publisher:?}"
    );
}
