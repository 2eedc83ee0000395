//! The embedded [`Store`] of tidings: one SQLite file in WAL mode.
//!
//! ```no_run
//! use std::path::Path;
//! use tidings_core::store::{NewMessage, Store, Topic};
//! use tidings_store_sqlite::{Durability, SqliteConfig, SqliteStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open(
//!     Path::new("data/tidings.db"),
//!     SqliteConfig { durability: Durability::Full, ..SqliteConfig::default() },
//! )?;
//! let topic = Topic::new("pickup")?;
//! let msg = NewMessage { event: "ready".into(), data: "{}".into(), attachments: vec![], key: None, published_at: 0 };
//! // Returns once the message is committed and fsynced.
//! let appended = store.append(&topic, msg, 60_000).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! - **One writer thread, group commit.** Every operation that changes something (append,
//!   subscribe, unsubscribe, claim, ack, requeue, requeue_dead, enforce_retention) is sent to
//!   the writer thread, which owns the only writing connection. It takes every command waiting
//!   in its channel and runs them in one transaction, each in its own savepoint, commits once
//!   and then answers each. 256 concurrent publishers cost about one fsync per batch, not one
//!   per message. A command whose statements fail is rolled back to its savepoint and fails
//!   alone; a failed commit fails the whole batch with `StoreError::Unavailable`, so nothing
//!   is confirmed that was not stored.
//! - **A separate read connection.** History, topic info, topic and subscription lists and
//!   dead letters go to a reader thread with its own connection. WAL lets it read while the
//!   writer writes, so an HTTP listing or a history replay never waits behind a group commit's
//!   fsync, and a writer busy with a large batch does not delay reads. Reads are consistent: a
//!   write is answered only after its commit, and each read runs in one read transaction that
//!   starts after the call, so it sees every write confirmed before it.
//! - Nothing is cached in memory: every operation reads the state it needs inside its
//!   transaction, so the file is the only truth.
//!
//! The semantics the trait leaves open follow `tidings-store-memory` (the reference); the
//! conformance suite in `tidings-store-tests` checks both.
#![forbid(unsafe_code)]

mod ops;
mod schema;
mod session_log;
mod worker;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, DeadLetter, Gap, MessageId, Millis,
    NewMessage, Offset, QueueBound, Retention, StartFrom, Store, StoreError, StoreFuture,
    StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};
use tracing::info;

use crate::ops::db;
use crate::worker::{Counters, Reader, ReaderThread, Writer, WriterThread};

pub use crate::schema::SCHEMA_VERSION;
pub use crate::session_log::SqliteSessionLog;

/// When a commit counts as done: `Full` is `synchronous=FULL` (the WAL is fsynced before a
/// commit returns), `Os` is `synchronous=NORMAL` (fsynced at checkpoints).
pub use tidings_core::store::Durability;

/// How [`SqliteStore::open`] sets up the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// When a commit counts as done. Default [`Durability::Full`].
    pub durability: Durability,
    /// The most commands the writer puts in one transaction (at least 1). Default 1024.
    pub max_batch: usize,
    /// How long a connection waits for a lock held by another connection (another process
    /// using the same file) before failing with `Unavailable`. Default 5 s.
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            durability: Durability::Full,
            max_batch: 1024,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// What the writer thread did since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteStats {
    /// Transactions run (one per batch), committed or not.
    pub transactions: u64,
    /// Write commands run in them.
    pub commands: u64,
    /// Transactions that failed (their commands all got `Unavailable`).
    pub failed_transactions: u64,
}

/// The SQLite store. A cheap-clone handle; the worker threads stop (after finishing the
/// commands already sent) when the last clone is dropped, and the drop waits for them.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    // Dropping these (with the last clone) lets the threads finish and joins them (or, inline,
    // closes the connections).
    writer: Writer,
    reader: Reader,
    counters: Arc<Counters>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// How [`SqliteStore::open_for_fuzzing`] opens a store: on the caller's thread, with `vfs`.
#[derive(Clone, Copy)]
struct Inline<'a> {
    vfs: Option<&'a str>,
}

fn open_connection(
    path: &Path,
    config: &SqliteConfig,
    vfs: Option<&str>,
) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match vfs {
        None => Connection::open_with_flags(path, flags),
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
    }
    .map_err(db)?;
    conn.busy_timeout(config.busy_timeout).map_err(db)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file (and its directory) if needed.
    ///
    /// A file of schema version 1 (before binary attachments) is migrated to
    /// [`SCHEMA_VERSION`]. Fails with [`StoreError::Corrupt`] if the file is not an SQLite
    /// database, is another program's database, or has an unknown or newer schema version; with
    /// [`StoreError::Unavailable`] on I/O errors or if WAL mode cannot be enabled (e.g. an
    /// in-memory path); with [`StoreError::Invalid`] for a bad config.
    pub fn open(path: &Path, config: SqliteConfig) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, config, None)
    }

    /// For the `store_crash` fuzz target only: [`SqliteStore::open`], but the writer and the
    /// reader run on the caller's thread, and the connections do not checkpoint the WAL when
    /// they close.
    ///
    /// Every write runs through the writer thread's code (`run_batch`: one transaction, the
    /// command in its savepoint), as a batch of one; every read in its read transaction on
    /// the second connection. Only the threads and channels are left out: at about 120
    /// inputs/s they cost a third of the target's time. The threaded path is what the
    /// conformance suite and the other tests run.
    ///
    /// The target drops a store at a crash point, after copying its files (a killed process
    /// would not checkpoint), or at the end of an input, when the files are deleted: a
    /// checkpoint on close would only cost time.
    ///
    /// `vfs`: the SQLite VFS to open the files with (the target's in-memory one, whose files
    /// are not on disk, so no directory is created); `None` for the default.
    #[doc(hidden)]
    pub fn open_for_fuzzing(
        path: &Path,
        config: SqliteConfig,
        vfs: Option<&str>,
    ) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, config, Some(Inline { vfs }))
    }

    fn open_with(
        path: &Path,
        config: SqliteConfig,
        inline: Option<Inline<'_>>,
    ) -> Result<SqliteStore, StoreError> {
        let vfs = inline.and_then(|i| i.vfs);
        if config.max_batch == 0 {
            return Err(StoreError::Invalid(
                "max_batch must be at least 1".to_owned(),
            ));
        }
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && vfs.is_none())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut conn = open_connection(path, &config, vfs)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{}: cannot use WAL mode (journal mode is {mode})",
                path.display()
            )));
        }
        let synchronous = match config.durability {
            Durability::Full => "FULL",
            Durability::Os => "NORMAL",
        };
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}"))
            .map_err(db)?;
        schema::prepare(&mut conn, path)?;

        let read_conn = open_connection(path, &config, vfs)?;
        read_conn
            .execute_batch("PRAGMA query_only = ON")
            .map_err(db)?;

        let counters = Arc::new(Counters::default());
        let (writer, reader) = if inline.is_some() {
            for c in [&conn, &read_conn] {
                c.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                    .map_err(db)?;
            }
            let writer = Writer::Inline {
                conn: Mutex::new(conn),
                counters: Arc::clone(&counters),
            };
            (writer, Reader::Inline(Mutex::new(read_conn)))
        } else {
            let writer = WriterThread::spawn(conn, config.max_batch, Arc::clone(&counters))?;
            (
                Writer::Thread(writer),
                Reader::Thread(ReaderThread::spawn(read_conn)?),
            )
        };
        info!(path = %path.display(), durability = ?config.durability, "sqlite store opened");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer,
                reader,
                counters,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// What the writer thread did so far (group commit efficiency: `commands / transactions`).
    pub fn stats(&self) -> SqliteStats {
        let c = &self.inner.counters;
        SqliteStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            failed_transactions: c.failed_transactions.load(Ordering::Relaxed),
        }
    }
}

impl Store for SqliteStore {
    fn append<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Appended> {
        let topic = topic.clone();
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::append(c, &topic, msg, dedup_window)),
        )
    }

    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend> {
        let topic = topic.clone();
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::append_bounded(c, &topic, msg, dedup_window, bound)),
        )
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    ) -> StoreFuture<'a, SubscriptionInfo> {
        let (topic, sub) = (topic.clone(), sub.clone());
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::subscribe(c, &topic, &sub, from)),
        )
    }

    fn unsubscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    ) -> StoreFuture<'a, bool> {
        let (topic, sub) = (topic.clone(), sub.clone());
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::unsubscribe(c, &topic, &sub)),
        )
    }

    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>> {
        Box::pin(self.inner.reader.run(ops::subscriptions))
    }

    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()> {
        let (topic, group, identity) = (topic.clone(), group.clone(), identity.to_owned());
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::set_member(c, &topic, &group, &identity, member)),
        )
    }

    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64> {
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::release_in_flight(c, now)),
        )
    }

    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>> {
        Box::pin(self.inner.reader.run(ops::members))
    }

    fn claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    ) -> StoreFuture<'a, ClaimResult> {
        let (topic, sub) = (topic.clone(), sub.clone());
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::claim(c, &topic, &sub, opts)),
        )
    }

    fn ack<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    ) -> StoreFuture<'a, bool> {
        let (topic, sub) = (topic.clone(), sub.clone());
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::ack(c, &topic, &sub, offset)),
        )
    }

    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool> {
        let (topic, sub) = (topic.clone(), sub.clone());
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::requeue(c, &topic, &sub, offset, not_before)),
        )
    }

    fn dead_letters<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Vec<DeadLetter>> {
        let topic = topic.clone();
        Box::pin(self.inner.reader.run(move |c| ops::dead_letters(c, &topic)))
    }

    fn requeue_dead<'a>(
        &'a self,
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    ) -> StoreFuture<'a, bool> {
        let topic = topic.clone();
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::requeue_dead(c, &topic, id, now)),
        )
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        from: Offset,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        let topic = topic.clone();
        Box::pin(
            self.inner
                .reader
                .run(move |c| ops::history(c, &topic, from, limit)),
        )
    }

    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>> {
        let topic = topic.clone();
        Box::pin(self.inner.reader.run(move |c| ops::topic_info(c, &topic)))
    }

    fn topics(&self) -> StoreFuture<'_, Vec<Topic>> {
        Box::pin(self.inner.reader.run(ops::topics))
    }

    fn oldest_unsettled<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> StoreFuture<'a, Option<Vec<(SubscriptionName, Millis)>>> {
        let topic = topic.clone();
        Box::pin(
            self.inner
                .reader
                .run(move |c| ops::oldest_unsettled(c, &topic).map(Some)),
        )
    }

    fn enforce_retention<'a>(
        &'a self,
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Vec<Gap>> {
        let topic = topic.clone();
        Box::pin(
            self.inner
                .writer
                .run(move |c| ops::enforce_retention(c, &topic, retention, now, dedup_window)),
        )
    }
}
