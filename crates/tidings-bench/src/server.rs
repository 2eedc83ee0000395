//! Starting the servers under test as separate processes, and reading their cost from /proc.
//!
//! Every server — tidings, Node socket.io, socketioxide, the bare WebSocket server — runs in a
//! process of its own, so its CPU time and RSS can be read from `/proc/<pid>` apart from the
//! load generator's, which shares the same two cores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// `tidings serve`, the release binary.
    Tidings,
    /// Node socket.io 4.8 (`node/server.mjs`).
    Node,
    /// socketioxide 0.18 in this crate (`tidings-bench serve-socketioxide`).
    Socketioxide,
    /// A WebSocket broadcast server without Socket.IO framing (`tidings-bench serve-ws`).
    BareWs,
    /// redis-server with `appendfsync always` (durable scenarios only).
    Redis,
    /// `tidings serve --redis` with Node's `@socket.io/redis-emitter` form as the publisher
    /// (the `fanout` scenario only): a Node service reaching tidings' clients through Redis.
    Emitter,
    /// `tidings serve --redis` (durable scenarios): durable topics in the same kind of Redis
    /// as [`Peer::Redis`] (AOF, `appendfsync always`), to compare with a direct Redis client.
    RedisMode,
}

impl Peer {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Tidings => "tidings",
            Peer::Node => "node socket.io",
            Peer::Socketioxide => "socketioxide",
            Peer::BareWs => "bare ws",
            Peer::Redis => "redis XADD",
            Peer::Emitter => "tidings (emitter)",
            Peer::RedisMode => "tidings --redis",
        }
    }

    /// Whether the peer speaks Socket.IO (else: the bare protocol of [`crate::bare_ws`]).
    pub fn is_socketio(self) -> bool {
        matches!(
            self,
            Peer::Tidings | Peer::Node | Peer::Socketioxide | Peer::Emitter | Peer::RedisMode
        )
    }
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    /// `target/release/tidings`.
    pub tidings: PathBuf,
    /// This executable (for the Rust peers).
    pub bench: PathBuf,
    /// `crates/tidings-bench/node/server.mjs`, with `node_modules` installed beside it.
    pub node_script: PathBuf,
    /// The `node` executable.
    pub node: PathBuf,
    /// Directory for server logs.
    pub log_dir: PathBuf,
}

/// A running server process.
pub struct ServerProc {
    child: Child,
    /// Its process id, for `/proc`.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The HTTP path of its endpoint (`/socket.io/`, or `/` for the bare server).
    pub path: String,
    /// The data directory (tidings), removed on drop.
    _data: Option<tempfile::TempDir>,
    /// The Redis of [`Peer::Emitter`], whose URL the publisher uses.
    pub redis: Option<RedisProc>,
}

impl ServerProc {
    /// Starts `peer` on 127.0.0.1 with a free port and waits for its `listening on` line.
    pub async fn start(peer: Peer, programs: &Programs, tag: &str) -> Result<ServerProc> {
        ServerProc::start_configured(peer, programs, tag, None).await
    }

    /// [`ServerProc::start`], and tidings with its embedded store gets `config` (TOML) as its
    /// `--config` file.
    pub async fn start_configured(
        peer: Peer,
        programs: &Programs,
        tag: &str,
        config: Option<&str>,
    ) -> Result<ServerProc> {
        let mut data = None;
        let mut redis = None;
        let mut cmd = match peer {
            Peer::Emitter | Peer::RedisMode => {
                let proc = RedisProc::start(&programs.log_dir).await?;
                let mut cmd = Command::new(&programs.tidings);
                cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--redis"])
                    .arg(&proc.url)
                    .env("RUST_LOG", "warn");
                redis = Some(proc);
                cmd
            }
            Peer::Tidings => {
                let dir = tempfile::Builder::new()
                    .prefix("tidings-bench-")
                    .tempdir_in(&programs.log_dir)
                    .context("data dir")?;
                let mut cmd = Command::new(&programs.tidings);
                cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
                    .arg(dir.path())
                    .env("RUST_LOG", "warn");
                if let Some(config) = config {
                    let path = programs.log_dir.join(format!("{tag}.toml"));
                    std::fs::write(&path, config).context("server config file")?;
                    cmd.arg("--config").arg(path);
                }
                data = Some(dir);
                cmd
            }
            Peer::Node => {
                let mut cmd = Command::new(&programs.node);
                cmd.arg(&programs.node_script).args(["--port", "0"]);
                cmd
            }
            Peer::Socketioxide => {
                let mut cmd = Command::new(&programs.bench);
                cmd.args(["serve-socketioxide", "--port", "0"]);
                cmd
            }
            Peer::BareWs => {
                let mut cmd = Command::new(&programs.bench);
                cmd.args(["serve-ws", "--port", "0"]);
                cmd
            }
            Peer::Redis => bail!("redis is started by RedisProc"),
        };
        let log = std::fs::File::create(programs.log_dir.join(format!("{tag}.log")))
            .context("server log file")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", peer.name()))?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("listening on") {
                    return Ok::<_, std::io::Error>(Some(line));
                }
            }
            Ok(None)
        })
        .await
        .map_err(|_| anyhow!("{} did not say `listening on` within 60 s", peer.name()))??
        .ok_or_else(|| anyhow!("{} exited before listening", peer.name()))?;
        // Keep draining stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (addr, path) = parse_listening(&line)?;
        Ok(ServerProc {
            child,
            pid,
            addr,
            path,
            _data: data,
            redis,
        })
    }

    /// The server's cost so far.
    pub fn usage(&self) -> Result<Usage> {
        Usage::of(self.pid)
    }

    /// Stops the server (SIGKILL: nothing of a benchmark server's state is kept).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        if let Some(redis) = self.redis.take() {
            redis.stop().await;
        }
    }
}

/// `listening on http://127.0.0.1:PORT/socket.io/` → (address, path).
/// The body of `GET path` from tidings' HTTP API at `addr` (HTTP/1.0, no client library: the
/// bench reads two counters with it).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| anyhow!("GET {path} timed out"))??;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .ok_or_else(|| anyhow!("GET {path}: no body"))
}

/// The embedded store's fsyncs so far (`tidings_store_fsync_seconds_count` in `/metrics`);
/// None when the server does not count them (Redis mode, or a failed scrape: the figure is a
/// diagnostic, never worth failing a run for).
pub async fn store_fsyncs(addr: SocketAddr) -> Option<f64> {
    let metrics = http_get(addr, "/metrics").await.ok()?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tidings_store_fsync_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
}

fn parse_listening(line: &str) -> Result<(SocketAddr, String)> {
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| anyhow!("no URL in {line:?}"))?;
    let rest = &url["http://".len()..];
    let slash = rest.find('/').unwrap_or(rest.len());
    let addr: SocketAddr = rest[..slash]
        .parse()
        .with_context(|| format!("address in {line:?}"))?;
    let path = if slash < rest.len() {
        rest[slash..].to_owned()
    } else {
        "/".to_owned()
    };
    Ok((addr, path))
}

/// CPU time and resident memory of one process, from `/proc/<pid>/stat` and `/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Resident set size in KiB (VmRSS).
    pub rss_kib: u64,
}

impl Usage {
    /// Reads the usage of `pid`.
    pub fn of(pid: u32) -> Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) start at field 3 (`state`):
        // utime and stime are fields 14 and 15, so indexes 11 and 12 here.
        let after = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> Result<f64> {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .ok_or_else(|| anyhow!("no field {i} in /proc/{pid}/stat"))
        };
        let cpu_secs = (ticks(11)? + ticks(12)?) / clock_ticks();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Usage { cpu_secs, rss_kib })
    }
}

/// CPU seconds the whole machine spent busy since boot (all cores; `/proc/stat` minus idle and
/// iowait). Taken around a step and minus the server's and the generator's share, it shows
/// how much of the machine other processes (other engineers' builds, here) took meanwhile.
pub fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let fields: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let busy: f64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .take(8)
        .map(|(_, v)| v)
        .sum();
    busy / clock_ticks()
}

/// Clock ticks per second for /proc times (`getconf CLK_TCK`; 100 on every Linux we run on).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A private redis-server (AOF, `appendfsync always`) on a free port, for the durable
/// reference; its directory is removed on drop.
pub struct RedisProc {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl RedisProc {
    /// Starts redis-server and waits until it answers.
    pub async fn start(log_dir: &std::path::Path) -> Result<RedisProc> {
        let dir = tempfile::Builder::new()
            .prefix("redis-bench-")
            .tempdir_in(log_dir)
            .context("redis dir")?;
        let port = free_port()?;
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--protected-mode", "no", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start redis-server (apt-get install redis-server)")?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str())?;
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(RedisProc {
                    child,
                    pid,
                    url,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.start_kill();
        bail!("redis-server did not answer within 10 s")
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A port that was free a moment ago (redis-server cannot be told to pick one and print it).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("probe port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() -> Result<()> {
        let (addr, path) = parse_listening("listening on http://127.0.0.1:4321/socket.io/")?;
        assert_eq!(addr.port(), 4321);
        assert_eq!(path, "/socket.io/");
        let (_, path) = parse_listening("listening on http://127.0.0.1:9")?;
        assert_eq!(path, "/");
        Ok(())
    }

    #[test]
    fn reads_our_own_usage() -> Result<()> {
        let usage = Usage::of(std::process::id())?;
        assert!(usage.rss_kib > 0);
        Ok(())
    }
}
