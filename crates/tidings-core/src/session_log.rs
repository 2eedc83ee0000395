//! The Connection State Recovery seam: a log of recoverable packets and of disconnected
//! sessions, kept by a backend (in memory, SQLite, Redis) so that a client that lost its
//! connection gets back its socket id, its rooms and every event it missed.
//!
//! # Model
//!
//! - Every recoverable packet (an EVENT the server emits without an ack id) gets an
//!   [`Offset`] from [`SessionLog::next_offset`] before it is encoded: the offset travels to
//!   the client as the packet's last argument (a decimal string) and the client sends the last
//!   one it saw when it reconnects. The packet is then [`appended`](SessionLog::append) **once**,
//!   with the rooms it was addressed to, however many sockets receive it.
//! - A socket that loses its connection is [`persisted`](SessionLog::persist_session) as a
//!   [`SessionRecord`] under its private id (`pid`). A reconnect with that pid
//!   [`takes`](SessionLog::take_session) the record and [replays](SessionLog::since) the
//!   packets of the session's rooms after the client's offset.
//! - [`SessionLog::trim`] drops packets and sessions older than the recovery window.
//!
//! # Live sessions and crashes
//!
//! A backend that survives the process (SQLite, Redis) also keeps the sessions that are still
//! connected, so that a `kill -9`, a power loss or the death of a node does not lose them: the
//! server [records a live session](SessionLog::persist_live) when it answers its CONNECT and
//! again when its rooms change, and [forgets](SessionLog::forget_session) it when it ends for
//! good (a disconnect that is not recoverable). A live record is not
//! [taken](SessionLog::take_session) while its process lives (the server evicts its own live
//! sockets itself, and asks the other nodes to release theirs). Once that process is known to
//! be gone (the SQLite log: when the next process opens the file; Redis: when the node's
//! liveness key has expired) its live records count as disconnected at the process's last
//! sign of life, and are taken, trimmed and expire like any other. Such a record's
//! `last_offset` is at least every offset its process may have queued to the socket: which of
//! them reached the client before the crash is unknown, so the client's own offset decides.
//! The in-memory log ignores live records: it dies with its process.
//!
//! # Offsets
//!
//! Offsets are `u64`s that grow strictly within a log and stay above every offset the log
//! handed out before, also across restarts of the process (a persistent backend) and, for a
//! shared backend, comparable across nodes: [`OffsetClock`] makes them from the wall clock
//! (`unix_ms << 20`, plus one per offset within a millisecond), seeded with the highest
//! offset the backend holds. Offsets of different nodes of a cluster are ordered by their
//! clocks; a skew between nodes is a window in which a packet of the slower node may sort
//! before one of the faster node that was emitted earlier.
//!
//! # Contract for implementations
//!
//! - [`next_offset`](SessionLog::next_offset), [`append`](SessionLog::append) and
//!   [`persist_session`](SessionLog::persist_session) are called on the broadcast and
//!   disconnect paths: they must not block. Buffer and write in batches.
//! - Read-your-writes within one process: a [`since`](SessionLog::since) or
//!   [`take_session`](SessionLog::take_session) called after an `append` or `persist_session`
//!   returned must see it. (The server relies on it: a broadcast appends before it resolves
//!   its recipients, a recovering socket joins its rooms before it reads the log, so every
//!   packet is either replayed or delivered live.) Appends of other nodes should become
//!   visible within milliseconds.
//! - `take_session` removes the record: a pid recovers at most once.
//! - `since` answers whether it is [`complete`](Replay::is_complete): false when packets
//!   after the offset asked for may have been trimmed.
//! - Durability is the backend's choice and must be documented; the recovery log is a cache
//!   of recent traffic, not a durable topic (durable topics are [`crate::store::Store`]).
//!   A lost record only means a client reconnects with `recovered = false`.
//!
//! Errors are [`StoreError`]s; the server treats any of them as "not recoverable" and
//! connects the client as a new session.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::Sid;
use crate::room::Room;
use crate::store::{Millis, StoreError};

/// A position in the recovery log. Rendered to clients as a decimal string.
pub type Offset = u64;

/// A future returned by a [`SessionLog`] method.
pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One recoverable packet as it was sent, and who it was addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    /// Its offset (also its last argument on the wire).
    pub offset: Offset,
    /// The namespace it was emitted in.
    pub namespace: String,
    /// The rooms it was addressed to; empty means the whole namespace.
    pub rooms: Vec<Room>,
    /// Rooms whose members were left out (a socket's own room when it broadcast to others).
    pub except: Vec<Room>,
    /// The Socket.IO packet exactly as sent: its text, e.g. `2["news","hi","7001"]` (no
    /// Engine.IO type digit), or with the msgpack parser its binary message (which holds its
    /// binary values; `attachments` is then empty).
    pub packet: Bytes,
    /// The binary attachments that follow the packet, in order.
    pub attachments: Vec<Bytes>,
    /// When it was emitted, in ms since the Unix epoch (for [`SessionLog::trim`]).
    pub emitted_at: Millis,
}

impl LoggedPacket {
    /// Whether a session in `rooms` was a recipient: the packet addressed the namespace or one
    /// of the rooms, and none of the rooms was excluded (the rule of socket.io's
    /// `shouldIncludePacket`).
    pub fn is_for(&self, rooms: &[Room]) -> bool {
        let included = self.rooms.is_empty() || rooms.iter().any(|r| self.rooms.contains(r));
        included && !rooms.iter().any(|r| self.except.contains(r))
    }
}

/// A disconnected socket, waiting to be recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The private session id the client sends back (`pid`); secret, never logged.
    pub pid: String,
    /// The socket id, kept on recovery.
    pub sid: Sid,
    /// The namespace.
    pub namespace: String,
    /// The rooms the socket was in, its own included.
    pub rooms: Vec<Room>,
    /// The log position when the session began: nothing at or before it was for it.
    pub base_offset: Offset,
    /// The last offset queued to the socket (0: none). Packets at or before it reached the
    /// socket's connection; the client's own offset says which of them it really received.
    pub last_offset: Offset,
    /// When the connection was lost, in ms since the Unix epoch.
    pub disconnected_at: Millis,
}

/// The answer of [`SessionLog::since`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The packets after the offset that were for the rooms, by offset.
    pub packets: Vec<LoggedPacket>,
    /// False when the log has trimmed packets after the offset (they may have been for the
    /// rooms).
    pub complete: bool,
}

impl Replay {
    /// Whether no packet after the offset was trimmed.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

/// Where disconnected sessions and recent recoverable packets are kept. See the
/// [module documentation](self) for the contract.
pub trait SessionLog: Send + Sync + 'static {
    /// A new offset, greater than every offset this log handed out before.
    fn next_offset(&self) -> Offset;

    /// The highest offset handed out so far: every later packet gets a greater one.
    fn head(&self) -> Offset;

    /// Records a packet. Must not block; write in the background.
    fn append(&self, packet: LoggedPacket);

    /// Records a disconnected session, replacing any record with the same pid. Must not block.
    fn persist_session(&self, session: SessionRecord);

    /// Records a live session (still connected; `disconnected_at` is the time of the write, its
    /// latest sign of life), replacing any record with the same pid; see the
    /// [module documentation](self#live-sessions-and-crashes). Must not block: a connect or a
    /// join never waits for it. The default does nothing (a log that dies with its process).
    fn persist_live(&self, session: SessionRecord) {
        let _ = session;
    }

    /// Removes any record of `pid`, live or disconnected: the session ended and is not
    /// recoverable. Must not block. The default does nothing.
    fn forget_session(&self, pid: &str) {
        let _ = pid;
    }

    /// Removes and returns the disconnected session recorded under `pid` (also a live record
    /// whose process is known to be gone, as disconnected at its last sign of life).
    fn take_session<'a>(&'a self, pid: &'a str) -> LogFuture<'a, Option<SessionRecord>>;

    /// [`take_session`](SessionLog::take_session) once the other nodes were asked to release
    /// `pid` and none did: a log shared by nodes may then wait, for a bounded and documented
    /// time, until a live record's node is known to be dead, and take it. The default is
    /// `take_session`.
    fn take_session_after_release<'a>(
        &'a self,
        pid: &'a str,
    ) -> LogFuture<'a, Option<SessionRecord>> {
        self.take_session(pid)
    }

    /// The packets of `namespace` after `after` that were for a session in `rooms`.
    fn since<'a>(
        &'a self,
        namespace: &'a str,
        after: Offset,
        rooms: &'a [Room],
    ) -> LogFuture<'a, Replay>;

    /// Drops packets emitted and sessions disconnected before `older_than`.
    fn trim(&self, older_than: Millis) -> LogFuture<'_, ()>;

    /// Waits until everything appended or persisted before the call is written.
    fn flush(&self) -> LogFuture<'_, ()>;
}

/// Hands out offsets from the wall clock: `unix_ms << 20`, one more per offset within a
/// millisecond, and never below a floor (the highest offset already used). Lock-free.
///
/// Nodes sharing one log use [`OffsetClock::tagged`]: the low 8 bits of every offset are the
/// node's tag, so two nodes never hand out the same offset in the same millisecond (which
/// would make a replay skip the other node's packet).
#[derive(Debug)]
pub struct OffsetClock {
    last: AtomicU64,
    /// Bits of an offset below the node's counter: 0 untagged, 0xFF tagged.
    tag_mask: u64,
    tag: u64,
}

impl OffsetClock {
    /// Bits below the millisecond: about a million offsets per millisecond before the clock
    /// runs ahead of the wall clock (4,096 per node when tagged).
    pub const SHIFT: u32 = 20;

    /// A clock whose offsets are all greater than `floor`.
    pub fn new(floor: Offset) -> Self {
        OffsetClock {
            last: AtomicU64::new(floor),
            tag_mask: 0,
            tag: 0,
        }
    }

    /// A clock for one of several nodes sharing a log: offsets greater than `floor` whose low
    /// 8 bits are `tag`, unique among nodes with different tags.
    pub fn tagged(floor: Offset, tag: u8) -> Self {
        OffsetClock {
            last: AtomicU64::new(floor),
            tag_mask: 0xFF,
            tag: u64::from(tag),
        }
    }

    /// The next offset.
    pub fn next(&self) -> Offset {
        let now = now_millis() << Self::SHIFT;
        let step = self.tag_mask + 1;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = (now.max((last & !self.tag_mask) + step) & !self.tag_mask) | self.tag;
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// The last offset handed out (or the floor).
    pub fn head(&self) -> Offset {
        self.last.load(Ordering::Acquire)
    }

    /// Raises the floor to `offset` (e.g. after reading the backend).
    pub fn observe(&self, offset: Offset) {
        self.last.fetch_max(offset, Ordering::AcqRel);
    }
}

pub use crate::clock::now_millis;

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(rooms: &[&str], except: &[&str]) -> LoggedPacket {
        LoggedPacket {
            offset: 1,
            namespace: "/".into(),
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            except: except.iter().map(|r| Room::from(*r)).collect(),
            packet: Bytes::from_static(b"2[\"a\",\"1\"]"),
            attachments: Vec::new(),
            emitted_at: 0,
        }
    }

    #[test]
    fn addressing_follows_the_reference_rule() {
        let rooms = [Room::from("sid1"), Room::from("news")];
        assert!(packet(&[], &[]).is_for(&rooms));
        assert!(packet(&["news"], &[]).is_for(&rooms));
        assert!(!packet(&["sports"], &[]).is_for(&rooms));
        assert!(!packet(&["news"], &["sid1"]).is_for(&rooms));
        assert!(!packet(&[], &["news"]).is_for(&rooms));
    }

    #[test]
    fn offsets_grow_and_respect_the_floor() {
        let clock = OffsetClock::new(0);
        let a = clock.next();
        let b = clock.next();
        assert!(b > a);
        assert!(a >= (now_millis() - 1000) << OffsetClock::SHIFT);
        let far = u64::MAX >> 2;
        let clock = OffsetClock::new(far);
        assert_eq!(clock.next(), far + 1);
        clock.observe(far + 10);
        assert_eq!(clock.next(), far + 11);
        assert_eq!(clock.head(), far + 11);
    }

    #[test]
    fn tagged_clocks_never_collide() {
        let a = OffsetClock::tagged(0, 1);
        let b = OffsetClock::tagged(0, 2);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (x, y) = (a.next(), b.next());
            assert_eq!(x & 0xFF, 1);
            assert_eq!(y & 0xFF, 2);
            assert!(seen.insert(x) && seen.insert(y));
        }
        // Observing another node's offset moves this one past it.
        let far = (now_millis() + 60_000) << OffsetClock::SHIFT;
        a.observe(far | 7);
        let next = a.next();
        assert!(next > far | 7);
        assert_eq!(next & 0xFF, 1);
    }
}
