//! Several `tidings serve --redis` nodes on one real `redis-server`, driven by the unmodified
//! `socket.io-client`: room broadcasts and durable topics across nodes, a node killed with
//! SIGKILL while messages flow, Redis stopped and restarted under load. Needs `redis-server`
//! on PATH (scripts/test installs it) and the npm packages of tests/clients/js.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A private redis-server (AOF, `appendfsync always`) on a fixed port, so that it can be
/// stopped and started again where the nodes expect it; killed on drop.
struct Redis {
    child: Option<std::process::Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            child: None,
            port,
            dir,
        };
        redis.launch();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs redis-server on PATH (apt-get install redis-server): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it (SIGKILL: what `appendfsync always` acknowledged is in the AOF).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

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

async fn nodes(redis: &Redis, config: &Path, n: usize) -> (Vec<Child>, Vec<String>) {
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n {
        let (child, url) = node(&redis.url(), config).await;
        children.push(child);
        urls.push(url);
    }
    (children, urls)
}

/// Starts a client scenario of tests/clients/js with the nodes' origins; stdout is piped so
/// that the test can follow the scenario's cues.
fn scenario(script: &str, urls: &[String]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(std::env::var("TIDINGS_NODE").unwrap_or_else(|_| "node".into()))
        .arg(repo_root().join("tests/clients/js").join(script))
        .env("TIDINGS_URL", &urls[0])
        .env("TIDINGS_URLS", urls.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Waits for the scenario to print `cue`, failing if it ends first or takes over `within`.
async fn await_cue(lines: &mut Lines<BufReader<ChildStdout>>, cue: &str, within: Duration) {
    let found = tokio::time::timeout(within, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == cue {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or_else(|_| panic!("the scenario did not print {cue} within {within:?}"));
    assert!(found, "the scenario ended before printing {cue}");
}

/// Waits for the scenario to end and asserts it passed.
async fn passes(script: &str, mut child: Child, within: Duration) {
    let status = tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{script} still running after {within:?}"))
        .unwrap();
    assert!(
        status.success(),
        "{script} failed ({status}); see its stderr above"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_room_broadcasts_and_durable_topics() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (_nodes, urls) = nodes(&redis, &fast_redelivery(dir.path()), 3).await;
    let (child, _lines) = scenario("cluster.mjs", &urls);
    passes("cluster.mjs", child, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_confirmed_message() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, urls) = nodes(&redis, &fast_redelivery(dir.path()), 3).await;
    let (child, mut lines) = scenario("cluster-failover.mjs", &urls);
    await_cue(&mut lines, "KILL", Duration::from_secs(30)).await;
    // SIGKILL: no goodbye to the subscriber, its deliveries stay in flight in Redis.
    nodes[1].start_kill().unwrap();
    nodes[1].wait().await.unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    passes("cluster-failover.mjs", child, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_under_load_loses_no_confirmed_message() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (_nodes, urls) = nodes(&redis, &fast_redelivery(dir.path()), 2).await;
    let (child, mut lines) = scenario("cluster-redis-outage.mjs", &urls);
    await_cue(&mut lines, "STOP", Duration::from_secs(30)).await;
    redis.kill();
    // Publishes are refused while Redis is away: the scenario says when it saw the refusal.
    await_cue(&mut lines, "START", Duration::from_secs(30)).await;
    redis.launch();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    passes("cluster-redis-outage.mjs", child, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_recovers_on_another_node() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let config = fast_redelivery(dir.path());
    let mut urls = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (child, url) = node_with(&redis.url(), &config, &["--recovery"]).await;
        nodes.push(child);
        urls.push(url);
    }
    let (child, _lines) = scenario("recovery-cluster.mjs", &urls);
    passes("recovery-cluster.mjs", child, Duration::from_secs(90)).await;
}
