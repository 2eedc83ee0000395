//! The group commit of appends (`src/append.rs`): concurrent appends share script calls, each
//! is answered from Redis's reply for its own message, and a Redis killed mid-batch confirms
//! nothing it did not store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{RedisServer, have_redis_server, random_prefix};
use tidings_core::store::{Millis, NewMessage, Offset, Store, StoreError, Topic};
use tidings_store_redis::{RedisConfig, RedisStore};
use tidings_store_tests::block_on;

fn msg(data: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        event: "news".to_owned(),
        data: data.to_owned(),
        attachments: Vec::new(),
        key: key.map(str::to_owned),
        published_at: 1_000,
    }
}

/// The attachments the piped publisher's `n`th message carries: every third has one.
fn piped_attachments(n: usize) -> Vec<bytes::Bytes> {
    if n % 3 == 0 {
        vec![bytes::Bytes::from(vec![n as u8; n + 1])]
    } else {
        Vec::new()
    }
}

fn private_store(server: &RedisServer) -> RedisStore {
    RedisStore::open(RedisConfig {
        url: server.url(),
        prefix: random_prefix(),
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    })
    .unwrap()
}

fn need_redis_server() {
    assert!(
        have_redis_server(),
        "this test starts its own redis-server (to count its script calls or kill it): put \
         redis-server on PATH (apt-get install redis-server)"
    );
}

/// Script calls Redis has run (EVALSHA, and the EVAL that loads the script).
fn script_calls(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Many publishers on several topics at once, some one append at a time, one with 100 in
/// flight: every append is confirmed, each topic's offsets are 1..=n with no gap or repeat,
/// each publisher's offsets grow in the order it published, every offset holds the message
/// confirmed at it — and far fewer script calls than appends reached Redis.
#[test]
fn concurrent_appends_are_batched_and_keep_order_per_topic() {
    need_redis_server();
    let server = RedisServer::start();
    let store = private_store(&server);
    const TOPICS: usize = 6;
    const PUBLISHERS: usize = 4;
    const EACH: usize = 40;
    // One runtime for the store's whole life (see the crate docs).
    block_on(async {
        store.ping().await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..TOPICS {
            for p in 0..PUBLISHERS {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let topic = Topic::new(&format!("t{t}")).unwrap();
                    let mut got = Vec::new();
                    for n in 0..EACH {
                        let data = format!("\"t{t} p{p} n{n}\"");
                        let a = store.append(&topic, msg(&data, None), 0).await.unwrap();
                        assert!(!a.duplicate);
                        got.push((topic.clone(), a.offset, data));
                    }
                    got
                }));
            }
        }
        // One publisher with 100 appends in flight: queued in order, so offsets in order.
        // Every third carries binary attachments, so batches mix both kinds of message.
        let piped = Topic::new("piped").unwrap();
        let datas: Vec<String> = (0..100).map(|n| format!("\"piped n{n}\"")).collect();
        let answers = futures_join_all(
            datas
                .iter()
                .enumerate()
                .map(|(n, d)| {
                    let mut m = msg(d, None);
                    m.attachments = piped_attachments(n);
                    store.append(&piped, m, 0)
                })
                .collect(),
        )
        .await;
        let mut all = vec![
            answers
                .into_iter()
                .zip(&datas)
                .map(|(a, d)| (piped.clone(), a.unwrap().offset, d.clone()))
                .collect::<Vec<_>>(),
        ];
        for task in tasks {
            all.push(task.await.unwrap());
        }
        let confirmed = all;
        let total: usize = confirmed.iter().map(Vec::len).sum();
        assert_eq!(total, TOPICS * PUBLISHERS * EACH + 100);
        let mut by_topic: BTreeMap<Topic, BTreeMap<Offset, String>> = BTreeMap::new();
        for publisher in &confirmed {
            let offsets: Vec<Offset> = publisher.iter().map(|(_, o, _)| *o).collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "a publisher's offsets grow: {offsets:?}"
            );
            for (topic, offset, data) in publisher {
                let previous = by_topic
                    .entry(topic.clone())
                    .or_default()
                    .insert(*offset, data.clone());
                assert!(
                    previous.is_none(),
                    "offset {offset} of {topic} confirmed twice"
                );
            }
        }
        for (topic, offsets) in &by_topic {
            let n = offsets.len() as u64;
            assert_eq!(
                offsets.keys().copied().collect::<Vec<_>>(),
                (1..=n).collect::<Vec<_>>()
            );
            let history = store.history(topic, 1, 1_000).await.unwrap();
            let mut attachment_bytes = 0;
            for m in &history {
                let expected = if *topic == piped {
                    piped_attachments(m.offset as usize - 1)
                } else {
                    Vec::new()
                };
                assert_eq!(m.attachments, expected, "{topic}/{}", m.offset);
                attachment_bytes += expected.iter().map(|a| a.len()).sum::<usize>();
            }
            let stored: BTreeMap<Offset, String> =
                history.into_iter().map(|m| (m.offset, m.data)).collect();
            assert_eq!(
                &stored, offsets,
                "{topic}: every offset holds its confirmed message"
            );
            let info = store.topic_info(topic).await.unwrap().unwrap();
            assert_eq!(info.head, n);
            let bytes: usize = offsets.values().map(String::len).sum::<usize>() + attachment_bytes;
            assert_eq!(info.retained_bytes, bytes as u64);
        }
        let calls = script_calls(&server);
        assert!(
            calls * 4 <= total as u64,
            "{calls} script calls for {total} appends: not batched"
        );
    });
}

/// Within one batch an idempotency key repeated is a duplicate of its first append, and a
/// topic whose keys are corrupt (a key of the wrong type) fails only its own appends.
#[test]
fn one_batch_dedups_keys_and_isolates_a_corrupt_topic() {
    need_redis_server();
    let server = RedisServer::start();
    let store = private_store(&server);
    let prefix = store.config().prefix.clone();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}{{bad}}:log"))
        .arg("not a stream")
        .query(&mut conn)
        .unwrap();
    let (good, bad) = (Topic::new("good").unwrap(), Topic::new("bad").unwrap());
    block_on(async {
        store.ping().await.unwrap();
        let window: Millis = 60_000;
        // The script loaded (the first call of a connection may take two: EVALSHA, EVAL).
        store.topics().await.unwrap();
        let calls_before = script_calls(&server);
        // All queued before the flusher runs (one thread): one batch.
        let answers = futures_join_all(vec![
            store.append(&good, msg("1", Some("k1")), window),
            store.append(&good, msg("2", Some("k1")), window),
            store.append(&bad, msg("3", None), window),
            store.append(&good, msg("4", None), window),
            store.append(&good, msg("5", Some("k2")), window),
            store.append(&good, msg("6", Some("k1")), window),
        ])
        .await;
        assert_eq!(script_calls(&server) - calls_before, 1, "one batch");
        let got: Vec<_> = answers
            .iter()
            .map(|a| match a {
                Ok(a) => Ok((a.offset, a.duplicate)),
                Err(StoreError::Corrupt(_)) => Err("corrupt"),
                Err(e) => panic!("{e}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                Ok((1, false)),
                Ok((1, true)),
                Err("corrupt"),
                Ok((2, false)),
                Ok((3, false)),
                Ok((1, true)),
            ]
        );
        let ids: Vec<_> = answers.iter().flatten().map(|a| a.id).collect();
        assert!(
            ids[1] == ids[0] && ids[4] == ids[0],
            "a duplicate answers the first id"
        );
        let history = store.history(&good, 1, 10).await.unwrap();
        let data: Vec<_> = history.iter().map(|m| m.data.as_str()).collect();
        assert_eq!(data, ["1", "4", "5"]);
        assert_eq!(store.topic_info(&good).await.unwrap().unwrap().head, 3);
    });
    let head: String = redis::cmd("HGET")
        .arg(format!("{prefix}{{bad}}:meta"))
        .arg("head")
        .query(&mut conn)
        .unwrap();
    assert_eq!(head, "0", "the corrupt topic's head did not move");
}

/// Redis killed (-9) while 16 publishers keep appends in flight on four topics: every append
/// confirmed before the kill is in Redis after its restart (AOF, appendfsync always), at the
/// offset it was confirmed with; the appends of the batches cut short fail with an error and
/// are never confirmed.
#[test]
fn a_redis_killed_mid_batch_fails_those_appends_and_keeps_every_confirmed_one() {
    need_redis_server();
    let mut server = RedisServer::start_durable();
    let store = private_store(&server);
    block_on(async {
        store.ping().await.unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for p in 0..16 {
            let store = store.clone();
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                let topic = Topic::new(&format!("t{}", p % 4)).unwrap();
                let mut confirmed = Vec::new();
                // Bounded: the kill comes long before; the first error ends the publisher.
                for n in 0..5_000 {
                    let data = format!("\"p{p} n{n}\"");
                    match store.append(&topic, msg(&data, None), 0).await {
                        Ok(a) => {
                            confirmed.push((topic.clone(), a.offset, data));
                            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => return (confirmed, Some(e)),
                    }
                }
                (confirmed, None)
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.load(std::sync::atomic::Ordering::Relaxed) < 300 {
            assert!(Instant::now() < deadline, "publishers made no progress");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.kill();
        let mut confirmed = Vec::new();
        let mut failed = 0;
        for task in tasks {
            let (mut got, error) = task.await.unwrap();
            confirmed.append(&mut got);
            match error {
                Some(StoreError::Unavailable(_)) => failed += 1,
                Some(e) => panic!("expected unavailable, got {e}"),
                None => panic!("a publisher never saw the kill"),
            }
        }
        assert_eq!(
            failed, 16,
            "every publisher's append in flight at the kill failed"
        );
        // One runtime for the store's whole life (see the crate docs).
        server.launch();
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.ping().await.is_err() {
            assert!(Instant::now() < deadline, "store did not come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut stored: HashMap<(Topic, Offset), String> = HashMap::new();
        for t in 0..4 {
            let topic = Topic::new(&format!("t{t}")).unwrap();
            for m in store.history(&topic, 1, 100_000).await.unwrap() {
                stored.insert((topic.clone(), m.offset), m.data);
            }
        }
        assert!(stored.len() >= confirmed.len());
        for (topic, offset, data) in &confirmed {
            assert_eq!(
                stored.get(&(topic.clone(), *offset)),
                Some(data),
                "confirmed {data} at {topic}/{offset} was lost"
            );
        }
        eprintln!(
            "{} confirmed before the kill, {} stored (the rest were in the batch cut short)",
            confirmed.len(),
            stored.len()
        );
    });
}

/// Polls every future (in order, so appends are queued in order) until all are done.
async fn futures_join_all<T>(
    futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>>,
) -> Vec<T> {
    let mut slots: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in slots.iter_mut().zip(futures.iter_mut()) {
            if let Some(f) = fut {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *slot = Some(v);
                        *fut = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    slots.into_iter().map(|s| s.unwrap()).collect()
}
