//! The embedded [`Store`] of tidings: the whole state in memory, every change appended to a
//! journal on disk with group commit, and the journal checkpointed to a snapshot as it grows.
//!
//! ```no_run
//! use std::path::Path;
//! use tidings_core::store::{NewMessage, Store, Topic};
//! use tidings_store_journal::{JournalConfig, JournalStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = JournalStore::open(Path::new("data/journal"), JournalConfig::default())?;
//! let topic = Topic::new("pickup")?;
//! let msg = NewMessage { event: "ready".into(), data: "{}".into(), attachments: vec![], key: None, published_at: 0 };
//! // Returns once the message's record is written and fsynced.
//! let appended = store.append(&topic, msg, 60_000).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Design (ARCHITECTURE.md has the measurements behind it)
//!
//! - **The state is a [`Machine`]** (the reference implementation of the store seam, shared
//!   with `tidings-store-memory`), in memory under one lock. An operation runs on it directly,
//!   in the caller's thread: a claim or an ack costs a few map operations, not a query.
//! - **Every change is a record** in an append-only journal: the operation and its arguments
//!   ([`op`](crate::op) has the list). Replaying the records on the state they were made on
//!   rebuilds it exactly, because every `Machine` operation is deterministic. An operation that
//!   changes nothing (an idle claim, a duplicate publish) writes nothing.
//! - **One flusher thread** writes the records: all that piled up since its last write go out
//!   in one `write` (group commit), followed by one fsync when a caller waits for durability.
//! - **What waits for what** ([`Durability::Full`]):
//!   - a publish (append), subscribe, unsubscribe, membership change or dead-letter requeue is
//!     answered only after its record is written *and fsynced*: a confirmed publish survives a
//!     power loss;
//!   - an ack, requeue or claim is answered at once and written with the next batch, fsynced by
//!     the next fsync (the next publish's, or the clean close). A crash may lose the last ones:
//!     then the entries they settled are pending again, so the crash causes a **redelivery**,
//!     never a loss. Nothing is skipped either: a lost claim's cursor move is lost with it;
//!   - a dispatcher's turn ([`Store::settle_and_claim`]) is one operation under one hold of
//!     the lock and one record: the settle of its answered deliveries and its next claim;
//!   - a claim never hands out a message whose publish is not durable yet (it waits for the
//!     newest durable-wanted record to be written), so a crash cannot make a subscriber see an
//!     offset that the restarted store then reuses for another message. `history` waits the
//!     same way.
//! - **Checkpoints** bound the journal: when the segments written since the last snapshot
//!   exceed `checkpoint_bytes` (and the snapshot's own size), the flusher captures the state
//!   under the lock — encoding the small parts, sharing the retained messages, which never
//!   change (`Machine::capture`) — and starts a new segment; a thread of its own encodes the
//!   capture and writes the snapshot beside it (temporary file, fsync, rename) and deletes the
//!   segments it covers, while the flusher goes on confirming records in the new segment.
//!   Messages removed by retention leave the disk at the next checkpoint.
//! - **Open** reads the snapshot, replays the segments after it, cuts a torn tail, and refuses a
//!   corrupt or newer-format file with a clear error (see [`format`](crate::format)). A `LOCK`
//!   file held with `flock` keeps a second process out of the directory.
//!
//! The cost of this design is memory: every retained message is in RAM (as in Redis). The
//! retention limits of a topic bound it; docs/CONFIGURATION.md says how to size them.
#![forbid(unsafe_code)]

mod flusher;
mod format;
mod op;
mod segment;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, DeadLetter, Gap, MessageId, Millis,
    NewMessage, Offset, QueueBound, Retention, Settle, StartFrom, Store, StoreError, StoreFuture,
    StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};
use tidings_store_memory::{Machine, SnapshotFormat};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::flusher::Flusher;
use crate::op::Op;
use crate::segment::SegmentWriter;

pub use crate::format::FORMAT_VERSION;

/// When a publish counts as durable: `Full` fsyncs each group commit before confirming it, `Os`
/// writes it to the OS and fsyncs only at checkpoints and a clean close.
pub use tidings_core::store::Durability;

/// Settings of a [`JournalStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// When a publish counts as durable.
    pub durability: Durability,
    /// Journal bytes written since the last snapshot after which a new snapshot is taken
    /// (never before the journal has grown by the snapshot's own size too). Default 64 MiB.
    pub checkpoint_bytes: u64,
    /// The most the retained messages and dead letters may hold in memory, counted as
    /// [`Machine::footprint`] counts them (payload + event name +
    /// [`MESSAGE_OVERHEAD`](tidings_store_memory::MESSAGE_OVERHEAD) each): a publish past it
    /// is refused with [`StoreError::Full`] and nothing is logged. Checked at publish time
    /// only: a journal opened with a lower bound replays everything it holds. Default: none.
    pub max_retained_bytes: Option<u64>,
    /// How far ahead of its records the segment is filled with zeros, in bytes (0: never).
    /// An fsync of a file whose size did not change writes the records and nothing else; one
    /// of a growing file also writes the file's new size (the inode: one more synchronous
    /// write per fsync, and on a file system with a journal a commit of it). Writing zeros
    /// ahead, this much at a time, moves that cost to one fsync per `write_ahead_bytes`.
    /// Default 1 MiB.
    pub write_ahead_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            durability: Durability::Full,
            checkpoint_bytes: 64 << 20,
            max_retained_bytes: None,
            write_ahead_bytes: 1 << 20,
        }
    }
}

/// The journal store. See the crate docs.
pub struct JournalStore {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    /// Held (flock) while the store is open.
    _lock: File,
}

impl std::fmt::Debug for JournalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// What the journal did since it was opened (for benchmarks and `/v1/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records logged (operations that changed something).
    pub records: u64,
    /// Batches written (one `write` each): `records / writes` is the group-commit ratio.
    pub writes: u64,
    /// fsyncs of the journal.
    pub fsyncs: u64,
    /// Snapshots written.
    pub checkpoints: u64,
    /// Checkpoints that failed (logged; the segments they would have replaced are kept and a
    /// later checkpoint tries again).
    pub checkpoint_failures: u64,
    /// What the retained messages and dead letters count now against
    /// [`JournalConfig::max_retained_bytes`].
    pub footprint: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) writes: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) checkpoint_failures: AtomicU64,
    /// Each batch's write (+ fsync when one is wanted).
    pub(crate) commit_latency: tidings_core::metrics::Histogram,
    /// Each fsync alone.
    pub(crate) fsync_latency: tidings_core::metrics::Histogram,
}

pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// The lsn of the first record logged by this process: `next_lsn - first_lsn` records.
    pub(crate) first_lsn: u64,
    pub(crate) inner: Mutex<Inner>,
    /// Wakes the flusher: records to write, or closing.
    pub(crate) work: Condvar,
    /// Notified when `written_lsn` moves (for [`JournalStore::wait_until_written`]).
    pub(crate) written: Condvar,
    /// Held by the flusher while it touches the files (a write, a checkpoint), and by
    /// [`JournalStore::with_files_still`].
    pub(crate) files: Mutex<()>,
    pub(crate) dir: PathBuf,
    pub(crate) config: JournalConfig,
}

pub(crate) struct Inner {
    pub(crate) machine: Machine,
    /// Records logged and not yet taken by the flusher.
    pub(crate) buf: Vec<u8>,
    /// The lsn the next record gets.
    pub(crate) next_lsn: u64,
    /// `buf` holds a record whose caller waits for an fsync.
    pub(crate) sync_wanted: bool,
    /// The newest record whose caller waits for durability (a publish, a subscribe…).
    pub(crate) last_durable_lsn: u64,
    /// Every record up to this one is written (and fsynced if its caller wanted it).
    pub(crate) written_lsn: u64,
    /// Callers waiting for `written_lsn` to reach their target.
    pub(crate) waiters: Vec<(u64, oneshot::Sender<Result<(), StoreError>>)>,
    /// Set when a write failed: every operation fails with it.
    pub(crate) failed: Option<StoreError>,
    pub(crate) closing: bool,
}

/// What an operation's answer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing: answered from memory, written with the next batch.
    Nothing,
    /// Its own record written and fsynced.
    Durable,
    /// Every publish logged before it written and fsynced (claims, history).
    Publishes,
}

type Written = Option<oneshot::Receiver<Result<(), StoreError>>>;

async fn written(rx: Written) -> Result<(), StoreError> {
    match rx {
        None => Ok(()),
        Some(rx) => rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the journal's writer stopped".to_owned(),
            ))
        }),
    }
}

impl Shared {
    /// Runs one operation: logs its record (encoded by `encode` from `input`), applies it
    /// (`apply` returns the answer and whether anything changed; a record of no change is
    /// dropped) and returns the answer with what to wait for before giving it.
    fn run<I, T>(
        &self,
        input: I,
        wait: Wait,
        encode: impl FnOnce(&I, &mut Vec<u8>),
        apply: impl FnOnce(&mut Machine, I) -> Result<(T, bool), StoreError>,
    ) -> Result<(T, Written), StoreError> {
        let mut guard = self.inner.lock();
        let g = &mut *guard;
        if let Some(e) = &g.failed {
            return Err(e.clone());
        }
        let mark = g.buf.len();
        let lsn = g.next_lsn;
        format::push_record(&mut g.buf, lsn, |buf| encode(&input, buf));
        let (value, changed) = match apply(&mut g.machine, input) {
            Ok(v) => v,
            Err(e) => {
                g.buf.truncate(mark);
                return Err(e);
            }
        };
        if changed {
            g.next_lsn += 1;
            self.work.notify_one();
        } else {
            g.buf.truncate(mark);
        }
        let target = match wait {
            Wait::Nothing => 0,
            Wait::Durable if changed => {
                g.last_durable_lsn = lsn;
                g.sync_wanted = true;
                lsn
            }
            // Nothing changed (a duplicate publish, an existing subscription): what it
            // reports was made by an earlier durable-wanted record.
            Wait::Durable | Wait::Publishes => g.last_durable_lsn,
        };
        Ok((value, g.wait_for(target)))
    }

    /// [`Store::settle_and_claim`]: the settle and the claim under one hold of the lock, and
    /// one record for both — the kind of record chosen by what changed (`SETTLE_CLAIM`,
    /// `SETTLE` or `CLAIM`; none when nothing did), so that replaying it gives the state this
    /// call made. The answer waits as a claim's does: for nothing, unless it hands out a
    /// message whose publish is not durable yet.
    fn settle_and_claim(
        &self,
        topic: &Topic,
        sub: &SubscriptionName,
        batch: &[Settle],
        opts: ClaimOptions,
    ) -> Result<((Vec<bool>, ClaimResult), Written), StoreError> {
        let mut guard = self.inner.lock();
        let g = &mut *guard;
        if let Some(e) = &g.failed {
            return Err(e.clone());
        }
        // An unknown subscription fails here, before anything changed.
        let settled = g.machine.settle(topic, sub, batch)?;
        let settle_changed = settled.iter().any(|&a| a);
        let claimed = g.machine.claim(topic, sub, opts);
        let claim_changed = claimed
            .as_ref()
            .is_ok_and(|c| !c.claimed.is_empty() || !c.dead_lettered.is_empty());
        let op = match (settle_changed, claim_changed) {
            (true, true) => Some(Op::SettleClaim {
                topic,
                sub,
                batch,
                opts,
            }),
            // The claim failed or changed nothing: the settle alone is what happened.
            (true, false) => Some(Op::Settle { topic, sub, batch }),
            (false, true) => Some(Op::Claim { topic, sub, opts }),
            (false, false) => None,
        };
        if let Some(op) = op {
            let lsn = g.next_lsn;
            format::push_record(&mut g.buf, lsn, |buf| op.encode(buf));
            g.next_lsn += 1;
            self.work.notify_one();
        }
        let claimed = claimed?;
        let target = if claimed.claimed.is_empty() {
            0
        } else {
            g.last_durable_lsn
        };
        Ok(((settled, claimed), g.wait_for(target)))
    }

    /// Reads the state. `after_publishes`: the answer waits until every publish logged
    /// before it is durable, so it shows no message a crash could still take back.
    fn read<T>(
        &self,
        after_publishes: bool,
        f: impl FnOnce(&Machine) -> T,
    ) -> Result<(T, Written), StoreError> {
        let mut g = self.inner.lock();
        if let Some(e) = &g.failed {
            return Err(e.clone());
        }
        let value = f(&g.machine);
        let target = if after_publishes {
            g.last_durable_lsn
        } else {
            0
        };
        Ok((value, g.wait_for(target)))
    }
}

impl Inner {
    fn wait_for(&mut self, target: u64) -> Written {
        if target <= self.written_lsn {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push((target, tx));
        Some(rx)
    }
}

impl JournalStore {
    /// Opens (or creates) the journal in `dir`: reads the snapshot, replays the segments after
    /// it (cutting a torn tail), checkpoints what it replayed, and starts the flusher.
    ///
    /// Fails with [`StoreError::Corrupt`] for a damaged or newer-format file (naming it; nothing
    /// is changed), and [`StoreError::Unavailable`] when another process has `dir` open or the
    /// directory cannot be used.
    pub fn open(dir: &Path, config: JournalConfig) -> Result<JournalStore, StoreError> {
        let started = Instant::now();
        fs::create_dir_all(dir).map_err(|e| format::io_error(dir, "create", &e))?;
        let lock_path = dir.join(format::LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format::io_error(&lock_path, "open", &e))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::Unavailable(format!(
                    "{} is in use by another tidings process (it holds {})",
                    dir.display(),
                    lock_path.display()
                )));
            }
            Err(e) => return Err(format::io_error(&lock_path, "lock", &e.into())),
        }

        // What a checkpoint had not finished removing when the process stopped.
        format::empty_trash(dir)?;
        let (mut machine, snapshot_lsn) = match format::read_snapshot(dir)? {
            Some(format::Snapshot { version, lsn, body }) => {
                let body_format = if version == 1 {
                    SnapshotFormat::V1
                } else {
                    SnapshotFormat::V2
                };
                let machine = Machine::decode_format(&body, body_format).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{}: {e}",
                        dir.join(format::SNAPSHOT_FILE).display()
                    ))
                })?;
                (machine, lsn)
            }
            None => (Machine::default(), 0),
        };
        let replay = tracing::subscriber::with_default(
            tracing::subscriber::NoSubscriber::default(),
            || replay_segments(dir, &mut machine, snapshot_lsn),
        )?;
        match &replay.torn {
            Some((path, bytes, true)) => {
                warn!(file = %path.display(), bytes, "journal: cut a torn tail (records of a write a crash interrupted; none of them was confirmed)");
            }
            Some((path, bytes, false)) => {
                info!(file = %path.display(), bytes, "journal: cut the zeros after the last record (written ahead of the records; the journal was not closed cleanly)");
            }
            None => {}
        }
        let last_lsn = replay.next_lsn - 1;
        let (segment, snapshot_bytes) = if replay.records > 0 || replay.torn.is_some() {
            flusher::rotate(dir, last_lsn, &machine.capture())?
        } else {
            let size = fs::metadata(dir.join(format::SNAPSHOT_FILE)).map_or(0, |m| m.len());
            (format::create_segment(dir, replay.next_lsn)?, size)
        };
        info!(
            dir = %dir.display(),
            topics = machine.topics().len(),
            snapshot_lsn,
            replayed = replay.records,
            ms = started.elapsed().as_millis() as u64,
            "journal opened"
        );

        let shared = Arc::new(Shared {
            counters: Counters::default(),
            first_lsn: replay.next_lsn,
            inner: Mutex::new(Inner {
                machine,
                buf: Vec::new(),
                next_lsn: replay.next_lsn,
                sync_wanted: false,
                last_durable_lsn: last_lsn,
                written_lsn: last_lsn,
                waiters: Vec::new(),
                failed: None,
                closing: false,
            }),
            work: Condvar::new(),
            written: Condvar::new(),
            files: Mutex::new(()),
            dir: dir.to_owned(),
            config,
        });
        let flusher = Flusher {
            shared: Arc::clone(&shared),
            segment: SegmentWriter::new(segment, shared.config.write_ahead_bytes),
            since_checkpoint: 0,
            snapshot_bytes,
            checkpointing: None,
        };
        let handle = std::thread::Builder::new()
            .name("tidings-journal".to_owned())
            .spawn(move || flusher.run())
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the journal's writer: {e}"))
            })?;
        Ok(JournalStore {
            shared,
            flusher: Some(handle),
            _lock: lock,
        })
    }

    /// The directory of the journal.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The lsn of the newest record logged (0 for an empty journal): one more for every
    /// operation that changed something, across restarts.
    pub fn lsn(&self) -> u64 {
        self.shared.inner.lock().next_lsn - 1
    }

    /// Blocks until every record logged so far is written to the OS (not necessarily fsynced),
    /// or the journal failed. For tests and tools that look at the files; async code awaits
    /// its operations instead.
    pub fn wait_until_written(&self) -> Result<(), StoreError> {
        let mut g = self.shared.inner.lock();
        let target = g.next_lsn - 1;
        loop {
            if let Some(e) = &g.failed {
                return Err(e.clone());
            }
            if g.written_lsn >= target {
                return Ok(());
            }
            self.shared.written.wait(&mut g);
        }
    }

    /// Runs `f` on the journal's directory while the writer touches no file (between two of
    /// its writes or checkpoints): what `f` copies is what a crash at that instant leaves. For
    /// crash tests.
    pub fn with_files_still<T>(&self, f: impl FnOnce(&Path) -> T) -> T {
        let _still = self.shared.files.lock();
        f(&self.shared.dir)
    }

    /// What the journal did since it was opened.
    pub fn stats(&self) -> JournalStats {
        let c = &self.shared.counters;
        let (records, footprint) = {
            let g = self.shared.inner.lock();
            (g.next_lsn - self.shared.first_lsn, g.machine.footprint())
        };
        JournalStats {
            records,
            footprint,
            writes: c.writes.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            checkpoint_failures: c.checkpoint_failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for JournalStore {
    /// Writes and fsyncs what is logged, then stops the flusher.
    fn drop(&mut self) {
        self.shared.inner.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(handle) = self.flusher.take() {
            let _ = handle.join();
        }
    }
}

struct Replayed {
    next_lsn: u64,
    records: u64,
    /// The segment whose tail was cut, the bytes cut, and whether they held a torn record
    /// (not only zeros).
    torn: Option<(PathBuf, usize, bool)>,
}

/// Replays every record after `snapshot_lsn`, in order, checking that none is missing.
fn replay_segments(
    dir: &Path,
    machine: &mut Machine,
    snapshot_lsn: u64,
) -> Result<Replayed, StoreError> {
    let segments = format::list_segments(dir)?;
    let mut next = snapshot_lsn + 1;
    let mut records = 0;
    let mut torn = None;
    let count = segments.len();
    for (i, (first, path)) in segments.iter().enumerate() {
        let segment = format::read_segment(path, i + 1 == count)?;
        if segment.torn > 0 {
            format::cut_tail(&segment)?;
            torn = Some((path.clone(), segment.torn, segment.torn_record));
        }
        if segment.records.is_empty() {
            continue;
        }
        if segment.first_lsn != *first {
            return Err(StoreError::Corrupt(format!(
                "{}: its header says it starts at record {}",
                path.display(),
                segment.first_lsn
            )));
        }
        for (lsn, range) in &segment.records {
            if *lsn < next {
                continue;
            }
            if *lsn > next {
                return Err(StoreError::Corrupt(format!(
                    "{}: record {lsn} follows record {}: the records between are missing",
                    path.display(),
                    next - 1
                )));
            }
            op::replay(&segment.bytes[range.clone()], machine).map_err(|e| {
                StoreError::Corrupt(format!(
                    "{}: record {lsn} does not replay ({e})",
                    path.display()
                ))
            })?;
            next += 1;
            records += 1;
        }
    }
    Ok(Replayed {
        next_lsn: next,
        records,
        torn,
    })
}

/// The answer of an operation, once what it waits for is written (at once when it waits for
/// nothing).
fn answer<'a, T: Send + 'a>(result: Result<(T, Written), StoreError>) -> StoreFuture<'a, T> {
    Box::pin(async move {
        let (value, rx) = result?;
        written(rx).await?;
        Ok(value)
    })
}

impl Store for JournalStore {
    fn append<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Appended> {
        let id = MessageId::new();
        let budget = self.shared.config.max_retained_bytes;
        let result = self.shared.run(
            msg,
            Wait::Durable,
            |msg, buf| {
                let op = Op::Append {
                    topic,
                    id,
                    msg,
                    dedup_window,
                    bound: None,
                };
                op.encode(buf);
            },
            |m, msg| {
                m.admits(topic, &msg, dedup_window, budget)?;
                let appended = m.append(topic, id, msg, dedup_window);
                Ok((appended, !appended.duplicate))
            },
        );
        answer(result)
    }

    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend> {
        let id = MessageId::new();
        let budget = self.shared.config.max_retained_bytes;
        let result = self.shared.run(
            msg,
            Wait::Durable,
            |msg, buf| {
                let op = Op::Append {
                    topic,
                    id,
                    msg,
                    dedup_window,
                    bound: Some(bound),
                };
                op.encode(buf);
            },
            |m, msg| {
                m.admits(topic, &msg, dedup_window, budget)?;
                let answer = m.append_bounded(topic, id, msg, dedup_window, bound);
                let changed = matches!(
                    answer,
                    BoundedAppend::Appended { appended, .. } if !appended.duplicate
                );
                Ok((answer, changed))
            },
        );
        answer(result)
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    ) -> StoreFuture<'a, SubscriptionInfo> {
        let result = self.shared.run(
            (),
            Wait::Durable,
            |(), buf| Op::Subscribe { topic, sub, from }.encode(buf),
            |m, ()| {
                let existed = m.has_subscription(topic, sub);
                Ok((m.subscribe(topic, sub, from)?, !existed))
            },
        );
        answer(result)
    }

    fn unsubscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    ) -> StoreFuture<'a, bool> {
        let result = self.shared.run(
            (),
            Wait::Durable,
            |(), buf| Op::Unsubscribe { topic, sub }.encode(buf),
            |m, ()| {
                let removed = m.unsubscribe(topic, sub);
                Ok((removed, removed))
            },
        );
        answer(result)
    }

    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>> {
        let result = self.shared.read(false, Machine::subscriptions);
        answer(result)
    }

    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()> {
        let result = self.shared.run(
            (),
            Wait::Durable,
            |(), buf| {
                Op::SetMember {
                    topic,
                    group,
                    identity,
                    member,
                }
                .encode(buf);
            },
            |m, ()| Ok((m.set_member(topic, group, identity, member)?, true)),
        );
        answer(result)
    }

    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>> {
        let result = self.shared.read(false, Machine::members);
        answer(result)
    }

    fn claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    ) -> StoreFuture<'a, ClaimResult> {
        let result = self.shared.run(
            (),
            Wait::Publishes,
            |(), buf| Op::Claim { topic, sub, opts }.encode(buf),
            |m, ()| {
                let claimed = m.claim(topic, sub, opts)?;
                let changed = !claimed.claimed.is_empty() || !claimed.dead_lettered.is_empty();
                Ok((claimed, changed))
            },
        );
        Box::pin(async move {
            let (claimed, rx) = result?;
            if !claimed.claimed.is_empty() {
                written(rx).await?;
            }
            Ok(claimed)
        })
    }

    fn ack<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    ) -> StoreFuture<'a, bool> {
        let result = self.shared.run(
            (),
            Wait::Nothing,
            |(), buf| Op::Ack { topic, sub, offset }.encode(buf),
            |m, ()| {
                let settled = m.ack(topic, sub, offset)?;
                Ok((settled, settled))
            },
        );
        answer(result)
    }

    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool> {
        let result = self.shared.run(
            (),
            Wait::Nothing,
            |(), buf| {
                Op::Requeue {
                    topic,
                    sub,
                    offset,
                    not_before,
                }
                .encode(buf);
            },
            |m, ()| {
                let requeued = m.requeue(topic, sub, offset, not_before)?;
                Ok((requeued, requeued))
            },
        );
        answer(result)
    }

    fn settle<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
    ) -> StoreFuture<'a, Vec<bool>> {
        let result = self.shared.run(
            (),
            Wait::Nothing,
            |(), buf| Op::Settle { topic, sub, batch }.encode(buf),
            |m, ()| {
                let answers = m.settle(topic, sub, batch)?;
                let changed = answers.iter().any(|&a| a);
                Ok((answers, changed))
            },
        );
        answer(result)
    }

    fn settle_and_claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
        opts: ClaimOptions,
    ) -> StoreFuture<'a, (Vec<bool>, ClaimResult)> {
        answer(self.shared.settle_and_claim(topic, sub, batch, opts))
    }

    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64> {
        let result = self.shared.run(
            (),
            Wait::Nothing,
            |(), buf| Op::ReleaseInFlight { now }.encode(buf),
            |m, ()| {
                let released = m.release_in_flight(now);
                Ok((released, released > 0))
            },
        );
        answer(result)
    }

    fn dead_letters<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Vec<DeadLetter>> {
        let result = self
            .shared
            .read(false, |m| m.dead_letters(topic))
            .and_then(|(letters, rx)| Ok((letters?, rx)));
        answer(result)
    }

    fn requeue_dead<'a>(
        &'a self,
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    ) -> StoreFuture<'a, bool> {
        let result = self.shared.run(
            (),
            Wait::Durable,
            |(), buf| Op::RequeueDead { topic, id, now }.encode(buf),
            |m, ()| {
                let requeued = m.requeue_dead(topic, id, now)?;
                Ok((requeued, requeued))
            },
        );
        answer(result)
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        from: Offset,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        let result = self.shared.read(true, |m| m.history(topic, from, limit));
        answer(result)
    }

    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>> {
        let result = self.shared.read(false, |m| m.topic_info(topic));
        answer(result)
    }

    fn topics(&self) -> StoreFuture<'_, Vec<Topic>> {
        let result = self.shared.read(false, Machine::topics);
        answer(result)
    }

    fn oldest_unsettled<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> StoreFuture<'a, Option<Vec<(SubscriptionName, Millis)>>> {
        let result = self.shared.read(false, |m| Some(m.oldest_unsettled(topic)));
        answer(result)
    }

    fn metrics(&self) -> tidings_core::metrics::BackendMetrics {
        let c = &self.shared.counters;
        let mut m = tidings_core::metrics::BackendMetrics::default();
        m.commit_seconds = Some(c.commit_latency.snapshot());
        m.fsync_seconds = Some(c.fsync_latency.snapshot());
        // A failed write or fsync (the store then refuses everything), and every checkpoint
        // that could not write its snapshot (the journal keeps serving).
        m.errors = u64::from(self.shared.inner.lock().failed.is_some())
            + c.checkpoint_failures.load(Ordering::Relaxed);
        m
    }

    fn enforce_retention<'a>(
        &'a self,
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Vec<Gap>> {
        let result = self.shared.run(
            (),
            Wait::Nothing,
            |(), buf| {
                Op::EnforceRetention {
                    topic,
                    retention,
                    now,
                    dedup_window,
                }
                .encode(buf);
            },
            |m, ()| {
                let before = m.retention_fingerprint(topic);
                let gaps = m.enforce_retention(topic, retention, now, dedup_window)?;
                let changed = m.retention_fingerprint(topic) != before;
                Ok((gaps, changed))
            },
        );
        answer(result)
    }
}
