//! Memory per retained message of the journal store: appends N messages of 256 bytes (the
//! bench's size) to a journal in a temporary directory and reports the process's resident
//! memory before and after, per message; then reopens the journal (replay + checkpoint) and
//! reports the same for the rebuilt state.
//!
//! ```sh
//! cargo run --release -p tidings-store-journal --example memory -- 1000000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use tidings_core::store::{NewMessage, Store, Topic};
use tidings_store_journal::{Durability, JournalConfig, JournalStore};

/// Resident set size of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        durability: Durability::Os,
        ..JournalConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let data = format!("\"{}\"", "x".repeat(254));
    let topic = Topic::new("memory").unwrap();
    let before = rss();
    let started = Instant::now();
    let store = Arc::new(JournalStore::open(dir.path(), config).unwrap());
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..64u64 {
            let (store, topic, data) = (store.clone(), topic.clone(), data.clone());
            tasks.spawn(async move {
                for _ in (t..n).step_by(64) {
                    let msg = NewMessage {
                        attachments: Vec::new(),
                        event: "order".to_owned(),
                        data: data.clone(),
                        key: None,
                        published_at: 0,
                    };
                    store.append(&topic, msg, 0).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    let filled = rss();
    println!(
        "{n} messages of 256 bytes appended in {:.1} s: RSS {} → {} MiB, {:.0} bytes per retained message",
        started.elapsed().as_secs_f64(),
        before >> 20,
        filled >> 20,
        (filled.saturating_sub(before)) as f64 / n as f64
    );
    drop(store);
    let before = rss();
    let started = Instant::now();
    let store = JournalStore::open(dir.path(), config).unwrap();
    let reopened = rss();
    let info = rt.block_on(store.topic_info(&topic)).unwrap().unwrap();
    assert_eq!(info.retained, n);
    println!(
        "reopened (replay + checkpoint) in {:.1} s: RSS {} → {} MiB; journal on disk: {} MiB",
        started.elapsed().as_secs_f64(),
        before >> 20,
        reopened >> 20,
        dir_size(dir.path()) >> 20
    );
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}
