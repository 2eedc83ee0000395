//! The durable store seam: topics of messages and the per-subscription queues over them.
//!
//! # Model
//!
//! A **topic** is an append-only log of messages, each with a per-topic **offset** (1, 2, 3, …;
//! never reused) and a random **message id**. A **subscription** (an identity's own, or a
//! competing-consumer group's) is a queue over one topic, kept as:
//!
//! - a **cursor**: the next offset never yet handed out to the subscription, and
//! - **pending entries**: offsets below the cursor that are not settled yet, each either
//!   *in flight* (handed out, with an ack deadline) or *waiting* (to be redelivered no earlier
//!   than a given time), with the number of deliveries made so far.
//!
//! Every offset below the cursor that has no pending entry is settled (acknowledged, dead-
//! lettered, or skipped by retention). This is the model of Redis Streams consumer groups
//! (last-delivered id + pending entries list) and of JetStream consumers, so every backend can
//! implement it natively, and fanning a message out to N subscriptions costs nothing at publish
//! time.
//!
//! # Durability
//!
//! [`Store::append`] returns only once the message (and its idempotency key) is durable as the
//! backend defines it (SQLite: committed and fsynced with `synchronous=FULL`). The delivery
//! engine confirms a publish only after that. Acks, requeues and claims are durable the same
//! way, so a restart redelivers exactly what was not acknowledged.
//!
//! Backends implement this trait; the server holds an `Arc<dyn Store>`. Every backend must
//! pass the conformance suite in `tidings-store-tests`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A future returned by a [`Store`] method.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The offset of a message in its topic: 1 for the first message, then +1 each.
pub type Offset = u64;

pub use crate::clock::Millis;

/// When an embedded store counts a write as durable (`tidings serve --durability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Written and fsynced before it is confirmed: a confirmed publish survives a power loss
    /// (the default). SQLite: `synchronous=FULL`; the journal: an fsync per group commit.
    #[default]
    Full,
    /// Written to the OS before it is confirmed, fsynced later (SQLite: at checkpoints; the
    /// journal: at checkpoints and a clean close): a confirmed publish survives a crash of the
    /// process, not of the machine.
    Os,
}

/// A store operation failed. Every variant is something the caller reports, never ignores:
/// a publish that gets an `Err` was not stored and must not be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be used right now (disk full, I/O error, connection lost); the
    /// operation may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend's data is not what this version expects (corrupt file, wrong schema).
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The topic or subscription does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is invalid for this store (e.g. an offset beyond the head).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The store holds its configured maximum of retained data (the embedded stores'
    /// `max_retained_bytes`); nothing was stored. Space comes back as consumers acknowledge,
    /// retention trims topics, and dead letters are requeued or removed.
    #[error("store full: {0}")]
    Full(String),
}

/// What a client is told when the store refuses: `not_found` and `bad_request` for what the
/// client asked wrongly, `store_full` when the store holds its maximum of retained data,
/// `store_unavailable` (retry later) for everything else.
impl From<StoreError> for crate::ErrorBody {
    fn from(e: StoreError) -> Self {
        use crate::ErrorCode;
        match e {
            StoreError::NotFound(what) => crate::ErrorBody::new(ErrorCode::NotFound, what),
            StoreError::Invalid(what) => crate::ErrorBody::new(ErrorCode::BadRequest, what),
            StoreError::Full(what) => crate::ErrorBody::new(ErrorCode::StoreFull, what),
            other => crate::ErrorBody::new(ErrorCode::StoreUnavailable, other.to_string()),
        }
    }
}

/// The name of a topic: dot-separated segments of `[A-Za-z0-9_:-]`, 1–200 bytes in all
/// (`pickup`, `vendor.store-42`). Dots make segments for permission patterns (`vendor.*`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 200;

/// A topic, subscription or group name is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {name:?}: {reason}")]
pub struct NameError {
    /// The rejected name.
    pub name: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

fn valid_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ':'
}

impl Topic {
    /// Validates a topic name.
    pub fn new(name: &str) -> Result<Topic, NameError> {
        let err = |reason| {
            Err(NameError {
                name: name.chars().take(64).collect(),
                reason,
            })
        };
        if name.is_empty() || name.len() > MAX_TOPIC_LEN {
            return err("a topic name has 1 to 200 bytes");
        }
        if name
            .split('.')
            .any(|seg| seg.is_empty() || !seg.chars().all(valid_segment_char))
        {
            return err("a topic name is dot-separated segments of letters, digits, '_', '-', ':'");
        }
        Ok(Topic(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

impl FromStr for Topic {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::new(s)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Topic::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Who owns a queue: one identity (all its sockets share it) or a competing-consumer group
/// (each message goes to one member).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriptionName {
    /// The durable identity named in the CONNECT auth payload (or a verified token's `sub`).
    Identity(String),
    /// A group of identities sharing one queue.
    Group(String),
}

/// The longest identity or group name, in bytes.
pub const MAX_SUBSCRIBER_LEN: usize = 200;

impl SubscriptionName {
    /// An identity's subscription; the name must be 1–200 bytes without control characters.
    pub fn identity(name: &str) -> Result<Self, NameError> {
        validate_subscriber(name).map(|()| SubscriptionName::Identity(name.to_owned()))
    }

    /// A group's subscription; same rules as [`SubscriptionName::identity`].
    pub fn group(name: &str) -> Result<Self, NameError> {
        validate_subscriber(name).map(|()| SubscriptionName::Group(name.to_owned()))
    }

    /// The storage key: `id:<name>` or `group:<name>`, also the `{name}` of the HTTP API.
    pub fn key(&self) -> String {
        match self {
            SubscriptionName::Identity(n) => format!("id:{n}"),
            SubscriptionName::Group(n) => format!("group:{n}"),
        }
    }

    /// Parses a storage key made by [`SubscriptionName::key`].
    pub fn from_key(key: &str) -> Result<Self, NameError> {
        if let Some(n) = key.strip_prefix("id:") {
            SubscriptionName::identity(n)
        } else if let Some(n) = key.strip_prefix("group:") {
            SubscriptionName::group(n)
        } else {
            Err(NameError {
                name: key.chars().take(64).collect(),
                reason: "expected id:<name> or group:<name>",
            })
        }
    }
}

fn validate_subscriber(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_SUBSCRIBER_LEN || name.chars().any(char::is_control) {
        return Err(NameError {
            name: name.chars().take(64).collect(),
            reason: "a name has 1 to 200 bytes and no control characters",
        });
    }
    Ok(())
}

impl fmt::Display for SubscriptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A message id: 128 bits, unique with the odds of random ones, shown as 22 characters of
/// URL-safe base64 like [`crate::Sid`]. Unlike a socket id it grants nothing, so it need not be
/// a secret, only unique.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl MessageId {
    /// A new id, different from every other this process made, and unrelated to them.
    pub fn new() -> Self {
        MessageId(crate::id::unique_u128())
    }
}

impl Default for MessageId {
    fn default() -> Self {
        MessageId::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::id::write_u128(self.0, f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = crate::SidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::id::parse_u128(s).map(MessageId)
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A message to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The Socket.IO event name subscribers receive.
    pub event: String,
    /// The JSON payload, as text (kept byte for byte as the publisher sent it). Binary parts
    /// are Socket.IO placeholders `{"_placeholder":true,"num":N}`, numbered depth-first from
    /// 0, that stand for `attachments[N]`.
    pub data: String,
    /// The binary attachments `data`'s placeholders refer to, in order (empty for a message
    /// without binary). Delivered as a Socket.IO BINARY_EVENT.
    pub attachments: Vec<Bytes>,
    /// Optional idempotency key: a repeat within the dedup window stores nothing and returns
    /// the first append's id and offset.
    pub key: Option<String>,
    /// When the message was published.
    pub published_at: Millis,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    /// The message id.
    pub id: MessageId,
    /// The message's offset in its topic.
    pub offset: Offset,
    /// The event name.
    pub event: String,
    /// The JSON payload, as text, with placeholders for `attachments`.
    #[serde(skip)]
    pub data: String,
    /// The binary attachments of `data` (see [`NewMessage::attachments`]).
    #[serde(skip)]
    pub attachments: Vec<Bytes>,
    /// When it was published.
    pub published_at: Millis,
}

impl NewMessage {
    /// The payload's size: `data`'s bytes plus every attachment's. What size limits and
    /// byte-based retention count.
    pub fn payload_len(&self) -> u64 {
        payload_len(&self.data, &self.attachments)
    }
}

impl StoredMessage {
    /// The payload's size: `data`'s bytes plus every attachment's.
    pub fn payload_len(&self) -> u64 {
        payload_len(&self.data, &self.attachments)
    }
}

/// `data`'s bytes plus every attachment's.
pub fn payload_len(data: &str, attachments: &[Bytes]) -> u64 {
    data.len() as u64 + attachments.iter().map(|a| a.len() as u64).sum::<u64>()
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The message's id (the first append's when `duplicate`).
    pub id: MessageId,
    /// The message's offset (the first append's when `duplicate`).
    pub offset: Offset,
    /// The idempotency key was seen within the dedup window: nothing was stored.
    pub duplicate: bool,
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Only messages appended after subscribing (the default).
    New,
    /// Every retained message.
    Earliest,
    /// From this offset on (clamped to what is retained).
    Offset(Offset),
}

/// How a claim hands out entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimOptions {
    /// The current time.
    pub now: Millis,
    /// At most this many entries.
    pub max: usize,
    /// Claimed entries are in flight until `now + ack_timeout`; after that a claim hands them
    /// out again.
    pub ack_timeout: Millis,
    /// An entry already delivered this many times is moved to the dead letters instead of
    /// being handed out again.
    pub max_deliveries: u32,
}

/// One delivery handed out by [`Store::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The message.
    pub message: StoredMessage,
    /// Which delivery this is: 1 for the first, 2+ for redeliveries.
    pub attempt: u32,
}

/// What [`Store::claim`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimResult {
    /// The entries handed out, in offset order: due redeliveries first, then new messages.
    pub claimed: Vec<Claimed>,
    /// Entries moved to the dead letters by this claim (they reached `max_deliveries`).
    pub dead_lettered: Vec<Offset>,
    /// The earliest due time among the subscription's pending entries after this claim — an
    /// entry in flight is due at its deadline, a requeued one when its backoff ends — or None
    /// when nothing is pending. A dispatcher with nothing to claim sleeps until then (or until
    /// a publish or a settle wakes it) instead of polling.
    pub next_due: Option<Millis>,
}

/// How one delivery ended, for [`Store::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Acknowledged: as [`Store::ack`].
    Ack(Offset),
    /// Not acknowledged: the entry waits until `not_before`, as [`Store::requeue`].
    Requeue {
        /// The entry.
        offset: Offset,
        /// When it may be handed out again.
        not_before: Millis,
    },
}

impl Settle {
    /// The entry settled.
    pub fn offset(&self) -> Offset {
        match *self {
            Settle::Ack(offset) | Settle::Requeue { offset, .. } => offset,
        }
    }
}

/// A message that exhausted its deliveries for one subscription.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The message (its payload is in `message.data`).
    #[serde(flatten)]
    pub message: StoredMessage,
    /// The subscription that could not settle it.
    #[serde(serialize_with = "serialize_display")]
    pub subscription: SubscriptionName,
    /// Deliveries made.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub dead_at: Millis,
}

impl DeadLetter {
    /// Sorts dead letters the way [`Store::dead_letters`] lists them: by the time they died,
    /// then offset, then subscription. Every backend calls this, so they agree to the letter.
    pub fn sort(letters: &mut [DeadLetter]) {
        letters.sort_by(|a, b| {
            (a.dead_at, a.message.offset, &a.subscription).cmp(&(
                b.dead_at,
                b.message.offset,
                &b.subscription,
            ))
        });
    }
}

fn serialize_display<T: fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A subscription's state, for the API and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionInfo {
    /// The subscription.
    #[serde(serialize_with = "serialize_display")]
    pub name: SubscriptionName,
    /// Messages not settled yet (in flight, waiting, or never delivered).
    pub pending: u64,
    /// Of those, handed out and not acknowledged yet.
    pub in_flight: u64,
    /// Messages dead-lettered for this subscription and not requeued.
    pub dead: u64,
    /// Unsettled messages that retention removed (each announced with `tidings:gap`).
    pub gaps: u64,
    /// The next offset never handed out.
    pub cursor: Offset,
}

/// A topic's state, for the API and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicInfo {
    /// The topic.
    pub topic: Topic,
    /// The offset of the newest message (0 when none was ever appended).
    pub head: Offset,
    /// The offset of the oldest retained message (head + 1 when none is retained).
    pub first: Offset,
    /// Retained messages.
    pub retained: u64,
    /// Bytes of retained payloads.
    pub retained_bytes: u64,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionInfo>,
}

/// Retention limits of a topic: a message older, or beyond the newest `max_messages` or
/// `max_bytes`, is removed — even if some subscription has not settled it (that is a gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Maximum age in milliseconds.
    pub max_age: Millis,
    /// Maximum number of retained messages.
    pub max_messages: u64,
    /// Maximum retained payload bytes.
    pub max_bytes: u64,
}

impl Default for Retention {
    /// Generous: 7 days, 10 million messages, 10 GiB per topic.
    fn default() -> Self {
        Retention {
            max_age: 7 * 24 * 3600 * 1000,
            max_messages: 10_000_000,
            max_bytes: 10 << 30,
        }
    }
}

/// Unsettled messages of one subscription that retention removed: offsets `from..=to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The topic.
    pub topic: Topic,
    /// The subscription that lost them.
    pub subscription: SubscriptionName,
    /// First removed unsettled offset.
    pub from: Offset,
    /// Last removed unsettled offset.
    pub to: Offset,
}

/// What a full subscription queue does to a publish (see [`QueueBound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Overflow {
    /// Refuse the publish: nothing is stored (the default).
    #[default]
    Reject,
    /// Store the publish; every full subscription loses its oldest unsettled entries, each
    /// loss reported as a [`Gap`] (and counted in [`SubscriptionInfo::gaps`]).
    DropOldest,
}

impl Overflow {
    /// The name used in configuration: `reject` or `drop-oldest`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Reject => "reject",
            Overflow::DropOldest => "drop-oldest",
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Overflow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Overflow::Reject),
            "drop-oldest" => Ok(Overflow::DropOldest),
            other => Err(format!(
                "unknown overflow policy {other:?} (expected \"reject\" or \"drop-oldest\")"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Overflow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The most entries a subscription's queue may hold — its depth: pending entries (in flight or
/// waiting) plus messages not handed out yet, i.e. [`SubscriptionInfo::pending`] — and what a
/// publish that would exceed it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueBound {
    /// The most entries per subscription.
    pub max_depth: u64,
    /// What happens to a publish beyond it.
    pub overflow: Overflow,
}

/// What [`Store::append_bounded`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundedAppend {
    /// The message was stored (or was a duplicate, which stores nothing).
    Appended {
        /// As [`Store::append`] returns it.
        appended: Appended,
        /// With [`Overflow::DropOldest`]: the unsettled entries that full subscriptions lost
        /// to make room, sorted by (subscription, offset). Empty otherwise.
        dropped: Vec<Gap>,
    },
    /// With [`Overflow::Reject`]: `subscription` already holds `depth >= max_depth` entries,
    /// so nothing was stored (and an idempotency key was not recorded).
    Full {
        /// A full subscription (one of them, when several are).
        subscription: SubscriptionName,
        /// Its depth.
        depth: u64,
    },
}

/// The durable store: topics, subscriptions and their queues. See the module docs.
///
/// Every method is atomic. Methods on an unknown topic or subscription return
/// `Err(StoreError::NotFound)` unless documented otherwise.
pub trait Store: Send + Sync + 'static {
    /// Appends a message (creating the topic on first use) and returns once it is durable.
    /// With an idempotency key seen within `dedup_window` ms before `msg.published_at`,
    /// stores nothing and returns the first append with `duplicate: true`.
    fn append<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Appended>;

    /// [`Store::append`], atomically bounded by `bound` on every subscription of the topic.
    ///
    /// A duplicate (idempotency key within the window) is answered as by `append`, whatever
    /// the queues hold. Otherwise, with [`Overflow::Reject`], when some subscription already
    /// holds `bound.max_depth` entries or more, nothing is stored and the answer is
    /// [`BoundedAppend::Full`]. With [`Overflow::DropOldest`] the message is stored and every
    /// subscription then holding more than `max_depth` entries loses its oldest unsettled
    /// ones — pending entries (in flight or waiting) first, as they are older than anything
    /// not handed out, then undelivered messages by advancing its cursor — until it holds
    /// `max_depth`. The messages stay in the topic (other subscriptions, `history`); the losses
    /// are returned as gaps and counted in [`SubscriptionInfo::gaps`], as retention's are. An
    /// ack of a dropped in-flight entry then returns Ok(false).
    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend>;

    /// Creates the subscription if it does not exist (creating the topic too), starting at
    /// `from`; an existing subscription is left as it is. Returns its state.
    fn subscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    ) -> StoreFuture<'a, SubscriptionInfo>;

    /// Removes the subscription with its pending entries and dead letters. Ok(false) if it did
    /// not exist.
    fn unsubscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    ) -> StoreFuture<'a, bool>;

    /// Every subscription of every topic (to resume deliveries at start-up).
    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>>;

    /// Records that `identity` is (`member = true`) or is no longer (`false`) a member of the
    /// group subscription `group` on `topic`, so group memberships survive restarts. The group
    /// subscription must exist (`NotFound` otherwise); removing it removes its members.
    /// Idempotent.
    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()>;

    /// Every group membership: (topic, group subscription, identity), sorted.
    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>>;

    /// Hands out up to `opts.max` entries, in offset order: first the pending entries that are
    /// due (waiting with `not_before <= now`, or in flight past their deadline), then new
    /// messages from the cursor (advancing it). Each becomes in flight until
    /// `now + ack_timeout`, with its attempt count + 1. An entry whose attempt count already
    /// reached `max_deliveries` is moved to the dead letters instead.
    fn claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    ) -> StoreFuture<'a, ClaimResult>;

    /// Settles an entry (acknowledged). Ok(false) if it was not pending (already settled).
    fn ack<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    ) -> StoreFuture<'a, bool>;

    /// Makes a pending entry wait until `not_before` before it is handed out again (requeue
    /// with backoff, or release on disconnect with `not_before = now`). Ok(false) if it was not
    /// pending.
    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool>;

    /// Applies many acks and requeues of one subscription, in order, as one operation where the
    /// backend can (the delivery engine settles a queue's answered deliveries in batches).
    /// Returns, for each, what [`Store::ack`] or [`Store::requeue`] would have: whether the entry
    /// was pending. On an error some of them may have been applied; each is idempotent, and an
    /// entry not settled stays in flight until its deadline, so nothing is lost either way.
    ///
    /// The default calls `ack` and `requeue` one by one.
    fn settle<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
    ) -> StoreFuture<'a, Vec<bool>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(batch.len());
            for s in batch {
                out.push(match *s {
                    Settle::Ack(offset) => self.ack(topic, sub, offset).await?,
                    Settle::Requeue { offset, not_before } => {
                        self.requeue(topic, sub, offset, not_before).await?
                    }
                });
            }
            Ok(out)
        })
    }

    /// [`Store::settle`] of `batch` (skipped when empty), then [`Store::claim`] with `opts`, on
    /// one subscription — a delivery dispatcher's turn — as one operation where the backend can
    /// (the Redis store: one script, one round trip instead of two). Returns settle's flags and
    /// claim's result. On an error, the settle may or may not have been applied (as for
    /// `settle`), and so may the claim, as for a `claim` whose answer was lost: its entries stay
    /// in flight until their deadline, then are handed out again. Nothing is lost either way.
    ///
    /// The default calls `settle` then `claim`.
    fn settle_and_claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
        opts: ClaimOptions,
    ) -> StoreFuture<'a, (Vec<bool>, ClaimResult)> {
        Box::pin(async move {
            let settled = if batch.is_empty() {
                Vec::new()
            } else {
                self.settle(topic, sub, batch).await?
            };
            Ok((settled, self.claim(topic, sub, opts).await?))
        })
    }

    /// Makes every in-flight entry of every subscription wait until `now` (due at once), keeping
    /// its attempt count, and returns how many there were. Called when the delivery engine
    /// starts: nothing handed out before a restart can be acknowledged any more, so waiting for
    /// the ack deadlines would only delay the redelivery. (A store shared by several server
    /// processes must not be released by one of them; such backends return Ok(0) and rely on
    /// the deadlines.)
    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64>;

    /// The dead letters of a topic (all subscriptions), oldest first.
    fn dead_letters<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Vec<DeadLetter>>;

    /// Moves a dead letter back into its subscription's queue as a fresh entry (attempt count
    /// 0, due now) — for every subscription that dead-lettered that message. Ok(false) if there
    /// is no such dead letter (or its message was removed).
    fn requeue_dead<'a>(
        &'a self,
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    ) -> StoreFuture<'a, bool>;

    /// Up to `limit` retained messages with offset >= `from`, in order. An unknown topic has
    /// no messages (Ok(empty)).
    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        from: Offset,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>>;

    /// The state of one topic; Ok(None) if it does not exist.
    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>>;

    /// Every topic.
    fn topics(&self) -> StoreFuture<'_, Vec<Topic>>;

    /// Removes what `retention` no longer allows (as of `now`) and forgets idempotency keys
    /// older than `dedup_window`. Returns, per subscription, the unsettled offsets it lost
    /// (also counted in [`SubscriptionInfo::gaps`]); those entries are settled.
    fn enforce_retention<'a>(
        &'a self,
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Vec<Gap>>;

    /// Answers when the store can serve requests (readiness: `GET /readyz`). The default
    /// lists the topics; a remote backend overrides it with a cheaper round trip, an embedded
    /// one with a check that its writer is healthy.
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.topics().await.map(|_| ()) })
    }

    /// For each subscription of `topic` with unsettled entries (pending, in flight or not
    /// handed out yet), when its oldest unsettled message was published: consumer lag is now
    /// minus that. Subscriptions with nothing unsettled are left out. `Ok(None)` when the
    /// backend does not report it (the default).
    fn oldest_unsettled<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> StoreFuture<'a, Option<Vec<(SubscriptionName, Millis)>>> {
        let _ = topic;
        Box::pin(async { Ok(None) })
    }

    /// What the backend measures about itself (commit and fsync latency, round trips,
    /// errors), read when metrics are collected. The default measures nothing.
    fn metrics(&self) -> crate::metrics::BackendMetrics {
        crate::metrics::BackendMetrics::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["pickup", "vendor.store-42", "a:b.c_d", "x"] {
            assert!(Topic::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "a*",
            "a>",
            "é",
            &"x".repeat(201),
        ] {
            assert!(Topic::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subscription_keys_round_trip() {
        for sub in [
            SubscriptionName::identity("driver-7").unwrap(),
            SubscriptionName::group("drivers").unwrap(),
        ] {
            assert_eq!(SubscriptionName::from_key(&sub.key()).unwrap(), sub);
        }
        assert!(SubscriptionName::identity("").is_err());
        assert!(SubscriptionName::identity("a\nb").is_err());
        assert!(SubscriptionName::from_key("nope").is_err());
    }

    #[test]
    fn message_ids_round_trip() {
        let id = MessageId::new();
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
    }
}
