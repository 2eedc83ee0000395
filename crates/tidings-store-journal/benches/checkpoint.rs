//! The pause a checkpoint causes: confirmed appends' latency while the journal snapshots a
//! large retained state. Results and how to read them: BENCHMARKS.md.
//!
//! ```sh
//! cargo bench -p tidings-store-journal --bench checkpoint            # 2,000,000 retained
//! TIDINGS_BENCH_RETAINED=500000 cargo bench -p tidings-store-journal --bench checkpoint
//! ```
//!
//! It fills a journal with `TIDINGS_BENCH_RETAINED` messages of 256 bytes (durability `os`,
//! then reopened `full`), then runs 64 appenders, each awaiting its confirmed append before
//! the next, until the journal has taken two more checkpoints (at most 120 s). It prints the
//! appends' latency percentiles and maximum, and the slowest appends around each checkpoint;
//! the journal's own log line for each checkpoint (`locked_ms`, `write_ms`, `total_ms`) goes
//! to stderr. Last, the process's peak resident memory (`VmHWM`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tidings_core::store::{NewMessage, Store, Topic};
use tidings_store_journal::{Durability, JournalConfig, JournalStore};
use tokio::task::JoinSet;

const APPENDERS: usize = 64;
const FILL_APPENDERS: usize = 256;
const MAX_RUN: Duration = Duration::from_secs(120);
const DEDUP_WINDOW: u64 = 24 * 3600 * 1000;

fn message() -> NewMessage {
    NewMessage {
        event: "e".into(),
        data: format!("\"{}\"", "x".repeat(254)),
        attachments: Vec::new(),
        key: None,
        published_at: 1,
    }
}

fn open(dir: &std::path::Path, durability: Durability) -> Arc<JournalStore> {
    let config = JournalConfig {
        durability,
        ..JournalConfig::default()
    };
    Arc::new(JournalStore::open(dir, config).unwrap())
}

/// Appends `total` messages from `FILL_APPENDERS` tasks.
async fn fill(store: &Arc<JournalStore>, topic: &Topic, total: usize) {
    let mut tasks = JoinSet::new();
    for i in 0..FILL_APPENDERS {
        let (store, topic) = (Arc::clone(store), topic.clone());
        let n = total / FILL_APPENDERS + usize::from(i < total % FILL_APPENDERS);
        tasks.spawn(async move {
            for _ in 0..n {
                store.append(&topic, message(), DEDUP_WINDOW).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    tracing_subscriber_init();
    let retained: usize = std::env::var("TIDINGS_BENCH_RETAINED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let topic = Topic::new("bench").unwrap();
    runtime.block_on(async {
        let started = Instant::now();
        let store = open(&dir, Durability::Os);
        fill(&store, &topic, retained).await;
        drop(store);
        let store = open(&dir, Durability::Full);
        eprintln!(
            "filled {retained} messages and reopened in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let checkpoints_before = store.stats().checkpoints;
        let stop = Arc::new(AtomicBool::new(false));
        let run_started = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..APPENDERS {
            let (store, topic, stop) = (Arc::clone(&store), topic.clone(), Arc::clone(&stop));
            tasks.spawn(async move {
                // (sent at, latency) of every append.
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    store.append(&topic, message(), DEDUP_WINDOW).await.unwrap();
                    samples.push((sent, sent.elapsed()));
                }
                samples
            });
        }
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let done = store.stats().checkpoints - checkpoints_before >= 2;
            if done || run_started.elapsed() > MAX_RUN {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        while let Some(r) = tasks.join_next().await {
            samples.extend(r.unwrap());
        }
        let elapsed = run_started.elapsed();
        let checkpoints = store.stats().checkpoints - checkpoints_before;
        let mut latencies: Vec<Duration> = samples.iter().map(|(_, l)| *l).collect();
        latencies.sort_unstable();
        println!(
            "retained {retained} + {} appended by {APPENDERS} appenders in {:.1} s ({:.0}/s), {checkpoints} checkpoints",
            latencies.len(),
            elapsed.as_secs_f64(),
            latencies.len() as f64 / elapsed.as_secs_f64()
        );
        println!(
            "confirm latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2}",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(percentile(&latencies, 0.999)),
            ms(percentile(&latencies, 0.9999)),
            ms(percentile(&latencies, 1.0)),
        );
        // The appends slower than 100 ms, by the second of the run they were sent in (to
        // set beside the checkpoints' log lines), with the slowest of each second.
        let mut slow = std::collections::BTreeMap::<u64, (usize, f64)>::new();
        for (sent, l) in &samples {
            if *l > Duration::from_millis(100) {
                let second = sent.duration_since(run_started).as_secs();
                let e = slow.entry(second).or_default();
                e.0 += 1;
                e.1 = e.1.max(ms(*l));
            }
        }
        println!(
            "appends over 100 ms: {}",
            slow.values().map(|(n, _)| n).sum::<usize>()
        );
        for (second, (n, worst)) in &slow {
            println!("  sent in second {second}: {n}, the slowest {worst:.0} ms");
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(peak) = status.lines().find(|l| l.starts_with("VmHWM")) {
            println!("peak memory: {}", peak.trim_start_matches("VmHWM:").trim());
        }
    });
}

/// The journal logs each checkpoint at `info`; show those lines on stderr.
fn tracing_subscriber_init() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .try_init();
}
