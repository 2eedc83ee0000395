//! The parcels demo (`examples/parcels.rs`) as a test: the same scripted story, against an
//! in-process server with the SQLite store, so that CI proves the demo works.
//!
//! The story runs twice on one database file, with a server restart in between: the second
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
use tidings_server::{QueueConfig, Server, ServerConfig};
use tidings_store_sqlite::{SqliteConfig, SqliteStore};

async fn sqlite_server(db: &Path) -> Server {
    let store = SqliteStore::open(db, SqliteConfig::default()).unwrap();
    let server = Server::new(ServerConfig::builder().build().unwrap());
    server
        .enable_queues(Arc::new(store), QueueConfig::default())
        .await
        .unwrap();
    server
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
    let db = dir.join("tidings.sqlite3");

    let first = start(sqlite_server(&db).await).await;
    let (outcome, lines) = tell(&first).await;
    assert_story_ok(&outcome, &lines);
    // Each driver took at least one order: the group spreads them.
    assert_eq!(outcome.per_driver.len(), 3, "{}", lines.join("\n"));
    let port = first.stop().await;

    let second = start_on(sqlite_server(&db).await, port).await;
    let (outcome, lines) = tell(&second).await;
    assert_story_ok(&outcome, &lines);
    // Nothing of the first run was left over to skip.
    assert_eq!(outcome.stale, 0, "{}", lines.join("\n"));
    second.stop().await;

    let _ = std::fs::remove_dir_all(&dir);
}
