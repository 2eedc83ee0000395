//! What the metrics add to a durable publish (issue 16: "within 3 % of before"): the exact
//! function the publish command calls after its store append, `metrics::record_publish` (its
//! topic's counter looked up in the per-topic map under a read lock, one relaxed add, one
//! histogram observation with its clock read), with 1 and with 10,000 topics in the map.
//! Compare the time per call with the server CPU per confirmed publish that `scripts/bench`
//! reports (tens of µs): BENCHMARKS.md.
//!
//! ```sh
//! cargo bench -p tidings-server --bench metrics
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tidings_core::metrics::Histogram;
use tidings_core::store::Topic;
use tidings_server::metrics::{TopicCounterMap, record_publish};

fn publish_metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    for topics in [1usize, 10_000] {
        let map = TopicCounterMap::default();
        let latency = Histogram::default();
        let names: Vec<Topic> = (0..topics)
            .map(|i| Topic::new(&format!("orders.{i}")).unwrap())
            .collect();
        // Every topic already has its counters, as after its first publish.
        for t in &names {
            record_publish(&map, &latency, t, true, Instant::now());
        }
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("record_publish", topics), |b| {
            b.iter(|| {
                i = (i + 1) % names.len();
                let started = Instant::now();
                record_publish(&map, &latency, black_box(&names[i]), true, started);
            });
        });
    }
    // The part of each iteration above that is the loop's own, not the metrics': the clock
    // read for `started` (the publish command reads it anyway).
    group.bench_function("clock_read", |b| b.iter(|| black_box(Instant::now())));
    group.finish();
}

criterion_group!(benches, publish_metrics);
criterion_main!(benches);
