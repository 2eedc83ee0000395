//! End-to-end delivery through the engine: an in-process server (MemoryStore or SqliteStore)
//! on 127.0.0.1, one tidings-client subscriber that acknowledges every delivery, and N
//! messages. Results and how to read them: BENCHMARKS.md.
//!
//! ```sh
//! cargo bench -p tidings-server --bench deliver
//! ```
//!
//! - `backlog`: N messages are published while no one consumes them (not measured); the
//!   measurement runs from `subscribe(from: earliest)` until the subscriber has received and
//!   acknowledged all N: claim, emit, WebSocket, client decode, ack, store ack.
//! - `live`: the subscriber is connected; the measurement runs from the first publish until
//!   the last delivery is acknowledged. A second client publishes the N messages with 64
//!   publishes waiting for their confirmation at a time.
//!
//! Every message is 256 bytes of JSON. SQLite runs with its default, `Durability::Full`
//! (fsync per group commit).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tidings_client::{Client, ClientOptions, StartFrom, SubscribeOptions, Subscription};
use tidings_core::store::Store;
use tidings_server::{QueueConfig, Server, ServerConfig};
use tidings_store_memory::MemoryStore;
use tidings_store_sqlite::{SqliteConfig, SqliteStore};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Messages per measured round.
const N: u64 = 1000;
/// Publishes waiting for their confirmation at a time, in the `live` case.
const PUBLISHING: u64 = 64;

fn payload() -> Value {
    // `{"n":…,"pad":"xxx…"}`: 256 bytes of JSON.
    json!({ "n": 0, "pad": "x".repeat(256 - r#"{"n":0,"pad":""}"#.len()) })
}

struct Bench {
    server: Server,
    consumer: Client,
    publisher: Client,
    round: u64,
}

impl Bench {
    async fn start(store: Arc<dyn Store>) -> Bench {
        let server = Server::new(ServerConfig::default());
        server
            .enable_queues(store, QueueConfig::default())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let s = server.clone();
        tokio::spawn(async move { s.serve(listener).await });
        let consumer = client(&url, Some("bench-consumer")).await;
        let publisher = client(&url, None).await;
        Bench {
            server,
            consumer,
            publisher,
            round: 0,
        }
    }

    /// A topic no one used before.
    fn next_topic(&mut self) -> String {
        self.round += 1;
        format!("bench.t{}", self.round)
    }

    async fn publish(&self, topic: &str, n: u64) {
        let data = payload();
        let mut tasks = JoinSet::new();
        for lane in 0..PUBLISHING {
            let (publisher, topic, data) = (self.publisher.clone(), topic.to_owned(), data.clone());
            tasks.spawn(async move {
                let mut i = lane;
                while i < n {
                    publisher.publish(&topic, "tick", &data).await.unwrap();
                    i += PUBLISHING;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }

    async fn stop(self) {
        self.consumer.disconnect().await;
        self.publisher.disconnect().await;
        self.server.shutdown();
    }
}

async fn client(url: &str, identity: Option<&str>) -> Client {
    let mut options = ClientOptions::builder(url);
    if let Some(identity) = identity {
        options = options.auth(json!({ "clientId": identity }));
    }
    Client::connect(options.build().unwrap()).await.unwrap()
}

/// Receives and acknowledges `n` deliveries.
async fn consume(subscription: &mut Subscription, n: u64) {
    for _ in 0..n {
        let delivery = tokio::time::timeout(Duration::from_secs(30), subscription.recv())
            .await
            .expect("a delivery within 30 s")
            .expect("the subscription is open");
        delivery.ack().await.unwrap();
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn deliver(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        (
            "sqlite",
            Arc::new(
                SqliteStore::open(&dir.path().join("bench.sqlite3"), SqliteConfig::default())
                    .unwrap(),
            ),
        ),
    ];
    let mut group = c.benchmark_group("deliver");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(N));
    for (name, store) in stores {
        let mut bench = rt.block_on(Bench::start(store));

        group.bench_function(BenchmarkId::new("backlog_1000", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let topic = bench.next_topic();
                        bench.publish(&topic, N).await;
                        let start = Instant::now();
                        let mut sub = bench
                            .consumer
                            .subscribe(SubscribeOptions::new(&topic).from(StartFrom::Earliest))
                            .await
                            .unwrap();
                        consume(&mut sub, N).await;
                        spent += start.elapsed();
                        sub.unsubscribe().await.unwrap();
                    }
                    spent
                })
            })
        });

        group.bench_function(BenchmarkId::new("live_1000", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let topic = bench.next_topic();
                        let mut sub = bench
                            .consumer
                            .subscribe(SubscribeOptions::new(&topic))
                            .await
                            .unwrap();
                        let start = Instant::now();
                        let (_, ()) = tokio::join!(bench.publish(&topic, N), consume(&mut sub, N));
                        spent += start.elapsed();
                        sub.unsubscribe().await.unwrap();
                    }
                    spent
                })
            })
        });

        rt.block_on(bench.stop());
    }
    group.finish();
}

criterion_group!(benches, deliver);
criterion_main!(benches);
