//! `tidings-bench`: the cross-system benchmark of issue 6 — tidings side by side with Node
//! socket.io 4.8, socketioxide 0.18, a bare WebSocket broadcast server and Redis Streams, on the
//! same machine, in the same run, with the load generated here in Rust.
//!
//! Run it through `scripts/bench` (which builds the release binaries, installs the Node peer
//! and raises the open-files limit); `scripts/bench --quick` is the small CI smoke run.
//!
//! Subcommands:
//! - `run`: the orchestrator — starts each server as its own process, drives the scenarios,
//!   prints the summary and appends it to BENCHMARKS.md;
//! - `serve-socketioxide`, `serve-ws`: the Rust peers, as processes of their own so that their
//!   CPU and memory can be read from /proc apart from the generator's;
//! - `idle-worker`: holds idle connections for the idle scenario (the generator is spread over
//!   processes because of the 20,000 open-files limit per process).

mod bare_ws;
mod durable;
mod idle;
mod metrics;
mod report;
mod rooms;
mod server;
mod sio;
mod sioxide;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::metrics::{Clock, Record};
use crate::rooms::RoomSpec;
use crate::server::{Peer, Programs};

#[derive(Parser)]
#[command(about = "Cross-system benchmark harness for tidings")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios against every peer and report.
    Run(RunArgs),
    /// The socketioxide peer server.
    ServeSocketioxide {
        /// Port on 127.0.0.1 (0: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// The bare WebSocket broadcast server.
    ServeWs {
        /// Port on 127.0.0.1 (0: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Hold idle connections (spawned by `run`).
    IdleWorker {
        /// Server address.
        #[arg(long)]
        addr: SocketAddr,
        /// Endpoint path.
        #[arg(long)]
        path: String,
        /// Connections to open.
        #[arg(long)]
        count: usize,
        /// Source address (127.0.0.x).
        #[arg(long)]
        source: Option<IpAddr>,
        /// Plain WebSocket, no Socket.IO handshake.
        #[arg(long)]
        bare: bool,
        /// Durable subscribers: each connection has its own `clientId` and subscribes to one
        /// of 1,000 topics (tidings only).
        #[arg(long)]
        durable: bool,
        /// This worker's number, for unique client ids.
        #[arg(long, default_value_t = 0)]
        worker: usize,
        /// Exit after this long even if stdin stays open.
        #[arg(long, default_value_t = 600)]
        hold_secs: u64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Small smoke run (CI): small counts, one repetition.
    #[arg(long)]
    quick: bool,
    /// Repetitions of each scenario (medians are reported); default 1 quick, 3 full.
    #[arg(long)]
    reps: Option<usize>,
    /// Scenarios to run (comma-separated): idle,idle-durable,fanout,rooms,publish,
    /// fanout-durable,drain.
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Peers (comma-separated): tidings,node,socketioxide,bare,redis,emitter,redis-mode
    /// (emitter: tidings with Node's redis-emitter as the publisher, fan-out only; redis-mode:
    /// `tidings serve --redis`, durable scenarios only).
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// The tidings binary.
    #[arg(long, default_value = "target/release/tidings")]
    tidings: PathBuf,
    /// The Node peer script (node_modules installed beside it).
    #[arg(long, default_value = "crates/tidings-bench/node/server.mjs")]
    node_script: PathBuf,
    /// The node executable.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// Where to append the results (markdown).
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Do not append to `--out`; print only.
    #[arg(long)]
    no_append: bool,
    /// Directory for server logs and data.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Source addresses 127.0.0.2 … 127.0.0.(1+N) for the clients.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// The command line to record (scripts/bench passes its own).
    #[arg(long, default_value = "")]
    command_line: String,
    /// Machine/version notes to record (scripts/bench collects them).
    #[arg(long, default_value = "")]
    environment: String,
    /// The largest connection count for the idle "max" step (defaults to the open-files
    /// hard limit minus 500: the server process is bound by it too).
    #[arg(long)]
    idle_max: Option<usize>,
    /// The backlog of the drain scenario, in messages (default 1,000,000; 5,000 with
    /// `--quick`): a smaller one keeps an A/B run of the drain short.
    #[arg(long)]
    drain_messages: Option<u64>,
}

/// What every scenario needs.
pub struct Ctx {
    programs: Programs,
    sources: Vec<IpAddr>,
    clock: Clock,
    progress: MultiProgress,
}

impl Ctx {
    /// The source address for client `i`: blocks of 5,000 clients per address.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        Some(self.sources[(i / idle::PER_WORKER) % self.sources.len()])
    }

    /// Prints a result line above the progress bars, or on stderr when they are hidden (not a
    /// terminal, as in CI), where indicatif would drop it.
    pub fn say(&self, line: String) -> std::io::Result<()> {
        if self.progress.is_hidden() {
            eprintln!("{line}");
            Ok(())
        } else {
            self.progress.println(line)
        }
    }
}

/// A progress bar under the run's MultiProgress (hidden when stderr is not a terminal).
pub fn bar(ctx: &Ctx, len: u64, msg: &str) -> ProgressBar {
    let pb = ctx.progress.add(ProgressBar::new(len));
    let style = ProgressStyle::with_template(
        "{spinner} {msg:<40} [{bar:30}] {pos}/{len} {per_sec} ({elapsed})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn main() {
    // Errors are printed as one chain, not with a backtrace: they are about the run (a peer
    // that would not start, a failed scenario), not about this program.
    if let Err(e) = real_main() {
        eprintln!("tidings-bench: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // The peers and workers get a 2-thread runtime: the machine has two cores, like the
        // default for `tidings serve` here, so no system gets more threads than another.
        Cmd::ServeSocketioxide { port } => runtime()?.block_on(sioxide::serve(port)),
        Cmd::ServeWs { port } => runtime()?.block_on(bare_ws::serve(port)),
        Cmd::IdleWorker {
            addr,
            path,
            count,
            source,
            bare,
            durable,
            worker,
            hold_secs,
        } => runtime()?.block_on(idle::worker(
            addr,
            path,
            count,
            source,
            idle::Kind::from_flags(bare, durable, worker),
            Duration::from_secs(hold_secs),
        )),
        Cmd::Run(args) => runtime()?.block_on(run(args)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// Sizes of one run.
struct Plan {
    reps: usize,
    idle: Vec<(usize, Duration, usize)>,
    /// Connected durable subscribers with nothing to receive (tidings only).
    idle_durable: Vec<(usize, Duration, usize)>,
    fanout: RoomSpec,
    rooms: RoomSpec,
    publish: Vec<usize>,
    /// (publishers, publishes in flight each) of the pipelined publish rows.
    publish_pipelined: Vec<(usize, usize)>,
    publish_secs: f64,
    fanout_subs: usize,
    fanout_pubs: usize,
    drain: u64,
    drain_reps: usize,
}

fn plan(args: &RunArgs) -> Plan {
    let max = args
        .idle_max
        .unwrap_or_else(|| open_files_hard_limit().saturating_sub(500));
    if args.quick {
        Plan {
            reps: args.reps.unwrap_or(1),
            idle: vec![(1_000, Duration::from_secs(2), 1)],
            idle_durable: vec![(200, Duration::from_secs(2), 1)],
            fanout: RoomSpec {
                scenario: "fanout",
                clients: 100,
                rooms: 1,
                rates: vec![100, 1_000],
                step_secs: 1.0,
                drain: Duration::from_secs(2),
            },
            rooms: RoomSpec {
                scenario: "rooms",
                clients: 500,
                rooms: 50,
                rates: vec![500],
                step_secs: 1.0,
                drain: Duration::from_secs(2),
            },
            publish: vec![1, 16],
            publish_pipelined: vec![(4, 8)],
            publish_secs: 1.0,
            fanout_subs: 10,
            fanout_pubs: 16,
            drain: args.drain_messages.unwrap_or(5_000),
            drain_reps: 1,
        }
    } else {
        let reps = args.reps.unwrap_or(3);
        Plan {
            reps,
            idle: vec![
                (10_000, Duration::from_secs(5), reps),
                // Held past one heartbeat round (25 s ping interval for every peer), so the idle
                // CPU figure includes the pings; once, as it is the longest step.
                (max, Duration::from_secs(30), 1),
            ],
            // Spread over two worker processes (5,000 each), as the issue asks; held past one
            // heartbeat round (25 s), so the figure includes the pings, as the idle max step.
            idle_durable: vec![(10_000, Duration::from_secs(30), reps)],
            fanout: RoomSpec {
                scenario: "fanout",
                clients: 1_000,
                rooms: 1,
                rates: vec![50, 100, 200, 500, 1_000, 2_000, 4_000],
                step_secs: 3.0,
                drain: Duration::from_secs(3),
            },
            rooms: RoomSpec {
                scenario: "rooms",
                clients: 10_000,
                rooms: 1_000,
                rates: vec![1_000, 5_000, 10_000, 20_000, 40_000],
                step_secs: 3.0,
                drain: Duration::from_secs(3),
            },
            publish: vec![1, 4, 16, 64, 256],
            publish_pipelined: vec![(16, 16), (64, 16)],
            publish_secs: 4.0,
            fanout_subs: 100,
            fanout_pubs: 64,
            drain: args.drain_messages.unwrap_or(1_000_000),
            drain_reps: 1,
        }
    }
}

/// The open-files hard limit of this process (what `scripts/bench` raised the soft limit to).
fn open_files_hard_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn parse_peers(names: &Option<Vec<String>>) -> Result<Vec<Peer>> {
    let Some(names) = names else {
        return Ok(vec![
            Peer::Tidings,
            Peer::Node,
            Peer::Socketioxide,
            Peer::BareWs,
            Peer::Redis,
            Peer::Emitter,
            Peer::RedisMode,
        ]);
    };
    names
        .iter()
        .map(|n| match n.as_str() {
            "tidings" => Ok(Peer::Tidings),
            "node" => Ok(Peer::Node),
            "socketioxide" => Ok(Peer::Socketioxide),
            "bare" => Ok(Peer::BareWs),
            "redis" => Ok(Peer::Redis),
            "emitter" => Ok(Peer::Emitter),
            "redis-mode" => Ok(Peer::RedisMode),
            other => bail!("unknown peer {other}"),
        })
        .collect()
}

async fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.work_dir).context("work dir")?;
    let work_dir = std::fs::canonicalize(&args.work_dir)?;
    let programs = Programs {
        tidings: std::fs::canonicalize(&args.tidings)
            .with_context(|| format!("tidings binary {}", args.tidings.display()))?,
        bench: std::env::current_exe()?,
        node_script: std::fs::canonicalize(&args.node_script).unwrap_or(args.node_script.clone()),
        node: args.node.clone(),
        log_dir: work_dir.clone(),
    };
    let ctx = Ctx {
        programs,
        sources: (0..args.sources)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)))
            .collect(),
        clock: Clock::new(),
        progress: MultiProgress::new(),
    };
    let plan = plan(&args);
    let peers = parse_peers(&args.peers)?;
    let scenarios: Vec<String> = args.scenarios.clone().unwrap_or_else(|| {
        [
            "idle",
            "idle-durable",
            "fanout",
            "rooms",
            "publish",
            "fanout-durable",
            "drain",
        ]
        .map(str::to_owned)
        .to_vec()
    });
    let wants = |s: &str| scenarios.iter().any(|x| x == s);
    let realtime: Vec<Peer> = peers
        .iter()
        .copied()
        .filter(|p| !matches!(p, Peer::Redis | Peer::Emitter | Peer::RedisMode))
        .collect();
    let durable: Vec<Peer> = peers
        .iter()
        .copied()
        .filter(|p| matches!(p, Peer::Tidings | Peer::Redis | Peer::RedisMode))
        .collect();

    let mut records: Vec<Record> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    // Each scenario × peer × repetition is independent: a failure is recorded and the run goes
    // on, so one broken peer does not hide the others' figures.
    macro_rules! attempt {
        ($rep:expr, $what:expr, $fut:expr) => {
            match $fut.await {
                Ok(r) => records.extend(r.into_iter().map(|mut x: Record| {
                    x.rep = $rep;
                    x
                })),
                Err(e) => {
                    let msg = format!("{}: {e:#}", $what);
                    let _ = ctx.say(format!("  FAILED {msg}"));
                    failures.push(msg);
                }
            }
        };
    }
    for rep in 0..plan.reps {
        let _ = ctx.say(format!("== repetition {} of {}", rep + 1, plan.reps));
        if wants("idle") {
            for &(conns, hold, reps) in &plan.idle {
                if rep >= reps {
                    continue;
                }
                for &peer in &realtime {
                    attempt!(rep, format!("idle {conns} {}", peer.name()), async {
                        idle::run(&ctx, peer, conns, hold, rep, false).await
                    });
                }
            }
        }
        if wants("idle-durable") && peers.contains(&Peer::Tidings) {
            for &(conns, hold, reps) in &plan.idle_durable {
                if rep >= reps {
                    continue;
                }
                attempt!(rep, format!("idle-durable {conns} tidings"), async {
                    idle::run(&ctx, Peer::Tidings, conns, hold, rep, true).await
                });
            }
        }
        for (name, spec) in [("fanout", &plan.fanout), ("rooms", &plan.rooms)] {
            if !wants(name) {
                continue;
            }
            // The emitter publishes to one room: a row of the fan-out table only.
            let emitter =
                (name == "fanout" && peers.contains(&Peer::Emitter)).then_some(Peer::Emitter);
            for &peer in realtime.iter().chain(emitter.iter()) {
                attempt!(
                    rep,
                    format!("{name} {}", peer.name()),
                    rooms::run(&ctx, peer, spec, rep)
                );
            }
        }
        if wants("publish") {
            for &peer in &durable {
                attempt!(
                    rep,
                    format!("publish {}", peer.name()),
                    durable::publish(
                        &ctx,
                        peer,
                        &plan.publish,
                        &plan.publish_pipelined,
                        plan.publish_secs,
                        rep,
                    )
                );
            }
        }
        if wants("fanout-durable") {
            for &peer in &durable {
                attempt!(rep, format!("fanout-durable {}", peer.name()), async {
                    durable::fanout(
                        &ctx,
                        peer,
                        plan.fanout_subs,
                        plan.fanout_pubs,
                        plan.publish_secs,
                        rep,
                    )
                    .await
                    .map(|r| vec![r])
                });
            }
        }
        if wants("drain") && rep < plan.drain_reps {
            for &peer in &durable {
                attempt!(rep, format!("drain {}", peer.name()), async {
                    durable::drain(&ctx, peer, plan.drain, Duration::from_secs(30), rep)
                        .await
                        .map(|r| vec![r])
                });
            }
        }
    }

    let aggs = report::aggregate(&records);
    let mut md = String::new();
    md.push_str(&format!(
        "### {} run, {}\n\n",
        if args.quick { "Quick (smoke)" } else { "Full" },
        utc_now()
    ));
    md.push_str(&format!(
        "Command: `{}`\n\n",
        if args.command_line.is_empty() {
            "tidings-bench run"
        } else {
            &args.command_line
        }
    ));
    if !args.environment.is_empty() {
        md.push_str(&args.environment);
        md.push_str("\n\n");
    }
    md.push_str(&format!(
        "Repetitions: {} (medians shown; idle at max and the drain once). Wall time {:.0} s.\n\n",
        plan.reps,
        started.elapsed().as_secs_f64()
    ));
    md.push_str(&report::tables(&aggs));
    md.push_str(&report::ratios(&aggs, &records));
    md.push_str(&report::targets(&aggs, &records));
    if !failures.is_empty() {
        md.push_str("Failures in this run:\n\n");
        for f in &failures {
            md.push_str(&format!("- {f}\n"));
        }
        md.push('\n');
    }
    println!("\n{md}");
    // The raw records, for anyone who wants more than medians.
    let raw = work_dir.join(format!("records-{}.txt", std::process::id()));
    let mut f = std::fs::File::create(&raw)?;
    for r in &records {
        writeln!(
            f,
            "{} | {} | {} | {:?}",
            r.scenario,
            r.step,
            r.peer.name(),
            r.values
        )?;
    }
    if !args.no_append {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)
            .with_context(|| format!("open {}", args.out.display()))?;
        write!(out, "\n{md}")?;
        eprintln!(
            "appended to {}; raw records in {}",
            args.out.display(),
            raw.display()
        );
    }
    if records.is_empty() {
        bail!("no scenario produced a figure");
    }
    if !failures.is_empty() {
        bail!("{} scenario run(s) failed (listed above)", failures.len());
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate: `date -u` is on every machine this runs on.
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown date".to_owned())
}
