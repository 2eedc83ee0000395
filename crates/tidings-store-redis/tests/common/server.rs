//! A private `redis-server` for one test, on a unix socket in its own temporary directory and
//! never on TCP (`--port 0`). A free TCP port picked by binding and dropping a listener can be
//! taken by another process before redis-server binds it, and then the readiness check talks
//! to that process; a socket path in a private directory cannot be taken, answers only the
//! process started here, and is where the clients expect it after a restart.
//!
//! Shared by the tests of tidings-store-redis, tidings-cluster-redis and tidings (the last two
//! include this file with `#[path]`), so it uses std and `tempfile` only.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start (including loading an AOF) may take.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process this test started; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    durable: bool,
    dir: tempfile::TempDir,
}

/// Is `redis-server` runnable?
pub fn have_redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// An in-memory server (no snapshot, no AOF).
    pub fn start() -> RedisServer {
        Self::spawn(false)
    }

    /// A server with `appendonly yes` and `appendfsync always`.
    pub fn start_durable() -> RedisServer {
        Self::spawn(true)
    }

    fn spawn(durable: bool) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            durable,
            dir: tempfile::tempdir().unwrap(),
        };
        server.launch();
        server
    }

    /// Starts the process (again, after [`RedisServer::kill`]) on the same socket and
    /// directory, and waits until it answers PING.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        // A socket file left by a killed server: gone, so that only the new one can answer.
        let _ = std::fs::remove_file(self.socket());
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700"])
            .args(["--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"]);
        if self.durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs redis-server on PATH (apt-get install redis-server, or \
                     scripts/redis-test-server): {e}"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server exited with {status}; log:\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            // While a durable server loads its AOF it answers `-LOADING …`: not ready yet.
            if self.ping().as_deref() == Some("+PONG") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on {} within {START_TIMEOUT:?}; log:\n{}",
                self.socket().display(),
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first line of the answer to PING, if the socket takes a connection.
    fn ping(&self) -> Option<String> {
        let mut stream = UnixStream::connect(self.socket()).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(b"PING\r\n").ok()?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n") && answer.len() < 256 {
            stream.read_exact(&mut byte).ok()?;
            answer.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&answer).trim_end().to_owned())
    }

    /// The unix socket it listens on.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// `unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Its directory (AOF, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Kills it (SIGKILL: no chance to flush anything it has not fsynced).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it again on the same socket and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
