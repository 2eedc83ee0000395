//! JournalStore throughput: confirmed appends under concurrency, claim + settle draining a
//! backlog, and fan-out to 100 subscriptions — the workloads of the SQLite store's bench (whose
//! drain acks one by one; here a claimed batch is settled at once, as the delivery engine now
//! does). Results and how to read them: BENCHMARKS.md.
//!
//! ```sh
//! cargo bench -p tidings-store-journal --bench journal
//! ```
//!
//! Every measured operation goes through the store's public API, from Tokio tasks, as the
//! delivery engine calls it; each iteration is timed with `iter_custom` around the awaited
//! futures. Each benchmark prints the journal's group-commit ratios to stderr: records per
//! write and per fsync.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tidings_core::store::{
    ClaimOptions, NewMessage, Settle, StartFrom, Store, SubscriptionName, Topic,
};
use tidings_store_journal::{Durability, JournalConfig, JournalStats, JournalStore};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// The payload of every message: a JSON string of 256 bytes, quotes included.
fn payload() -> String {
    format!("\"{}\"", "x".repeat(254))
}

const DEDUP_WINDOW: u64 = 24 * 3600 * 1000;
/// Entries per claim, like the engine's default `max_in_flight`.
const CLAIM_MAX: usize = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

type Shared = Arc<JournalStore>;

fn open(dir: &Path, durability: Durability) -> Shared {
    let name = match durability {
        Durability::Full => "full",
        Durability::Os => "os",
    };
    let config = JournalConfig {
        durability,
        ..JournalConfig::default()
    };
    Arc::new(JournalStore::open(&dir.join(name), config).unwrap())
}

fn label(durability: Durability) -> &'static str {
    match durability {
        Durability::Full => "full",
        Durability::Os => "os",
    }
}

fn message(data: &str) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        event: "order".to_owned(),
        data: data.to_owned(),
        key: None,
        published_at: now(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Appends `total` messages from `appenders` concurrent tasks, each awaiting its append before
/// the next one (so at most `appenders` appends are waiting at any time).
async fn append_concurrently(store: &Shared, topic: &Topic, appenders: usize, total: u64) {
    let data = payload();
    let mut tasks = JoinSet::new();
    for i in 0..appenders as u64 {
        let n = total / appenders as u64 + u64::from(i < total % appenders as u64);
        let (store, topic, data) = (store.clone(), topic.clone(), data.clone());
        tasks.spawn(async move {
            for _ in 0..n {
                store
                    .append(&topic, message(&data), DEDUP_WINDOW)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Drains a subscription as the engine's dispatcher does: claims up to 100 entries, then
/// settles them (acks) with one `Store::settle`, until nothing is left. Returns the entries.
async fn drain(store: &Shared, topic: &Topic, sub: &SubscriptionName) -> u64 {
    let mut drained = 0;
    loop {
        let opts = ClaimOptions {
            now: now(),
            max: CLAIM_MAX,
            ack_timeout: 30_000,
            max_deliveries: 10,
        };
        let claimed = store.claim(topic, sub, opts).await.unwrap().claimed;
        if claimed.is_empty() {
            return drained;
        }
        drained += claimed.len() as u64;
        let batch: Vec<Settle> = claimed
            .iter()
            .map(|c| Settle::Ack(c.message.offset))
            .collect();
        let answers = store.settle(topic, sub, &batch).await.unwrap();
        assert!(answers.iter().all(|&settled| settled));
    }
}

fn report(what: &str, before: JournalStats, after: JournalStats) {
    let records = after.records - before.records;
    let writes = (after.writes - before.writes).max(1);
    let fsyncs = (after.fsyncs - before.fsyncs).max(1);
    eprintln!(
        "{what}: {records} records in {writes} writes ({:.1} per write), {fsyncs} fsyncs ({:.1} per fsync)",
        records as f64 / writes as f64,
        records as f64 / fsyncs as f64
    );
}

/// Confirmed appends per second with 1, 16, 64 and 256 appenders waiting on their own append.
fn append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for durability in [Durability::Full, Durability::Os] {
        let store = open(dir.path(), durability);
        for appenders in [1usize, 16, 64, 256] {
            let topic = Topic::new(&format!("append.{}.c{appenders}", label(durability))).unwrap();
            let before = store.stats();
            let id = BenchmarkId::new(label(durability), appenders);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        // At least one message per appender, so each round measures them all.
                        let total = iters.max(appenders as u64);
                        let start = Instant::now();
                        append_concurrently(&store, &topic, appenders, total).await;
                        start.elapsed().mul_f64(iters as f64 / total as f64)
                    })
                })
            });
            report(
                &format!("append/{}/{appenders}", label(durability)),
                before,
                store.stats(),
            );
        }
    }
    group.finish();
}

/// Claim + settle of a 10,000-message backlog by one subscription, 100 entries per claim and
/// per settle (as the delivery engine batches them).
fn claim_ack(c: &mut Criterion) {
    const BACKLOG: u64 = 10_000;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("claim_ack");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(BACKLOG));
    for durability in [Durability::Full, Durability::Os] {
        let store = open(dir.path(), durability);
        let topic = Topic::new("backlog").unwrap();
        // The backlog is written once; each round drains it through a new subscription that
        // starts at the earliest message (the messages stay retained).
        rt.block_on(append_concurrently(&store, &topic, 256, BACKLOG));
        let mut round = 0u64;
        let before = store.stats();
        group.bench_function(BenchmarkId::new("drain_10k", label(durability)), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let sub = SubscriptionName::identity(&format!("reader-{round}")).unwrap();
                        store
                            .subscribe(&topic, &sub, StartFrom::Earliest)
                            .await
                            .unwrap();
                        let start = Instant::now();
                        let drained = drain(&store, &topic, &sub).await;
                        spent += start.elapsed();
                        assert_eq!(drained, BACKLOG);
                        store.unsubscribe(&topic, &sub).await.unwrap();
                    }
                    spent
                })
            })
        });
        report(
            &format!("claim_ack/drain_10k/{}", label(durability)),
            before,
            store.stats(),
        );
    }
    group.finish();
}

/// Fan-out to 100 subscriptions of one topic. `append`: confirmed appends per second with the
/// 100 subscriptions present (each message becomes an entry of every queue: 100 entries per
/// message; with the cursor model no per-queue row is written at append time). `deliver`: entries per second through append + claim + ack: 100 messages
/// appended by 16 appenders, then all 100 queues drained concurrently (10,000 entries).
fn fanout(c: &mut Criterion) {
    const SUBSCRIPTIONS: usize = 100;
    const MESSAGES: u64 = 100;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::Full);
    let topic = Topic::new("fanout").unwrap();
    let subs: Vec<SubscriptionName> = (0..SUBSCRIPTIONS)
        .map(|i| SubscriptionName::identity(&format!("sub-{i}")).unwrap())
        .collect();
    rt.block_on(async {
        for sub in &subs {
            store.subscribe(&topic, sub, StartFrom::New).await.unwrap();
        }
    });

    let mut group = c.benchmark_group("fanout_100");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));

    // Only the appends (messages per second); the queues fill up, then are drained outside
    // the measurement.
    group.throughput(Throughput::Elements(1));
    let before = store.stats();
    group.bench_function(BenchmarkId::new("append", "full/16"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let total = iters.max(16);
                let start = Instant::now();
                append_concurrently(&store, &topic, 16, total).await;
                let spent = start.elapsed().mul_f64(iters as f64 / total as f64);
                drain_all(&store, &topic, &subs).await;
                spent
            })
        })
    });
    report("fanout_100/append/full/16", before, store.stats());

    group.throughput(Throughput::Elements(MESSAGES * SUBSCRIPTIONS as u64));
    let before = store.stats();
    group.bench_function(BenchmarkId::new("deliver", "full"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    append_concurrently(&store, &topic, 16, MESSAGES).await;
                    let drained = drain_all(&store, &topic, &subs).await;
                    assert_eq!(drained, MESSAGES * SUBSCRIPTIONS as u64);
                }
                start.elapsed()
            })
        })
    });
    report("fanout_100/deliver/full", before, store.stats());
    group.finish();
}

/// Drains every subscription concurrently; returns the entries drained.
async fn drain_all(store: &Shared, topic: &Topic, subs: &[SubscriptionName]) -> u64 {
    let mut tasks = JoinSet::new();
    for sub in subs {
        let (store, topic, sub) = (store.clone(), topic.clone(), sub.clone());
        tasks.spawn(async move { drain(&store, &topic, &sub).await });
    }
    let mut drained = 0;
    while let Some(done) = tasks.join_next().await {
        drained += done.unwrap();
    }
    drained
}

criterion_group!(benches, append, claim_ack, fanout);
criterion_main!(benches);
