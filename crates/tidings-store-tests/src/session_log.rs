//! One function per behaviour of the [`SessionLog`] contract (the Connection State Recovery
//! log, `tidings_core::session_log`). Each panics on the first difference.
//!
//! Three groups, by what a backend can do:
//! - every log (the `pub async fn`s taking a `&L: SessionLog`, run on a fresh, empty log):
//!   offsets, appends and replays, sessions, trimming, flushing;
//!   [`session_log_conformance_tests!`](crate::session_log_conformance_tests);
//! - [`restart`]: logs whose content outlives the process (SQLite, Redis): what was flushed is
//!   there when the log is opened again, and offsets keep growing;
//!   [`session_log_restart_tests!`](crate::session_log_restart_tests);
//! - [`shared`]: logs that several nodes use at once (Redis): offsets never collide, a session
//!   is taken once whichever node asks, a node replays the others' packets;
//!   [`session_log_shared_tests!`](crate::session_log_shared_tests).
//!
//! # Packets as the server makes them
//!
//! Every packet gets its offset from [`SessionLog::next_offset`] and is stamped with that
//! offset's millisecond (`offset >> OffsetClock::SHIFT`) as `emitted_at`: the server takes the
//! offset and then the time, so the two agree unless the offset clock ran ahead of the wall
//! clock. Where they disagree the backends choose differently (the memory and SQLite logs trim
//! by `emitted_at`, the Redis log by the offset's millisecond, its sorted-set score), and this
//! suite does not pin either.
//!
//! # Choices the contract leaves open, not pinned
//!
//! [`Replay::complete`] must be false when packets after the offset *may* have been trimmed.
//! The memory and SQLite logs answer false only if a trimmed packet is above the offset; the
//! Redis log answers false whenever the offset's millisecond is below the latest trim's
//! `older_than`, even if that trim removed nothing. The tests assert `complete` only where
//! every correct answer agrees: nothing ever trimmed (true), a packet after the offset trimmed
//! (false), an offset handed out after the trim's `older_than` (true).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tidings_core::session_log::{
    LoggedPacket, Offset, OffsetClock, Replay, SessionLog, SessionRecord, now_millis,
};
use tidings_core::store::Millis;
use tidings_core::{Room, Sid};

/// Opens [`SessionLog`]s on one storage (a file, a Redis key prefix): the logs it opens, one
/// after another or at the same time, see the same packets and sessions.
///
/// Any `Fn() -> L` is a backend whose logs are fresh each time (the memory log); such a
/// backend can run [`session_log_conformance_tests!`](crate::session_log_conformance_tests)
/// only.
pub trait LogBackend {
    /// The log type.
    type Log: SessionLog;

    /// Opens a log on the backend's storage. Called inside the test's Tokio runtime.
    ///
    /// # Panics
    ///
    /// When the log cannot be opened, which fails the test.
    fn open(&self) -> impl Future<Output = Self::Log>;
}

impl<F, L> LogBackend for F
where
    F: Fn() -> L,
    L: SessionLog,
{
    type Log = L;

    fn open(&self) -> impl Future<Output = L> {
        std::future::ready(self())
    }
}

fn rooms(names: &[&str]) -> Vec<Room> {
    names.iter().map(|r| Room::from(*r)).collect()
}

/// A packet with a new offset of `log`, stamped with that offset's millisecond.
fn packet<L: SessionLog>(log: &L, namespace: &str, to: &[&str], except: &[&str]) -> LoggedPacket {
    let offset = log.next_offset();
    LoggedPacket {
        offset,
        namespace: namespace.to_owned(),
        rooms: rooms(to),
        except: rooms(except),
        packet: Bytes::from(format!("2[\"e\",\"{offset}\"]")),
        attachments: Vec::new(),
        emitted_at: offset >> OffsetClock::SHIFT,
    }
}

/// Appends a new packet and returns it.
fn emit<L: SessionLog>(log: &L, namespace: &str, to: &[&str], except: &[&str]) -> LoggedPacket {
    let p = packet(log, namespace, to, except);
    log.append(p.clone());
    p
}

fn record(pid: &str, rooms_in: &[&str], base: Offset, last: Offset, at: Millis) -> SessionRecord {
    SessionRecord {
        pid: pid.to_owned(),
        sid: Sid::new(),
        namespace: "/".to_owned(),
        rooms: rooms(rooms_in),
        base_offset: base,
        last_offset: last,
        disconnected_at: at,
    }
}

fn offsets(replay: &Replay) -> Vec<Offset> {
    replay.packets.iter().map(|p| p.offset).collect()
}

async fn replay<L: SessionLog>(log: &L, namespace: &str, after: Offset, to: &[&str]) -> Replay {
    log.since(namespace, after, &rooms(to)).await.unwrap()
}

/// Waits until the wall clock is past millisecond `ms` (a few ms of real time).
async fn wait_past(ms: Millis) {
    while now_millis() <= ms {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every offset is greater than the ones before it and than `head` before it; `head` is the
/// last one handed out.
pub async fn offsets_grow_strictly<L: SessionLog>(log: &L) {
    let mut previous = log.head();
    for _ in 0..5000 {
        let offset = log.next_offset();
        assert!(offset > previous, "{offset} after {previous}");
        assert_eq!(log.head(), offset, "head is the last offset handed out");
        previous = offset;
    }
}

/// Offsets come from the wall clock (`unix_ms << OffsetClock::SHIFT`), which is what makes
/// them comparable across nodes and restarts.
pub async fn offsets_carry_the_wall_clock<L: SessionLog>(log: &L) {
    let before = now_millis();
    let offset = log.next_offset();
    let after = now_millis();
    let ms = offset >> OffsetClock::SHIFT;
    assert!(
        (before..=after).contains(&ms),
        "offset {offset} is millisecond {ms}, outside {before}..={after}"
    );
}

/// Offsets handed out on several threads at once are all distinct, and the packets appended
/// from those threads are all replayed, once, in offset order.
pub async fn concurrent_appends_are_all_replayed_in_order<L: SessionLog>(log: &L) {
    let mut appended: Vec<Offset> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..250)
                        .map(|_| emit(log, "/", &[], &[]).offset)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    appended.sort_unstable();
    let mut distinct = appended.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 1000, "offsets are unique across threads");
    assert_eq!(offsets(&replay(log, "/", 0, &["r"]).await), appended);
}

/// A packet reads back with every field as appended: binary attachments (empty, with zero
/// bytes, longer than 64 KiB), rooms with spaces and non-ASCII names, the emission time.
pub async fn append_keeps_every_field<L: SessionLog>(log: &L) {
    let offset = log.next_offset();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let p = LoggedPacket {
        offset,
        namespace: "/chat room".to_owned(),
        rooms: rooms(&["a b", "é", "news"]),
        except: rooms(&["sid-x", "muted"]),
        packet: Bytes::from(format!(
            "52-/chat room,[\"img\",{{\"_placeholder\":true,\"num\":0}},{{\"_placeholder\":true,\"num\":1}},\"{offset}\"]"
        )),
        attachments: vec![
            Bytes::from_static(&[0, 255, 0]),
            Bytes::new(),
            Bytes::from(big),
        ],
        emitted_at: offset >> OffsetClock::SHIFT,
    };
    log.append(p.clone());
    assert_eq!(
        replay(log, "/chat room", 0, &["é"]).await,
        Replay {
            packets: vec![p],
            complete: true,
        }
    );
}

/// `since` returns exactly the packets after the offset, in offset order: from every offset
/// the suffix after it, nothing from the last one, nothing at the offset itself.
pub async fn since_returns_what_follows_the_offset<L: SessionLog>(log: &L) {
    let all: Vec<Offset> = (0..6).map(|_| emit(log, "/", &[], &[]).offset).collect();
    assert_eq!(offsets(&replay(log, "/", 0, &["r"]).await), all);
    for (i, &after) in all.iter().enumerate() {
        let got = replay(log, "/", after, &["r"]).await;
        assert_eq!(offsets(&got), all[i + 1..].to_vec(), "after {after}");
        assert!(got.complete);
    }
    // An offset between two packets: the next one on.
    assert_eq!(
        offsets(&replay(log, "/", all[2] - 1, &["r"]).await),
        all[2..].to_vec()
    );
    // An offset above everything logged: nothing.
    let later = log.next_offset();
    assert_eq!(replay(log, "/", later, &["r"]).await.packets, Vec::new());
}

/// Offsets are drawn before the packet is appended, so two emitters may append out of order;
/// a replay is still in offset order.
pub async fn packets_appended_out_of_order_replay_in_offset_order<L: SessionLog>(log: &L) {
    let a = packet(log, "/", &[], &[]);
    let b = packet(log, "/", &[], &[]);
    let c = packet(log, "/", &[], &[]);
    log.append(c.clone());
    log.append(a.clone());
    log.append(b.clone());
    assert_eq!(
        replay(log, "/", 0, &["r"]).await.packets,
        vec![a.clone(), b, c.clone()]
    );
    assert_eq!(replay(log, "/", a.offset, &["r"]).await.packets.len(), 2);
    assert_eq!(
        offsets(&replay(log, "/", c.offset - 1, &["r"]).await),
        [c.offset]
    );
}

/// A replay holds the packets of the namespace asked for only (`/` is not a prefix of
/// `/chat`).
pub async fn since_keeps_to_its_namespace<L: SessionLog>(log: &L) {
    let root = emit(log, "/", &[], &[]);
    let chat = emit(log, "/chat", &[], &[]);
    let chat_room = emit(log, "/chat", &["news"], &[]);
    emit(log, "/admin", &["news"], &[]);
    assert_eq!(
        offsets(&replay(log, "/", 0, &["news"]).await),
        [root.offset]
    );
    assert_eq!(
        offsets(&replay(log, "/chat", 0, &["news"]).await),
        [chat.offset, chat_room.offset]
    );
    assert_eq!(
        replay(log, "/nowhere", 0, &["news"]).await.packets,
        Vec::new()
    );
}

/// A session gets a packet when it addressed the whole namespace or one of the session's
/// rooms, and none of the session's rooms was excepted (socket.io's `shouldIncludePacket`).
pub async fn since_applies_rooms_and_exceptions<L: SessionLog>(log: &L) {
    let everyone = emit(log, "/", &[], &[]);
    let news = emit(log, "/", &["news"], &[]);
    emit(log, "/", &["sports"], &[]);
    let either = emit(log, "/", &["sports", "news"], &[]);
    let direct = emit(log, "/", &["sid-1"], &[]);
    emit(log, "/", &["sid-2"], &[]);
    // The session broadcast to the others of `news`: not for itself.
    emit(log, "/", &["news"], &["sid-1"]);
    // The whole namespace except a room the session is in.
    let muted = emit(log, "/", &[], &["muted"]);
    let not_muted = emit(log, "/", &[], &["sports"]);

    let session = ["sid-1", "news", "muted"];
    assert_eq!(
        offsets(&replay(log, "/", 0, &session).await),
        [
            everyone.offset,
            news.offset,
            either.offset,
            direct.offset,
            not_muted.offset
        ]
    );
    // Another session of the same namespace, in no room but its own.
    let other = ["sid-3"];
    assert_eq!(
        offsets(&replay(log, "/", 0, &other).await),
        [everyone.offset, muted.offset, not_muted.offset]
    );
}

/// A packet addressed to several rooms is logged once, and a session in several of them gets
/// it once.
pub async fn a_packet_for_several_rooms_is_replayed_once<L: SessionLog>(log: &L) {
    let p = emit(log, "/", &["a", "b", "c"], &[]);
    assert_eq!(
        replay(log, "/", 0, &["sid-1", "a", "b", "c"]).await.packets,
        vec![p]
    );
}

/// Read-your-writes without a flush: a `since` right after thousands of appends (several
/// write batches of any backend) sees all of them; a `take_session` right after a
/// `persist_session` sees it.
pub async fn reads_see_the_writes_before_them<L: SessionLog>(log: &L) {
    let appended: Vec<Offset> = (0..5000).map(|_| emit(log, "/", &[], &[]).offset).collect();
    let got = replay(log, "/", 0, &["r"]).await;
    assert_eq!(got.packets.len(), 5000);
    assert_eq!(offsets(&got), appended);
    let r = record("pid-ryw", &["sid-1"], 0, appended[4999], 1_000);
    log.persist_session(r.clone());
    assert_eq!(log.take_session("pid-ryw").await.unwrap(), Some(r));
}

/// A persisted session is taken with every field as persisted, once; an unknown pid is
/// `None`; taking one session leaves the others.
pub async fn a_session_is_taken_once<L: SessionLog>(log: &L) {
    assert_eq!(log.take_session("nobody").await.unwrap(), None);
    let a = record("pid-a", &["sid-a", "news", "é b"], 7, 42, 1_000);
    let b = SessionRecord {
        namespace: "/chat".to_owned(),
        ..record("pid-b", &["sid-b"], 0, 0, 2_000)
    };
    log.persist_session(a.clone());
    log.persist_session(b.clone());
    assert_eq!(log.take_session("pid-a").await.unwrap(), Some(a));
    assert_eq!(log.take_session("pid-a").await.unwrap(), None, "taken once");
    assert_eq!(log.take_session("pid-b").await.unwrap(), Some(b));
    assert_eq!(log.take_session("pid-b").await.unwrap(), None);
}

/// A live record is never taken from the log that wrote it (its process lives), nor trimmed
/// by it; the disconnected record persisted when the socket closes replaces it and is taken;
/// a forgotten session (live or disconnected) is gone.
pub async fn live_sessions_are_not_taken_while_their_process_lives<L: SessionLog>(log: &L) {
    let live = record("pid-live", &["sid-l", "news"], 1, 0, 1_000);
    log.persist_live(live.clone());
    log.trim(now_millis() + 10).await.unwrap();
    assert_eq!(
        log.take_session("pid-live").await.unwrap(),
        None,
        "live here"
    );
    let closed = record("pid-live", &["sid-l", "news"], 1, 5, now_millis());
    log.persist_session(closed.clone());
    assert_eq!(log.take_session("pid-live").await.unwrap(), Some(closed));

    log.persist_live(record("pid-gone", &["sid-g"], 1, 0, 1_000));
    log.forget_session("pid-gone");
    log.persist_session(record("pid-closed", &["sid-c"], 1, 0, now_millis()));
    log.forget_session("pid-closed");
    log.flush().await.unwrap();
    assert_eq!(log.take_session("pid-gone").await.unwrap(), None);
    assert_eq!(log.take_session("pid-closed").await.unwrap(), None);
}

/// Persisting under a pid that has a record replaces it, disconnection time included (what
/// trimming goes by).
pub async fn persist_replaces_the_record_of_its_pid<L: SessionLog>(log: &L) {
    let first = record("pid", &["sid-1"], 1, 2, 100);
    let second = record("pid", &["sid-1", "news"], 1, 5, 300);
    log.persist_session(first);
    log.persist_session(second.clone());
    log.trim(200).await.unwrap();
    assert_eq!(
        log.take_session("pid").await.unwrap(),
        Some(second),
        "the newer record, kept by its own time"
    );
    assert_eq!(log.take_session("pid").await.unwrap(), None);

    // And the other way round: a replacement that is older than the trim goes.
    log.persist_session(record("pid", &["sid-1"], 1, 2, 300));
    log.persist_session(record("pid", &["sid-1"], 1, 2, 100));
    log.trim(200).await.unwrap();
    assert_eq!(log.take_session("pid").await.unwrap(), None);
}

/// What a recovering session gets: after taking its record, the packets of its namespace and
/// rooms after its last offset, in order; not the ones before, not others' (other rooms,
/// other namespace, excepted).
pub async fn a_recovering_session_gets_exactly_what_it_missed<L: SessionLog>(log: &L) {
    let base = log.head();
    let seen = emit(log, "/", &["news"], &[]);
    let session = ["sid-1", "news"];
    log.persist_session(record("pid-1", &session, base, seen.offset, now_millis()));
    let missed_news = emit(log, "/", &["news"], &[]);
    emit(log, "/", &["sports"], &[]);
    emit(log, "/other", &["news"], &[]);
    emit(log, "/", &["news"], &["sid-1"]);
    let missed_all = emit(log, "/", &[], &[]);
    let missed_direct = emit(log, "/", &["sid-1"], &[]);
    emit(log, "/", &["sid-2"], &[]);

    let taken = log.take_session("pid-1").await.unwrap().expect("persisted");
    assert_eq!(taken.last_offset, seen.offset);
    let missed = vec![missed_news, missed_all, missed_direct];
    let got = log
        .since(&taken.namespace, taken.last_offset, &taken.rooms)
        .await
        .unwrap();
    assert_eq!(
        got,
        Replay {
            packets: missed.clone(),
            complete: true,
        }
    );
    // A client that saw nothing of this session replays from the session's base.
    let from_base = log
        .since(&taken.namespace, taken.base_offset, &taken.rooms)
        .await
        .unwrap();
    assert_eq!(from_base.packets, [vec![seen], missed].concat());
}

/// A log that never trimmed answers complete replays.
pub async fn replays_are_complete_until_a_trim<L: SessionLog>(log: &L) {
    assert!(replay(log, "/", 0, &["r"]).await.complete, "empty log");
    emit(log, "/", &[], &[]);
    assert!(replay(log, "/", 0, &["r"]).await.complete);
    log.flush().await.unwrap();
    assert!(replay(log, "/", 0, &["r"]).await.complete, "after a flush");
}

/// `trim(older_than)` drops the packets emitted and the sessions disconnected before
/// `older_than`, keeps the rest, and a replay from before a dropped packet says it is not
/// complete; one from an offset handed out after `older_than` is.
pub async fn trim_drops_what_is_older_than_the_window<L: SessionLog>(log: &L) {
    let old = emit(log, "/", &[], &[]);
    wait_past(old.emitted_at).await;
    let cut = now_millis();
    let from_after_cut = log.next_offset();
    let young = emit(log, "/", &["news"], &[]);
    let gone = record("pid-old", &["sid-1"], 0, old.offset, cut - 1);
    let kept = record("pid-kept", &["sid-2"], 0, old.offset, cut);
    log.persist_session(gone);
    log.persist_session(kept.clone());

    log.trim(cut).await.unwrap();

    assert_eq!(
        replay(log, "/", 0, &["news"]).await,
        Replay {
            packets: vec![young.clone()],
            complete: false,
        },
        "a packet after offset 0 was trimmed"
    );
    assert_eq!(
        replay(log, "/", from_after_cut, &["news"]).await,
        Replay {
            packets: vec![young],
            complete: true,
        },
        "nothing after an offset handed out after the cut was trimmed"
    );
    assert_eq!(log.take_session("pid-old").await.unwrap(), None);
    assert_eq!(log.take_session("pid-kept").await.unwrap(), Some(kept));
}

/// "Before" is strict: a packet emitted at `older_than` and a session disconnected at
/// `older_than` stay; one millisecond later they go.
pub async fn trim_keeps_what_is_exactly_at_the_cut<L: SessionLog>(log: &L) {
    let p = emit(log, "/", &[], &[]);
    let at = p.emitted_at;
    let s = record("pid", &["sid-1"], 0, p.offset, at);
    log.persist_session(s.clone());

    log.trim(at).await.unwrap();
    assert_eq!(replay(log, "/", 0, &["r"]).await.packets, vec![p]);
    assert_eq!(log.take_session("pid").await.unwrap(), Some(s.clone()));

    log.persist_session(s);
    log.trim(at + 1).await.unwrap();
    let after = replay(log, "/", 0, &["r"]).await;
    assert_eq!(
        after,
        Replay {
            packets: Vec::new(),
            complete: false,
        }
    );
    assert_eq!(log.take_session("pid").await.unwrap(), None);
}

/// Trimming twice, or with an older cut after a newer one, drops nothing more and loses no
/// young packet; packets appended after a trim are replayed.
pub async fn trims_are_idempotent_and_appends_go_on<L: SessionLog>(log: &L) {
    let old = emit(log, "/", &[], &[]);
    wait_past(old.emitted_at).await;
    let cut = now_millis();
    let young = emit(log, "/", &[], &[]);
    log.trim(cut).await.unwrap();
    log.trim(cut).await.unwrap();
    log.trim(cut - 1).await.unwrap();
    let later = emit(log, "/", &[], &[]);
    assert_eq!(
        offsets(&replay(log, "/", 0, &["r"]).await),
        [young.offset, later.offset]
    );
    assert!(!replay(log, "/", 0, &["r"]).await.complete);
}

/// `flush` answers `Ok` on an empty log and after writes, and what was written before it is
/// readable after it. (That it reaches the storage is [`restart`]'s business.)
pub async fn flush_answers_after_the_writes<L: SessionLog>(log: &L) {
    log.flush().await.unwrap();
    let p = emit(log, "/", &[], &[]);
    let s = record("pid", &["sid-1"], 0, p.offset, now_millis());
    log.persist_session(s.clone());
    log.flush().await.unwrap();
    log.flush().await.unwrap();
    assert_eq!(replay(log, "/", 0, &["r"]).await.packets, vec![p]);
    assert_eq!(log.take_session("pid").await.unwrap(), Some(s));
}

/// Logs whose content outlives the process that wrote it (SQLite, Redis): each function opens
/// logs on one backend one after another.
pub mod restart {
    use super::*;

    /// What was flushed is readable by a log opened afterwards on the same storage, while the
    /// writer is still open (`flush` put it in the storage, not only in the writer's memory).
    pub async fn flushed_writes_reach_the_storage<B: LogBackend>(backend: &B) {
        let writer = backend.open().await;
        let p = emit(&writer, "/", &["news"], &[]);
        let s = record("pid", &["sid-1", "news"], 0, p.offset, now_millis());
        writer.persist_session(s.clone());
        writer.flush().await.unwrap();

        let reader = backend.open().await;
        assert_eq!(reader.take_session("pid").await.unwrap(), Some(s));
        assert_eq!(
            replay(&reader, "/", 0, &["news"]).await,
            Replay {
                packets: vec![p],
                complete: true,
            }
        );
        drop(writer);
    }

    /// Packets and sessions flushed before a log is dropped are there when it is opened again.
    pub async fn flushed_writes_survive_a_reopen<B: LogBackend>(backend: &B) {
        let (packets, sessions) = {
            let log = backend.open().await;
            let packets: Vec<_> = (0..3).map(|_| emit(&log, "/", &[], &[])).collect();
            let sessions = [
                record("pid-1", &["sid-1"], 0, packets[0].offset, now_millis()),
                record("pid-2", &["sid-2"], 0, packets[2].offset, now_millis()),
            ];
            for s in &sessions {
                log.persist_session(s.clone());
            }
            log.flush().await.unwrap();
            (packets, sessions)
        };
        let log = backend.open().await;
        assert_eq!(replay(&log, "/", 0, &["r"]).await.packets, packets);
        let [one, two] = sessions;
        assert_eq!(log.take_session("pid-2").await.unwrap(), Some(two));
        assert_eq!(log.take_session("pid-1").await.unwrap(), Some(one));
    }

    /// Offsets keep growing across a reopen, even past a wall clock that is behind the
    /// logged offsets (a clock set back, or a packet of a node whose clock runs ahead): the
    /// reopened log starts above the highest offset it holds.
    pub async fn offsets_keep_growing_across_a_reopen<B: LogBackend>(backend: &B) {
        let ahead = (now_millis() + 3_600_000) << OffsetClock::SHIFT;
        let mut last = {
            let log = backend.open().await;
            let now = emit(&log, "/", &[], &[]);
            let future = LoggedPacket {
                offset: ahead,
                emitted_at: ahead >> OffsetClock::SHIFT,
                ..now.clone()
            };
            log.append(future);
            log.flush().await.unwrap();
            ahead
        };
        for _ in 0..2 {
            let log = backend.open().await;
            assert!(log.head() >= last, "head {} below {last}", log.head());
            let next = log.next_offset();
            assert!(next > last, "{next} not above {last} after a reopen");
            log.append(packet(&log, "/", &[], &[]));
            log.flush().await.unwrap();
            last = log.head();
        }
    }

    /// A trim's mark survives a reopen: a replay from before trimmed packets still says it
    /// is incomplete, and trimmed packets and sessions stay gone.
    pub async fn the_trim_survives_a_reopen<B: LogBackend>(backend: &B) {
        let (young, from_after_cut) = {
            let log = backend.open().await;
            let old = emit(&log, "/", &[], &[]);
            log.persist_session(record("pid", &["sid-1"], 0, old.offset, old.emitted_at));
            wait_past(old.emitted_at).await;
            let cut = now_millis();
            let from_after_cut = log.next_offset();
            let young = emit(&log, "/", &[], &[]);
            log.trim(cut).await.unwrap();
            log.flush().await.unwrap();
            (young, from_after_cut)
        };
        let log = backend.open().await;
        assert_eq!(
            replay(&log, "/", 0, &["r"]).await,
            Replay {
                packets: vec![young.clone()],
                complete: false,
            }
        );
        assert_eq!(
            replay(&log, "/", from_after_cut, &["r"]).await,
            Replay {
                packets: vec![young],
                complete: true,
            }
        );
        assert_eq!(log.take_session("pid").await.unwrap(), None);
    }
}

/// Logs shared by several nodes at once (Redis): each function opens two or three logs on one
/// backend, the nodes.
pub mod shared {
    use super::*;

    /// Two nodes never hand out the same offset, even in the same millisecond, and each
    /// node's offsets grow.
    pub async fn nodes_never_hand_out_the_same_offset<B: LogBackend>(backend: &B) {
        let a = backend.open().await;
        let b = backend.open().await;
        let mut all = Vec::new();
        let (mut last_a, mut last_b) = (0, 0);
        for _ in 0..5000 {
            let (x, y) = (a.next_offset(), b.next_offset());
            assert!(x > last_a && y > last_b);
            (last_a, last_b) = (x, y);
            all.extend([x, y]);
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10_000, "offsets of two nodes collided");
    }

    /// A session persisted by one node is taken by another, once: a second take on any node
    /// is `None`, and of two nodes taking at the same time exactly one gets it.
    pub async fn a_session_is_taken_once_across_nodes<B: LogBackend>(backend: &B) {
        let a = backend.open().await;
        let b = backend.open().await;
        let s = record("pid-1", &["sid-1", "news"], 3, 9, now_millis());
        a.persist_session(s.clone());
        a.flush().await.unwrap();
        assert_eq!(b.take_session("pid-1").await.unwrap(), Some(s));
        assert_eq!(a.take_session("pid-1").await.unwrap(), None);
        assert_eq!(b.take_session("pid-1").await.unwrap(), None);

        let s = record("pid-2", &["sid-2"], 3, 9, now_millis());
        b.persist_session(s.clone());
        b.flush().await.unwrap();
        let (x, y) = tokio::join!(a.take_session("pid-2"), b.take_session("pid-2"));
        let mut got = [x.unwrap(), y.unwrap()];
        got.sort_by_key(Option::is_none);
        assert_eq!(got, [Some(s), None]);
    }

    /// Each node replays the packets every node appended (once flushed), in offset order,
    /// filtered as for one log.
    pub async fn every_node_replays_every_nodes_packets<B: LogBackend>(backend: &B) {
        let a = backend.open().await;
        let b = backend.open().await;
        let mut expected = Vec::new();
        for i in 0..40 {
            let (from, other) = if i % 3 == 0 { (&b, &a) } else { (&a, &b) };
            expected.push(emit(from, "/", &["news"], &[]));
            emit(other, "/", &["sports"], &[]);
            emit(other, "/chat", &["news"], &[]);
            if i % 10 == 0 {
                wait_past(now_millis()).await;
            }
        }
        expected.sort_by_key(|p| p.offset);
        a.flush().await.unwrap();
        b.flush().await.unwrap();
        for node in [&a, &b] {
            assert_eq!(
                replay(node, "/", 0, &["sid-1", "news"]).await,
                Replay {
                    packets: expected.clone(),
                    complete: true,
                }
            );
        }
        let mid = expected[19].offset;
        assert_eq!(
            replay(&b, "/", mid, &["news"]).await.packets,
            expected[20..].to_vec()
        );
    }

    /// A node opened while others run starts above every offset they logged.
    pub async fn a_new_node_starts_above_the_logged_offsets<B: LogBackend>(backend: &B) {
        let a = backend.open().await;
        let ahead = (now_millis() + 60_000) << OffsetClock::SHIFT;
        let p = LoggedPacket {
            offset: ahead,
            emitted_at: ahead >> OffsetClock::SHIFT,
            ..packet(&a, "/", &[], &[])
        };
        a.append(p);
        a.flush().await.unwrap();
        let c = backend.open().await;
        let next = c.next_offset();
        assert!(next > ahead, "{next} not above {ahead}");
        drop(a);
    }

    /// One node's trim is seen by the others: trimmed packets and sessions are gone for
    /// everyone and the others' replays from before them are incomplete.
    pub async fn a_trim_by_one_node_holds_for_all<B: LogBackend>(backend: &B) {
        let a = backend.open().await;
        let b = backend.open().await;
        let old = emit(&a, "/", &[], &[]);
        a.persist_session(record("pid", &["sid-1"], 0, old.offset, old.emitted_at));
        a.flush().await.unwrap();
        wait_past(old.emitted_at).await;
        let cut = now_millis();
        let young = emit(&a, "/", &[], &[]);
        a.flush().await.unwrap();
        b.trim(cut).await.unwrap();
        assert_eq!(
            replay(&a, "/", 0, &["r"]).await,
            Replay {
                packets: vec![young],
                complete: false,
            }
        );
        assert_eq!(a.take_session("pid").await.unwrap(), None);
    }
}
