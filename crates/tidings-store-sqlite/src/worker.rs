//! The two threads that own the connections: one writer doing group commits, one reader.
//! ([`Writer`] and [`Reader`] also have an inline form for the fuzz target, below.)
//!
//! Every write goes to the writer thread over a channel. The writer takes every command waiting
//! in the channel (up to `max_batch`) and runs them in **one** transaction, each inside its own
//! savepoint, then commits once — with `synchronous=FULL`, one fsync for the whole batch — and
//! only then answers each command through its oneshot. So:
//! - a command whose own statements fail is rolled back to its savepoint and fails alone; the
//!   others of the batch still commit;
//! - a failed `BEGIN`/`COMMIT` (or a savepoint that cannot be released or rolled back) fails
//!   every command of the batch with [`StoreError::Unavailable`]: nothing is confirmed that was
//!   not stored;
//! - commands take effect in the order they were sent (a batch is one serial transaction).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tidings_core::store::StoreError;
use tokio::sync::oneshot;
use tracing::{debug, error, trace, warn};

use crate::ops::db;

/// Counters kept by the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) transactions: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) failed_transactions: AtomicU64,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("sqlite store is shut down (its worker thread stopped)".to_owned())
}

/// One write command, type-erased so that one channel carries every operation.
trait Command: Send {
    /// Runs the operation inside the batch's transaction; true if it succeeded (its changes are
    /// kept), false if they must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's outcome is known.
    fn finish(self: Box<Self>, commit: &Result<(), StoreError>);
}

struct Job<T, F> {
    op: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Command for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let result = op(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        let answer = match (self.result, commit) {
            // The operation's own error stands whatever happened to the batch.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)) | None, Err(e)) => Err(e.clone()),
            (None, Ok(())) => Err(StoreError::Unavailable(
                "sqlite writer skipped the command".to_owned(),
            )),
        };
        // The caller may have stopped waiting (its future was dropped); nothing to do then.
        let _ = self.reply.send(answer);
    }
}

/// Where the write commands run.
pub(crate) enum Writer {
    /// On the writer thread, with group commit (every store but the fuzz target's).
    Thread(WriterThread),
    /// On the caller's thread, each command a batch of one, through the same [`commit_batch`]
    /// (`SqliteStore::open_for_fuzzing`).
    Inline {
        conn: Mutex<Connection>,
        counters: Arc<Counters>,
    },
}

impl Writer {
    /// Runs `op` in a batch's transaction; resolves once the batch is committed (or failed).
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match self {
            Writer::Thread(thread) => thread.run(op).await,
            Writer::Inline { conn, counters } => {
                let (job, mut answer) = Job::boxed(op);
                commit_batch(&*conn.lock().map_err(|_| poisoned())?, vec![job], counters);
                answer.try_recv().map_err(|_| stopped())?
            }
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("sqlite connection lost: an operation panicked".to_owned())
}

impl<T, F> Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn boxed(op: F) -> (Box<dyn Command>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            op: Some(op),
            result: None,
            reply,
        });
        (job, answer)
    }
}

/// The handle of the writer thread. Dropping it lets the thread finish the commands already
/// sent, then joins it.
pub(crate) struct WriterThread {
    tx: Option<mpsc::Sender<Box<dyn Command>>>,
    thread: Option<JoinHandle<()>>,
}

impl WriterThread {
    pub(crate) fn spawn(
        conn: Connection,
        max_batch: usize,
        counters: Arc<Counters>,
    ) -> Result<WriterThread, StoreError> {
        let (tx, rx) = mpsc::channel::<Box<dyn Command>>();
        let thread = std::thread::Builder::new()
            .name("tidings-sqlite-writer".to_owned())
            .spawn(move || writer_loop(&conn, &rx, max_batch, &counters))
            .map_err(|e| StoreError::Unavailable(format!("cannot start sqlite writer: {e}")))?;
        Ok(WriterThread {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `op` in the next batch; resolves once the batch is committed (or failed). The
    /// command is sent when the future is first polled.
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(op)?.await.map_err(|_| stopped())?
    }

    fn submit<T, F>(&self, op: F) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answer) = Job::boxed(op);
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        Ok(answer)
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("sqlite writer thread panicked");
            }
        }
    }
}

fn writer_loop(
    conn: &Connection,
    rx: &mpsc::Receiver<Box<dyn Command>>,
    max_batch: usize,
    counters: &Counters,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        commit_batch(conn, batch, counters);
    }
    debug!("sqlite writer stopped");
}

/// Runs a batch in one transaction, counts it, and then answers each command.
fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Command>>, counters: &Counters) {
    let outcome = run_batch(conn, &mut batch);
    counters.transactions.fetch_add(1, Ordering::Relaxed);
    counters
        .commands
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    match &outcome {
        Ok(()) => trace!(commands = batch.len(), "group commit"),
        Err(e) => {
            counters.failed_transactions.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, commands = batch.len(), "sqlite transaction failed; none of its commands is confirmed");
        }
    }
    for cmd in batch {
        cmd.finish(&outcome);
    }
}

/// Runs a batch in one transaction. `Ok` only if `COMMIT` succeeded.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Command>]) -> Result<(), StoreError> {
    control(conn, "BEGIN IMMEDIATE")?;
    let mut outcome = Ok(());
    for cmd in batch.iter_mut() {
        outcome = run_in_savepoint(conn, cmd.as_mut());
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = control(conn, "COMMIT");
    }
    if outcome.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            error!(error = %e, "sqlite rollback failed");
        }
    }
    outcome
}

/// Runs a transaction-control statement through the statement cache: `execute_batch` parses
/// and prepares its SQL on every call, and a batch runs two of these plus two per command
/// (SQL parsing and preparing showed in the writer thread's profile of a drain, BENCHMARKS.md).
fn control(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(db)
}

/// Runs one command inside a savepoint of the open transaction. An `Err` means the batch's
/// transaction can no longer be trusted.
fn run_in_savepoint(conn: &Connection, cmd: &mut dyn Command) -> Result<(), StoreError> {
    // SQLite rolls back the whole transaction by itself on some errors (disk full, I/O). A
    // SAVEPOINT outside a transaction would silently open a new one, and the commands before
    // would be reported committed: check before each command and after it.
    let lost = || StoreError::Unavailable("sqlite rolled back the transaction".to_owned());
    if conn.is_autocommit() {
        return Err(lost());
    }
    control(conn, "SAVEPOINT command")?;
    if cmd.run(conn) {
        control(conn, "RELEASE command")?;
    } else {
        conn.execute_batch("ROLLBACK TO command; RELEASE command")
            .map_err(db)?;
    }
    if conn.is_autocommit() {
        return Err(lost());
    }
    Ok(())
}

type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// Where the reads run: on the reader's connection, in its thread or (the fuzz target's
/// `SqliteStore::open_for_fuzzing`) on the caller's thread.
pub(crate) enum Reader {
    Thread(ReaderThread),
    Inline(Mutex<Connection>),
}

impl Reader {
    /// Runs `op` in a read transaction, so that a multi-query read sees one snapshot.
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match self {
            Reader::Thread(thread) => thread.run(op).await,
            Reader::Inline(conn) => read(&mut *conn.lock().map_err(|_| poisoned())?, op),
        }
    }
}

fn read<T>(
    conn: &mut Connection,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.transaction().map_err(db).and_then(|tx| op(&tx))
}

/// The handle of the reader thread, which owns a second connection. With WAL, its reads run
/// concurrently with the writer's transaction and see the last commit before they start.
pub(crate) struct ReaderThread {
    tx: Option<mpsc::Sender<ReadJob>>,
    thread: Option<JoinHandle<()>>,
}

impl ReaderThread {
    pub(crate) fn spawn(mut conn: Connection) -> Result<ReaderThread, StoreError> {
        let (tx, rx) = mpsc::channel::<ReadJob>();
        let thread = std::thread::Builder::new()
            .name("tidings-sqlite-reader".to_owned())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
                debug!("sqlite reader stopped");
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start sqlite reader: {e}")))?;
        Ok(ReaderThread {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &mut Connection| {
            let _ = reply.send(read(conn, op));
        });
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for ReaderThread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("sqlite reader thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spawn(setup: &str) -> (WriterThread, Arc<Counters>) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(setup).unwrap();
        let counters = Arc::new(Counters::default());
        (
            WriterThread::spawn(conn, 1024, Arc::clone(&counters)).unwrap(),
            counters,
        )
    }

    fn insert(table: &'static str, id: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> {
        move |c| {
            c.execute(&format!("INSERT INTO {table} (id) VALUES (?1)"), [id])
                .map_err(db)?;
            Ok(())
        }
    }

    type TestOp = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

    /// Runs `ops` as one batch: a first command holds the writer until all are queued.
    async fn one_batch(w: &WriterThread, ops: Vec<TestOp>) -> Vec<Result<(), StoreError>> {
        let (release, hold) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let blocker = w
            .submit(move |_| {
                let _ = started_tx.send(());
                let _ = hold.recv_timeout(Duration::from_secs(10));
                Ok(())
            })
            .unwrap();
        // The blocker's batch is under way: everything sent now waits for the next one.
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        let answers: Vec<_> = ops.into_iter().map(|op| w.submit(op).unwrap()).collect();
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        let mut out = Vec::new();
        for answer in answers {
            out.push(answer.await.unwrap());
        }
        out
    }

    async fn count(w: &WriterThread, table: &'static str) -> i64 {
        w.run(move |c| {
            c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .map_err(db)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_failed_command_is_rolled_back_alone() {
        let (w, counters) = spawn("CREATE TABLE t (id INTEGER PRIMARY KEY)");
        let out = one_batch(
            &w,
            vec![
                Box::new(insert("t", 1)),
                // Writes, then fails: its write must be undone, the others kept.
                Box::new(|c: &Connection| {
                    insert("t", 2)(c)?;
                    Err(StoreError::Invalid("no".to_owned()))
                }),
                Box::new(insert("t", 3)),
                // A failing statement (duplicate key).
                Box::new(insert("t", 1)),
            ],
        )
        .await;
        assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
        assert_eq!(out[1], Err(StoreError::Invalid("no".to_owned())));
        assert!(matches!(out[3], Err(StoreError::Unavailable(_))), "{out:?}");
        assert_eq!(count(&w, "t").await, 2);
        let ids: Vec<i64> = w
            .run(|c| {
                c.prepare("SELECT id FROM t ORDER BY id")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(ids, [1, 3]);
        assert_eq!(counters.commands.load(Ordering::Relaxed), 7);
        // Blocker, the batch of four, two reads.
        assert_eq!(counters.transactions.load(Ordering::Relaxed), 4);
        assert_eq!(counters.failed_transactions.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_the_whole_batch() {
        // A deferred foreign key is checked at COMMIT only: the commit fails.
        let (w, counters) = spawn(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY,
                 parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        );
        let out = one_batch(
            &w,
            vec![
                Box::new(insert("parent", 1)),
                Box::new(|c: &Connection| {
                    c.execute("INSERT INTO child (id, parent) VALUES (1, 99)", [])
                        .map_err(db)?;
                    Ok(())
                }),
                Box::new(insert("parent", 2)),
            ],
        )
        .await;
        for r in &out {
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{out:?}");
        }
        assert_eq!(
            count(&w, "parent").await,
            0,
            "nothing of the batch was stored"
        );
        assert_eq!(count(&w, "child").await, 0);
        assert_eq!(counters.failed_transactions.load(Ordering::Relaxed), 1);
        // The writer goes on.
        w.run(insert("parent", 3)).await.unwrap();
        assert_eq!(count(&w, "parent").await, 1);
    }

    #[tokio::test]
    async fn a_stopped_writer_is_unavailable() {
        let (mut w, _) = spawn("");
        drop(w.tx.take());
        let r = w.run(|_| Ok(())).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
}
