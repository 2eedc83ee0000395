//! A [`Store`] on Redis: each topic is a Redis Stream, each subscription a consumer group of
//! it, and every operation one atomic Lua script (`EVALSHA`) — concurrent appends share one
//! (a group commit, see [Batching](#batching)).
//!
//! Several `tidings serve` processes can share one Redis: they see the same topics, queues and
//! dead letters, and a delivery handed out by a node that died is handed out again by any node
//! once its ack deadline passes.
//!
//! ```no_run
//! use tidings_core::store::{NewMessage, Store, Topic};
//! use tidings_store_redis::{RedisConfig, RedisStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::open(RedisConfig {
//!     url: "redis://127.0.0.1:6379".to_owned(),
//!     ..RedisConfig::default()
//! })?;
//! let topic = Topic::new("pickup")?;
//! let msg = NewMessage { event: "ready".into(), data: "{}".into(), attachments: vec![], key: None, published_at: 0 };
//! let appended = store.append(&topic, msg, 60_000).await?;
//! println!("stored at offset {}", appended.offset);
//! # Ok(())
//! # }
//! ```
//!
//! # Mapping of the store model onto Redis
//!
//! - **Offsets → stream ids.** The message at offset `n` is the stream entry with the explicit
//!   id `n-0`, so `XRANGE topic n +` reads from offset `n` and the ids of a topic are its
//!   offsets. The head (the last offset handed out) is kept in the topic's `meta` hash and
//!   never goes back, even when retention empties the stream.
//! - **Subscriptions → consumer groups.** The group is named by the subscription's key
//!   (`id:<identity>` or `group:<name>`). Its last-delivered id is the cursor − 1: a claim of
//!   new messages is an `XREADGROUP … >` (which advances it), retention moves it past removed
//!   messages with `XGROUP SETID`. Its pending entries list (PEL) holds exactly the pending
//!   entries, and the PEL's delivery counter *is* the attempt count: `XREADGROUP` sets it to
//!   1, a redelivery `XCLAIM`s the entry with `RETRYCOUNT` set to the attempt, `requeue_dead`
//!   puts it back with `XCLAIM … FORCE` and a count of 0; ack and dead-lettering `XACK`. So
//!   `XINFO GROUPS` and `XPENDING` show an operator the real queues.
//! - **What streams do not have** is kept next to the group, in the same scripts, and only
//!   where an entry departs from the common case. An entry *waits* (requeued with a
//!   `not_before`, released, or back from the dead letters) if it is in the `wait` sorted set,
//!   scored by `not_before`; any other pending entry is *in flight*, and its ack deadline is
//!   that of the claim that handed it out: each claim records one *run* per range of offsets it
//!   handed out with the same delivery count (all of its new messages are one run), scored by
//!   the deadline, in the `runs` sorted set. An entry belongs to the run that covers its offset
//!   with its delivery count (a count only grows, except at `requeue_dead`, which cuts the
//!   entry out of the runs covering it). Runs are dropped lazily: when their deadline passes,
//!   or when a claim finds that the earliest one no longer holds an entry in flight. Dead
//!   letters (with a copy of the message, which outlives retention) and the gap counters are
//!   hashes. The trait's clock is the `now` its callers pass, not Redis's: deadlines and
//!   backoffs are compared with it, never with the PEL's idle times (an `XCLAIM … TIME` cannot
//!   be set ahead of Redis's clock, and every claim would pay one per entry), and `XAUTOCLAIM`
//!   is not needed — a delivery stranded on a dead node is due at its deadline, and the next
//!   claim of any node hands it out (with its attempt count + 1).
//! - **Retention** runs in [`Store::enforce_retention`], as the trait requires (it must report
//!   the unsettled offsets each subscription loses): it walks the stream from its oldest entry,
//!   then `XTRIM MINID` at the first message that stays. Appends never trim (an `XADD MAXLEN`
//!   would drop messages without reporting the gaps).
//! - **Idempotency keys** are a hash (key → offset, id, publish time) and a sorted set by
//!   publish time, per topic. Not `SET NX PX`: the dedup window is measured between the
//!   publish times the callers pass, and keys are forgotten by `enforce_retention` as of its
//!   `now`, which a wall-clock expiry cannot follow.
//!
//! # Key layout
//!
//! Every key starts with the configured prefix `P` (default `tidings:`), so several
//! deployments, or tests, can share one Redis. A topic `T`'s keys all contain `{T}` (a topic
//! name cannot contain braces, so keys of different topics never collide, and on a Redis
//! Cluster they would share one hash slot); `S` is a subscription key such as `id:driver-7`:
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `P topics` | set | topic names |
//! | `P{T}:meta` | hash | `head`, `first` (oldest retained offset), `bytes` (retained payload bytes) |
//! | `P{T}:log` | stream | entry `<offset>-0` with fields `id` (32 hex digits), `ev`, `data`, `at` (publish time, ms), and `bin` for a message with binary attachments (`<attachment bytes> <base64>,<base64>,…`); one consumer group per subscription |
//! | `P{T}:subs` | set | subscription keys |
//! | `P{T}:gaps` | hash | subscription key → unsettled messages lost to retention |
//! | `P{T}:keys` | hash | idempotency key → `<offset> <id> <seen_at>` |
//! | `P{T}:keyat` | sorted set | idempotency key, scored by `seen_at` |
//! | `P{T}:s:S:wait` | sorted set | pending offsets that wait, scored by `not_before` (ms); the other pending entries (those of the group's PEL) are in flight |
//! | `P{T}:s:S:runs` | sorted set | `<from> <to> <count>`: the offsets `from..=to` handed out by one claim, delivered `count` times (the PEL's delivery counter), scored by their ack deadline (ms) |
//! | `P{T}:s:S:dead` | hash | offset → `<attempts> <dead_at> <published_at> <id> <event bytes> <event><data>`, with attachments `… <event bytes>:<data bytes> <event><data><bin>` |
//! | `P{T}:s:S:members` | set | identities that are members of a group subscription |
//!
//! (`P topics` is the prefix immediately followed by `topics`, as in `tidings:topics`.)
//!
//! The scripts build the keys from the prefix and topic they are given, so they need a
//! standalone Redis (or a primary with replicas, or Sentinel), not a Redis Cluster. Numbers are
//! compared in Lua as doubles: times in milliseconds since the epoch and offsets are exact
//! (below 2^53).
//!
//! # Upgrading from the legacy layout
//!
//! Up to f42b85b (2026-12-06) every pending entry also had its due time in `P{T}:s:S:due`
//! (a sorted set), its attempt count in `P{T}:s:S:att` (a hash) and, when in flight, its
//! offset in `P{T}:s:S:flight` (a set); each ack or claim then rewrote three small collections, which
//! Redis keeps as lists scanned end to end (most of redis-server's CPU in a drain, see
//! BENCHMARKS.md). Keys written that way are still read: the first operation of the current
//! scripts that touches such a subscription migrates it, atomically in the same script —
//! an in-flight entry becomes a run of its own with its deadline, a waiting one a member of
//! `wait`, the PEL's delivery counter is set from `att`, and the three keys are deleted. A
//! subscription with nothing pending has none of those keys and needs nothing. Stop every
//! `tidings` of the older version before starting the new one on the same Redis: an older
//! process does not see the new keys (its acks of entries handed out by a newer process
//! answer "not pending" and leave them to be redelivered; nothing is lost, but deliveries
//! repeat).
//!
//! # Batching
//!
//! The store applies the ideas of the embedded journal (group commit, batched settlement)
//! where Redis allows them.
//!
//! - **Appends: one script call per batch.** Concurrent appends of a store — of any topics —
//!   queue up while a batch is in flight and go together in the next `append_batch` call (at
//!   most 256 messages, 4 MiB; one call in flight at a time). Per topic of the batch the
//!   script reads the head once (creating the topic if new) and moves `head` and `bytes` once
//!   at the end; per message it runs one `XADD` (plus an `HSET` and a `ZADD` for an
//!   idempotency key). A key repeated within a batch is a duplicate of its first message;
//!   messages of a topic get offsets in the order they were queued. Each append is answered
//!   from Redis's reply for its own message, so nothing is confirmed that Redis did not
//!   answer; with `appendfsync always` Redis fsyncs once per batch before replying. A failed
//!   call fails every append of its batch (some may have been stored, as with any write whose
//!   answer was lost: a retry may duplicate, never lose); a key of the wrong type under one
//!   topic fails only that topic's appends, as [`StoreError::Corrupt`]. `append_bounded`
//!   stays one script per call (it must see every queue's depth at its own append).
//! - **Claims and settles: a few commands per batch, none per entry.** A claim reads new
//!   messages with one `XREADGROUP` and records them as one run (one `ZADD`); a settle acks
//!   each entry with an `XACK` of its own, whose answer (1 or 0) says whether it was pending
//!   (cheaper for Redis than reading the batch's PEL range into Lua, measured), removes the
//!   acked ones from `wait` with one `ZREM` when it exists, checks the entries it requeues
//!   with one `XPENDING` over their range and makes them wait with one `ZADD`. Redeliveries of due entries are
//!   handled one by one (each needs its message and attempt count, and gets a run of its own).
//! - **Compact replies, and no work per byte in Lua.** A claimed message comes back as a
//!   short head (`<offset> <attempt> <id> <published_at> <has bin> <event>`) followed by its
//!   data (and its `bin` field), in one flat array; an append batch's answers as one string
//!   of lines; a settle's flags as one string of `0`/`1` — one or two values per message for
//!   Redis to write and the client to parse instead of an array of arrays. Redis's Lua hashes
//!   every byte of every string it creates and formats numbers with `sprintf`, so the scripts
//!   pass the data string the stream read returned through unchanged, keep offsets as the
//!   strings they arrived as, and answer with stream ids (`<offset>-0`) rather than
//!   formatting numbers (the Rust side accepts both).
//! - **A dispatcher's turn is one script.** [`Store::settle_and_claim`] settles the answered
//!   deliveries and claims the next ones in one `settle_claim` call: one round trip per turn.
//!
//! # Durability
//!
//! What an `Ok` from [`Store::append`] (or an ack, a claim…) promises is what Redis promises
//! for a write it has answered. With `appendonly yes` and `appendfsync always`, Redis fsyncs
//! the append-only file before it replies, so a confirmed publish survives a crash of Redis or
//! of its machine; with the default `appendfsync everysec` up to a second of confirmed writes
//! can be lost; with no AOF, everything since the last snapshot. On Redis 7.2 or later,
//! [`RedisConfig::wait_aof`] additionally sends `WAITAOF 1 0 <timeout>` after every write
//! (once per append batch) and fails the operation (as [`StoreError::Unavailable`]) unless the local AOF has it, which
//! turns a misconfigured server into errors instead of silent loss (older servers reject the
//! command, so every write fails: leave it off there). See `docs/REDIS.md`.
//!
//! # When Redis is down
//!
//! The store holds one multiplexed connection ([`redis::aio::ConnectionManager`]), made on
//! first use, that reconnects by itself. While Redis cannot be reached, every operation fails
//! with [`StoreError::Unavailable`] after at most about `connect_timeout` × (1 +
//! `reconnect_retries`) or `response_timeout`, never a panic; the server reports
//! `store_unavailable` to publishers, and nothing unconfirmed was stored.
//!
//! Once Redis answers again, the next operation works. Two things see to it: a heartbeat
//! (`PING` every second) notices a connection Redis closed while the store sat idle and keeps
//! starting new connection attempts while Redis is down, so the connection in place when Redis
//! returns is a fresh one; and an operation whose connection was refused — the manager hands
//! out the outcome of its last attempt, which may have failed just before Redis came back — is
//! sent once more on the new connection that refusal started. Only a refusal is retried: the
//! command certainly never reached Redis, so it cannot run twice (a connection lost after the
//! command was sent may have run it, and fails as unavailable).
//!
//! The connection is made on the Tokio runtime of the first operation and lives as long as
//! that runtime; use one store from one runtime.
//!
//! # A shared store
//!
//! [`Store::release_in_flight`] makes every in-flight entry due at once; on a store shared by
//! several server processes one of them restarting must not do that to deliveries the others
//! have handed out, so with [`RedisConfig::is_shared`] (the default) it does nothing and
//! returns `Ok(0)`. A deployment with a single server process may set it to `false` and get
//! the immediate redelivery after a restart that SQLite gives.
#![forbid(unsafe_code)]

mod append;
mod reply;
mod session_log;

pub use session_log::{LIVENESS_HEARTBEAT, LIVENESS_TTL, RedisSessionLog};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Value};
use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, DeadLetter, Gap, MessageId, Millis,
    NewMessage, Offset, QueueBound, Retention, Settle, StartFrom, Store, StoreError, StoreFuture,
    StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use reply::{array, at, flag, string, u64_of};

/// The Lua script of every operation; see the key layout in the crate docs.
const SCRIPT: &str = include_str!("store.lua");

/// How to reach Redis and how to use it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server: `redis://[user:password@]host:port[/db]` (`rediss://` is not compiled in).
    /// Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Prepended to every key, so that several deployments or tests can share one Redis.
    /// Must not contain `{` or `}`. Default `tidings:`.
    pub prefix: String,
    /// How long one connection attempt may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How long Redis may take to answer one operation. Default 10 s.
    pub response_timeout: Duration,
    /// How many times an operation that finds the connection lost retries to connect (with
    /// a backoff from 100 ms) before it fails with [`StoreError::Unavailable`]. Default 1.
    pub reconnect_retries: usize,
    /// Other server processes use the same keys: [`Store::release_in_flight`] then does
    /// nothing (see the crate docs). Default `true`.
    pub is_shared: bool,
    /// After every write, wait with `WAITAOF 1 0 <timeout>` (Redis ≥ 7.2) until the local
    /// append-only file has it, and fail as unavailable if it does not within the timeout.
    /// Default `None` (trust the server's `appendfsync`).
    pub wait_aof: Option<Duration>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            prefix: "tidings:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            reconnect_retries: 1,
            is_shared: true,
            wait_aof: None,
        }
    }
}

pub use tidings_core::redact_url;

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_retries", &self.reconnect_retries)
            .field("is_shared", &self.is_shared)
            .field("wait_aof", &self.wait_aof)
            .finish()
    }
}

/// A [`RedisConfig`] that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The URL is not a Redis URL.
    #[error("invalid redis url {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prefix contains a brace.
    #[error("invalid key prefix {0:?}: it must not contain '{{' or '}}'")]
    Prefix(String),
}

/// The Redis store. A cheap-clone handle: clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    config: RedisConfig,
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
    /// Each operation's round trip (the script call, request to reply) and `PING`s.
    round_trip: tidings_core::metrics::Histogram,
    /// Operations that failed in Redis or on the way (no connection, timeout, refusal).
    errors: std::sync::atomic::AtomicU64,
    /// Appends waiting for their batch (see `append.rs`).
    appends: parking_lot::Mutex<append::AppendQueue>,
    /// One permit per append batch in flight.
    batch_slots: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How often the heartbeat checks the connection (see the crate docs).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// `PING`s Redis every [`HEARTBEAT`] while the store exists, so that the connection manager
/// notices a lost connection and reconnects without waiting for an operation to fail on it.
fn spawn_heartbeat(store: std::sync::Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let Some(mut conn) = store.upgrade().and_then(|inner| inner.conn.get().cloned()) else {
                return;
            };
            // An error is the manager's cue to reconnect; the operations report their own.
            let _ = redis::cmd("PING").query_async::<()>(&mut conn).await;
        }
    });
}

/// Maps a Redis failure to the store's errors: a value of the wrong type, or a script that
/// fails on the data it finds, is corruption; anything else (no connection, a timeout, a
/// server that is loading, read-only, out of memory or refusing writes) is unavailability,
/// which may pass.
fn store_error(e: &RedisError) -> StoreError {
    let message = e.to_string();
    let is_data = e.code() == Some("WRONGTYPE")
        || (e.kind() == ErrorKind::Server(redis::ServerErrorKind::ResponseError)
            && (message.contains("user_script") || message.contains("Error running script")));
    if is_data {
        warn!(error = %message, "redis data is not what the store expects");
        StoreError::Corrupt(format!("redis: {message}"))
    } else {
        warn!(error = %message, "redis unavailable");
        StoreError::Unavailable(format!("redis: {message}"))
    }
}

/// Arguments of one script call.
type Args<'a> = Vec<std::borrow::Cow<'a, str>>;

fn owned<'a>(s: impl ToString) -> std::borrow::Cow<'a, str> {
    std::borrow::Cow::Owned(s.to_string())
}

fn borrowed(s: &str) -> std::borrow::Cow<'_, str> {
    std::borrow::Cow::Borrowed(s)
}

fn sub_info(v: &Value) -> Result<SubscriptionInfo, StoreError> {
    const WHAT: &str = "subscription info";
    let i = array(v, WHAT)?;
    Ok(SubscriptionInfo {
        name: reply::sub(at(i, 0, WHAT)?)?,
        pending: u64_of(at(i, 1, WHAT)?, WHAT)?,
        in_flight: u64_of(at(i, 2, WHAT)?, WHAT)?,
        dead: u64_of(at(i, 3, WHAT)?, WHAT)?,
        gaps: u64_of(at(i, 4, WHAT)?, WHAT)?,
        cursor: u64_of(at(i, 5, WHAT)?, WHAT)?,
    })
}

/// The reply of one operation after its status (`{status, …}`): `ok` gives the rest, the
/// others their error.
fn status(op: &str, topic: &str, reply: Value) -> Result<Vec<Value>, StoreError> {
    let Value::Array(mut items) = reply else {
        return Err(reply::corrupt(op, &reply));
    };
    if items.is_empty() {
        return Err(reply::corrupt(op, &Value::Array(items)));
    }
    let status = string(&items[0], op)?;
    let message = || {
        items
            .get(1)
            .and_then(|m| string(m, op).ok())
            .unwrap_or_default()
    };
    match status.as_str() {
        "ok" => {
            items.remove(0);
            Ok(items)
        }
        "notfound" => Err(StoreError::NotFound(format!(
            "{} of topic {topic}",
            message()
        ))),
        "invalid" => Err(StoreError::Invalid(message())),
        "corrupt" => Err(StoreError::Corrupt(format!("topic {topic}: {}", message()))),
        _ => Err(reply::corrupt(op, &items[0])),
    }
}

/// The claim options as the script reads them: now, max, deadline, max deliveries.
fn claim_args<'a>(opts: ClaimOptions) -> [std::borrow::Cow<'a, str>; 4] {
    [
        owned(opts.now),
        owned(opts.max.min(i64::MAX as usize)),
        owned(opts.now.saturating_add(opts.ack_timeout)),
        owned(opts.max_deliveries),
    ]
}

/// A batch of settles as the script reads them: (kind, offset, not_before) per entry.
fn push_settles(args: &mut Args<'_>, batch: &[Settle]) {
    for s in batch {
        let (kind, offset, not_before) = match *s {
            Settle::Ack(offset) => ("a", offset, 0),
            Settle::Requeue { offset, not_before } => ("r", offset, not_before),
        };
        args.extend([borrowed(kind), owned(offset), owned(not_before)]);
    }
}

/// `{claimed, dead, next due}` of a claim.
fn claim_result(
    topic: &Topic,
    sub: &SubscriptionName,
    r: &[Value],
) -> Result<ClaimResult, StoreError> {
    const WHAT: &str = "claim";
    let result = ClaimResult {
        claimed: reply::claimed(array(at(r, 0, WHAT)?, WHAT)?)?,
        dead_lettered: array(at(r, 1, WHAT)?, WHAT)?
            .iter()
            .map(|o| u64_of(o, WHAT))
            .collect::<Result<_, _>>()?,
        next_due: match r.get(2) {
            None | Some(redis::Value::Nil) => None,
            Some(v) => Some(reply::score(v, WHAT)?),
        },
    };
    if !result.dead_lettered.is_empty() {
        warn!(topic = %topic, sub = %sub, offsets = ?result.dead_lettered, "dead-lettered");
    }
    Ok(result)
}

impl RedisStore {
    /// A store over the Redis at `config.url`. Does no I/O: the connection is made by the
    /// first operation (use [`RedisStore::ping`] to check it at start-up).
    pub fn open(config: RedisConfig) -> Result<RedisStore, RedisConfigError> {
        if config.prefix.contains(['{', '}']) {
            return Err(RedisConfigError::Prefix(config.prefix));
        }
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| RedisConfigError::Url {
                url: redact_url(&config.url),
                reason: e.to_string(),
            })?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                config,
                conn: OnceCell::new(),
                script: redis::Script::new(SCRIPT),
                round_trip: tidings_core::metrics::Histogram::default(),
                errors: std::sync::atomic::AtomicU64::new(0),
                appends: parking_lot::Mutex::default(),
                batch_slots: Arc::new(tokio::sync::Semaphore::new(append::BATCHES_IN_FLIGHT)),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Checks that Redis answers (`PING`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await.inspect_err(|_| self.count_error())?;
        let ping = redis::cmd("PING");
        let started = std::time::Instant::now();
        let answer = match ping.query_async::<()>(&mut conn).await {
            Err(e) if e.is_connection_refusal() => ping.query_async::<()>(&mut conn).await,
            other => other,
        };
        self.inner.round_trip.observe(started.elapsed());
        answer.map_err(|e| {
            self.count_error();
            store_error(&e)
        })
    }

    fn count_error(&self) {
        self.inner
            .errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let config = &self.inner.config;
        self.inner
            .conn
            .get_or_try_init(|| async {
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    .set_number_of_retries(config.reconnect_retries)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(2));
                debug!(url = %redact_url(&config.url), prefix = %config.prefix, "redis store connecting");
                let manager =
                    ConnectionManager::new_lazy_with_config(self.inner.client.clone(), manager_config)
                        .map_err(|e| store_error(&e))?;
                spawn_heartbeat(Arc::downgrade(&self.inner));
                Ok(manager)
            })
            .await
            .cloned()
    }

    /// Runs one operation of the script and returns the reply after its status.
    async fn run(
        &self,
        op: &str,
        topic: &str,
        args: Args<'_>,
        is_write: bool,
    ) -> Result<Vec<Value>, StoreError> {
        let reply = self
            .invoke(op, topic, args.iter().map(AsRef::as_ref), is_write)
            .await?;
        status(op, topic, reply)
    }

    /// Calls the script with `op`, the prefix, `topic` and `args`, and returns its raw reply
    /// (after `WAITAOF` for a write, when configured).
    async fn invoke<'s>(
        &self,
        op: &str,
        topic: &str,
        args: impl IntoIterator<Item = &'s str>,
        is_write: bool,
    ) -> Result<Value, StoreError> {
        let mut conn = self.conn().await.inspect_err(|_| self.count_error())?;
        let mut invocation = self.inner.script.prepare_invoke();
        invocation
            .arg(op)
            .arg(self.inner.config.prefix.as_str())
            .arg(topic);
        for a in args {
            invocation.arg(a);
        }
        let started = std::time::Instant::now();
        let reply = match invocation.invoke_async(&mut conn).await {
            // Never sent (see the crate docs): once more, on the connection the refusal started.
            Err(e) if e.is_connection_refusal() => invocation.invoke_async(&mut conn).await,
            other => other,
        };
        self.inner.round_trip.observe(started.elapsed());
        let reply: Value = reply.map_err(|e| {
            self.count_error();
            store_error(&e)
        })?;
        if is_write {
            if let Some(timeout) = self.inner.config.wait_aof {
                self.wait_aof(&mut conn, timeout).await?;
            }
        }
        Ok(reply)
    }

    async fn wait_aof(
        &self,
        conn: &mut ConnectionManager,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let millis = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let acks: Vec<i64> = redis::cmd("WAITAOF")
            .arg(1)
            .arg(0)
            .arg(millis)
            .query_async(conn)
            .await
            .map_err(|e| store_error(&e))?;
        if acks.first().copied().unwrap_or(0) < 1 {
            warn!(
                timeout_ms = millis,
                "redis did not fsync a write to its AOF in time"
            );
            return Err(StoreError::Unavailable(
                "redis did not fsync the write to its append-only file in time".to_owned(),
            ));
        }
        Ok(())
    }

    fn not_found_sub(topic: &Topic, sub: &SubscriptionName) -> StoreError {
        StoreError::NotFound(format!("subscription {sub} of topic {topic}"))
    }

    async fn append_bounded_impl(
        &self,
        topic: &Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> Result<BoundedAppend, StoreError> {
        const WHAT: &str = "append_bounded";
        let id = reply::id_to_hex(MessageId::new());
        let args = vec![
            borrowed(&id),
            borrowed(&msg.event),
            borrowed(&msg.data),
            owned(msg.published_at),
            borrowed(msg.key.as_deref().unwrap_or("")),
            owned(dedup_window),
            owned(bound.max_depth),
            borrowed(bound.overflow.as_str()),
            owned(reply::encode_bin(&msg.attachments)),
        ];
        let r = self.run(WHAT, topic.as_str(), args, true).await?;
        if r.len() > 4 {
            return Ok(BoundedAppend::Full {
                subscription: reply::sub(at(&r, 4, WHAT)?)?,
                depth: u64_of(at(&r, 5, WHAT)?, WHAT)?,
            });
        }
        let appended = Appended {
            offset: u64_of(at(&r, 0, WHAT)?, WHAT)?,
            id: reply::id_from_hex(&string(at(&r, 1, WHAT)?, WHAT)?)?,
            duplicate: flag(at(&r, 2, WHAT)?, WHAT)?,
        };
        let mut dropped = Vec::new();
        for g in array(at(&r, 3, WHAT)?, WHAT)? {
            let g = array(g, WHAT)?;
            let gap = Gap {
                topic: topic.clone(),
                subscription: reply::sub(at(g, 0, WHAT)?)?,
                from: u64_of(at(g, 1, WHAT)?, WHAT)?,
                to: u64_of(at(g, 2, WHAT)?, WHAT)?,
            };
            debug!(topic = %topic, sub = %gap.subscription, from = gap.from, to = gap.to,
                "queue full: dropped its oldest unsettled messages");
            dropped.push(gap);
        }
        dropped.sort_by(|a, b| (&a.subscription, a.from).cmp(&(&b.subscription, b.from)));
        Ok(BoundedAppend::Appended { appended, dropped })
    }

    async fn subscribe_impl(
        &self,
        topic: &Topic,
        sub: &SubscriptionName,
        from: StartFrom,
    ) -> Result<SubscriptionInfo, StoreError> {
        let key = sub.key();
        let (mode, offset) = match from {
            StartFrom::New => ("new", 0),
            StartFrom::Earliest => ("earliest", 0),
            StartFrom::Offset(o) => ("offset", o),
        };
        let args = vec![borrowed(&key), borrowed(mode), owned(offset)];
        let r = self.run("subscribe", topic.as_str(), args, true).await?;
        sub_info(at(&r, 0, "subscribe")?)
    }

    async fn claim_impl(
        &self,
        topic: &Topic,
        sub: &SubscriptionName,
        opts: ClaimOptions,
    ) -> Result<ClaimResult, StoreError> {
        let key = sub.key();
        let mut args = vec![borrowed(&key)];
        args.extend(claim_args(opts));
        let r = self
            .run("claim", topic.as_str(), args, true)
            .await
            .map_err(|e| Self::not_found_as_sub(e, topic, sub))?;
        claim_result(topic, sub, &r)
    }

    /// One `settle_claim` script: the settle of `batch`, then the claim.
    async fn settle_and_claim_impl(
        &self,
        topic: &Topic,
        sub: &SubscriptionName,
        batch: &[Settle],
        opts: ClaimOptions,
    ) -> Result<(Vec<bool>, ClaimResult), StoreError> {
        const WHAT: &str = "settle_claim";
        let key = sub.key();
        let mut args = vec![borrowed(&key)];
        args.extend(claim_args(opts));
        push_settles(&mut args, batch);
        let r = self
            .run(WHAT, topic.as_str(), args, true)
            .await
            .map_err(|e| Self::not_found_as_sub(e, topic, sub))?;
        let settled = reply::flags(at(&r, 0, WHAT)?, batch.len(), WHAT)?;
        Ok((
            settled,
            claim_result(topic, sub, r.get(1..).unwrap_or_default())?,
        ))
    }

    fn not_found_as_sub(e: StoreError, topic: &Topic, sub: &SubscriptionName) -> StoreError {
        match e {
            StoreError::NotFound(_) => Self::not_found_sub(topic, sub),
            e => e,
        }
    }

    /// `ack` and `requeue`: a flag for an entry of one subscription.
    async fn entry_op(
        &self,
        op: &str,
        topic: &Topic,
        sub: &SubscriptionName,
        mut args: Args<'_>,
    ) -> Result<bool, StoreError> {
        let key = sub.key();
        args.insert(0, borrowed(&key));
        let r = self
            .run(op, topic.as_str(), args, true)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => Self::not_found_sub(topic, sub),
                e => e,
            })?;
        flag(at(&r, 0, op)?, op)
    }

    async fn dead_letters_impl(&self, topic: &Topic) -> Result<Vec<DeadLetter>, StoreError> {
        const WHAT: &str = "dead letters";
        let r = self
            .run("dead_letters", topic.as_str(), vec![], false)
            .await?;
        let mut out = Vec::new();
        for d in array(at(&r, 0, WHAT)?, WHAT)? {
            let d = array(d, WHAT)?;
            let subscription = reply::sub(at(d, 0, WHAT)?)?;
            let offset = u64_of(at(d, 1, WHAT)?, WHAT)?;
            let rec = reply::dead_record(&string(at(d, 2, WHAT)?, WHAT)?)?;
            out.push(DeadLetter {
                message: StoredMessage {
                    id: rec.id,
                    offset,
                    event: rec.event,
                    data: rec.data,
                    attachments: rec.attachments,
                    published_at: rec.published_at,
                },
                subscription,
                attempts: rec.attempts,
                dead_at: rec.dead_at,
            });
        }
        DeadLetter::sort(&mut out);
        Ok(out)
    }

    async fn history_impl(
        &self,
        topic: &Topic,
        from: Offset,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        const WHAT: &str = "history";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let args = vec![owned(from), owned(limit.min(i64::MAX as usize))];
        let r = self.run(WHAT, topic.as_str(), args, false).await?;
        array(at(&r, 0, WHAT)?, WHAT)?
            .iter()
            .map(reply::message)
            .collect()
    }

    async fn oldest_unsettled_impl(
        &self,
        topic: &Topic,
    ) -> Result<Vec<(SubscriptionName, Millis)>, StoreError> {
        const WHAT: &str = "oldest unsettled";
        let r = self
            .run("oldest_unsettled", topic.as_str(), vec![], false)
            .await?;
        array(at(&r, 0, WHAT)?, WHAT)?
            .iter()
            .map(|pair| {
                let pair = array(pair, WHAT)?;
                let key = string(at(pair, 0, WHAT)?, WHAT)?;
                let name =
                    SubscriptionName::from_key(&key).map_err(|_| reply::corrupt(WHAT, &pair[0]))?;
                Ok((name, u64_of(at(pair, 1, WHAT)?, WHAT)?))
            })
            .collect()
    }

    async fn topic_info_impl(&self, topic: &Topic) -> Result<Option<TopicInfo>, StoreError> {
        const WHAT: &str = "topic info";
        let r = self
            .run("topic_info", topic.as_str(), vec![], false)
            .await?;
        let info = at(&r, 0, WHAT)?;
        if *info == Value::Nil {
            return Ok(None);
        }
        let i = array(info, WHAT)?;
        let mut subscriptions = array(at(i, 4, WHAT)?, WHAT)?
            .iter()
            .map(sub_info)
            .collect::<Result<Vec<_>, _>>()?;
        subscriptions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(TopicInfo {
            topic: topic.clone(),
            head: u64_of(at(i, 0, WHAT)?, WHAT)?,
            first: u64_of(at(i, 1, WHAT)?, WHAT)?,
            retained: u64_of(at(i, 2, WHAT)?, WHAT)?,
            retained_bytes: u64_of(at(i, 3, WHAT)?, WHAT)?,
            subscriptions,
        }))
    }

    async fn enforce_retention_impl(
        &self,
        topic: &Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> Result<Vec<Gap>, StoreError> {
        const WHAT: &str = "retention";
        // Keys seen before `now - dedup_window` are older than the window.
        let key_before = now
            .checked_sub(dedup_window)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let args = vec![
            owned(retention.max_age),
            owned(retention.max_messages),
            owned(retention.max_bytes),
            owned(now),
            owned(key_before),
        ];
        let r = self
            .run("enforce_retention", topic.as_str(), args, true)
            .await?;
        let mut gaps = Vec::new();
        for g in array(at(&r, 0, WHAT)?, WHAT)? {
            let g = array(g, WHAT)?;
            let gap = Gap {
                topic: topic.clone(),
                subscription: reply::sub(at(g, 0, WHAT)?)?,
                from: u64_of(at(g, 1, WHAT)?, WHAT)?,
                to: u64_of(at(g, 2, WHAT)?, WHAT)?,
            };
            warn!(topic = %topic, sub = %gap.subscription, from = gap.from, to = gap.to,
                "retention removed unsettled messages");
            gaps.push(gap);
        }
        gaps.sort_by(|a, b| (&a.subscription, a.from).cmp(&(&b.subscription, b.from)));
        Ok(gaps)
    }

    async fn members_impl(&self) -> Result<Vec<(Topic, SubscriptionName, String)>, StoreError> {
        const WHAT: &str = "members";
        let r = self.run(WHAT, "", vec![], false).await?;
        let mut out = array(at(&r, 0, WHAT)?, WHAT)?
            .iter()
            .map(|m| {
                let m = array(m, WHAT)?;
                Ok((
                    reply::topic(at(m, 0, WHAT)?)?,
                    reply::sub(at(m, 1, WHAT)?)?,
                    string(at(m, 2, WHAT)?, WHAT)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort();
        Ok(out)
    }

    async fn subscriptions_impl(&self) -> Result<Vec<(Topic, SubscriptionName)>, StoreError> {
        const WHAT: &str = "subscriptions";
        let r = self.run(WHAT, "", vec![], false).await?;
        let mut out = array(at(&r, 0, WHAT)?, WHAT)?
            .iter()
            .map(|s| {
                let s = array(s, WHAT)?;
                Ok((reply::topic(at(s, 0, WHAT)?)?, reply::sub(at(s, 1, WHAT)?)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort();
        Ok(out)
    }

    async fn topics_impl(&self) -> Result<Vec<Topic>, StoreError> {
        const WHAT: &str = "topics";
        let r = self.run(WHAT, "", vec![], false).await?;
        let mut out = array(at(&r, 0, WHAT)?, WHAT)?
            .iter()
            .map(reply::topic)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    }
}

impl Store for RedisStore {
    fn append<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Appended> {
        Box::pin(self.append_batched(topic, msg, dedup_window))
    }

    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend> {
        Box::pin(self.append_bounded_impl(topic, msg, dedup_window, bound))
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    ) -> StoreFuture<'a, SubscriptionInfo> {
        Box::pin(self.subscribe_impl(topic, sub, from))
    }

    fn unsubscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let key = sub.key();
            let r = self
                .run("unsubscribe", topic.as_str(), vec![borrowed(&key)], true)
                .await?;
            let removed = flag(at(&r, 0, "unsubscribe")?, "unsubscribe")?;
            if removed {
                debug!(topic = %topic, sub = %sub, "subscription removed");
            }
            Ok(removed)
        })
    }

    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>> {
        Box::pin(self.subscriptions_impl())
    }

    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let not_found =
                || StoreError::NotFound(format!("no group subscription {group} on {topic}"));
            if !matches!(group, SubscriptionName::Group(_)) {
                return Err(not_found());
            }
            let key = group.key();
            let args = vec![
                borrowed(&key),
                borrowed(identity),
                borrowed(if member { "1" } else { "0" }),
            ];
            match self.run("set_member", topic.as_str(), args, true).await {
                Err(StoreError::NotFound(_)) => Err(not_found()),
                other => other.map(|_| ()),
            }
        })
    }

    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>> {
        Box::pin(self.members_impl())
    }

    fn claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    ) -> StoreFuture<'a, ClaimResult> {
        Box::pin(self.claim_impl(topic, sub, opts))
    }

    fn ack<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.entry_op("ack", topic, sub, vec![owned(offset)]))
    }

    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.entry_op(
            "requeue",
            topic,
            sub,
            vec![owned(offset), owned(not_before)],
        ))
    }

    /// One script for the whole batch (the delivery engine settles a queue's answers in
    /// batches): one round trip instead of one per ack, and one command per key for the batch.
    fn settle<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
    ) -> StoreFuture<'a, Vec<bool>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            let key = sub.key();
            let mut args: Args<'_> = vec![borrowed(&key)];
            push_settles(&mut args, batch);
            let r = self
                .run("settle", topic.as_str(), args, true)
                .await
                .map_err(|e| Self::not_found_as_sub(e, topic, sub))?;
            reply::flags(at(&r, 0, "settle")?, batch.len(), "settle")
        })
    }

    /// The settle and the claim in one script (`settle_claim`): a dispatcher's turn is one
    /// round trip.
    fn settle_and_claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
        opts: ClaimOptions,
    ) -> StoreFuture<'a, (Vec<bool>, ClaimResult)> {
        Box::pin(self.settle_and_claim_impl(topic, sub, batch, opts))
    }

    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            if self.inner.config.is_shared {
                debug!("shared redis store: in-flight deliveries wait for their ack deadlines");
                return Ok(0);
            }
            let r = self
                .run("release_in_flight", "", vec![owned(now)], true)
                .await?;
            u64_of(at(&r, 0, "release_in_flight")?, "release_in_flight")
        })
    }

    fn dead_letters<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Vec<DeadLetter>> {
        Box::pin(self.dead_letters_impl(topic))
    }

    fn requeue_dead<'a>(
        &'a self,
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let hex = reply::id_to_hex(id);
            let args = vec![borrowed(&hex), owned(now)];
            let r = self.run("requeue_dead", topic.as_str(), args, true).await?;
            flag(at(&r, 0, "requeue_dead")?, "requeue_dead")
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        from: Offset,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        Box::pin(self.history_impl(topic, from, limit))
    }

    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>> {
        Box::pin(self.topic_info_impl(topic))
    }

    fn topics(&self) -> StoreFuture<'_, Vec<Topic>> {
        Box::pin(self.topics_impl())
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(RedisStore::ping(self))
    }

    fn oldest_unsettled<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> StoreFuture<'a, Option<Vec<(SubscriptionName, Millis)>>> {
        Box::pin(async move { self.oldest_unsettled_impl(topic).await.map(Some) })
    }

    fn metrics(&self) -> tidings_core::metrics::BackendMetrics {
        let mut m = tidings_core::metrics::BackendMetrics::default();
        m.round_trip_seconds = Some(self.inner.round_trip.snapshot());
        m.errors = self.inner.errors.load(std::sync::atomic::Ordering::Relaxed);
        m
    }

    fn enforce_retention<'a>(
        &'a self,
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Vec<Gap>> {
        Box::pin(self.enforce_retention_impl(topic, retention, now, dedup_window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://user:secret@host:6379/2"),
            "redis://user:***@host:6379/2"
        );
        assert_eq!(redact_url("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact_url("redis://host:1"), "redis://host:1");
        let config = RedisConfig {
            url: "redis://:hunter2@localhost".to_owned(),
            ..RedisConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn open_validates_without_connecting() {
        assert!(RedisStore::open(RedisConfig::default()).is_ok());
        let bad_prefix = RedisConfig {
            prefix: "a{b".to_owned(),
            ..RedisConfig::default()
        };
        assert!(matches!(
            RedisStore::open(bad_prefix),
            Err(RedisConfigError::Prefix(_))
        ));
        let bad_url = RedisConfig {
            url: "http://:pw@x".to_owned(),
            ..RedisConfig::default()
        };
        let err = RedisStore::open(bad_url).unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
