//! Binary data in durable messages (issue 22, item 5), end to end on the real `tidings serve`
//! with each durable store (the journal in `--data-dir`, the default; SQLite; Redis), and with
//! the msgpack parser:
//! - npm `socket.io-client` publishes Buffers inside `data` (nested, several, empty, 70 kB);
//!   the HTTP API publishes `{"_binary": base64}` parts and shows history and dead letters in
//!   the same form; the Rust client publishes and receives attachments;
//! - subscribers on `socket.io-client` and `python-socketio` receive every message as binary,
//!   byte for byte, as a first delivery and as a redelivery (`{requeue:true}`);
//! - after a kill -9 and a restart (the journal replayed, the SQLite file reopened, Redis
//!   kept them): a new subscriber gets them all, and one that held them unacked gets them
//!   again (attempt 2);
//! - too many binary parts (socket: the connection closes; HTTP: 403 `limit_exceeded`), an HTTP
//!   body over `max_payload` (413), bad base64 (400) store nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tidings_client::{Bytes, Client, ClientOptions, StartFrom, SubscribeOptions, placeholder};
use tokio::process::{Child, Command};

use common::{Scenario, http, run_client, spawn_serve, within};

/// `len` bytes of pattern `seed`, as tests/clients/js/queue-binary.mjs and
/// tests/clients/py/queue_binary.py make them.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| ((seed * 31 + i * 7) % 256) as u8)
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Where the durable messages live.
#[derive(Clone, Copy)]
enum Backend<'a> {
    /// The default store: the journal in `--data-dir`.
    Journal,
    /// `--store sqlite` in `--data-dir`.
    Sqlite,
    /// `--redis URL`.
    Redis(&'a str),
}

/// `tidings serve --port 0` on `backend` (with `--data-dir DIR`); 3 deliveries before a
/// message is dead-lettered (the flows below make at most 2 of the shared topic's). On Redis
/// an ack timeout of 2 s: a delivery stranded by the kill is claimed again at its store
/// deadline, 2 × ack timeout + 5 s (no node can tell a dead peer from a slow one).
async fn serve(dir: &Path, backend: Backend<'_>) -> (Child, String) {
    let config = dir.join("tidings.toml");
    let ack_timeout = match backend {
        Backend::Redis(_) => "ack_timeout_ms = 2000\n",
        _ => "",
    };
    std::fs::write(
        &config,
        format!("[queues]\nmax_deliveries = 3\n{ack_timeout}"),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .arg("serve")
        .args(["--port", "0", "--data-dir"])
        .arg(dir.join("data"));
    match backend {
        Backend::Journal => {}
        Backend::Sqlite => {
            command.args(["--store", "sqlite"]);
        }
        Backend::Redis(url) => {
            command.args(["--redis", url]);
        }
    }
    command
        .arg("--config")
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("warn".into()),
        )
        .stdin(Stdio::null());
    spawn_serve(&mut command).await
}

async fn kill_9(mut child: Child) {
    child.start_kill().unwrap();
    within(10, "the killed server exiting", child.wait())
        .await
        .unwrap();
}

/// A receiving run of the scenarios. `transport`: `websocket`, `polling` (binary as base64
/// `b` packets in the polling payload) or `upgrade`.
fn receive_env<'a>(
    topic: &'a str,
    client: &'a str,
    mode: &'a str,
    min_attempt: &'a str,
    transport: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PHASE", "receive"),
        ("TRANSPORT", transport),
        ("TIDINGS_TOPIC", topic),
        ("TIDINGS_CLIENT", client),
        ("TIDINGS_COUNT", "4"),
        ("MODE", mode),
        ("MIN_ATTEMPT", min_attempt),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_in_durable_messages_end_to_end() {
    end_to_end(Backend::Journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_in_durable_messages_end_to_end_on_sqlite() {
    end_to_end(Backend::Sqlite).await;
}

/// On the Redis store (a private `redis-server`, as `tests/redis.rs` starts it): the kill -9
/// and restart leave the messages in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_in_durable_messages_end_to_end_on_redis() {
    let redis = common::server::RedisServer::start();
    end_to_end(Backend::Redis(&redis.url())).await;
}

async fn end_to_end(backend: Backend<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = serve(dir.path(), backend).await;
    let topic = "files.in";

    // Messages 1–3 over Socket.IO, and the socket's too-many-attachments refusal.
    run_client(
        "js/queue-binary.mjs",
        &url,
        &[("PHASE", "publish"), ("TIDINGS_TOPIC", topic)],
    )
    .await;

    // Message 4 over HTTP, and the HTTP refusals (nothing stored by any).
    let body = json!({
        "event": "file",
        "data": { "http": true, "b": { "_binary": b64(&pattern(8, 300)) } },
    });
    let path = format!("/v1/topics/{topic}/messages");
    let answer = http(&url, "POST", &path, None, body.to_string().as_bytes()).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.body["offset"], 4);
    let too_many: Vec<Value> = (0..11).map(|_| json!({ "_binary": "AA==" })).collect();
    let refusals = [
        (
            json!({ "event": "file", "data": too_many }),
            403,
            "limit_exceeded",
        ),
        (
            json!({ "event": "file", "data": { "_binary": "%%%" } }),
            400,
            "bad_request",
        ),
        (
            json!({ "event": "file", "data": { "_placeholder": true, "num": 0 } }),
            400,
            "bad_request",
        ),
        (
            // Base64 past the body limit (max_payload, 1,000,000 bytes by default).
            json!({ "event": "file", "data": { "_binary": b64(&vec![7u8; 800_000]) } }),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in refusals {
        let answer = http(&url, "POST", &path, None, body.to_string().as_bytes()).await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{:?}",
            answer.body
        );
    }
    // History shows binary parts as {"_binary": base64}, the form the API accepts.
    let history = http(&url, "GET", &path, None, b"").await;
    let messages = history.body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 4, "{:?}", history.body);
    assert_eq!(
        messages[0]["data"],
        json!({
            "n": 1,
            "file": { "_binary": b64(&pattern(1, 256)) },
            "nested": { "list": [{ "_binary": b64(&pattern(2, 10)) }, "text", { "deep": { "_binary": "" } }] },
        })
    );
    assert_eq!(messages[3]["data"], body["data"]);

    // Subscribers on both clients, each requeueing every first delivery: the redelivery
    // carries the same bytes.
    run_client(
        "js/queue-binary.mjs",
        &url,
        &receive_env(topic, "js-a", "requeue-once", "1", "websocket"),
    )
    .await;
    run_client(
        "py/queue_binary.py",
        &url,
        &receive_env(topic, "py-a", "requeue-once", "1", "websocket"),
    )
    .await;

    // The Rust client publishes with attachments and receives them.
    rust_client_round_trip(&url).await;

    // A subscriber holds all four unacked; then kill -9 and restart on the same journal.
    let mut held = Scenario::start(
        "js/queue-binary.mjs",
        &url,
        &receive_env(topic, "js-held", "hold", "1", "upgrade"),
    );
    held.cue("HELD", 60).await;
    kill_9(server).await;
    held.passes(30).await;
    let (server, url) = serve(dir.path(), backend).await;

    // From the replayed journal: new subscribers get every message byte for byte, and the one
    // that held them gets them again as redeliveries.
    run_client(
        "js/queue-binary.mjs",
        &url,
        &receive_env(topic, "js-b", "ack", "1", "polling"),
    )
    .await;
    run_client(
        "py/queue_binary.py",
        &url,
        &receive_env(topic, "py-b", "ack", "1", "polling"),
    )
    .await;
    run_client(
        "js/queue-binary.mjs",
        &url,
        &receive_env(topic, "js-held", "ack", "2", "websocket"),
    )
    .await;
    drop(server);
}

/// The Rust client publishes attachments (`publish_binary`, placeholders in `data`) and
/// receives them as `Delivery::attachments`; the API's history shows them as `_binary`.
async fn rust_client_round_trip(url: &str) {
    let connect = |id: &'static str| async move {
        let options = ClientOptions::builder(url)
            .auth(json!({ "clientId": id }))
            .reconnect(false)
            .ack_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        within(10, "connect", Client::connect(options))
            .await
            .unwrap()
    };
    let topic = "files.rust";
    let subscriber = connect("rust-sub").await;
    let mut subscription = within(
        10,
        "subscribe",
        subscriber.subscribe(SubscribeOptions::new(topic).from(StartFrom::New)),
    )
    .await
    .unwrap();
    let publisher = connect("rust-pub").await;
    let attachments = vec![
        Bytes::from(pattern(9, 1000)),
        Bytes::new(),
        Bytes::from(pattern(10, 5)),
    ];
    let data = json!({ "a": placeholder(0), "rest": [placeholder(1), { "z": placeholder(2) }] });
    let published = within(
        10,
        "publish_binary",
        publisher.publish_binary(topic, "blob", data.clone(), attachments.clone(), None),
    )
    .await
    .unwrap();
    assert!(!published.duplicate);
    let delivery = within(10, "delivery", subscription.recv()).await.unwrap();
    assert_eq!(delivery.data, data);
    assert_eq!(delivery.attachments, attachments);
    within(10, "ack", delivery.ack()).await.unwrap();
    let history = http(
        url,
        "GET",
        &format!("/v1/topics/{topic}/messages"),
        None,
        b"",
    )
    .await;
    let as_json = json!({
        "a": { "_binary": b64(&pattern(9, 1000)) },
        "rest": [{ "_binary": "" }, { "z": { "_binary": b64(&pattern(10, 5)) } }],
    });
    assert_eq!(history.body["messages"][0]["data"], as_json);
    // `Client::history`: the ack is a BINARY_ACK; each message gets its own attachments back.
    let listed = within(10, "history", publisher.history(topic, None, None))
        .await
        .unwrap();
    assert_eq!(
        (&listed[0].data, &listed[0].attachments),
        (&data, &attachments)
    );

    // Requeued until dead-lettered (max_deliveries 3): the dead letter keeps its binary, the
    // API shows it as `_binary`, and requeued it is delivered as binary again.
    let published = within(
        10,
        "publish_binary",
        publisher.publish_binary(topic, "blob", data.clone(), attachments.clone(), None),
    )
    .await
    .unwrap();
    for attempt in 1..=3 {
        let delivery = within(15, "a delivery to requeue", subscription.recv())
            .await
            .unwrap();
        assert_eq!(delivery.meta.attempt, attempt);
        assert_eq!(delivery.attachments, attachments);
        within(10, "requeue", delivery.requeue()).await.unwrap();
    }
    let dead_path = format!("/v1/topics/{topic}/dead-letters");
    let mut dead = Value::Null;
    for _ in 0..100 {
        dead = http(url, "GET", &dead_path, None, b"").await.body;
        if dead["deadLetters"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        dead["deadLetters"][0]["id"],
        published.id.to_string(),
        "{dead}"
    );
    assert_eq!(dead["deadLetters"][0]["data"], as_json);
    let requeue = http(
        url,
        "POST",
        &format!("{dead_path}/{}/requeue", published.id),
        None,
        b"",
    )
    .await;
    assert_eq!(requeue.status, 200, "{:?}", requeue.body);
    let again = within(10, "the requeued dead letter", subscription.recv())
        .await
        .unwrap();
    assert_eq!((&again.data, &again.attachments), (&data, &attachments));
    within(10, "ack", again.ack()).await.unwrap();
}

/// The same messages with `--parser msgpack` (socket.io-msgpack-parser clients, where binary
/// is a MessagePack value rather than a placeholder + attachment): published from Node and
/// over HTTP, received by both clients byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_in_durable_messages_with_the_msgpack_parser() {
    let server = common::serve("", &["--parser", "msgpack"], &[]).await;
    let url = server.url.clone();
    let topic = "files.msgpack";
    run_client(
        "js/queue-binary.mjs",
        &url,
        &[
            ("PHASE", "publish"),
            ("TIDINGS_TOPIC", topic),
            ("PARSER", "msgpack"),
        ],
    )
    .await;
    let body = json!({
        "event": "file",
        "data": { "http": true, "b": { "_binary": b64(&pattern(8, 300)) } },
    });
    let path = format!("/v1/topics/{topic}/messages");
    let answer = http(&url, "POST", &path, None, body.to_string().as_bytes()).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    for (script, client, transport) in [
        ("js/queue-binary.mjs", "js-m", "websocket"),
        ("py/queue_binary.py", "py-m", "polling"),
    ] {
        let mut envs = receive_env(topic, client, "requeue-once", "1", transport);
        envs.push(("PARSER", "msgpack"));
        run_client(script, &url, &envs).await;
    }
}
