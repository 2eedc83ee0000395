//! Redis servers for the tests: a private `redis-server` on a free port of 127.0.0.1 (killed
//! when the last store using it is dropped), or the one at `TIDINGS_REDIS_URL`. Every store
//! gets a random key prefix, so tests share a server without seeing each other.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tidings_store_redis::{RedisConfig, RedisStore};
use tidings_store_tests::WithGuard;

/// A `redis-server` process this test started; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    durable: bool,
    dir: tempfile::TempDir,
}

const NO_SERVER: &str = "the redis store tests need a Redis: set TIDINGS_REDIS_URL=redis://… or \
     put redis-server on PATH (apt-get install redis-server, or scripts/redis-test-server)";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
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
        Self::spawn(free_port(), false, tempfile::tempdir().unwrap())
    }

    /// A server with `appendonly yes` and `appendfsync always` in a temporary directory.
    pub fn start_durable() -> RedisServer {
        Self::spawn(free_port(), true, tempfile::tempdir().unwrap())
    }

    fn spawn(port: u16, durable: bool, dir: tempfile::TempDir) -> RedisServer {
        assert!(have_redis_server(), "{NO_SERVER}");
        let mut server = RedisServer {
            child: None,
            port,
            durable,
            dir,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
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
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server exited with {status}; log: {}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        // A durable server may still be loading its AOF: wait until it answers.
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            let ready = client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ready.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server does not answer");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no chance to flush anything it has not fsynced).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory.
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

/// What keeps a test's Redis usable: the shared private server, or, with `TIDINGS_REDIS_URL`,
/// the prefix to delete when the test ends.
#[derive(Debug)]
pub enum Guard {
    /// A private server, shared by the tests running at the same time.
    Private(Arc<RedisServer>),
    /// An external server: the test's keys are deleted on drop.
    External { url: String, prefix: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::External { url, prefix } = self {
            let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
            else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
    }
}

static SHARED: Mutex<Weak<RedisServer>> = Mutex::new(Weak::new());

/// The private server shared by the stores alive now, started if there is none.
fn shared_server() -> Arc<RedisServer> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = shared.upgrade() {
        return server;
    }
    let server = Arc::new(RedisServer::start());
    *shared = Arc::downgrade(&server);
    server
}

/// A random key prefix.
pub fn random_prefix() -> String {
    format!("tidings-test:{:016x}:", fastrand::u64(..))
}

/// A store on a fresh prefix, configured with `tune`.
pub fn store_with(tune: impl FnOnce(&mut RedisConfig)) -> WithGuard<RedisStore, Guard> {
    let prefix = random_prefix();
    let (url, guard) = match std::env::var("TIDINGS_REDIS_URL") {
        Ok(url) if !url.is_empty() => (
            url.clone(),
            Guard::External {
                url,
                prefix: prefix.clone(),
            },
        ),
        _ => {
            let server = shared_server();
            (server.url(), Guard::Private(server))
        }
    };
    let mut config = RedisConfig {
        url,
        prefix,
        ..RedisConfig::default()
    };
    tune(&mut config);
    let store = RedisStore::open(config).expect("valid redis config");
    WithGuard { store, guard }
}

/// A store for the conformance suite: a single server process, so `release_in_flight`
/// releases (see the crate docs on shared stores).
pub fn conformance_store() -> WithGuard<RedisStore, Guard> {
    store_with(|c| c.is_shared = false)
}
