//! The Connection State Recovery log ([`SessionLog`]) in its own SQLite file, so that a
//! client recovers its session (sid, rooms, missed events) after the server restarted.
//!
//! # Design and durability
//!
//! - **Its own file** (e.g. `recovery.sqlite3` next to the store): the recovery log is
//!   written on every broadcast and never waits for an fsync, while the durable store commits
//!   with `synchronous=FULL`; sharing one file would put both behind one write lock.
//! - **One thread, batched commits.** `append` and `persist_session` only put a command on a
//!   channel (they never block the broadcast path). The thread takes every command waiting,
//!   runs them in one transaction and commits; reads (`take_session`, `since`) go through the
//!   same channel, so they see every write sent before them.
//! - **Live sessions are in the file too** ([`SessionLog::persist_live`]: written when the
//!   server answers a CONNECT and when the socket's rooms change, in the same batches, so a
//!   connect or a join never waits for the disk). A live row is never taken or trimmed by the
//!   process that wrote it. The next process to open the file turns every live row into a
//!   disconnected session: disconnected at the dead process's last sign of life (`alive_at`,
//!   written every [`SYNC_INTERVAL`] and with every batch, so at most that long before the
//!   crash), with a `last_offset` of at least every offset the dead process handed out (which
//!   of them reached the client is for the client's offset to say). Those sessions are then
//!   recoverable for the window, like sessions closed by a graceful stop.
//! - **Durability: group commit, an fsync at most every [`SYNC_INTERVAL`].** WAL with
//!   `synchronous=NORMAL` for the batches (a committed batch survives a crash or `kill -9`:
//!   it is in the operating system's cache), and one batch every [`SYNC_INTERVAL`] committed
//!   with `synchronous=FULL` (an fsync of the WAL, which makes every batch before it durable
//!   too), also when idle (the `alive_at` heartbeat). So a power loss or a kernel crash loses
//!   at most the last [`SYNC_INTERVAL`] of writes (plus what the disk itself lies about);
//!   `kill -9` loses only the commands still in the channel when the process died (what
//!   arrived during the last commit, typically well under a millisecond of traffic). A clean
//!   shutdown (dropping the last handle, or [`SessionLog::flush`], which
//!   `tidings_server::Server::drain` calls) writes everything. Losing a record only means a
//!   reconnecting client gets a new session (`recovered = false`), as it would without
//!   recovery.
//! - Offsets come from an [`OffsetClock`] seeded with the highest offset in the file (and the
//!   trim watermark), so they keep growing across restarts even if the clock went back.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use slot::Slot;
use tidings_core::Room;
use tidings_core::session_log::{
    LogFuture, LoggedPacket, Offset, OffsetClock, Replay, SessionLog, SessionRecord, now_millis,
};
use tidings_core::store::{Millis, StoreError};
use tokio::sync::oneshot;

/// The schema of the recovery file; another value in `user_version` is refused. Version 1
/// (no live sessions) is upgraded in place.
const RECOVERY_SCHEMA_VERSION: i64 = 2;

/// How often the writer fsyncs (one batch committed with `synchronous=FULL`) and records that
/// the process is alive: the exposure window of a power loss, and how far before a crash a
/// live session's recorded disconnection time may be.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The most commands in one transaction.
const MAX_BATCH: usize = 4096;

enum Command {
    Append(LoggedPacket),
    Persist(SessionRecord),
    PersistLive(SessionRecord),
    Forget(String),
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

/// A [`SessionLog`] in an SQLite file. Dropping the last handle writes what is pending and
/// stops the thread.
pub struct SqliteSessionLog {
    clock: OffsetClock,
    tx: Slot<mpsc::Sender<Command>>,
    thread: Slot<JoinHandle<()>>,
}

impl std::fmt::Debug for SqliteSessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSessionLog")
            .field("head", &self.clock.head())
            .finish_non_exhaustive()
    }
}

/// Minimal owned slot (a `Mutex<Option<T>>`) so that `Drop` can take the sender and the
/// thread handle.
mod slot {
    use std::sync::Mutex;

    pub(super) struct Slot<T>(Mutex<Option<T>>);

    impl<T> Slot<T> {
        pub(super) fn new(value: T) -> Self {
            Slot(Mutex::new(Some(value)))
        }

        pub(super) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
            let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            guard.as_ref().map(f)
        }

        pub(super) fn take(&self) -> Option<T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
        }
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("recovery log: {e}"))
}

fn stopped() -> StoreError {
    StoreError::Unavailable("recovery log: writer thread stopped".to_owned())
}

impl SqliteSessionLog {
    /// Opens (or creates) the recovery log at `path`.
    pub fn open(path: &Path) -> Result<SqliteSessionLog, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{}: cannot use WAL mode (journal mode is {mode})",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        match version {
            0 => conn
                .execute_batch(&format!(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS recovery_packets (
                         offset INTEGER PRIMARY KEY,
                         namespace TEXT NOT NULL,
                         rooms BLOB NOT NULL,
                         except_rooms BLOB NOT NULL,
                         packet BLOB NOT NULL,
                         attachments BLOB NOT NULL,
                         emitted_at INTEGER NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS recovery_packets_by_time
                         ON recovery_packets (emitted_at);
                     CREATE TABLE IF NOT EXISTS recovery_sessions (
                         pid TEXT PRIMARY KEY,
                         sid TEXT NOT NULL,
                         namespace TEXT NOT NULL,
                         rooms BLOB NOT NULL,
                         base_offset INTEGER NOT NULL,
                         last_offset INTEGER NOT NULL,
                         disconnected_at INTEGER NOT NULL,
                         live INTEGER NOT NULL DEFAULT 0
                     );
                     CREATE TABLE IF NOT EXISTS recovery_meta (
                         key TEXT PRIMARY KEY,
                         value INTEGER NOT NULL
                     );
                     PRAGMA user_version = {RECOVERY_SCHEMA_VERSION};
                     COMMIT;"
                ))
                .map_err(db)?,
            1 => conn
                .execute_batch(&format!(
                    "BEGIN;
                     ALTER TABLE recovery_sessions ADD COLUMN live INTEGER NOT NULL DEFAULT 0;
                     PRAGMA user_version = {RECOVERY_SCHEMA_VERSION};
                     COMMIT;"
                ))
                .map_err(db)?,
            RECOVERY_SCHEMA_VERSION => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{}: recovery log schema version {other}, expected {RECOVERY_SCHEMA_VERSION}",
                    path.display()
                )));
            }
        }
        let floor: i64 = conn
            .query_row(
                "SELECT MAX(
                     COALESCE((SELECT MAX(offset) FROM recovery_packets), 0),
                     COALESCE((SELECT MAX(MAX(base_offset, last_offset)) FROM recovery_sessions), 0),
                     COALESCE((SELECT value FROM recovery_meta WHERE key = 'trimmed_through'), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        let orphans = adopt_live_sessions(&conn, to_u64(floor))?;
        if orphans > 0 {
            tracing::info!(
                sessions = orphans,
                "recovery log: sessions live when the last process stopped without closing them (a crash) are recoverable"
            );
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tidings-recovery-log".to_owned())
            .spawn(move || run(&conn, &rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the recovery log: {e}")))?;
        tracing::info!(path = %path.display(), "recovery log opened");
        Ok(SqliteSessionLog {
            clock: OffsetClock::new(u64::try_from(floor).unwrap_or(0)),
            tx: Slot::new(tx),
            thread: Slot::new(thread),
        })
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.tx
            .with(|tx| tx.send(command).map_err(|_| stopped()))
            .unwrap_or_else(|| Err(stopped()))
    }

    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> LogFuture<'_, T> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(make(reply));
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| stopped())?
        })
    }
}

impl Drop for SqliteSessionLog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SessionLog for SqliteSessionLog {
    fn next_offset(&self) -> Offset {
        self.clock.next()
    }

    fn head(&self) -> Offset {
        self.clock.head()
    }

    fn append(&self, packet: LoggedPacket) {
        if self.send(Command::Append(packet)).is_err() {
            tracing::warn!("recovery log stopped, packet not logged");
        }
    }

    fn persist_session(&self, session: SessionRecord) {
        if self.send(Command::Persist(session)).is_err() {
            tracing::warn!("recovery log stopped, session not persisted");
        }
    }

    fn persist_live(&self, session: SessionRecord) {
        if self.send(Command::PersistLive(session)).is_err() {
            tracing::warn!("recovery log stopped, live session not persisted");
        }
    }

    fn forget_session(&self, pid: &str) {
        if self.send(Command::Forget(pid.to_owned())).is_err() {
            tracing::warn!("recovery log stopped, session not forgotten");
        }
    }

    fn take_session<'a>(&'a self, pid: &'a str) -> LogFuture<'a, Option<SessionRecord>> {
        self.ask(|reply| Command::Take(pid.to_owned(), reply))
    }

    fn since<'a>(
        &'a self,
        namespace: &'a str,
        after: Offset,
        rooms: &'a [Room],
    ) -> LogFuture<'a, Replay> {
        self.ask(|reply| Command::Since {
            namespace: namespace.to_owned(),
            after,
            rooms: rooms.to_vec(),
            reply,
        })
    }

    fn trim(&self, older_than: Millis) -> LogFuture<'_, ()> {
        self.ask(|reply| Command::Trim(older_than, reply))
    }

    fn flush(&self) -> LogFuture<'_, ()> {
        self.ask(Command::Flush)
    }
}

/// Sends the answers of a batch once it is committed.
enum Answer {
    Take(
        oneshot::Sender<Result<Option<SessionRecord>, StoreError>>,
        Result<Option<SessionRecord>, StoreError>,
    ),
    Since(
        oneshot::Sender<Result<Replay, StoreError>>,
        Result<Replay, StoreError>,
    ),
    Unit(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

/// The writer thread: one transaction per batch of waiting commands; every
/// [`SYNC_INTERVAL`] (also when idle) a batch committed with an fsync that records the
/// process's last sign of life.
fn run(conn: &Connection, rx: &mpsc::Receiver<Command>) {
    let mut last_sync = std::time::Instant::now();
    loop {
        let wait = SYNC_INTERVAL.saturating_sub(last_sync.elapsed());
        let mut batch = Vec::new();
        match rx.recv_timeout(wait) {
            Ok(first) => batch.push(first),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let sync = last_sync.elapsed() >= SYNC_INTERVAL;
        if batch.is_empty() && !sync {
            continue;
        }
        if sync {
            last_sync = std::time::Instant::now();
            set_synchronous(conn, "FULL");
        }
        write_batch(conn, batch);
        if sync {
            set_synchronous(conn, "NORMAL");
        }
    }
}

fn set_synchronous(conn: &Connection, mode: &str) {
    if let Err(e) = conn.execute_batch(&format!("PRAGMA synchronous = {mode}")) {
        tracing::warn!(error = %e, mode, "recovery log: cannot set synchronous");
    }
}

/// Runs `batch` in one transaction (with the `alive_at` heartbeat), commits, then answers.
fn write_batch(conn: &Connection, batch: Vec<Command>) {
    let batch = coalesce_live(batch);
    let mut answers = Vec::new();
    let begun = conn.execute_batch("BEGIN IMMEDIATE").map_err(db);
    if begun.is_ok() {
        if let Err(e) = set_meta(conn, "alive_at", now_millis()) {
            tracing::warn!(error = %e, "recovery log: cannot record the heartbeat");
        }
    }
    for command in batch {
        answers.push(match (&begun, command) {
            (Err(e), c) => fail(c, e.clone()),
            (Ok(()), c) => execute(conn, c),
        });
    }
    let committed = match begun {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db),
        Err(e) => Err(e),
    };
    if let Err(e) = &committed {
        tracing::warn!(error = %e, "recovery log batch not written");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for answer in answers.into_iter().flatten() {
        match answer {
            Answer::Take(tx, r) => {
                let _ = tx.send(committed.clone().and(r));
            }
            Answer::Since(tx, r) => {
                let _ = tx.send(committed.clone().and(r));
            }
            Answer::Unit(tx, r) => {
                let _ = tx.send(committed.clone().and(r));
            }
        }
    }
}

/// Drops the live records that a later write of the same pid in the batch replaces anyway
/// (a socket joining many rooms at once rewrites its record each time): only the last is
/// written. Never across a take, which must see what was written before it.
fn coalesce_live(batch: Vec<Command>) -> Vec<Command> {
    let mut written_later = std::collections::HashSet::new();
    let mut keep = vec![true; batch.len()];
    for (i, command) in batch.iter().enumerate().rev() {
        match command {
            Command::PersistLive(s) => keep[i] = written_later.insert(s.pid.as_str()),
            Command::Persist(s) => {
                written_later.insert(s.pid.as_str());
            }
            Command::Forget(pid) => {
                written_later.insert(pid.as_str());
            }
            Command::Take(..) => written_later.clear(),
            _ => {}
        }
    }
    if keep.iter().all(|k| *k) {
        return batch;
    }
    batch
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

fn fail(command: Command, e: StoreError) -> Option<Answer> {
    match command {
        Command::Append(_) | Command::Persist(_) | Command::PersistLive(_) | Command::Forget(_) => {
            None
        }
        Command::Take(_, tx) => Some(Answer::Take(tx, Err(e))),
        Command::Since { reply, .. } => Some(Answer::Since(reply, Err(e))),
        Command::Trim(_, tx) | Command::Flush(tx) => Some(Answer::Unit(tx, Err(e))),
    }
}

fn execute(conn: &Connection, command: Command) -> Option<Answer> {
    match command {
        Command::Append(p) => {
            if let Err(e) = append(conn, &p) {
                tracing::warn!(error = %e, "recovery log append failed");
            }
            None
        }
        Command::Persist(s) => {
            if let Err(e) = persist(conn, &s, false) {
                tracing::warn!(error = %e, "recovery log session not persisted");
            }
            None
        }
        Command::PersistLive(s) => {
            if let Err(e) = persist(conn, &s, true) {
                tracing::warn!(error = %e, "recovery log live session not persisted");
            }
            None
        }
        Command::Forget(pid) => {
            if let Err(e) = conn
                .prepare_cached("DELETE FROM recovery_sessions WHERE pid = ?1")
                .and_then(|mut st| st.execute(params![pid]))
            {
                tracing::warn!(error = %e, "recovery log session not forgotten");
            }
            None
        }
        Command::Take(pid, tx) => Some(Answer::Take(tx, take(conn, &pid))),
        Command::Since {
            namespace,
            after,
            rooms,
            reply,
        } => Some(Answer::Since(reply, since(conn, &namespace, after, &rooms))),
        Command::Trim(older_than, tx) => Some(Answer::Unit(tx, trim(conn, older_than))),
        Command::Flush(tx) => Some(Answer::Unit(tx, Ok(()))),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Length-prefixed (u32 LE) byte strings, one after another.
fn encode_list<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let len = u32::try_from(item.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(item);
    }
    out
}

fn decode_list(mut bytes: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let corrupt = || StoreError::Corrupt("recovery log: bad list encoding".to_owned());
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at_checked(4).ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(len.try_into().map_err(|_| corrupt())?) as usize;
        let (item, rest) = rest.split_at_checked(len).ok_or_else(corrupt)?;
        out.push(item);
        bytes = rest;
    }
    Ok(out)
}

fn encode_rooms(rooms: &[Room]) -> Vec<u8> {
    encode_list(rooms.iter().map(|r| r.as_str().as_bytes()))
}

fn decode_rooms(bytes: &[u8]) -> Result<Vec<Room>, StoreError> {
    decode_list(bytes)?
        .into_iter()
        .map(|b| {
            std::str::from_utf8(b)
                .map(Room::from)
                .map_err(|_| StoreError::Corrupt("recovery log: room is not UTF-8".to_owned()))
        })
        .collect()
}

fn append(conn: &Connection, p: &LoggedPacket) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO recovery_packets
         (offset, namespace, rooms, except_rooms, packet, attachments, emitted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            to_i64(p.offset),
            p.namespace,
            encode_rooms(&p.rooms),
            encode_rooms(&p.except),
            &p.packet[..],
            encode_list(p.attachments.iter().map(|a| &a[..])),
            to_i64(p.emitted_at),
        ])
    })
    .map(drop)
    .map_err(db)
}

fn persist(conn: &Connection, s: &SessionRecord, live: bool) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO recovery_sessions
         (pid, sid, namespace, rooms, base_offset, last_offset, disconnected_at, live)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            s.pid,
            s.sid.to_string(),
            s.namespace,
            encode_rooms(&s.rooms),
            to_i64(s.base_offset),
            to_i64(s.last_offset),
            to_i64(s.disconnected_at),
            i64::from(live),
        ])
    })
    .map(drop)
    .map_err(db)
}

fn take(conn: &Connection, pid: &str) -> Result<Option<SessionRecord>, StoreError> {
    let row = conn
        .prepare_cached(
            "DELETE FROM recovery_sessions WHERE pid = ?1 AND live = 0
             RETURNING sid, namespace, rooms, base_offset, last_offset, disconnected_at",
        )
        .and_then(|mut st| {
            st.query_row(params![pid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .optional()
        })
        .map_err(db)?;
    let Some((sid, namespace, rooms, base, last, at)) = row else {
        return Ok(None);
    };
    let sid = sid
        .parse()
        .map_err(|_| StoreError::Corrupt("recovery log: bad sid".to_owned()))?;
    Ok(Some(SessionRecord {
        pid: pid.to_owned(),
        sid,
        namespace,
        rooms: decode_rooms(&rooms)?,
        base_offset: to_u64(base),
        last_offset: to_u64(last),
        disconnected_at: to_u64(at),
    }))
}

fn set_meta(conn: &Connection, key: &str, value: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO recovery_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut st| st.execute(params![key, to_i64(value)]))
    .map(drop)
    .map_err(db)
}

/// Turns the live sessions a dead process left in the file into disconnected ones: at its
/// last sign of life (`alive_at`), with a last offset of at least `floor` (the highest offset
/// in the file: every packet it may have queued to them). Returns how many.
fn adopt_live_sessions(conn: &Connection, floor: Offset) -> Result<usize, StoreError> {
    let alive_at: i64 = conn
        .query_row(
            "SELECT COALESCE((SELECT value FROM recovery_meta WHERE key = 'alive_at'), 0)",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    conn.execute(
        "UPDATE recovery_sessions
         SET live = 0, disconnected_at = MAX(disconnected_at, ?1),
             last_offset = MAX(last_offset, ?2)
         WHERE live = 1",
        params![alive_at, to_i64(floor)],
    )
    .map_err(db)
}

fn trimmed_through(conn: &Connection) -> Result<Offset, StoreError> {
    conn.query_row(
        "SELECT value FROM recovery_meta WHERE key = 'trimmed_through'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.map_or(0, to_u64))
    .map_err(db)
}

fn since(
    conn: &Connection,
    namespace: &str,
    after: Offset,
    rooms: &[Room],
) -> Result<Replay, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT offset, rooms, except_rooms, packet, attachments, emitted_at
             FROM recovery_packets WHERE offset > ?1 AND namespace = ?2 ORDER BY offset",
        )
        .map_err(db)?;
    let mut rows = st.query(params![to_i64(after), namespace]).map_err(db)?;
    let mut packets = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        let packet = LoggedPacket {
            offset: to_u64(r.get(0).map_err(db)?),
            namespace: namespace.to_owned(),
            rooms: decode_rooms(&r.get::<_, Vec<u8>>(1).map_err(db)?)?,
            except: decode_rooms(&r.get::<_, Vec<u8>>(2).map_err(db)?)?,
            packet: Bytes::from(r.get::<_, Vec<u8>>(3).map_err(db)?),
            attachments: decode_list(&r.get::<_, Vec<u8>>(4).map_err(db)?)?
                .into_iter()
                .map(Bytes::copy_from_slice)
                .collect(),
            emitted_at: to_u64(r.get(5).map_err(db)?),
        };
        if packet.is_for(rooms) {
            packets.push(packet);
        }
    }
    Ok(Replay {
        packets,
        complete: trimmed_through(conn)? <= after,
    })
}

fn trim(conn: &Connection, older_than: Millis) -> Result<(), StoreError> {
    let older_than = to_i64(older_than);
    let max_trimmed: Option<i64> = conn
        .query_row(
            "SELECT MAX(offset) FROM recovery_packets WHERE emitted_at < ?1",
            params![older_than],
            |r| r.get(0),
        )
        .map_err(db)?;
    if let Some(max) = max_trimmed {
        conn.execute(
            "DELETE FROM recovery_packets WHERE emitted_at < ?1",
            params![older_than],
        )
        .map_err(db)?;
        conn.execute(
            "INSERT INTO recovery_meta (key, value) VALUES ('trimmed_through', ?1)
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            params![max],
        )
        .map_err(db)?;
    }
    conn.execute(
        "DELETE FROM recovery_sessions WHERE disconnected_at < ?1 AND live = 0",
        params![older_than],
    )
    .map_err(db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tidings_core::Sid;

    fn packet(offset: Offset, rooms: &[&str], emitted_at: Millis) -> LoggedPacket {
        LoggedPacket {
            offset,
            namespace: "/".into(),
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            except: vec![Room::from("x")],
            packet: Bytes::from(format!("2[\"e\",\"{offset}\"]")),
            attachments: vec![Bytes::from_static(b"\x00\x01"), Bytes::new()],
            emitted_at,
        }
    }

    #[tokio::test]
    async fn sessions_and_packets_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery.sqlite3");
        let sid = Sid::new();
        let head = {
            let log = SqliteSessionLog::open(&path).unwrap();
            let a = log.next_offset();
            let b = log.next_offset();
            log.append(packet(b, &["a"], 20));
            log.append(packet(a, &["a"], 10));
            log.append(packet(log.next_offset(), &["b"], 30));
            log.persist_session(SessionRecord {
                pid: "p1".into(),
                sid,
                namespace: "/".into(),
                rooms: vec![Room::from("a"), Room::from(sid.to_string())],
                base_offset: 0,
                last_offset: a,
                disconnected_at: 40,
            });
            log.flush().await.unwrap();
            log.head()
        };
        let log = SqliteSessionLog::open(&path).unwrap();
        assert!(
            log.next_offset() > head,
            "offsets keep growing across a reopen"
        );
        let record = log.take_session("p1").await.unwrap().unwrap();
        assert_eq!(record.sid, sid);
        assert_eq!(record.rooms.len(), 2);
        assert!(log.take_session("p1").await.unwrap().is_none());
        let replay = log.since("/", 0, &record.rooms).await.unwrap();
        assert!(replay.complete);
        assert_eq!(replay.packets.len(), 2);
        assert!(replay.packets[0].offset < replay.packets[1].offset);
        assert_eq!(
            replay.packets[0],
            packet(replay.packets[0].offset, &["a"], 10)
        );
        log.trim(15).await.unwrap();
        let replay = log.since("/", 0, &record.rooms).await.unwrap();
        assert!(!replay.complete);
        assert_eq!(replay.packets.len(), 1);
        drop(log);
        let log = SqliteSessionLog::open(&path).unwrap();
        let replay = log.since("/", 0, &record.rooms).await.unwrap();
        assert!(!replay.complete, "the trim watermark survives a reopen");
    }

    fn live(pid: &str, sid: Sid, rooms: &[&str], at: Millis) -> SessionRecord {
        SessionRecord {
            pid: pid.into(),
            sid,
            namespace: "/".into(),
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            base_offset: 1,
            last_offset: 0,
            disconnected_at: at,
        }
    }

    #[tokio::test]
    async fn live_sessions_are_adopted_by_the_next_process_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery.sqlite3");
        let sid = Sid::new();
        let (last, written_at) = {
            let log = SqliteSessionLog::open(&path).unwrap();
            let o = log.next_offset();
            log.append(packet(o, &["a"], 10));
            log.persist_live(live("p1", sid, &["a"], 1));
            // Rooms changed: the record is rewritten.
            log.persist_live(live("p1", sid, &["a", "b"], 2));
            log.persist_live(live("gone", Sid::new(), &["a"], 2));
            log.forget_session("gone");
            log.flush().await.unwrap();
            // Live here: neither taken nor trimmed by the process that wrote it.
            assert!(log.take_session("p1").await.unwrap().is_none());
            log.trim(u64::MAX).await.unwrap();
            let written_at = now_millis();
            // A crash: the handle is leaked, nothing more is written on the way out.
            std::mem::forget(log);
            (o, written_at)
        };
        let log = SqliteSessionLog::open(&path).unwrap();
        let record = log.take_session("p1").await.unwrap().unwrap();
        assert_eq!(record.sid, sid);
        assert_eq!(record.rooms, vec![Room::from("a"), Room::from("b")]);
        assert!(
            record.last_offset >= last,
            "every offset of the dead process may have been queued"
        );
        assert!(
            record.disconnected_at >= written_at.saturating_sub(2_000),
            "disconnected at the last sign of life, not at the first write"
        );
        assert!(log.take_session("p1").await.unwrap().is_none());
        assert!(log.take_session("gone").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_version_1_file_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE recovery_packets (offset INTEGER PRIMARY KEY, namespace TEXT NOT NULL,
                     rooms BLOB NOT NULL, except_rooms BLOB NOT NULL, packet BLOB NOT NULL,
                     attachments BLOB NOT NULL, emitted_at INTEGER NOT NULL);
                 CREATE TABLE recovery_sessions (pid TEXT PRIMARY KEY, sid TEXT NOT NULL,
                     namespace TEXT NOT NULL, rooms BLOB NOT NULL, base_offset INTEGER NOT NULL,
                     last_offset INTEGER NOT NULL, disconnected_at INTEGER NOT NULL);
                 CREATE TABLE recovery_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
            let sid = Sid::new().to_string();
            conn.execute(
                "INSERT INTO recovery_sessions VALUES ('old', ?1, '/', x'', 1, 2, 3)",
                params![sid],
            )
            .unwrap();
        }
        let log = SqliteSessionLog::open(&path).unwrap();
        let record = log.take_session("old").await.unwrap().unwrap();
        assert_eq!(
            (record.last_offset, record.disconnected_at),
            (2, 3),
            "a closed session stays as it was"
        );
    }

    #[test]
    fn a_batch_writes_only_the_last_live_record_of_a_pid() {
        let sid = Sid::new();
        let (tx, _rx) = oneshot::channel();
        let batch = vec![
            Command::PersistLive(live("p", sid, &["a"], 1)),
            Command::PersistLive(live("p", sid, &["a", "b"], 2)),
            Command::Take("p".into(), tx),
            Command::PersistLive(live("p", sid, &["a", "b", "c"], 3)),
            Command::PersistLive(live("q", sid, &["x"], 3)),
            Command::PersistLive(live("p", sid, &["a", "b", "c", "d"], 4)),
            Command::Forget("q".into()),
        ];
        let kept: Vec<String> = coalesce_live(batch)
            .iter()
            .map(|c| match c {
                Command::PersistLive(s) => format!("live {} {}", s.pid, s.rooms.len()),
                Command::Take(pid, _) => format!("take {pid}"),
                Command::Forget(pid) => format!("forget {pid}"),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            kept,
            ["live p 2", "take p", "live p 4", "forget q"],
            "never across the take; the last of each pid"
        );
    }

    #[test]
    fn list_encoding_round_trips_and_rejects_truncation() {
        let items: Vec<&[u8]> = vec![b"a", b"", b"\xffbc"];
        let enc = encode_list(items.iter().copied());
        assert_eq!(decode_list(&enc).unwrap(), items);
        assert!(decode_list(&enc[..enc.len() - 1]).is_err());
    }
}
