//! SQLite-specific behaviour: persistence across reopen, schema checks, concurrent appends and
//! group commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use tidings_core::store::{
    ClaimOptions, ClaimResult, NewMessage, StartFrom, Store, StoreError, SubscriptionName, Topic,
};
use tidings_store_memory::MemoryStore;
use tidings_store_sqlite::{Durability, SCHEMA_VERSION, SqliteConfig, SqliteStore};

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteConfig::default()).unwrap()
}

fn msg(data: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        event: "news".to_owned(),
        data: data.to_owned(),
        key: key.map(str::to_owned),
        published_at: 100,
    }
}

fn opts(now: u64, max: usize, max_deliveries: u32) -> ClaimOptions {
    ClaimOptions {
        now,
        max,
        ack_timeout: 1000,
        max_deliveries,
    }
}

#[tokio::test]
async fn state_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // The directory is created on open.
    let path = dir.path().join("nested").join("dir").join("tidings.db");
    let t = Topic::new("jobs").unwrap();
    let a = SubscriptionName::identity("a").unwrap();
    let b = SubscriptionName::group("b").unwrap();

    let store = open(&path);
    let first = store.append(&t, msg("1", Some("k")), 1000).await.unwrap();
    for i in 2..=5 {
        store
            .append(&t, msg(&i.to_string(), None), 1000)
            .await
            .unwrap();
    }
    store.subscribe(&t, &a, StartFrom::Earliest).await.unwrap();
    store.subscribe(&t, &b, StartFrom::Offset(4)).await.unwrap();
    store.claim(&t, &a, opts(0, 3, 5)).await.unwrap();
    assert!(store.ack(&t, &a, 1).await.unwrap());
    assert!(store.requeue(&t, &a, 2, 500).await.unwrap());
    store.claim(&t, &b, opts(0, 1, 1)).await.unwrap();
    assert_eq!(
        store
            .claim(&t, &b, opts(1000, 1, 1))
            .await
            .unwrap()
            .dead_lettered,
        [4]
    );
    let info = store.topic_info(&t).await.unwrap();
    let history = store.history(&t, 1, 100).await.unwrap();
    let dead = store.dead_letters(&t).await.unwrap();
    let subs = store.subscriptions().await.unwrap();
    assert!(info.is_some() && dead.len() == 1 && history.len() == 5);
    drop(store);

    let store = open(&path);
    assert_eq!(store.topic_info(&t).await.unwrap(), info);
    assert_eq!(store.history(&t, 1, 100).await.unwrap(), history);
    assert_eq!(store.dead_letters(&t).await.unwrap(), dead);
    assert_eq!(store.subscriptions().await.unwrap(), subs);
    assert_eq!(store.topics().await.unwrap(), vec![t.clone()]);
    // The queue goes on where it was: 2 waits until 500, 3 is in flight until 1000.
    let r = store.claim(&t, &a, opts(500, 10, 5)).await.unwrap();
    let got: Vec<_> = r
        .claimed
        .iter()
        .map(|c| (c.message.offset, c.attempt))
        .collect();
    assert_eq!(got, [(2, 2), (4, 1), (5, 1)]);
    // Idempotency keys persist too.
    let dup = store
        .append(&t, msg("again", Some("k")), 1000)
        .await
        .unwrap();
    assert_eq!((dup.id, dup.offset, dup.duplicate), (first.id, 1, true));
    assert_eq!(
        store.append(&t, msg("6", None), 1000).await.unwrap().offset,
        6
    );
    assert!(store.requeue_dead(&t, history[3].id, 2000).await.unwrap());
}

fn set_schema_version(path: &Path, version: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "UPDATE tidings_meta SET value = ?1 WHERE key = 'schema_version'",
        [version],
    )
    .unwrap();
}

#[test]
fn other_schema_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidings.db");
    drop(open(&path));

    set_schema_version(&path, SCHEMA_VERSION + 1);
    match SqliteStore::open(&path, SqliteConfig::default()) {
        Err(StoreError::Corrupt(m)) => assert!(
            m.contains(&format!("schema version {} is newer", SCHEMA_VERSION + 1)),
            "{m}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    set_schema_version(&path, 0);
    match SqliteStore::open(&path, SqliteConfig::default()) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("unknown schema version 0"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    set_schema_version(&path, SCHEMA_VERSION);
    drop(open(&path));
}

/// A schema-1 file (from before binary attachments: no `attachments` columns) is migrated at
/// open, keeps its messages and dead letters, and then stores binary attachments.
#[tokio::test]
async fn a_schema_1_file_is_migrated_and_keeps_attachments_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidings.db");
    let t = Topic::new("jobs").unwrap();
    let a = SubscriptionName::identity("a").unwrap();
    {
        let store = open(&path);
        store.subscribe(&t, &a, StartFrom::Earliest).await.unwrap();
        for i in 1..=3 {
            store
                .append(&t, msg(&i.to_string(), None), 0)
                .await
                .unwrap();
        }
        store.claim(&t, &a, opts(0, 1, 1)).await.unwrap();
        let r = store.claim(&t, &a, opts(1000, 1, 1)).await.unwrap();
        assert_eq!(r.dead_lettered, [1]);
    }
    // Back to schema 1's shape: what a file written before the migration holds.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE messages DROP COLUMN attachments;
             ALTER TABLE dead_letters DROP COLUMN attachments;
             UPDATE tidings_meta SET value = 1 WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let store = open(&path);
    let history = store.history(&t, 1, 10).await.unwrap();
    let data: Vec<&str> = history.iter().map(|m| m.data.as_str()).collect();
    assert_eq!(data, ["1", "2", "3"]);
    assert!(history.iter().all(|m| m.attachments.is_empty()));
    assert_eq!(store.dead_letters(&t).await.unwrap()[0].message.data, "1");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM tidings_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mut binary = msg(
        r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        None,
    );
    binary.attachments = vec![bytes::Bytes::from_static(&[0, 1, 255]), bytes::Bytes::new()];
    let r = store.append(&t, binary.clone(), 0).await.unwrap();
    drop(store);
    let store = open(&path);
    let got = store.history(&t, r.offset, 1).await.unwrap().remove(0);
    assert_eq!(
        (&got.data, &got.attachments),
        (&binary.data, &binary.attachments)
    );
    let info = store.topic_info(&t).await.unwrap().unwrap();
    assert_eq!(info.retained_bytes, 3 + binary.payload_len());
}

#[test]
fn foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE users (name TEXT)")
        .unwrap();
    match SqliteStore::open(&other, SqliteConfig::default()) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("not a tidings database"), "{m}"),
        r => panic!("expected Corrupt, got {r:?}"),
    }

    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not an sqlite file at all, just text ".repeat(100),
    )
    .unwrap();
    match SqliteStore::open(&garbage, SqliteConfig::default()) {
        Err(StoreError::Corrupt(_)) => {}
        r => panic!("expected Corrupt, got {r:?}"),
    }

    let config = SqliteConfig {
        max_batch: 0,
        ..SqliteConfig::default()
    };
    let r = SqliteStore::open(&dir.path().join("x.db"), config);
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_consecutive_offsets() {
    const TASKS: u64 = 64;
    const EACH: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("tidings.db")));
    let t = Topic::new("busy").unwrap();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, t) = (Arc::clone(&store), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..EACH {
                let data = format!("{{\"task\":{task},\"i\":{i}}}");
                let r = store.append(&t, msg(&data, None), 0).await.unwrap();
                // Reads run concurrently with the writer and see confirmed appends.
                let seen = store.history(&t, r.offset, 1).await.unwrap();
                assert_eq!(seen[0].id, r.id);
                out.push((r.offset, r.id, data));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_by_key(|(offset, _, _)| *offset);
    let offsets: Vec<u64> = all.iter().map(|(o, _, _)| *o).collect();
    assert_eq!(offsets, (1..=TASKS * EACH).collect::<Vec<_>>());
    let history = store.history(&t, 1, usize::MAX).await.unwrap();
    assert_eq!(history.len(), all.len());
    for (m, (offset, id, data)) in history.iter().zip(&all) {
        assert_eq!((&m.offset, &m.id, &m.data), (offset, id, data));
    }
    let ids: BTreeSet<_> = history.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), history.len());
    let stats = store.stats();
    assert_eq!(stats.commands, TASKS * EACH);
    assert_eq!(stats.failed_transactions, 0);
    assert!(
        stats.transactions < stats.commands,
        "concurrent appends share commits: {stats:?}"
    );
}

#[tokio::test]
async fn a_failing_command_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidings.db");
    let store = open(&path);
    let (broken, fine) = (Topic::new("broken").unwrap(), Topic::new("fine").unwrap());
    let sub = SubscriptionName::identity("a").unwrap();
    store.append(&broken, msg("1", None), 0).await.unwrap();
    store
        .subscribe(&broken, &sub, StartFrom::Earliest)
        .await
        .unwrap();
    // Damage the file behind the store's back: the message the cursor points at is gone.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM messages WHERE seq = 1", [])
        .unwrap();
    // Sent together, so they likely share a batch; the outcome must not depend on it.
    let (claim, appended) = tokio::join!(store.claim(&broken, &sub, opts(0, 10, 5)), async {
        let mut offsets = Vec::new();
        for i in 0..10 {
            offsets.push(store.append(&fine, msg(&i.to_string(), None), 0).await);
        }
        offsets
    });
    assert!(matches!(claim, Err(StoreError::Corrupt(_))), "{claim:?}");
    let offsets: Vec<u64> = appended.into_iter().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, (1..=10).collect::<Vec<_>>());
    assert_eq!(store.history(&fine, 1, 100).await.unwrap().len(), 10);
    // The failed claim changed nothing.
    let info = store.topic_info(&broken).await.unwrap().unwrap();
    assert_eq!(info.subscriptions[0].cursor, 1);
}

#[tokio::test]
async fn os_durability_opens_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        durability: Durability::Os,
        ..SqliteConfig::default()
    };
    let path = dir.path().join("tidings.db");
    let store = SqliteStore::open(&path, config.clone()).unwrap();
    let t = Topic::new("t").unwrap();
    assert_eq!(store.append(&t, msg("1", None), 0).await.unwrap().offset, 1);
    assert_eq!(store.path(), path);
    drop(store);
    let store = SqliteStore::open(&path, config).unwrap();
    assert_eq!(store.history(&t, 1, 10).await.unwrap().len(), 1);
}

/// `(offset, attempt, data)` of each claimed entry, then the dead-lettered offsets: ids differ
/// between two stores.
fn shape(r: &ClaimResult) -> (Vec<(u64, u32, String)>, Vec<u64>) {
    let claimed = r
        .claimed
        .iter()
        .map(|c| (c.message.offset, c.attempt, c.message.data.clone()))
        .collect();
    (claimed, r.dead_lettered.clone())
}

/// Queues with more due entries than a claim looks up through the index take the scanning
/// path; the results are the same as the memory store's.
#[tokio::test]
async fn large_queues_match_the_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    let sql = open(&dir.path().join("tidings.db"));
    let mem = MemoryStore::new();
    let t = Topic::new("big").unwrap();
    let sub = SubscriptionName::group("workers").unwrap();
    for i in 0..700 {
        let m = msg(&i.to_string(), None);
        assert_eq!(
            sql.append(&t, m.clone(), 0).await.unwrap().offset,
            mem.append(&t, m, 0).await.unwrap().offset
        );
    }
    sql.subscribe(&t, &sub, StartFrom::Earliest).await.unwrap();
    mem.subscribe(&t, &sub, StartFrom::Earliest).await.unwrap();
    let o = |now, max, ack_timeout, max_deliveries| ClaimOptions {
        now,
        max,
        ack_timeout,
        max_deliveries,
    };
    let steps: Vec<(&str, ClaimOptions)> = vec![
        ("all in flight", o(0, 650, 10, 3)),
        ("few due", o(5, 10, 10, 3)),
        ("many due, small claim", o(10, 7, 10, 3)),
        ("many due, zero timeout, dead letters", o(20, 300, 0, 2)),
        ("many due, large claim", o(20, 1000, 10, 3)),
        ("dead letters", o(100, 5, 10, 3)),
        ("dead letters, rest", o(100, 1000, 10, 3)),
        ("nothing left", o(1000, 1000, 10, 3)),
    ];
    for (i, (what, opts)) in steps.into_iter().enumerate() {
        if i == 1 {
            // A few waiting entries among many in flight.
            for offset in [7, 3, 500] {
                assert!(sql.requeue(&t, &sub, offset, 5).await.unwrap());
                assert!(mem.requeue(&t, &sub, offset, 5).await.unwrap());
            }
        }
        if i == 5 {
            for offset in (1..=700).step_by(3) {
                assert_eq!(
                    sql.ack(&t, &sub, offset).await.unwrap(),
                    mem.ack(&t, &sub, offset).await.unwrap()
                );
            }
        }
        let (a, b) = (
            sql.claim(&t, &sub, opts).await.unwrap(),
            mem.claim(&t, &sub, opts).await.unwrap(),
        );
        assert_eq!(shape(&a), shape(&b), "{what}");
        assert_eq!(
            sql.topic_info(&t).await.unwrap(),
            mem.topic_info(&t).await.unwrap(),
            "{what}"
        );
    }
    let dead = |d: Vec<tidings_core::store::DeadLetter>| {
        d.into_iter()
            .map(|d| (d.message.offset, d.attempts, d.dead_at))
            .collect::<Vec<_>>()
    };
    let sql_dead = dead(sql.dead_letters(&t).await.unwrap());
    assert!(!sql_dead.is_empty());
    assert_eq!(sql_dead, dead(mem.dead_letters(&t).await.unwrap()));
}
