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

/// Starts a `--recovery` node on `port` (0: a free one). A restart's port was free a moment
/// ago, but the kernel may have given it to an outgoing connection meanwhile: such a start is
/// made again, at most 50 times 100 ms apart.
async fn recovery_node(redis: &str, config: &Path, port: u16) -> (Child, String) {
    for _ in 0..50 {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
        command
            .args(["serve", "--recovery", "--redis", redis, "--port"])
            .arg(port.to_string())
            .arg("--config")
            .arg(config)
            .kill_on_drop(true);
        match common::try_spawn_serve(&mut command).await {
            Ok(started) => return started,
            Err(stderr) if port != 0 && stderr.contains("in use") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(stderr) => panic!("tidings serve exited before listening:\n{stderr}"),
        }
    }
    panic!("port {port} still in use after 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_recovers_on_another_node_after_kill_9() {
    let redis = RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = fast_redelivery(dir.path());
    let mut urls = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let (child, url) = recovery_node(&redis.url(), &config, 0).await;
        nodes.push(child);
        urls.push(url);
    }
    let mut scenario = scenario("recovery-cluster-crash.mjs", &urls);
    scenario.cue("KILL", 30).await;
    nodes[0].start_kill().unwrap();
    nodes[0].wait().await.unwrap();
    scenario.cue("RESTART", 30).await;
    let port: u16 = urls[0].rsplit(':').next().unwrap().parse().unwrap();
    let (_restarted, _) = recovery_node(&redis.url(), &config, port).await;
    scenario.passes(90).await;
}
