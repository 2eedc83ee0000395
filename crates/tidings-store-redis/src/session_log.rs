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
//! - Live sessions ([`SessionLog::persist_live`]): `recovery:live` (hash pid → the owner id of
//!   the node holding the socket, then the encoded record) and `recovery:live:<owner>` (the
//!   set of that node's live pids, for trimming). Each log has a random owner id per process.
//! - Node liveness: `recovery:alive:<owner>`, set every [`LIVENESS_HEARTBEAT`] with an expiry of
//!   [`LIVENESS_TTL`], and `recovery:owners` (sorted set owner by the time of its last
//!   heartbeat: its last sign of life). A node whose key expired is dead (`kill -9`, power
//!   loss, a node cut off from Redis for longer than the TTL): its live sessions are taken by
//!   the node the client reconnects to, as disconnected at that last sign of life, and
//!   trimmed with the owner once it is older than the window. A restarted node has a new
//!   owner id: it never claims the sessions of its previous process, and a session another
//!   node took is that node's live session from then on (no double owners).
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

/// How often a node says it is alive (its liveness key and its last sign of life).
pub const LIVENESS_HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a node's liveness key outlives its last heartbeat: after that long without one,
/// the node counts as dead and its live sessions may be taken by another node. Also the most
/// a client reconnecting after a node's death waits for that to be known.
pub const LIVENESS_TTL: Duration = Duration::from_secs(2);

/// Takes a session atomically: a pid recovers at most once, whichever node asks first.
/// KEYS: sessions, sessions:at, live, owners. ARGV: pid, this node's owner id, the key
/// prefix of liveness keys and live sets (`…recovery:`).
/// Returns {1, record} for a disconnected session; {2, record, last sign of life} for a live
/// session of a dead node (taken); {3, ms until its liveness expires} for a live session of
/// a node that is alive (not taken); {0} when there is none (or it is this node's own).
const TAKE_SCRIPT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {1, v}
end
local live = redis.call('HGET', KEYS[3], ARGV[1])
if not live then return {0} end
local b1, b2, b3, b4 = string.byte(live, 1, 4)
local n = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
local owner = string.sub(live, 5, 4 + n)
if owner == ARGV[2] then return {0} end
local ttl = redis.call('PTTL', ARGV[3] .. 'alive:' .. owner)
if ttl > 0 then return {3, ttl} end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', ARGV[3] .. 'live:' .. owner, ARGV[1])
local at = redis.call('ZSCORE', KEYS[4], owner) or '0'
return {2, string.sub(live, 5 + n), at}
";

/// Drops old packets and sessions and raises the trim mark (never lowers it: several nodes
/// trim with slightly different clocks); drops the live sessions of nodes dead for longer
/// than the window. KEYS: packets, sessions, sessions:at, trimmed, owners, live. ARGV:
/// older_than, the prefix of liveness keys and live sets.
const TRIM_SCRIPT: &str = r"
local older = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. older)
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. older)
for _, pid in ipairs(old) do redis.call('HDEL', KEYS[2], pid) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. older)
local mark = tonumber(redis.call('GET', KEYS[4]) or '0')
if older > mark then redis.call('SET', KEYS[4], ARGV[1]) end
local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. older)
for _, owner in ipairs(dead) do
  if redis.call('EXISTS', ARGV[2] .. 'alive:' .. owner) == 0 then
    local set = ARGV[2] .. 'live:' .. owner
    for _, pid in ipairs(redis.call('SMEMBERS', set)) do redis.call('HDEL', KEYS[6], pid) end
    redis.call('DEL', set)
    redis.call('ZREM', KEYS[5], owner)
  end
end
return #old
";

struct Keys {
    packets: String,
    trimmed: String,
    sessions: String,
    sessions_at: String,
    /// `…recovery:`: liveness keys and live sets are this plus `alive:<owner>`/`live:<owner>`.
    recovery: String,
    live: String,
    owners: String,
}

/// What a take found.
enum Taken {
    Record(SessionRecord),
    /// A live session of a node that is alive; its liveness expires in this many ms.
    LiveElsewhere(u64),
    None,
}

enum Op {
    Append(LoggedPacket),
    Persist(SessionRecord),
    PersistLive(SessionRecord),
    Forget(String),
    Take(String, oneshot::Sender<Result<Taken, StoreError>>),
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
            recovery: format!("{prefix}recovery:"),
            live: format!("{prefix}recovery:live"),
            owners: format!("{prefix}recovery:owners"),
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
        // Alive before any live session of this node can be written.
        beat_once(
            &mut conn,
            &format!("{}alive:{}", keys.recovery, lease.owner),
            &keys.owners,
            &lease.owner,
        )
        .await
        .map_err(|e| unavailable(&e))?;
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

    fn persist_live(&self, session: SessionRecord) {
        self.send(Op::PersistLive(session));
    }

    fn forget_session(&self, pid: &str) {
        self.send(Op::Forget(pid.to_owned()));
    }

    fn take_session<'a>(&'a self, pid: &'a str) -> LogFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            match self.ask(|tx| Op::Take(pid.to_owned(), tx)).await? {
                Taken::Record(r) => Ok(Some(r)),
                Taken::LiveElsewhere(_) | Taken::None => Ok(None),
            }
        })
    }

    /// Like `take_session`, but a live session of a node that did not release it (it did not
    /// answer: dead, or cut off) is waited for until that node's liveness expires (at most
    /// [`LIVENESS_TTL`]), then taken.
    fn take_session_after_release<'a>(
        &'a self,
        pid: &'a str,
    ) -> LogFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + LIVENESS_TTL + LIVENESS_HEARTBEAT;
            // Bounded: each round waits at least 50 ms, and the deadline ends it.
            loop {
                match self.ask(|tx| Op::Take(pid.to_owned(), tx)).await? {
                    Taken::Record(r) => return Ok(Some(r)),
                    Taken::None => return Ok(None),
                    Taken::LiveElsewhere(ms) => {
                        let now = tokio::time::Instant::now();
                        if now >= deadline {
                            debug!("a live session's node is still alive: not taken");
                            return Ok(None);
                        }
                        let wait = Duration::from_millis(ms.clamp(50, 500));
                        tokio::time::sleep(wait.min(deadline - now)).await;
                    }
                }
            }
        })
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
    let owner = lease.owner.clone();
    let alive_key = format!("{}alive:{owner}", keys.recovery);
    let live_set = format!("{}live:{owner}", keys.recovery);
    // The heartbeat has a task of its own (on the same multiplexed connection), so that a
    // long batch or read here never makes this node look dead.
    let heartbeat = tokio::spawn(beat(
        conn.clone(),
        alive_key.clone(),
        keys.owners.clone(),
        owner.clone(),
    ));
    let mut pending: Option<Op> = None;
    loop {
        let op = match pending.take() {
            Some(op) => op,
            None => tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => op,
                    None => {
                        // The log was dropped: its tag is free for the next node, and any
                        // live session left is at once another node's to take.
                        lease.release(&mut conn).await;
                        heartbeat.abort();
                        let _ = heartbeat.await;
                        let _: Result<(), _> = redis::cmd("DEL").arg(&alive_key).query_async(&mut conn).await;
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
            Op::Append(_) | Op::Persist(_) | Op::PersistLive(_) | Op::Forget(_) => {
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
                            pipe.cmd("HDEL").arg(&keys.live).arg(&s.pid).ignore();
                            pipe.cmd("SREM").arg(&live_set).arg(&s.pid).ignore();
                        }
                        Op::PersistLive(s) => {
                            let mut value = Vec::with_capacity(160);
                            put(&mut value, owner.as_bytes());
                            value.extend_from_slice(&encode_session(&s));
                            pipe.cmd("HSET")
                                .arg(&keys.live)
                                .arg(&s.pid)
                                .arg(value)
                                .ignore();
                            pipe.cmd("SADD").arg(&live_set).arg(&s.pid).ignore();
                        }
                        Op::Forget(pid) => {
                            pipe.cmd("HDEL").arg(&keys.sessions).arg(&pid).ignore();
                            pipe.cmd("ZREM").arg(&keys.sessions_at).arg(&pid).ignore();
                            pipe.cmd("HDEL").arg(&keys.live).arg(&pid).ignore();
                            pipe.cmd("SREM").arg(&live_set).arg(&pid).ignore();
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
                let result: Result<redis::Value, _> = take
                    .key(&keys.sessions)
                    .key(&keys.sessions_at)
                    .key(&keys.live)
                    .key(&keys.owners)
                    .arg(&pid)
                    .arg(&owner)
                    .arg(&keys.recovery)
                    .invoke_async(&mut conn)
                    .await;
                let answer = match result {
                    Ok(value) => taken(value),
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
                    .key(&keys.owners)
                    .key(&keys.live)
                    .arg(older_than)
                    .arg(&keys.recovery)
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

/// Says every [`LIVENESS_HEARTBEAT`] that this node process lives, until aborted.
async fn beat(mut conn: ConnectionManager, alive_key: String, owners: String, owner: String) {
    let mut tick = tokio::time::interval(LIVENESS_HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = beat_once(&mut conn, &alive_key, &owners, &owner).await {
            warn!(error = %e, "recovery log heartbeat not written: other nodes may take this node's live sessions");
        }
    }
}

/// One heartbeat: the liveness key (expiring after [`LIVENESS_TTL`]) and the last sign of life.
async fn beat_once(
    conn: &mut ConnectionManager,
    alive_key: &str,
    owners: &str,
    owner: &str,
) -> Result<(), redis::RedisError> {
    let now = tidings_core::clock::now_millis();
    redis::pipe()
        .cmd("SET")
        .arg(alive_key)
        .arg(now)
        .arg("PX")
        .arg(tidings_core::clock::millis(LIVENESS_TTL))
        .ignore()
        .cmd("ZADD")
        .arg(owners)
        .arg(now)
        .arg(owner)
        .ignore()
        .query_async(conn)
        .await
}

/// The answer of [`TAKE_SCRIPT`].
fn taken(value: redis::Value) -> Result<Taken, StoreError> {
    let bad = || StoreError::Corrupt("redis recovery log: unexpected answer to a take".into());
    let redis::Value::Array(items) = value else {
        return Err(bad());
    };
    let int = |v: Option<&redis::Value>| -> Option<i64> {
        match v? {
            redis::Value::Int(n) => Some(*n),
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    };
    let bytes = |v: Option<&redis::Value>| -> Option<Vec<u8>> {
        match v? {
            redis::Value::BulkString(b) => Some(b.clone()),
            _ => None,
        }
    };
    match int(items.first()).ok_or_else(bad)? {
        0 => Ok(Taken::None),
        1 => Ok(Taken::Record(decode_session(
            &bytes(items.get(1)).ok_or_else(bad)?,
        )?)),
        2 => {
            let mut record = decode_session(&bytes(items.get(1)).ok_or_else(bad)?)?;
            let last_sign_of_life = int(items.get(2)).and_then(|n| u64::try_from(n).ok());
            let now = tidings_core::clock::now_millis();
            // Disconnected at its node's last heartbeat; every offset that node may have
            // handed out is at or below now (offsets are clock-based): the client's offset
            // says which of them it received.
            record.disconnected_at = last_sign_of_life.filter(|&t| t > 0).unwrap_or(now);
            record.last_offset = record.last_offset.max((now << OffsetClock::SHIFT) | 0xFF);
            debug!(sid = %record.sid, "took a live session of a dead node");
            Ok(Taken::Record(record))
        }
        3 => Ok(Taken::LiveElsewhere(
            int(items.get(1))
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
        )),
        _ => Err(bad()),
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
