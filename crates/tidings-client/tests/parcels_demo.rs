//! The parcels demo (`examples/parcels.rs`) as a test: the same scripted story, against an
//! in-process server with the journal store (the default of `tidings serve`), so that CI proves
//! the demo works.
//!
//! The story runs twice on one store directory, with a server restart in between: the second
//! run finds the durable subscriptions and the group membership of the first and must still
//! take each of its orders exactly once. Each run also checks that every vendor received its
//! notices in offset order, the backlog of the offline vendor included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../examples/parcels.rs"]
#[allow(dead_code)]
mod parcels;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{TestServer, start, start_on};
use tidings_core::store::StoreError;
use tidings_server::{QueueConfig, Server, ServerConfig};
use tidings_store_journal::{JournalConfig, JournalStore};

/// A server with queues on `store`.
async fn journal_server(store: JournalStore) -> Server {
    let server = Server::new(ServerConfig::builder().build().unwrap());
    server
        .enable_queues(Arc::new(store), QueueConfig::default())
        .await
        .unwrap();
    server
}

/// Opens the journal in `dir`, waiting (bounded) while a stopped server still holds it (its
/// directory is locked while it is open; the last holder's drop writes and closes it). A
/// stopped server must let go: a closed connection's Socket.IO client and its engine session
/// once held each other and outlived the connection, and with them the server and its store
/// (fixed 2026-12-06; this test failed so).
async fn open_journal(dir: &Path) -> JournalStore {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match JournalStore::open(dir, JournalConfig::default()) {
            Ok(store) => return store,
            Err(StoreError::Unavailable(e)) if e.contains("in use") => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the stopped server still holds its store after 10 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Runs the story and returns its outcome and narration.
async fn tell(srv: &TestServer) -> (parcels::Outcome, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let say: parcels::Narrator = Arc::new(move |line| sink.lock().unwrap().push(line));
    let mut story = parcels::Story::new(srv.url());
    story.drive_time = Duration::from_millis(10);
    story.timeout = Duration::from_secs(20);
    let outcome = parcels::run(&story, say).await.unwrap();
    let mut lines = lines.lock().unwrap().clone();
    lines.extend(outcome.summary());
    (outcome, lines)
}

fn assert_story_ok(outcome: &parcels::Outcome, lines: &[String]) {
    let shown = lines.join("\n");
    assert!(outcome.is_ok(), "{shown}");
    assert_eq!(outcome.orders, 6, "{shown}");
    assert_eq!(outcome.taken_once, 6, "{shown}");
    assert_eq!(outcome.per_driver.values().sum::<usize>(), 6, "{shown}");
    assert_eq!(outcome.notices["vendor-a"], (6, 6), "{shown}");
    assert_eq!(outcome.notices["vendor-b"], (6, 6), "{shown}");
    // vendor-b was offline for every notice: all six were waiting for it.
    assert_eq!(outcome.caught_up, 6, "{shown}");
    assert_eq!(outcome.redeliveries, 0, "{shown}");
    // docs/PROTOCOL.md: offset order per subscription. vendor-b's six notices are one backlog,
    // claimed together when it comes back: they too arrive in offset order.
    assert_eq!(outcome.out_of_order, 0, "{shown}");
    assert!(
        shown.contains("vendor-b  back ONLINE: 6 notices waiting on vendor.store-b"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parcels_story_holds_across_a_restart() {
    support::init_tracing();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "parcels-demo-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let db = dir.join("journal");

    let first = start(journal_server(open_journal(&db).await).await).await;
    let (outcome, lines) = tell(&first).await;
    assert_story_ok(&outcome, &lines);
    // Each driver took at least one order: the group spreads them.
    assert_eq!(outcome.per_driver.len(), 3, "{}", lines.join("\n"));
    let port = first.stop().await;
    let second = start_on(journal_server(open_journal(&db).await).await, port).await;
    let (outcome, lines) = tell(&second).await;
    assert_story_ok(&outcome, &lines);
    // Nothing of the first run was left over to skip.
    assert_eq!(outcome.stale, 0, "{}", lines.join("\n"));
    second.stop().await;

    let _ = std::fs::remove_dir_all(&dir);
}
