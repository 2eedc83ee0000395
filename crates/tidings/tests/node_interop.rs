//! tidings among Node Socket.IO: a Node service with the unmodified `@socket.io/redis-emitter`
//! reaches the clients of `tidings serve --redis` nodes (tests/clients/js/node-emitter.mjs).
//! Needs `redis-server` on PATH and the npm packages of tests/clients/js (scripts/test
//! installs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Scenario;
use common::server::RedisServer;
use tokio::process::{Child, Command};

async fn node(redis: &RedisServer, extra: &[&str]) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args(["serve", "--port", "0", "--store", "redis", "--redis"])
        .arg(redis.url())
        .args(extra);
    common::spawn_serve(&mut command).await
}

async fn emitter_scenario(parser: &str) {
    let redis = RedisServer::start();
    let (_a, a) = node(&redis, &["--parser", parser]).await;
    let (_b, b) = node(&redis, &["--parser", parser]).await;
    let socket = redis.socket();
    Scenario::start(
        "js/node-emitter.mjs",
        &a,
        &[
            ("TIDINGS_URLS", format!("{a},{b}").as_str()),
            ("REDIS_SOCKET", socket.to_str().unwrap()),
            ("PARSER", parser),
        ],
    )
    .passes(90)
    .await;
    // Both nodes heard everything the emitter sent, the garbage too, and say so in
    // /metrics and /v1/stats (nothing more arrives now: the two must agree).
    for url in [&a, &b] {
        let metrics = common::http(url, "GET", "/metrics", None, b"").await;
        let text = metrics.body.as_str().unwrap_or_default().to_owned();
        let count = |outcome: &str| -> u64 {
            let prefix = format!("tidings_cluster_node_messages_total{{outcome=\"{outcome}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{url}: no {prefix} in /metrics:\n{text}"))
        };
        let (applied, refused) = (count("applied"), count("refused"));
        assert!(applied > 0, "{url}: no Node message applied");
        assert!(refused > 0, "{url}: the garbage was not counted as refused");
        let stats = common::http(url, "GET", "/v1/stats", None, b"").await;
        assert_eq!(stats.body["nodeMessagesApplied"], applied, "{url}");
        assert_eq!(stats.body["nodeMessagesRefused"], refused, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_redis_emitter_reaches_clients_of_two_tidings_nodes() {
    emitter_scenario("default").await;
}

/// The same with nodes and clients on socket.io-msgpack-parser: the emitter's broadcasts are
/// encoded in the nodes' parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_redis_emitter_reaches_msgpack_clients() {
    emitter_scenario("msgpack").await;
}

/// A Node Socket.IO server on `@socket.io/redis-adapter` and two `--node-cluster` tidings nodes
/// act as one cluster for broadcasts and the Node server's room operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_servers_and_tidings_nodes_share_one_cluster() {
    let redis = RedisServer::start();
    let (_a, a) = node(&redis, &["--node-cluster"]).await;
    let (_b, b) = node(&redis, &["--node-cluster"]).await;
    let socket = redis.socket();
    Scenario::start(
        "js/node-mixed-cluster.mjs",
        &a,
        &[
            ("TIDINGS_URLS", format!("{a},{b}").as_str()),
            ("REDIS_SOCKET", socket.to_str().unwrap()),
        ],
    )
    .passes(90)
    .await;
}

/// The Node server's requests that expect answers, beside two `--node-cluster` tidings nodes:
/// `serverCount`, `fetchSockets` (ids, rooms, handshake, data), `allRooms`, `RemoteSocket`
/// join / leave / disconnect of a tidings socket, and broadcasts with acknowledgements from
/// tidings' clients (tests/clients/js/node-requests.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_servers_requests_are_answered_by_tidings_nodes() {
    let redis = RedisServer::start();
    let (_a, a) = node(&redis, &["--node-cluster"]).await;
    let (_b, b) = node(&redis, &["--node-cluster"]).await;
    let socket = redis.socket();
    Scenario::start(
        "js/node-requests.mjs",
        &a,
        &[
            ("TIDINGS_URLS", format!("{a},{b}").as_str()),
            ("REDIS_SOCKET", socket.to_str().unwrap()),
        ],
    )
    .passes(90)
    .await;
}
