//! The Connection State Recovery log on Redis: what lets a client that lost its node reconnect
//! to another one and get back its socket id, its rooms and every event it missed.
//!
//! # Key layout (under the store's prefix)
//!
//! - `recovery:packets` — a sorted set of every recoverable packet of every node. The score is
//!   the packet's millisecond (`offset >> 20`, see [`OffsetClock`]); the member is the encoded
//!   packet, which starts with its offset in big-endian, so members of one millisecond sort by
//!   offset and a range read returns packets in offset order.
//! - `recovery:trimmed` — the highest `older_than` a trim used: a replay from an offset below
//!   it may be incomplete.
//! - `recovery:tag:<0…255>` — the offset tags (see [`OffsetClock::tagged`]), each leased to one
//!   live node (value: the node's random owner id) for [`TAG_LEASE`], renewed every third of
//!   it and released when the log is dropped; so two live nodes never share a tag, however
//!   often nodes restarted. `recovery:nodes` — a counter that spreads the nodes' first choice
//!   over the tags.
//! - `recovery:sessions` (hash pid → encoded record) and `recovery:sessions:at` (sorted set pid
//!   by disconnection time, for trimming).
//!
//! # Durability and ordering
//!
//! This is a cache of recent traffic, not a durable topic: writes are pipelined in the
//! background and a lost write only means a client reconnects with `recovered = false`.
//! Every operation of one process goes through one task in order, which gives the
//! read-your-writes the [`SessionLog`] contract asks for; other nodes' appends are visible as
//! soon as Redis has them.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tidings_core::Room;
use tidings_core::session_log::{
    LogFuture, LoggedPacket, Offset, OffsetClock, Replay, SessionLog, SessionRecord,
};
use tidings_core::store::{Millis, StoreError};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::{RedisConfig, RedisStore};

/// How many buffered writes go to Redis in one pipeline.
const MAX_BATCH: usize = 512;

/// Takes a session atomically: a pid recovers at most once, whichever node asks first.
const TAKE_SCRIPT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return v
";

/// Drops old packets and sessions and raises the trim mark (never lowers it: several nodes
/// trim with slightly different clocks).
const TRIM_SCRIPT: &str = r"
local older = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. older)
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. older)
for _, pid in ipairs(old) do redis.call('HDEL', KEYS[2], pid) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. older)
local mark = tonumber(redis.call('GET', KEYS[4]) or '0')
if older > mark then redis.call('SET', KEYS[4], ARGV[1]) end
return #old
";

struct Keys {
    packets: String,
    trimmed: String,
    sessions: String,
    sessions_at: String,
}

enum Op {
    Append(LoggedPacket),
    Persist(SessionRecord),
    Take(
        String,
        oneshot::Sender<Result<Option<SessionRecord>, StoreError>>,
    ),
    Since {
        namespace: String,
        after: Offset,
        rooms: Vec<Room>,
        reply: oneshot::Sender<Result<Replay, StoreError>>,
    },
    Trim(Millis, oneshot::Sender<Result<(), StoreError>>),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// How long a node holds its offset tag without renewing it. The log renews it every third of
/// this; a node that cannot reach Redis for longer loses it (and says so at `error`), but then
/// it could not log anything either.
pub const TAG_LEASE: Duration = Duration::from_secs(60);

/// Takes the tag `KEYS[1]` for owner `ARGV[1]` for `ARGV[2]` ms, or renews it if that owner
/// holds it: 1; 0 when another node holds it.
const LEASE_SCRIPT: &str = r"
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if held then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Deletes the tag `KEYS[1]` if owner `ARGV[1]` holds it.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// This node's lease of its offset tag.
struct Lease {
    tag: u8,
    key: String,
    owner: String,
}

impl Lease {
    /// Leases the first free tag, starting from a counter so that nodes spread over the tags.
    async fn take(conn: &mut ConnectionManager, prefix: &str) -> Result<Lease, StoreError> {
        let start: u64 = redis::cmd("INCR")
            .arg(format!("{prefix}recovery:nodes"))
            .query_async(conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let owner = tidings_core::Sid::new().to_string();
        let script = redis::Script::new(LEASE_SCRIPT);
        for k in 0..256u64 {
            let tag = u8::try_from((start + k) % 256).unwrap_or(0);
            let lease = Lease {
                tag,
                key: format!("{prefix}recovery:tag:{tag}"),
                owner: owner.clone(),
            };
            if lease.renew(conn, &script).await? {
                return Ok(lease);
            }
        }
        Err(StoreError::Unavailable(
            "redis recovery log: all 256 offset tags are leased to live nodes (at most 256 nodes can share one log)".into(),
        ))
    }

    /// Takes or renews the lease: false when another node holds the tag.
    async fn renew(
        &self,
        conn: &mut ConnectionManager,
        script: &redis::Script,
    ) -> Result<bool, StoreError> {
        let held: i64 = script
            .key(&self.key)
            .arg(&self.owner)
            .arg(tidings_core::clock::millis(TAG_LEASE))
            .invoke_async(conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(held == 1)
    }

    async fn release(&self, conn: &mut ConnectionManager) {
        let released: Result<i64, _> = redis::Script::new(RELEASE_SCRIPT)
            .key(&self.key)
            .arg(&self.owner)
            .invoke_async(conn)
            .await;
        if let Err(e) = released {
            debug!(tag = self.tag, error = %e, "recovery offset tag not released; its lease expires");
        }
    }
}

/// The [`SessionLog`] shared by every node on one Redis (and key prefix).
pub struct RedisSessionLog {
    clock: OffsetClock,
    ops: mpsc::UnboundedSender<Op>,
}

impl fmt::Debug for RedisSessionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionLog")
            .field("head", &self.clock.head())
            .finish_non_exhaustive()
    }
}

fn unavailable(e: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis recovery log: {e}"))
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the redis recovery log has stopped".into())
}

impl RedisSessionLog {
    /// Connects with `config` (the same settings as the store) and seeds the offset clock
    /// with the highest offset any node logged. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when Redis cannot be reached now; an invalid URL or prefix
    /// is [`StoreError::Unavailable`] too, with the reason.
    pub async fn connect(config: RedisConfig) -> Result<RedisSessionLog, StoreError> {
        let store = RedisStore::open(config)
            .map_err(|e| StoreError::Unavailable(format!("redis recovery log: {e}")))?;
        let mut conn = store.conn().await?;
        let prefix = &store.config().prefix;
        let keys = Keys {
            packets: format!("{prefix}recovery:packets"),
            trimmed: format!("{prefix}recovery:trimmed"),
            sessions: format!("{prefix}recovery:sessions"),
            sessions_at: format!("{prefix}recovery:sessions:at"),
        };
        let last: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(&keys.packets)
            .arg(-1)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let floor = last
            .first()
            .and_then(|m| decode_packet(m).ok())
            .map_or(0, |p| p.offset);
        // A tag per live node, so that two nodes never hand out the same offset.
        let lease = Lease::take(&mut conn, prefix).await?;
        let tag = lease.tag;
        let (ops, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, keys, lease, rx));
        Ok(RedisSessionLog {
            clock: OffsetClock::tagged(floor, tag),
            ops,
        })
    }

    fn send(&self, op: Op) {
        // The task only stops with the runtime; then there is nobody left to recover.
        let _ = self.ops.send(op);
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(make(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl SessionLog for RedisSessionLog {
    fn next_offset(&self) -> Offset {
        self.clock.next()
    }

    fn head(&self) -> Offset {
        self.clock.head()
    }

    fn append(&self, packet: LoggedPacket) {
        self.send(Op::Append(packet));
    }

    fn persist_session(&self, session: SessionRecord) {
        self.send(Op::Persist(session));
    }

    fn take_session<'a>(&'a self, pid: &'a str) -> LogFuture<'a, Option<SessionRecord>> {
        Box::pin(self.ask(|tx| Op::Take(pid.to_owned(), tx)))
    }

    fn since<'a>(
        &'a self,
        namespace: &'a str,
        after: Offset,
        rooms: &'a [Room],
    ) -> LogFuture<'a, Replay> {
        Box::pin(self.ask(move |reply| Op::Since {
            namespace: namespace.to_owned(),
            after,
            rooms: rooms.to_vec(),
            reply,
        }))
    }

    fn trim(&self, older_than: Millis) -> LogFuture<'_, ()> {
        Box::pin(self.ask(move |tx| Op::Trim(older_than, tx)))
    }

    fn flush(&self) -> LogFuture<'_, ()> {
        Box::pin(self.ask(Op::Flush))
    }
}

/// The one task that talks to Redis for this log: writes batched, everything in order.
async fn run(
    mut conn: ConnectionManager,
    keys: Keys,
    lease: Lease,
    mut rx: mpsc::UnboundedReceiver<Op>,
) {
    let take = redis::Script::new(TAKE_SCRIPT);
    let trim = redis::Script::new(TRIM_SCRIPT);
    let renew = redis::Script::new(LEASE_SCRIPT);
    let mut renewal = tokio::time::interval(TAG_LEASE / 3);
    renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renewal.tick().await; // the first tick is now: the lease was just taken
    let mut pending: Option<Op> = None;
    loop {
        let op = match pending.take() {
            Some(op) => op,
            None => tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => op,
                    None => {
                        // The log was dropped: its tag is free for the next node.
                        lease.release(&mut conn).await;
                        return;
                    }
                },
                _ = renewal.tick() => {
                    match lease.renew(&mut conn, &renew).await {
                        Ok(true) => {}
                        Ok(false) => error!(
                            tag = lease.tag,
                            "recovery offset tag taken by another node while this one could not reach redis: their offsets may collide; restart this node"
                        ),
                        Err(e) => warn!(tag = lease.tag, error = %e, "recovery offset tag not renewed; will retry"),
                    }
                    continue;
                }
            },
        };
        match op {
            Op::Append(_) | Op::Persist(_) => {
                let mut pipe = redis::pipe();
                let mut count = 0;
                let mut next = Some(op);
                while let Some(op) = next.take() {
                    match op {
                        Op::Append(p) => {
                            pipe.cmd("ZADD")
                                .arg(&keys.packets)
                                .arg(p.offset >> OffsetClock::SHIFT)
                                .arg(encode_packet(&p))
                                .ignore();
                        }
                        Op::Persist(s) => {
                            pipe.cmd("HSET")
                                .arg(&keys.sessions)
                                .arg(&s.pid)
                                .arg(encode_session(&s))
                                .ignore();
                            pipe.cmd("ZADD")
                                .arg(&keys.sessions_at)
                                .arg(s.disconnected_at)
                                .arg(&s.pid)
                                .ignore();
                        }
                        other => {
                            pending = Some(other);
                            break;
                        }
                    }
                    count += 1;
                    if count < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                    warn!(error = %e, writes = count, "recovery log writes lost: those sessions will not recover");
                }
            }
            Op::Take(pid, reply) => {
                let result: Result<Option<Vec<u8>>, _> = take
                    .key(&keys.sessions)
                    .key(&keys.sessions_at)
                    .arg(&pid)
                    .invoke_async(&mut conn)
                    .await;
                let answer = match result {
                    Ok(Some(bytes)) => decode_session(&bytes).map(Some),
                    Ok(None) => Ok(None),
                    Err(e) => Err(unavailable(&e)),
                };
                let _ = reply.send(answer);
            }
            Op::Since {
                namespace,
                after,
                rooms,
                reply,
            } => {
                let _ = reply.send(since(&mut conn, &keys, &namespace, after, &rooms).await);
            }
            Op::Trim(older_than, reply) => {
                let result: Result<i64, _> = trim
                    .key(&keys.packets)
                    .key(&keys.sessions)
                    .key(&keys.sessions_at)
                    .key(&keys.trimmed)
                    .arg(older_than)
                    .invoke_async(&mut conn)
                    .await;
                let _ = reply.send(result.map(|_| ()).map_err(|e| unavailable(&e)));
            }
            Op::Flush(reply) => {
                // Everything sent before the flush has been written: the task is in order.
                let _ = reply.send(Ok(()));
            }
        }
    }
}

async fn since(
    conn: &mut ConnectionManager,
    keys: &Keys,
    namespace: &str,
    after: Offset,
    rooms: &[Room],
) -> Result<Replay, StoreError> {
    let from_ms = after >> OffsetClock::SHIFT;
    let (members, trimmed): (Vec<Vec<u8>>, Option<u64>) = redis::pipe()
        .cmd("ZRANGEBYSCORE")
        .arg(&keys.packets)
        .arg(from_ms)
        .arg("+inf")
        .cmd("GET")
        .arg(&keys.trimmed)
        .query_async(conn)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut packets = Vec::new();
    for member in &members {
        let packet = match decode_packet(member) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "skipping an unreadable recovery log entry");
                continue;
            }
        };
        if packet.offset > after && packet.namespace == namespace && packet.is_for(rooms) {
            packets.push(packet);
        }
    }
    // A trim at T removed packets of milliseconds below T: everything after `after` is still
    // there when `after`'s millisecond is at or above the mark.
    let complete = from_ms >= trimmed.unwrap_or(0);
    Ok(Replay { packets, complete })
}

// --- encoding: length-prefixed fields, so any bytes (binary attachments) round-trip ---

fn put(buf: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&field[..len as usize]);
}

fn put_rooms(buf: &mut Vec<u8>, rooms: &[Room]) {
    buf.extend_from_slice(&u32::try_from(rooms.len()).unwrap_or(u32::MAX).to_be_bytes());
    for room in rooms {
        put(buf, room.as_str().as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("redis recovery log: truncated {what}"))
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self, what: &str) -> Result<u64, StoreError> {
        let b = self.take(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn u32(&mut self, what: &str) -> Result<usize, StoreError> {
        let b = self.take(4, what)?;
        let mut a = [0; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a) as usize)
    }

    fn field(&mut self, what: &str) -> Result<&'a [u8], StoreError> {
        let n = self.u32(what)?;
        self.take(n, what)
    }

    fn string(&mut self, what: &str) -> Result<String, StoreError> {
        String::from_utf8(self.field(what)?.to_vec())
            .map_err(|_| StoreError::Corrupt(format!("redis recovery log: {what} is not UTF-8")))
    }

    fn rooms(&mut self, what: &str) -> Result<Vec<Room>, StoreError> {
        let n = self.u32(what)?;
        (0..n).map(|_| self.string(what).map(Room::from)).collect()
    }
}

fn encode_packet(p: &LoggedPacket) -> Vec<u8> {
    let mut buf = Vec::with_capacity(p.packet.len() + 64);
    // The offset first, big-endian: members of one score sort by offset.
    buf.extend_from_slice(&p.offset.to_be_bytes());
    buf.extend_from_slice(&p.emitted_at.to_be_bytes());
    put(&mut buf, p.namespace.as_bytes());
    put_rooms(&mut buf, &p.rooms);
    put_rooms(&mut buf, &p.except);
    put(&mut buf, &p.packet);
    buf.extend_from_slice(
        &u32::try_from(p.attachments.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for a in &p.attachments {
        put(&mut buf, a);
    }
    buf
}

fn decode_packet(bytes: &[u8]) -> Result<LoggedPacket, StoreError> {
    let mut r = Reader(bytes);
    let offset = r.u64("packet offset")?;
    let emitted_at = r.u64("packet time")?;
    let namespace = r.string("namespace")?;
    let rooms = r.rooms("rooms")?;
    let except = r.rooms("excepted rooms")?;
    let packet = Bytes::copy_from_slice(r.field("packet")?);
    let n = r.u32("attachments")?;
    let attachments = (0..n)
        .map(|_| r.field("attachment").map(Bytes::copy_from_slice))
        .collect::<Result<_, _>>()?;
    Ok(LoggedPacket {
        offset,
        namespace,
        rooms,
        except,
        packet,
        attachments,
        emitted_at,
    })
}

fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&s.base_offset.to_be_bytes());
    buf.extend_from_slice(&s.last_offset.to_be_bytes());
    buf.extend_from_slice(&s.disconnected_at.to_be_bytes());
    put(&mut buf, s.pid.as_bytes());
    put(&mut buf, s.sid.to_string().as_bytes());
    put(&mut buf, s.namespace.as_bytes());
    put_rooms(&mut buf, &s.rooms);
    buf
}

fn decode_session(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let mut r = Reader(bytes);
    let base_offset = r.u64("base offset")?;
    let last_offset = r.u64("last offset")?;
    let disconnected_at = r.u64("disconnection time")?;
    let pid = r.string("pid")?;
    let sid = r
        .string("sid")?
        .parse()
        .map_err(|_| StoreError::Corrupt("redis recovery log: invalid sid".into()))?;
    let namespace = r.string("namespace")?;
    let rooms = r.rooms("rooms")?;
    Ok(SessionRecord {
        pid,
        sid,
        namespace,
        rooms,
        base_offset,
        last_offset,
        disconnected_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn packets_and_sessions_round_trip_and_truncation_is_corruption() {
        let p = LoggedPacket {
            offset: 7 << 40,
            namespace: "/chat".into(),
            rooms: vec![Room::from("a"), Room::from("b c")],
            except: vec![Room::from("x")],
            packet: Bytes::from_static(b"51-[\"bin\",{\"_placeholder\":true,\"num\":0},\"9\"]"),
            attachments: vec![Bytes::from_static(&[0, 255, 1])],
            emitted_at: 1234,
        };
        let encoded = encode_packet(&p);
        assert_eq!(decode_packet(&encoded).unwrap(), p);
        assert!(decode_packet(&encoded[..encoded.len() - 1]).is_err());
        // Big-endian offsets first: byte order is offset order.
        let mut later = p.clone();
        later.offset += 1;
        assert!(encode_packet(&later) > encoded);

        let s = SessionRecord {
            pid: "pid-1".into(),
            sid: tidings_core::Sid::new(),
            namespace: "/".into(),
            rooms: vec![Room::from("r")],
            base_offset: 1,
            last_offset: 2,
            disconnected_at: 3,
        };
        let encoded = encode_session(&s);
        assert_eq!(decode_session(&encoded).unwrap(), s);
        assert!(decode_session(&encoded[..10]).is_err());
    }
}
