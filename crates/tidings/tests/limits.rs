//! The limits of `tidings serve` (docs/SECURITY.md), each pushed past with the real binary and
//! each answered as documented, while two well-behaved clients connected all along are still
//! served: connections in total and per IP, slow headers, slow bodies, the connect timeout (raw TCP and
//! HTTP here), events per second per connection, publishes per second per identity and
//! subscriptions per identity (socket.io-client, tests/clients/js/limits.mjs), the queue depth
//! per subscription with both overflow policies and the number of topics (socket.io-client and
//! the HTTP API, tests/clients/js/queue-limits.mjs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A kept-alive HTTP connection that has been served once (so the server admitted it).
async fn admitted(
    host: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = TcpStream::connect(host).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/v1/topics")
        .header("host", host)
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = within(10, "admitted connection", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    sender
}

/// Sends `request` on a new connection and reads until the server closes it.
async fn raw(host: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(host).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    within(10, "raw answer", stream.read_to_end(&mut answer))
        .await
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

const GET_TOPICS: &[u8] = b"GET /v1/topics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

/// The counters of `GET /v1/stats`.
async fn stats(host: &str) -> serde_json::Value {
    let answer = raw(
        host,
        b"GET /v1/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// Polls (bounded: 100 tries, 20 ms apart) until a new connection is served again.
async fn until_served_again(host: &str) {
    for _ in 0..100 {
        if raw(host, GET_TOPICS).await.starts_with("HTTP/1.1 200") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no connection served again within 2 s of one closing");
}

#[tokio::test]
async fn connections_per_ip_over_the_limit_get_503() {
    let server = serve("", &["--max-connections-per-ip", "4"], &[]).await;
    let host = server.host().to_owned();
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
    let first = admitted(&host).await;
    let _second = admitted(&host).await;
    for attempt in 0..3 {
        let answer = raw(&host, GET_TOPICS).await;
        assert!(
            answer.starts_with("HTTP/1.1 503"),
            "attempt {attempt}: {answer}"
        );
        assert!(
            answer.contains(r#""code":"too_many_connections""#),
            "{answer}"
        );
        assert!(
            answer.contains("too many connections from this address"),
            "{answer}"
        );
        bystanders.still_served("over the per-IP limit").await;
    }
    drop(first);
    until_served_again(&host).await;
    bystanders.still_served("after a connection closed").await;
    // Every refusal is counted, and the count is there for operators.
    let counters = stats(&host).await;
    assert!(
        counters["connectionsRefused"].as_u64().unwrap() >= 3,
        "{counters}"
    );
}

#[tokio::test]
async fn connections_over_the_total_get_503() {
    let server = serve("", &[], &[("TIDINGS_MAX_CONNECTIONS", "3")]).await;
    let host = server.host().to_owned();
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
    let idle = admitted(&host).await;
    let answer = raw(&host, GET_TOPICS).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("the server has too many connections"),
        "{answer}"
    );
    bystanders.still_served("over the total").await;
    drop(idle);
    until_served_again(&host).await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let server = serve("[limits]\nheader_timeout_ms = 300\n", &[], &[]).await;
    let host = server.host().to_owned();
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
    // Slowloris: one byte of headers every 50 ms, never finishing them.
    let mut stream = TcpStream::connect(&host).await.unwrap();
    let started = Instant::now();
    let request = b"GET /v1/topics HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in request.iter() {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => {} // an error answer (408) before the close
            Err(_) => {}    // nothing yet: go on dripping
        }
    }
    assert!(
        cut,
        "a client dripping headers for {:?} was not cut off",
        started.elapsed()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "cut off after {took:?}"
    );
    bystanders.still_served("after slowloris").await;
}

/// Sends the headers of `request` and the first `sent` bytes of its body, then reads until the
/// server closes the connection (the rest of the body never comes).
async fn partial_body(host: &str, head: &str, body: &[u8], sent: usize) -> String {
    let mut stream = TcpStream::connect(host).await.unwrap();
    let head = format!("{head}\r\ncontent-length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    let mut answer = Vec::new();
    within(
        10,
        "answer to a partial body",
        stream.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_bodies_are_cut_off() {
    let server = serve("[limits]\nbody_timeout_ms = 300\n", &[], &[]).await;
    let host = server.host().to_owned();
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;

    // The HTTP API: headers at once, then half of a publish body, then nothing.
    let body = br#"{"event":"e","data":{"text":"never finished"}}"#;
    let started = Instant::now();
    let answer = partial_body(
        &host,
        "POST /v1/topics/slow.body/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json",
        body,
        body.len() / 2,
    )
    .await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
    // Nothing was published.
    let topics = raw(&host, GET_TOPICS).await;
    assert!(!topics.contains("slow.body"), "{topics}");

    // A long-polling POST: the same; its session is closed.
    let sid = polling_session(&host).await;
    let answer = partial_body(
        &host,
        &format!("POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain"),
        b"40{\"clientId\":\"slow\"}",
        3,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let poll = format!(
        "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    );
    let answer = raw(&host, poll.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "the session lives on: {answer}"
    );

    let counters = stats(&host).await;
    assert_eq!(counters["slowRequests"], 2, "{counters}");
    bystanders.still_served("after two slow bodies").await;
}

/// Opens an Engine.IO session over long-polling; returns its sid.
async fn polling_session(host: &str) -> String {
    let handshake = raw(
        host,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    handshake
        .split(r#""sid":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {handshake}"))
        .to_owned()
}

#[tokio::test]
async fn a_session_that_never_joins_a_namespace_is_closed() {
    const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
    let server = serve("", &["--connect-timeout-ms", "500"], &[]).await;
    let host = server.host().to_owned();
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
    // The session lives until the connect timeout and is closed then, not before: a long-poll
    // sent right after the handshake is held and answered with the close packet `1` no earlier
    // than the timeout after the handshake (a session closed at once would answer 400 at once),
    // and long before the 25 s ping interval. A poll that could not be sent well within the
    // timeout (a stalled machine) may legitimately find the session gone: that attempt proves
    // nothing and is made again (at most 3).
    for attempt in 1..=3 {
        let started = Instant::now();
        let sid = polling_session(&host).await;
        let poll = format!(
            "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        );
        let sent_after = started.elapsed();
        let answer = raw(&host, poll.as_bytes()).await;
        let answered_after = started.elapsed();
        if sent_after > CONNECT_TIMEOUT / 2 && attempt < 3 {
            eprintln!("attempt {attempt}: the poll left {sent_after:?} after the handshake, again");
            continue;
        }
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        assert!(
            answer.starts_with("HTTP/1.1 200") && body == "1",
            "expected the close packet on the held long-poll: {answer}"
        );
        assert!(
            answered_after >= CONNECT_TIMEOUT && answered_after < Duration::from_secs(5),
            "closed {answered_after:?} after the handshake, expected {CONNECT_TIMEOUT:?} to 5 s"
        );
        bystanders.still_served("after the connect timeout").await;
        return;
    }
}

#[tokio::test]
async fn rate_and_subscription_limits_with_socket_io_client() {
    let server = serve(
        "[limits]\nmax_events_per_second = 50\nmax_subscriptions_per_identity = 2\n",
        &["--max-publishes-per-second", "5"],
        &[],
    )
    .await;
    for transport in ["websocket", "polling"] {
        run_client(
            "js/limits.mjs",
            &server.url,
            &[
                ("TRANSPORT", transport),
                ("EVENTS_PER_SECOND", "50"),
                ("PUBLISHES_PER_SECOND", "5"),
                ("MAX_SUBSCRIPTIONS", "2"),
            ],
        )
        .await;
    }
    let counters = stats(server.host()).await;
    for counter in [
        "rateLimitedEvents",
        "rateLimitedPublishes",
        "subscriptionsRefused",
    ] {
        assert!(
            counters[counter].as_u64().unwrap() > 0,
            "{counter}: {counters}"
        );
    }
    assert_eq!(counters["queueFullPublishes"], 0, "{counters}");
}

/// `[limits]` as documented in docs/CONFIGURATION.md: depth 3 with `reject`, `drop-oldest` for
/// `drop.>`, 4 topics. One server per transport: the scenario counts the topics it creates.
const QUEUE_LIMITS: &str = r#"
[limits]
max_queue_depth = 3
max_topics = 4
[[limits.queue_depth_rules]]
pattern = "drop.>"
overflow = "drop-oldest"
"#;

#[tokio::test]
async fn queue_depth_and_topic_limits_with_socket_io_client() {
    for transport in ["websocket", "polling"] {
        let server = serve(QUEUE_LIMITS, &[], &[]).await;
        run_client(
            "js/queue-limits.mjs",
            &server.url,
            &[
                ("TRANSPORT", transport),
                ("MAX_QUEUE_DEPTH", "3"),
                ("MAX_TOPICS", "4"),
            ],
        )
        .await;
        let counters = stats(server.host()).await;
        for counter in ["queueFullPublishes", "overflowDropped", "topicsRefused"] {
            assert!(
                counters[counter].as_u64().unwrap() > 0,
                "{counter}: {counters}"
            );
        }
    }
}

#[tokio::test]
async fn queue_depth_and_topic_limits_from_flags_and_env() {
    let server = serve(
        "",
        &["--max-queue-depth", "1", "--overflow", "drop-oldest"],
        &[("TIDINGS_MAX_TOPICS", "1")],
    )
    .await;
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
    let publish = |topic: &str| {
        let path = format!("/v1/topics/{topic}/messages");
        let url = server.url.clone();
        async move { http(&url, "POST", &path, None, br#"{"event":"e","data":1}"#).await }
    };
    assert_eq!(publish("first").await.status, 201);
    assert_eq!(
        publish("first").await.status,
        201,
        "no subscription: never full"
    );
    let over = publish("second").await;
    assert_eq!(
        (over.status, over.code()),
        (403, "limit_exceeded"),
        "{over:?}"
    );
    assert!(
        over.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("maximum of 1 topics")),
        "{over:?}"
    );
    bystanders.still_served("after the topic limit").await;

    let printed = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--print-config", "--store", "memory"])
        .args(["--max-queue-depth", "7", "--overflow", "drop-oldest"])
        .env("TIDINGS_MAX_TOPICS", "9")
        .output();
    let printed = within(20, "tidings serve --print-config", printed)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    for expected in [
        "max_queue_depth: Some(\n        7,",
        "overflow: DropOldest",
        "max_topics: Some(\n        9,",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
}

#[tokio::test]
async fn invalid_limits_are_refused_at_start_up() {
    for args in [
        vec!["--max-queue-depth", "0"],
        vec!["--max-topics", "0"],
        vec!["--max-connections", "0"],
        vec!["--max-events-per-second", "0"],
        vec!["--max-subscriptions-per-identity", "0"],
        vec!["--header-timeout-ms", "0"],
        vec!["--body-timeout-ms", "0"],
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--port", "0", "--store", "memory"])
            .args(&args)
            .output();
        let output = within(20, "tidings serve", output).await.unwrap();
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("at least 1") || stderr.contains("positive"),
            "{args:?}: {stderr}"
        );
    }
}

/// A raw WebSocket upgrade to the Engine.IO endpoint with an optional `Origin`: whether the
/// server accepted it.
async fn ws_upgrade(host: &str, origin: Option<&str>) -> bool {
    let uri = format!("ws://{host}/socket.io/?EIO=4&transport=websocket");
    let mut builder = tokio_websockets::ClientBuilder::new().uri(&uri).unwrap();
    if let Some(origin) = origin {
        builder = builder
            .add_header(
                hyper::header::ORIGIN,
                hyper::header::HeaderValue::from_str(origin).unwrap(),
            )
            .unwrap();
    }
    within(10, "ws upgrade", builder.connect()).await.is_ok()
}

#[tokio::test]
async fn websocket_upgrades_from_other_origins_are_refused() {
    let server = serve("", &["--ws-allowed-origin", "https://app.example.com"], &[]).await;
    let host = server.host().to_owned();
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
    assert!(ws_upgrade(&host, Some("https://app.example.com")).await);
    assert!(
        ws_upgrade(&host, None).await,
        "non-browser clients send no Origin"
    );
    assert!(!ws_upgrade(&host, Some("https://evil.example")).await);
    assert!(!ws_upgrade(&host, Some("null")).await);
    // The answer itself (kept alive: read until its JSON body is complete, bounded).
    let mut stream = TcpStream::connect(&host).await.unwrap();
    stream
        .write_all(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\norigin: https://evil.example\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    for _ in 0..100 {
        let mut buf = [0u8; 1024];
        let n = within(10, "403 answer", stream.read(&mut buf))
            .await
            .unwrap();
        bytes.extend_from_slice(&buf[..n]);
        if n == 0 || bytes.ends_with(b"}") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&bytes);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains(r#"{"code":4,"message":"Forbidden"}"#),
        "{answer}"
    );
    bystanders.still_served("after cross-origin upgrades").await;
}

/// Issue 19's two abuses against the default configuration, with socket.io-client: one
/// connection asking for many namespaces, one socket joining many rooms. Each is refused as
/// documented while the bystanders are served, and the namespaces the abuser created are gone
/// once it closes (`/v1/stats` `namespaces` back where it was).
#[tokio::test]
async fn namespace_and_room_abuses_are_refused_by_default() {
    let server = serve("", &[], &[]).await;
    let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
    let before = stats(server.host()).await;
    let defaults = tidings_server::Limits::default();
    let per_connection = defaults.max_namespaces_per_connection.unwrap().to_string();
    let rooms = defaults.max_rooms_per_socket.unwrap().to_string();
    for transport in ["websocket", "polling"] {
        let mut abuse = Scenario::start(
            "js/abuse.mjs",
            &server.url,
            &[
                ("TRANSPORT", transport),
                ("MAX_NAMESPACES_PER_CONNECTION", &per_connection),
                ("MAX_ROOMS", &rooms),
            ],
        );
        abuse.cue("REFUSED", 60).await;
        bystanders.still_served("with the abuser connected").await;
        abuse.passes(60).await;
        bystanders.still_served("after the abuser left").await;
    }
    let after = stats(server.host()).await;
    assert_eq!(after["namespaces"], before["namespaces"], "{after}");
    assert!(after["namespacesRefused"].as_u64().unwrap() > 0, "{after}");
    assert!(after["joinsRefused"].as_u64().unwrap() > 0, "{after}");
}

/// One row per limit a single client could otherwise grow: its flag, its default (as
/// docs/SECURITY.md gives it), the small value a server of the row runs with, and how the row
/// is pushed past it (a case of tests/clients/js/limit-table.mjs, or `None`: raw connections
/// here), and the `/v1/stats` counter its refusal moves.
struct LimitRow {
    flag: &'static str,
    field: &'static str,
    /// The `--print-config` field that shows the default (`field` but for the queue depth,
    /// whose default bound is retention's message count).
    default_field: &'static str,
    default: DefaultLimit,
    low: &'static str,
    case: Option<&'static str>,
    counter: &'static str,
}

/// A default as docs/SECURITY.md gives it.
enum DefaultLimit {
    Count(u64),
    /// Half of the memory the server may use: the machine's `MemTotal`, or its cgroup's limit
    /// when lower.
    HalfOfMemory,
}

impl DefaultLimit {
    fn expected(&self) -> u64 {
        match self {
            DefaultLimit::Count(n) => *n,
            DefaultLimit::HalfOfMemory => {
                let total = std::fs::read_to_string("/proc/meminfo").unwrap();
                let kib: u64 = total
                    .lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap()
                    .parse()
                    .unwrap();
                let cgroup = [
                    "/sys/fs/cgroup/memory.max",
                    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                ]
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(u64::MAX);
                (kib * 1024).min(cgroup) / 2
            }
        }
    }
}

const LIMIT_TABLE: &[LimitRow] = &[
    LimitRow {
        flag: "--max-connections-per-ip",
        field: "max_connections_per_ip",
        default_field: "max_connections_per_ip",
        default: DefaultLimit::Count(10_000),
        low: "3",
        case: None,
        counter: "connectionsRefused",
    },
    LimitRow {
        flag: "--max-namespaces",
        field: "max_namespaces",
        default_field: "max_namespaces",
        default: DefaultLimit::Count(10_000),
        low: "2",
        case: Some("namespaces"),
        counter: "namespacesRefused",
    },
    LimitRow {
        flag: "--max-namespaces-per-connection",
        field: "max_namespaces_per_connection",
        default_field: "max_namespaces_per_connection",
        default: DefaultLimit::Count(20),
        low: "2",
        case: Some("namespaces_per_connection"),
        counter: "namespacesRefused",
    },
    LimitRow {
        flag: "--max-rooms-per-socket",
        field: "max_rooms_per_socket",
        default_field: "max_rooms_per_socket",
        default: DefaultLimit::Count(1_000),
        low: "3",
        case: Some("rooms"),
        counter: "joinsRefused",
    },
    LimitRow {
        flag: "--max-events-per-second",
        field: "events_per_second",
        default_field: "events_per_second",
        default: DefaultLimit::Count(50_000),
        low: "5",
        case: Some("events"),
        counter: "rateLimitedEvents",
    },
    LimitRow {
        flag: "--max-publishes-per-second",
        field: "max_publishes_per_second",
        default_field: "max_publishes_per_second",
        default: DefaultLimit::Count(1_000),
        low: "3",
        case: Some("publishes"),
        counter: "rateLimitedPublishes",
    },
    LimitRow {
        flag: "--max-topics",
        field: "max_topics",
        default_field: "max_topics",
        default: DefaultLimit::Count(100_000),
        low: "2",
        case: Some("topics"),
        counter: "topicsRefused",
    },
    LimitRow {
        flag: "--max-queue-depth",
        field: "max_queue_depth",
        default_field: "max_messages",
        default: DefaultLimit::Count(10_000_000),
        low: "2",
        case: Some("queue_depth"),
        counter: "queueFullPublishes",
    },
    LimitRow {
        flag: "--max-retained-bytes",
        field: "max_retained_bytes",
        default_field: "max_retained_bytes",
        default: DefaultLimit::HalfOfMemory,
        // Three messages of the case's size (263 bytes each, as counted).
        low: "1000",
        case: Some("retained_bytes"),
        counter: "storeFullPublishes",
    },
    LimitRow {
        flag: "--max-subscriptions-per-identity",
        field: "max_subscriptions_per_identity",
        default_field: "max_subscriptions_per_identity",
        default: DefaultLimit::Count(10_000),
        low: "2",
        case: Some("subscriptions"),
        counter: "subscriptionsRefused",
    },
    LimitRow {
        flag: "--max-pending-acks-per-socket",
        field: "max_pending_acks_per_socket",
        default_field: "max_pending_acks_per_socket",
        default: DefaultLimit::Count(10_000),
        low: "1",
        case: Some("pending_acks"),
        counter: "deliveriesDeferred",
    },
    LimitRow {
        flag: "--max-attachments",
        field: "max_attachments",
        default_field: "max_attachments",
        default: DefaultLimit::Count(10),
        low: "1",
        case: Some("attachments"),
        counter: "protocolErrors",
    },
];

/// The number `field: Some(N)` or `field: N` shows in `--print-config` (None for `None`).
fn printed_limit(printed: &str, field: &str) -> Option<u64> {
    let at = printed.find(&format!("{field}: "))?;
    let rest = &printed[at + field.len() + ": ".len()..];
    let rest = rest.strip_prefix("Some(").unwrap_or(rest);
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Every limit one client could otherwise grow has a finite default (the documented one), and
/// exceeding it, set low, gets its documented answer while the bystanders are served.
#[tokio::test]
async fn every_default_limit_is_finite_and_answers_as_documented() {
    let printed = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--print-config", "--store", "memory"])
        .output();
    let printed = within(20, "tidings serve --print-config", printed)
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    for row in LIMIT_TABLE {
        assert_eq!(
            printed_limit(&printed, row.default_field),
            Some(row.default.expected()),
            "{}: the default in {printed}",
            row.default_field
        );
        let server = serve("", &[row.flag, row.low], &[]).await;
        let mut bystanders = Bystanders::connect(&server.url, json!({})).await;
        match row.case {
            Some(case) => {
                run_client(
                    "js/limit-table.mjs",
                    &server.url,
                    &[
                        ("CASE", case),
                        ("LIMIT", row.low),
                        ("TRANSPORT", "websocket"),
                    ],
                )
                .await;
            }
            None => {
                // The bystanders hold two connections from this address; one more is the limit.
                let _third = admitted(server.host()).await;
                let answer = raw(server.host(), GET_TOPICS).await;
                assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
                assert!(
                    answer.contains(r#""code":"too_many_connections""#),
                    "{answer}"
                );
                drop(_third);
                until_served_again(server.host()).await;
            }
        }
        bystanders.still_served(row.flag).await;
        let counters = stats(server.host()).await;
        assert!(
            counters[row.counter].as_u64().unwrap() > 0,
            "{}: {} in {counters}",
            row.flag,
            row.counter
        );
    }
    // And each can be switched off.
    let off = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--print-config", "--store", "memory"])
        .args(LIMIT_TABLE.iter().flat_map(|row| [row.flag, "unlimited"]))
        .output();
    let off = within(20, "tidings serve --print-config", off)
        .await
        .unwrap();
    let off = String::from_utf8_lossy(&off.stdout);
    for row in LIMIT_TABLE {
        assert!(
            off.contains(&format!("{}: None", row.field)),
            "{} unlimited: {off}",
            row.field
        );
    }
}
