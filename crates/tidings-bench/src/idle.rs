//! Idle connections: how much memory and CPU a server spends per connected, silent client.
//!
//! The clients live in worker processes (`tidings-bench idle-worker`), at most
//! [`PER_WORKER`] each and each worker on its own 127.0.0.x source address: the open-files
//! hard limit here is 20,000 per process, and one source address has ~28,000 ephemeral ports.
//! The server process itself is bound by the same limit, so "as many as the machine allows"
//! means just under 20,000 connections into one server process.
//!
//! `idle-durable` (tidings only): every connection is a durable subscriber with an identity of
//! its own, subscribed to one of [`DURABLE_TOPICS`] topics, and nothing is published. What it
//! should cost is what an idle plain connection costs: no store operation (the claims the
//! server counts in `GET /v1/stats`, read before and after the hold) and no wake-up.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures_util::{SinkExt, StreamExt, stream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_websockets::Message;

use crate::metrics::Record;
use crate::server::{Peer, ServerProc};
use crate::{Ctx, bar, sio};

/// Connections per worker process: well under the 20,000 open-files limit.
pub const PER_WORKER: usize = 5_000;

/// The topics the durable idle subscribers are spread over.
pub const DURABLE_TOPICS: usize = 1_000;

/// What each connection of a worker is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A plain WebSocket, no Socket.IO.
    Bare,
    /// A Socket.IO connection to `/`.
    SocketIo,
    /// A Socket.IO connection with `clientId` `idle-<worker>-<i>`, subscribed to
    /// `idle.<i mod DURABLE_TOPICS>`.
    Durable {
        /// The worker's number.
        worker: usize,
    },
}

impl Kind {
    /// From the worker's flags.
    pub fn from_flags(bare: bool, durable: bool, worker: usize) -> Kind {
        match (bare, durable) {
            (true, _) => Kind::Bare,
            (false, true) => Kind::Durable { worker },
            (false, false) => Kind::SocketIo,
        }
    }
}

/// One connection of kind `kind` (its index `i` within its worker).
async fn open(
    addr: SocketAddr,
    path: &str,
    source: Option<IpAddr>,
    kind: Kind,
    i: usize,
) -> Result<sio::Ws> {
    match kind {
        Kind::Bare => sio::open_ws(addr, path, source).await,
        Kind::SocketIo => sio::connect(addr, path, source, None).await,
        Kind::Durable { worker } => {
            let auth = serde_json::json!({ "clientId": format!("idle-{worker}-{i}") });
            let mut ws = sio::connect(addr, path, source, Some(&auth)).await?;
            let topic = format!("idle.{}", i % DURABLE_TOPICS);
            sio::call_ok(
                &mut ws,
                1,
                "subscribe",
                serde_json::json!({ "topic": topic }),
            )
            .await?;
            Ok(ws)
        }
    }
}

/// The delivery engine's claims so far, from tidings' `GET /v1/stats`; None from a server that
/// does not count them (a tidings before 2026-12-06, measured for comparison).
async fn store_claims(addr: SocketAddr) -> Result<Option<f64>> {
    let body = crate::server::http_get(addr, "/v1/stats").await?;
    let stats: serde_json::Value = serde_json::from_str(&body).context("GET /v1/stats")?;
    Ok(stats.get("storeClaims").and_then(serde_json::Value::as_f64))
}

/// Measures `conns` idle connections to `peer`, held for `hold` after they all connected. With
/// `durable`, then publishes to a topic of its own while the subscribers stay connected (the
/// scale row of the publish table).
pub async fn run(
    ctx: &Ctx,
    peer: Peer,
    conns: usize,
    hold: Duration,
    rep: usize,
    durable: bool,
) -> Result<Vec<Record>> {
    let scenario = if durable { "idle-durable" } else { "idle" };
    let tag = format!("{scenario}{conns}-{}-{rep}", peer.name().replace(' ', "_"));
    let config = durable.then_some(SCALE_RETENTION);
    let server = ServerProc::start_configured(peer, &ctx.programs, &tag, config).await?;
    let result = measure(ctx, peer, conns, hold, &server, durable).await;
    server.stop().await;
    result
}

/// Publishers beside the durable subscribers, and for how long.
const SCALE_PUBLISHERS: usize = 16;
/// The scale check's topic keeps its last 1,000 messages. Unbounded, the second step ran on a
/// store holding the first step's ~200,000 messages too, and its checkpoints wrote them all
/// again: +18 % CPU per publish that came from the order of the steps, not from the
/// subscriptions (BENCHMARKS.md, 2026-12-06 19:55: +3.6 % with this retention, inside the
/// spread of the repetitions).
const SCALE_RETENTION: &str =
    "[[retention.rules]]\npattern = \"bench.scale\"\nmax_messages = 1000\n";
const SCALE_SECS: f64 = 4.0;

async fn measure(
    ctx: &Ctx,
    peer: Peer,
    conns: usize,
    hold: Duration,
    server: &ServerProc,
    durable: bool,
) -> Result<Vec<Record>> {
    let scenario = if durable { "idle-durable" } else { "idle" };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The scale check's baseline: the same publishing on the same server before any subscriber
    // exists (before the RSS baseline, so its retained messages do not count per connection).
    let scale_before = if durable {
        let rec = crate::durable::publish_beside_subscriptions(
            ctx,
            server,
            0,
            SCALE_PUBLISHERS,
            SCALE_SECS,
        )
        .await?;
        Some(rec)
    } else {
        None
    };
    let base = server.usage()?;
    let connecting = std::time::Instant::now();
    let workers = conns.div_ceil(PER_WORKER);
    let pb = bar(
        ctx,
        conns as u64,
        &format!("{scenario} {conns} {}: connecting", peer.name()),
    );
    let mut children = Vec::new();
    let mut reports = Vec::new();
    for w in 0..workers {
        let count = (conns - w * PER_WORKER).min(PER_WORKER);
        let src = ctx.source(w * PER_WORKER).map(|ip| ip.to_string());
        let mut cmd = Command::new(&ctx.programs.bench);
        cmd.arg("idle-worker")
            .args(["--addr", &server.addr.to_string(), "--path", &server.path])
            .args(["--count", &count.to_string()])
            .args(["--hold-secs", &(hold.as_secs() + 120).to_string()]);
        if let Some(src) = src {
            cmd.args(["--source", &src]);
        }
        if !peer.is_socketio() {
            cmd.arg("--bare");
        }
        if durable {
            cmd.args(["--durable", "--worker", &w.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start idle-worker")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let pb = pb.clone();
        reports.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // `progress N` while connecting, then `connected OK FAILED`.
                if let Some(n) = line.strip_prefix("progress ") {
                    pb.inc(n.trim().parse().unwrap_or(0));
                } else if let Some(rest) = line.strip_prefix("connected ") {
                    let mut it = rest.split_whitespace().map(|v| v.parse::<usize>().ok());
                    return (it.next().flatten(), it.next().flatten());
                }
            }
            (None, None)
        }));
        children.push(child);
    }
    let mut connected = 0usize;
    let mut failed = 0usize;
    for report in reports {
        let (ok, bad) = tokio::time::timeout(Duration::from_secs(300), report)
            .await
            .map_err(|_| anyhow!("idle workers did not finish connecting within 300 s"))??;
        connected += ok.unwrap_or(0);
        failed += bad.unwrap_or(0);
    }
    pb.finish_and_clear();
    // Connections (WebSocket handshake + Socket.IO CONNECT answered) per second, from the
    // start of the workers to the last one's report: the connect rate.
    let connect_secs = connecting.elapsed().as_secs_f64();
    // Let the server settle (buffers from the handshakes freed), then hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let claims_before = if durable {
        store_claims(server.addr).await?
    } else {
        None
    };
    let loaded = server.usage()?;
    tokio::time::sleep(hold).await;
    let held = server.usage()?;
    let claims = match claims_before {
        Some(before) => store_claims(server.addr).await?.map(|after| after - before),
        None => None,
    };
    let scale = if durable {
        let rec = crate::durable::publish_beside_subscriptions(
            ctx,
            server,
            connected,
            SCALE_PUBLISHERS,
            SCALE_SECS,
        )
        .await?;
        Some(rec)
    } else {
        None
    };
    stop_workers(children).await;

    let n = connected.max(1) as f64;
    let mut rec = Record::new(scenario, conns.to_string(), conns as u64, peer);
    if let Some(claims) = claims {
        rec.set("store_claims_while_idle", claims);
    }
    rec.set("conns", connected as f64)
        .set("connects_per_s", connected as f64 / connect_secs.max(1e-6))
        .set("failed", failed as f64)
        .set("completeness", connected as f64 / conns as f64)
        .set("rss_base_mib", base.rss_kib as f64 / 1024.0)
        .set("rss_mib", loaded.rss_kib as f64 / 1024.0)
        .set(
            "rss_kib_per_conn",
            (loaded.rss_kib.saturating_sub(base.rss_kib)) as f64 / n,
        )
        .set(
            "connect_cpu_ms_per_conn",
            (loaded.cpu_secs - base.cpu_secs) * 1e3 / n,
        )
        .set(
            "idle_cpu_us_per_conn_s",
            (held.cpu_secs - loaded.cpu_secs) * 1e6 / n / hold.as_secs_f64(),
        );
    ctx.say(format!(
        "  {scenario:<12} {:<14} {connected}/{conns} connected  RSS {:.1} KiB/conn  idle CPU {:.2} µs/conn/s{}",
        peer.name(),
        rec.values.get("rss_kib_per_conn").copied().unwrap_or(0.0),
        rec.values.get("idle_cpu_us_per_conn_s").copied().unwrap_or(0.0),
        claims.map_or(String::new(), |c| format!("  store claims while idle {c:.0}")),
    ))?;
    Ok(std::iter::once(rec)
        .chain(scale_before)
        .chain(scale)
        .collect())
}

async fn stop_workers(children: Vec<Child>) {
    for mut child in children {
        // Closing stdin tells the worker to close its connections and exit.
        drop(child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// The worker process: connects `count` clients from `source`, reports, holds them (answering
/// pings) until stdin closes or `hold` passes.
pub async fn worker(
    addr: SocketAddr,
    path: String,
    count: usize,
    source: Option<IpAddr>,
    kind: Kind,
    hold: Duration,
) -> Result<()> {
    let mut ok = Vec::new();
    let mut failed = 0usize;
    let mut done = 0usize;
    let mut attempts = stream::iter(0..count)
        .map(|i| {
            let path = path.clone();
            async move { open(addr, &path, source, kind, i).await }
        })
        .buffer_unordered(128);
    let mut first_error = None;
    while let Some(result) = attempts.next().await {
        match result {
            Ok(ws) => ok.push(ws),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        done += 1;
        if done.is_multiple_of(250) {
            println!("progress 250");
        }
    }
    if let Some(e) = first_error {
        eprintln!("idle-worker: {failed} connections failed; first: {e:#}");
    }
    println!("connected {} {failed}", ok.len());
    let mut tasks = tokio::task::JoinSet::new();
    for mut ws in ok {
        tasks.spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if msg.as_text() == Some("2") && ws.send(Message::text("3")).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(hold, async {
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    tasks.shutdown().await;
    Ok(())
}
