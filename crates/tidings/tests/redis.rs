//! `tidings serve --redis URL`: two servers sharing one private `redis-server` share topics,
//! idempotency keys and queues. Needs `redis-server` on PATH (`apt-get install redis-server`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A private redis-server on a free port; killed on drop.
struct Redis {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs redis-server on PATH (apt-get install redis-server): {e}")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Redis {
        child,
        url: format!("redis://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// Starts `tidings serve --port 0 --redis URL` and returns it with its origin.
async fn serve(redis: &str) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command.args(["serve", "--port", "0", "--redis", redis]);
    common::spawn_serve(&mut command).await
}

/// Runs the CLI and returns its standard output.
async fn cli(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("the CLI timed out")
        .unwrap();
    assert!(
        output.status.success(),
        "tidings {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn two_servers_share_topics_and_queues_through_redis() {
    let redis = start_redis();
    let (_a, a) = serve(&redis.url).await;
    let (_b, b) = serve(&redis.url).await;

    let first = cli(&[
        "publish",
        "--url",
        &a,
        "--key",
        "k1",
        "pickup",
        "ready",
        r#"{"n":1}"#,
    ])
    .await;
    assert!(
        first.contains(r#""offset":1"#) && first.contains(r#""duplicate":false"#),
        "{first}"
    );
    // The same key on the other server: deduplicated across servers.
    let again = cli(&[
        "publish",
        "--url",
        &b,
        "--key",
        "k1",
        "pickup",
        "ready",
        r#"{"n":1}"#,
    ])
    .await;
    assert!(
        again.contains(r#""offset":1"#) && again.contains(r#""duplicate":true"#),
        "{again}"
    );
    cli(&["publish", "--url", &a, "pickup", "ready", r#"{"n":2}"#]).await;

    // Published on one server, delivered (and acknowledged) through the other.
    let listened = cli(&[
        "listen", "--url", &b, "--group", "workers", "--from", "earliest", "--count", "2", "pickup",
    ])
    .await;
    let offsets: Vec<&str> = listened
        .lines()
        .filter_map(|l| l.split(r#""offset":"#).nth(1))
        .map(|rest| rest.split(',').next().unwrap_or(""))
        .collect();
    assert_eq!(offsets, ["1", "2"], "{listened}");

    let topics = cli(&["topics", "--url", &a]).await;
    assert!(topics.contains("group:workers"), "{topics}");
}
