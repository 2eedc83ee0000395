//! Several `tidings serve --redis` nodes on one real `redis-server`, driven by the unmodified
//! `socket.io-client`: room broadcasts and durable topics across nodes, a node killed with
//! SIGKILL while messages flow, Redis stopped and restarted under load. Needs `redis-server`
//! on PATH (scripts/test installs it; a private one per test, on a unix socket, AOF with
//! `appendfsync always`) and the npm packages of tests/clients/js.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::Scenario;
use common::server::RedisServer;
use tokio::process::{Child, Command};

/// A config file that makes stranded deliveries come back quickly.
fn fast_redelivery(dir: &Path) -> PathBuf {
    let path = dir.join("tidings.toml");
    std::fs::write(&path, "[queues]\nack_timeout_ms = 1000\n").unwrap();
    path
}

/// Starts `tidings serve --port 0 --redis URL --config FILE` and returns it with its origin.
async fn node(redis: &str, config: &Path) -> (Child, String) {
    node_with(redis, config, &[]).await
}

async fn node_with(redis: &str, config: &Path, extra: &[&str]) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args(["serve", "--port", "0", "--redis", redis, "--config"])
        .arg(config)
        .args(extra);
    common::spawn_serve(&mut command).await
}

async fn nodes(redis: &RedisServer, config: &Path, n: usize) -> (Vec<Child>, Vec<String>) {
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n {
        let (child, url) = node(&redis.url(), config).await;
        children.push(child);
        urls.push(url);
    }
    (children, urls)
}

/// Starts a client scenario of tests/clients/js with the nodes' origins.
fn scenario(script: &str, urls: &[String]) -> Scenario {
    Scenario::start(
        &format!("js/{script}"),
        &urls[0],
        &[("TIDINGS_URLS", urls.join(",").as_str())],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_room_broadcasts_and_durable_topics() {
    let redis = RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let (_nodes, urls) = nodes(&redis, &fast_redelivery(dir.path()), 3).await;
    scenario("cluster.mjs", &urls).passes(90).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_confirmed_message() {
    let redis = RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, urls) = nodes(&redis, &fast_redelivery(dir.path()), 3).await;
    let mut scenario = scenario("cluster-failover.mjs", &urls);
    scenario.cue("KILL", 30).await;
    // SIGKILL: no goodbye to the subscriber, its deliveries stay in flight in Redis.
    nodes[1].start_kill().unwrap();
    nodes[1].wait().await.unwrap();
    scenario.passes(120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_under_load_loses_no_confirmed_message() {
    let mut redis = RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let (_nodes, urls) = nodes(&redis, &fast_redelivery(dir.path()), 2).await;
    let mut scenario = scenario("cluster-redis-outage.mjs", &urls);
    scenario.cue("STOP", 30).await;
    redis.kill();
    // Publishes are refused while Redis is away: the scenario says when it saw the refusal.
    scenario.cue("START", 30).await;
    redis.launch();
    scenario.passes(120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_recovers_on_another_node() {
    let redis = RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = fast_redelivery(dir.path());
    let mut urls = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (child, url) = node_with(&redis.url(), &config, &["--recovery"]).await;
        nodes.push(child);
        urls.push(url);
    }
    scenario("recovery-cluster.mjs", &urls).passes(90).await;
}
