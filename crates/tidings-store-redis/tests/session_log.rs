//! The Redis recovery log shared by two "nodes" (two logs on one Redis and prefix): a session
//! persisted by one is taken once by the other, packets appended by one are replayed by the
//! other in offset order and filtered by namespace and rooms, and trimming marks replays
//! from before the mark incomplete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use tidings_core::session_log::{LoggedPacket, SessionLog, SessionRecord, now_millis};
use tidings_core::{Room, Sid};
use tidings_store_redis::RedisSessionLog;

fn packet(log: &RedisSessionLog, ns: &str, rooms: &[&str], except: &[&str]) -> LoggedPacket {
    let offset = log.next_offset();
    LoggedPacket {
        offset,
        namespace: ns.into(),
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        except: except.iter().map(|r| Room::from(*r)).collect(),
        packet: Bytes::from(format!("2[\"e\",\"{offset}\"]")),
        attachments: vec![Bytes::from_static(&[1, 2, 3])],
        emitted_at: now_millis(),
    }
}

#[tokio::test]
async fn two_nodes_share_sessions_and_packets() {
    let h = common::store_with(|_| {});
    let config = h.store.config().clone();
    let node1 = RedisSessionLog::connect(config.clone()).await.unwrap();
    let node2 = RedisSessionLog::connect(config.clone()).await.unwrap();

    let base = node1.head();
    let sid = Sid::new();
    let rooms = vec![Room::from(sid.to_string().as_str()), Room::from("news")];
    let p1 = packet(&node1, "/", &["news"], &[]);
    let p2 = packet(&node2, "/", &[], &[]);
    let other_room = packet(&node1, "/", &["sports"], &[]);
    let other_ns = packet(&node1, "/admin", &[], &[]);
    let excluded = packet(&node2, "/", &["news"], &[sid.to_string().as_str()]);
    let p3 = packet(&node1, "/", &["news"], &[]);
    for p in [&p1, &other_room, &other_ns, &p3] {
        node1.append((*p).clone());
    }
    for p in [&p2, &excluded] {
        node2.append((*p).clone());
    }
    node1.persist_session(SessionRecord {
        pid: "pid-a".into(),
        sid,
        namespace: "/".into(),
        rooms: rooms.clone(),
        base_offset: base,
        last_offset: p1.offset,
        disconnected_at: now_millis(),
    });
    node1.flush().await.unwrap();
    node2.flush().await.unwrap();

    // The other node takes the session, once.
    let record = node2.take_session("pid-a").await.unwrap().expect("session");
    assert_eq!(record.sid, sid);
    assert_eq!(record.last_offset, p1.offset);
    assert!(node1.take_session("pid-a").await.unwrap().is_none());
    assert!(node2.take_session("pid-a").await.unwrap().is_none());

    let replay = node2.since("/", base, &rooms).await.unwrap();
    assert!(replay.is_complete());
    let offsets: Vec<_> = replay.packets.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![p1.offset, p2.offset, p3.offset]);
    assert_eq!(replay.packets[0], p1);
    let after_p2 = node1.since("/", p2.offset, &rooms).await.unwrap();
    assert_eq!(after_p2.packets.len(), 1);
    assert_eq!(after_p2.packets[0].offset, p3.offset);

    // A third node starting now hands out offsets above everything logged.
    let node3 = RedisSessionLog::connect(config).await.unwrap();
    assert!(node3.head() >= p3.offset.max(excluded.offset));
    assert!(node3.next_offset() > p3.offset);

    // Trimming past everything: replays from before the mark say they may be incomplete.
    node1.trim(now_millis() + 10).await.unwrap();
    let trimmed = node2.since("/", base, &rooms).await.unwrap();
    assert!(trimmed.packets.is_empty());
    assert!(!trimmed.is_complete());
}

/// Offset tags are leased to live nodes: a node that connects 256 connections after a live
/// one (restarts count) still gets a tag of its own. (They were the connection count modulo
/// 256: the two nodes then handed out the same offsets, and a client that saw one of them was
/// never replayed the other.)
#[tokio::test]
async fn nodes_256_connections_apart_never_share_an_offset() {
    let h = common::store_with(|_| {});
    let config = h.store.config().clone();
    let a = RedisSessionLog::connect(config.clone()).await.unwrap();
    for _ in 0..255 {
        drop(RedisSessionLog::connect(config.clone()).await.unwrap());
    }
    let b = RedisSessionLog::connect(config).await.unwrap();
    let mut all = Vec::new();
    for _ in 0..1000 {
        all.extend([a.next_offset(), b.next_offset()]);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        2000,
        "two live nodes handed out the same offsets"
    );
}

/// All 256 tags leased: one more node is refused with a clear error, and the tag of a log that
/// is dropped is free again for the next node.
#[tokio::test]
async fn a_dropped_log_frees_its_offset_tag() {
    let h = common::store_with(|_| {});
    let config = h.store.config().clone();
    let mut live = Vec::new();
    for _ in 0..256 {
        live.push(RedisSessionLog::connect(config.clone()).await.unwrap());
    }
    let refused = RedisSessionLog::connect(config.clone()).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("all 256 offset tags are leased"),
        "{refused}"
    );
    drop(live.pop());
    // The release runs in the dropped log's task: bounded wait for it.
    let mut again = None;
    for _ in 0..100 {
        if let Ok(log) = RedisSessionLog::connect(config.clone()).await {
            again = Some(log);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the dropped log's tag was never freed");
}

fn live_record(pid: &str, sid: Sid) -> SessionRecord {
    SessionRecord {
        pid: pid.into(),
        sid,
        namespace: "/".into(),
        rooms: vec![Room::from(sid.to_string().as_str()), Room::from("news")],
        base_offset: 1,
        last_offset: 0,
        disconnected_at: now_millis(),
    }
}

/// A live session is not taken while its node is alive (by another node, or by its own log),
/// is taken once after its node died (here: its log dropped without closing the session, as
/// when the server never got to close it), as disconnected at that node's last heartbeat;
/// a forgotten one is never taken; and a node that never took it cannot take it back.
#[tokio::test]
async fn live_sessions_of_a_dead_node_are_taken_once() {
    let h = common::store_with(|_| {});
    let config = h.store.config().clone();
    let node1 = RedisSessionLog::connect(config.clone()).await.unwrap();
    let node2 = RedisSessionLog::connect(config.clone()).await.unwrap();
    let sid = Sid::new();
    node1.persist_live(live_record("live-a", sid));
    node1.persist_live(live_record("gone", Sid::new()));
    node1.forget_session("gone");
    node1.persist_live(live_record("never-back", Sid::new()));
    node1.flush().await.unwrap();

    assert!(
        node1.take_session("live-a").await.unwrap().is_none(),
        "its own"
    );
    assert!(
        node2.take_session("live-a").await.unwrap().is_none(),
        "node1 lives"
    );
    let started = std::time::Instant::now();
    assert!(
        node2
            .take_session_after_release("live-a")
            .await
            .unwrap()
            .is_none(),
        "node1 still lives after the wait"
    );
    assert!(
        started.elapsed() < tidings_store_redis::LIVENESS_TTL * 2,
        "the wait is bounded"
    );

    let before_death = now_millis();
    drop(node1);
    // The dropped log's task deletes its liveness key: bounded wait for it.
    let mut record = None;
    for _ in 0..100 {
        record = node2.take_session_after_release("live-a").await.unwrap();
        if record.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let record = record.expect("the dead node's live session is taken");
    assert_eq!(record.sid, sid);
    assert_eq!(record.rooms.len(), 2);
    assert!(
        record.disconnected_at + 2_000 >= before_death && record.disconnected_at <= now_millis(),
        "disconnected at the dead node's last heartbeat"
    );
    assert!(
        node2.take_session("live-a").await.unwrap().is_none(),
        "once"
    );
    assert!(
        node2
            .take_session_after_release("gone")
            .await
            .unwrap()
            .is_none()
    );

    // node2 now holds it live; a node started afterwards does not take it.
    node2.persist_live(live_record("live-a", sid));
    node2.flush().await.unwrap();
    let node3 = RedisSessionLog::connect(config).await.unwrap();
    assert!(node3.take_session("live-a").await.unwrap().is_none());

    // A trim past the dead node's last sign of life drops its unclaimed live sessions, not
    // those of live nodes.
    node3.trim(now_millis() + 60_000).await.unwrap();
    assert!(
        node3
            .take_session_after_release("never-back")
            .await
            .unwrap()
            .is_none(),
        "trimmed with its dead node"
    );
    drop(node2);
    let mut kept = None;
    for _ in 0..100 {
        kept = node3.take_session_after_release("live-a").await.unwrap();
        if kept.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        kept.map(|r| r.sid),
        Some(sid),
        "a live node's session outlives the trim"
    );
}
