//! The `/v1` HTTP API of `tidings serve` as an operator or a script uses it: the real binary
//! on an ephemeral port, with the memory store and with the SQLite store in a temporary
//! directory, spoken to over plain HTTP/1.1, with real Socket.IO consumers (tidings-client)
//! where a subscription's state matters.
//!
//! Each scenario runs once per store. The OpenAPI document is checked against the route table
//! of `tidings-server/src/api.rs` and against the live server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tidings_client::{Client, ClientOptions, MessageId, StartFrom, SubscribeOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy)]
enum Store {
    Memory,
    Sqlite,
}

/// Fails the test when `fut` takes longer than 10 s.
async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within 10 s"))
}

struct Serve {
    _child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

/// `tidings serve --port 0 --store … [--config FILE] ARGS…`.
async fn serve(store: Store, config: &str, args: &[&str]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command.args(["serve", "--port", "0", "--data-dir"]);
    command.arg(dir.path().join("data"));
    command.args(match store {
        Store::Memory => ["--store", "memory"],
        Store::Sqlite => ["--store", "sqlite"],
    });
    if !config.is_empty() {
        let file = dir.path().join("tidings.toml");
        std::fs::write(&file, config).unwrap();
        command.arg("--config").arg(file);
    }
    let mut child = command
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("tidings serve reporting its address", lines.next_line())
        .await
        .unwrap()
        .expect("tidings serve exited before listening");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    Serve {
        _child: child,
        url: url.split('/').take(3).collect::<Vec<_>>().join("/"),
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl Answer {
    /// The `{error:{code,message}}` of an error answer.
    fn error(&self) -> (&str, &str) {
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        match (code, message) {
            (Some(c), Some(m)) => (c, m),
            _ => panic!("not an error body: {}", self.body),
        }
    }
}

/// One request with a raw body.
async fn call(url: &str, method: &str, path: &str, body: &[u8]) -> Answer {
    let host = url.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let res = within(path, sender.send_request(req)).await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: non-JSON answer ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Answer {
        status,
        content_type,
        body,
    }
}

async fn get(url: &str, path: &str) -> Answer {
    call(url, "GET", path, b"").await
}

async fn post(url: &str, path: &str, body: &Value) -> Answer {
    call(url, "POST", path, body.to_string().as_bytes()).await
}

/// Publishes through the API; returns `{id, offset, duplicate}`.
async fn publish(url: &str, topic: &str, body: Value) -> Value {
    let answer = post(url, &format!("/v1/topics/{topic}/messages"), &body).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body
}

/// The subscriptions of `topic` by name, from `GET /v1/topics/{topic}`.
async fn subscription(url: &str, topic: &str, name: &str) -> Value {
    let info = get(url, &format!("/v1/topics/{topic}")).await;
    assert_eq!(info.status, 200, "{}", info.body);
    info.body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no subscription {name}: {}", info.body))
        .clone()
}

/// Polls `GET /v1/topics/{topic}` (bounded) until the subscription satisfies `done`.
async fn wait_subscription(url: &str, topic: &str, name: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sub = subscription(url, topic, name).await;
        if done(&sub) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never got there: {sub}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn consumer(url: &str, client_id: &str) -> Client {
    let options = ClientOptions::builder(url)
        .auth(json!({ "clientId": client_id }))
        .build()
        .unwrap();
    within("connecting", Client::connect(options))
        .await
        .unwrap()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

async fn publish_dedup_and_history(store: Store) {
    let srv = serve(store, "", &[]).await;
    let url = &srv.url;

    let answer = post(
        url,
        "/v1/topics/orders/messages",
        &json!({ "event": "order", "data": { "n": 1 } }),
    )
    .await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.content_type, "application/json");
    // In this order (as the OpenAPI document and `tidings publish` show it).
    let fields: Vec<&String> = answer.body.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["id", "offset", "duplicate"]);
    assert_eq!(
        (&answer.body["offset"], &answer.body["duplicate"]),
        (&json!(1), &json!(false))
    );
    let first_id: MessageId = answer.body["id"].as_str().unwrap().parse().unwrap();

    // Idempotency key: the repeat stores nothing and answers the first id and offset.
    let keyed = publish(
        url,
        "orders",
        json!({ "event": "order", "data": { "n": 2 }, "key": "k-1" }),
    )
    .await;
    assert_eq!(
        (&keyed["offset"], &keyed["duplicate"]),
        (&json!(2), &json!(false))
    );
    let again = publish(
        url,
        "orders",
        json!({ "event": "order", "data": { "n": 99 }, "key": "k-1" }),
    )
    .await;
    assert_eq!(
        again,
        json!({ "id": keyed["id"], "offset": 2, "duplicate": true })
    );
    assert_ne!(keyed["id"], first_id.to_string());
    // Without `data`, the message carries null.
    let bare = publish(url, "orders", json!({ "event": "ping" })).await;
    assert_eq!(bare["offset"], 3);

    let page = get(url, "/v1/topics/orders/messages?from=2&limit=1").await;
    assert_eq!(page.status, 200);
    let messages = page.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        keys(&messages[0]),
        ["data", "event", "id", "offset", "publishedAt"]
    );
    assert_eq!(messages[0]["id"], keyed["id"]);
    assert_eq!(messages[0]["offset"], 2);
    assert_eq!(messages[0]["event"], "order");
    assert_eq!(
        messages[0]["data"],
        json!({ "n": 2 }),
        "the duplicate must not overwrite"
    );
    assert!(messages[0]["publishedAt"].as_u64().unwrap() > 1_600_000_000_000);

    let all = get(url, "/v1/topics/orders/messages").await.body;
    let all = all["messages"].as_array().unwrap();
    let offsets: Vec<&Value> = all.iter().map(|m| &m["offset"]).collect();
    assert_eq!(offsets, [&json!(1), &json!(2), &json!(3)]);
    assert_eq!(all[0]["id"], first_id.to_string());
    assert_eq!(all[2]["data"], Value::Null);
    let past_head = get(url, "/v1/topics/orders/messages?from=4").await;
    assert_eq!(past_head.body, json!({ "messages": [] }));
    for bad in ["limit=0", "limit=1001", "from=x", "limit=-1"] {
        let answer = get(url, &format!("/v1/topics/orders/messages?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert_eq!(answer.error().0, "bad_request");
    }

    publish(url, "vendor.store-42", json!({ "event": "stock" })).await;
    let topics = get(url, "/v1/topics").await;
    assert_eq!(topics.status, 200);
    let mut listed: Vec<(String, u64, u64)> = topics.body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["subscriptions"], json!([]));
            (
                t["topic"].as_str().unwrap().to_owned(),
                t["head"].as_u64().unwrap(),
                t["retained"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("orders".to_owned(), 3, 3),
            ("vendor.store-42".to_owned(), 1, 1)
        ]
    );
}

#[tokio::test]
async fn publish_dedup_and_history_memory() {
    publish_dedup_and_history(Store::Memory).await;
}

#[tokio::test]
async fn publish_dedup_and_history_sqlite() {
    publish_dedup_and_history(Store::Sqlite).await;
}

/// A subscription's counts while a consumer holds one delivery unacknowledged.
async fn topic_info_counts(store: Store) {
    let srv = serve(store, "[queues]\nmax_in_flight = 1\n", &[]).await;
    let url = &srv.url;
    for n in 1..=3 {
        publish(url, "orders", json!({ "event": "order", "data": n })).await;
    }
    let inspector = consumer(url, "inspector").await;
    let mut orders = inspector
        .subscribe(SubscribeOptions::new("orders").from(StartFrom::Earliest))
        .await
        .unwrap();
    let team = consumer(url, "driver-1").await;
    let _drivers = team
        .subscribe(SubscribeOptions::new("orders").group("drivers"))
        .await
        .unwrap();
    let first = within("the first delivery", orders.recv()).await.unwrap();
    assert_eq!(first.meta.offset, 1);

    let info = get(url, "/v1/topics/orders").await;
    assert_eq!(info.status, 200);
    let body = &info.body;
    assert_eq!(
        (
            &body["topic"],
            &body["head"],
            &body["first"],
            &body["retained"]
        ),
        (&json!("orders"), &json!(3), &json!(1), &json!(3))
    );
    assert!(body["retainedBytes"].as_u64().unwrap() > 0);
    let mut names: Vec<&str> = body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["group:drivers", "id:inspector"]);
    let mut mine = subscription(url, "orders", "id:inspector").await;
    // Consumer lag: the age of its oldest unsettled message, in ms (a number with every store).
    let lag = mine.as_object_mut().unwrap().remove("lagMs").unwrap();
    assert!(lag.is_u64(), "lagMs: {lag}");
    assert_eq!(
        mine,
        json!({ "name": "id:inspector", "pending": 3, "inFlight": 1, "dead": 0, "gaps": 0, "cursor": 2 })
    );
    // The group started at new messages: nothing pending.
    let group = subscription(url, "orders", "group:drivers").await;
    assert_eq!(
        (&group["pending"], &group["inFlight"], &group["lagMs"]),
        (&json!(0), &json!(0), &json!(0))
    );

    // Settling the first lets the second out (max_in_flight = 1).
    first.ack().await.unwrap();
    let second = within("the second delivery", orders.recv()).await.unwrap();
    assert_eq!(second.meta.offset, 2);
    wait_subscription(url, "orders", "id:inspector", |s| {
        s["pending"] == 2 && s["inFlight"] == 1
    })
    .await;

    let unknown = get(url, "/v1/topics/nowhere").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error().0, "not_found");
}

#[tokio::test]
async fn topic_info_counts_memory() {
    topic_info_counts(Store::Memory).await;
}

#[tokio::test]
async fn topic_info_counts_sqlite() {
    topic_info_counts(Store::Sqlite).await;
}

async fn dead_letters_and_requeue(store: Store) {
    let config = "[queues]\nmax_deliveries = 1\nack_timeout_ms = 300\n";
    let srv = serve(store, config, &[]).await;
    let url = &srv.url;
    let slow = consumer(url, "slow").await;
    let mut orders = slow
        .subscribe(SubscribeOptions::new("orders"))
        .await
        .unwrap();
    let published = publish(
        url,
        "orders",
        json!({ "event": "order", "data": { "parcel": "P-1" } }),
    )
    .await;

    // Delivered once, never acknowledged: after the ack timeout it is dead.
    let held = within("the delivery", orders.recv()).await.unwrap();
    assert_eq!(held.meta.attempt, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let answer = get(url, "/v1/topics/orders/dead-letters").await;
        assert_eq!(answer.status, 200);
        let list = answer.body["deadLetters"].as_array().unwrap().clone();
        if !list.is_empty() {
            break list;
        }
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(held);
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(
        keys(letter),
        [
            "attempts",
            "data",
            "deadAt",
            "event",
            "id",
            "offset",
            "publishedAt",
            "subscription"
        ]
    );
    assert_eq!(letter["id"], published["id"]);
    assert_eq!(letter["offset"], 1);
    assert_eq!(letter["event"], "order");
    assert_eq!(letter["data"], json!({ "parcel": "P-1" }));
    assert_eq!(letter["subscription"], "id:slow");
    assert_eq!(letter["attempts"], 1);
    assert!(letter["deadAt"].as_u64().unwrap() >= letter["publishedAt"].as_u64().unwrap());
    let sub = subscription(url, "orders", "id:slow").await;
    assert_eq!((&sub["dead"], &sub["pending"]), (&json!(1), &json!(0)));

    // Requeued: delivered again, and this time acknowledged.
    let id = published["id"].as_str().unwrap();
    let requeue = format!("/v1/topics/orders/dead-letters/{id}/requeue");
    let answer = post(url, &requeue, &json!({})).await;
    assert_eq!(
        (answer.status, &answer.body),
        (200, &json!({ "requeued": true }))
    );
    let again = within("the requeued delivery", orders.recv())
        .await
        .unwrap();
    assert_eq!(again.meta.id.to_string(), id);
    again.ack().await.unwrap();
    wait_subscription(url, "orders", "id:slow", |s| {
        s["pending"] == 0 && s["dead"] == 0
    })
    .await;
    let none = get(url, "/v1/topics/orders/dead-letters").await;
    assert_eq!(none.body, json!({ "deadLetters": [] }));

    // No longer dead, never dead, not an id.
    let gone = post(url, &requeue, &json!({})).await;
    assert_eq!((gone.status, gone.error().0), (404, "not_found"));
    let unknown = format!(
        "/v1/topics/orders/dead-letters/{}/requeue",
        MessageId::new()
    );
    let answer = post(url, &unknown, &json!({})).await;
    assert_eq!((answer.status, answer.error().0), (404, "not_found"));
    let answer = post(
        url,
        "/v1/topics/orders/dead-letters/nope/requeue",
        &json!({}),
    )
    .await;
    assert_eq!((answer.status, answer.error().0), (400, "bad_request"));
}

#[tokio::test]
async fn dead_letters_and_requeue_memory() {
    dead_letters_and_requeue(Store::Memory).await;
}

#[tokio::test]
async fn dead_letters_and_requeue_sqlite() {
    dead_letters_and_requeue(Store::Sqlite).await;
}

async fn delete_subscription(store: Store) {
    let srv = serve(store, "", &[]).await;
    let url = &srv.url;
    let driver = consumer(url, "driver-7").await;
    let _own = driver
        .subscribe(SubscribeOptions::new("pickup"))
        .await
        .unwrap();
    let _team = driver
        .subscribe(SubscribeOptions::new("pickup").group("drivers"))
        .await
        .unwrap();
    publish(url, "pickup", json!({ "event": "order" })).await;
    wait_subscription(url, "pickup", "id:driver-7", |s| s["pending"] == 1).await;

    let own = "/v1/topics/pickup/subscriptions/id%3Adriver-7";
    let answer = call(url, "DELETE", own, b"").await;
    assert_eq!(
        (answer.status, &answer.body),
        (200, &json!({ "deleted": true }))
    );
    let again = call(url, "DELETE", own, b"").await;
    assert_eq!((again.status, again.error().0), (404, "not_found"));

    // The `:` may also come unescaped.
    let group = call(
        url,
        "DELETE",
        "/v1/topics/pickup/subscriptions/group:drivers",
        b"",
    )
    .await;
    assert_eq!(group.status, 200, "{}", group.body);
    let info = get(url, "/v1/topics/pickup").await;
    assert_eq!(info.body["subscriptions"], json!([]));
    // The messages stay: deleting a subscription is not deleting the topic.
    assert_eq!(info.body["retained"], 1);

    let bad = call(
        url,
        "DELETE",
        "/v1/topics/pickup/subscriptions/driver-7",
        b"",
    )
    .await;
    assert_eq!((bad.status, bad.error().0), (400, "bad_request"));
}

#[tokio::test]
async fn delete_subscription_memory() {
    delete_subscription(Store::Memory).await;
}

#[tokio::test]
async fn delete_subscription_sqlite() {
    delete_subscription(Store::Sqlite).await;
}

async fn errors(store: Store) {
    let srv = serve(store, "", &["--max-payload", "1000"]).await;
    let url = &srv.url;
    let messages = "/v1/topics/orders/messages";
    let refused = [
        (&b"{not json"[..], "invalid JSON"),
        (b"", "invalid JSON"),
        (&br#"{"data":1}"#[..], "`event` is required"),
        (br#"[1]"#, "expected an object"),
        (br#"{"event":7}"#, "`event` must be a non-empty string"),
        (
            br#"{"event":"order","key":7}"#,
            "`key` must be a non-empty string",
        ),
        (br#"{"event":""}"#, "`event` must be a non-empty string"),
        (br#"{"event":"connect"}"#, "reserved"),
        (br#"{"event":"disconnect"}"#, "reserved"),
        // The idempotency key is checked exactly as the socket `publish` checks it.
        (
            br#"{"event":"order","key":""}"#,
            "`key` must be a non-empty string",
        ),
    ];
    let long_key = json!({ "event": "order", "key": "k".repeat(257) }).to_string();
    let long_event = json!({ "event": "e".repeat(257) }).to_string();
    let refused = refused.into_iter().chain([
        (
            long_key.as_bytes(),
            "`key` must be a non-empty string of at most 256 bytes",
        ),
        (
            long_event.as_bytes(),
            "`event` must be a non-empty string of at most 256 bytes",
        ),
    ]);
    for (body, expected) in refused {
        let answer = call(url, "POST", messages, body).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(answer.status, 400, "{shown}: {}", answer.body);
        let (code, message) = answer.error();
        assert_eq!(code, "bad_request", "{shown}");
        assert!(message.contains(expected), "{shown}: {message}");
    }
    for topic in ["bad%20topic", "a..b", "%2Eleading", "%zz"] {
        let answer = post(
            url,
            &format!("/v1/topics/{topic}/messages"),
            &json!({ "event": "e" }),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error().0),
            (400, "bad_request"),
            "{topic}"
        );
        let answer = get(url, &format!("/v1/topics/{topic}")).await;
        assert_eq!(answer.status, 400, "{topic}");
    }
    for (method, path) in [
        ("GET", "/v1/nope"),
        ("GET", "/v1"),
        ("PUT", "/v1/topics"),
        ("DELETE", "/v1/topics/orders"),
        ("GET", "/v1/topics/orders/messages/1"),
        ("POST", "/v1/topics/orders/dead-letters"),
    ] {
        let answer = call(url, method, path, b"").await;
        assert_eq!(answer.status, 404, "{method} {path}");
        let (code, message) = answer.error();
        assert_eq!(code, "not_found");
        assert!(
            message.starts_with("no route"),
            "{method} {path}: {message}"
        );
    }
    // Outside /v1 and the Socket.IO path: the same error shape.
    let outside = get(url, "/nope").await;
    assert_eq!(outside.status, 404);
    assert_eq!(outside.error(), ("not_found", "no route GET /nope"));

    let big = json!({ "event": "order", "data": "x".repeat(2000) });
    let answer = post(url, messages, &big).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.error().0, "payload_too_large");
    // At the limit is fine, and nothing refused was stored.
    let fits = json!({ "event": "order", "data": "x".repeat(900) });
    assert_eq!(publish(url, "orders", fits).await["offset"], 1);
    // The longest key and event name are accepted.
    let longest = json!({ "event": "e".repeat(256), "key": "k".repeat(256) });
    assert_eq!(publish(url, "orders", longest).await["offset"], 2);
}

#[tokio::test]
async fn errors_memory() {
    errors(Store::Memory).await;
}

#[tokio::test]
async fn errors_sqlite() {
    errors(Store::Sqlite).await;
}

/// The routes `api::handle` matches, read from its source: `(METHOD, /v1/…/{param})`.
fn implemented_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../../tidings-server/src/api.rs");
    let mut routes = BTreeSet::new();
    for arm in source.split("(&Method::").skip(1) {
        let (method, rest) = arm.split_once(',').unwrap();
        let pattern = &rest[rest.find('[').unwrap() + 1..rest.find(']').unwrap()];
        let segments: Vec<String> = pattern
            .split(',')
            .map(str::trim)
            .map(|s| match s.strip_prefix('"') {
                Some(literal) => literal.trim_end_matches('"').to_owned(),
                None => format!("{{{s}}}"),
            })
            .collect();
        routes.insert((method.to_owned(), format!("/v1/{}", segments.join("/"))));
    }
    routes
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let srv = serve(Store::Memory, "", &[]).await;
    let url = &srv.url;
    let doc = get(url, "/v1/openapi.json").await;
    assert_eq!(
        (doc.status, doc.content_type.as_str()),
        (200, "application/json")
    );
    assert_eq!(doc.body["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }

    let mut implemented = implemented_routes();
    assert!(
        implemented.len() >= 7,
        "route table not found: {implemented:?}"
    );
    // The document does not describe itself.
    assert!(implemented.remove(&("GET".to_owned(), "/v1/openapi.json".to_owned())));
    assert_eq!(documented, implemented, "OpenAPI paths vs api.rs routes");

    // And the live server answers each documented route (not with "no route").
    let id = MessageId::new().to_string();
    for (method, path) in &documented {
        let concrete = path
            .replace("{topic}", "probe")
            .replace("{id}", &id)
            .replace("{name}", "id%3Aprobe");
        let answer = call(url, method, &concrete, br#"{"event":"probe"}"#).await;
        let routed = answer.status != 404 || !answer.error().1.starts_with("no route");
        assert!(routed, "{method} {concrete}: {}", answer.body);
    }
}
