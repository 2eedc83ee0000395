//! The journal's one writer: takes the records callers logged, writes them to the current
//! segment in one `write`, fsyncs when a caller waits for durability, answers the callers, and
//! checkpoints when the journal has grown.
//!
//! Group commit falls out of the loop: while one batch is written and fsynced, the records of
//! every caller that comes meanwhile pile up in the buffer and go out together in the next.
//!
//! A checkpoint stops neither: the flusher captures the state under the lock (the retained
//! messages are shared, not copied: `Machine::capture`), closes the segment and starts the
//! next one, and hands the capture to a thread of its own, which encodes it, writes the
//! snapshot and removes the segments it covers while the flusher goes on writing and
//! confirming records in the new segment. Encoding and writing a snapshot of gigabytes took
//! over a second, during which every publish waited (BENCHMARKS.md, the p99.9 of the quiet
//! run at 7888d31).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use tidings_core::store::StoreError;
use tidings_store_memory::Capture;
use tracing::{error, info};

use crate::format;
use crate::segment::SegmentWriter;
use crate::{Durability, Shared};

pub(crate) struct Flusher {
    pub(crate) shared: Arc<Shared>,
    /// The segment records are appended to.
    pub(crate) segment: SegmentWriter,
    /// Bytes written to segments since the last snapshot.
    pub(crate) since_checkpoint: u64,
    /// The size of the last snapshot: a checkpoint waits until the journal has grown at least
    /// as much, so that the cost of writing snapshots stays proportional to what is written.
    pub(crate) snapshot_bytes: u64,
    /// The thread writing the current checkpoint's snapshot, if one is under way: it answers
    /// the snapshot's size. One at a time.
    pub(crate) checkpointing: Option<JoinHandle<Result<u64, StoreError>>>,
}

impl Flusher {
    pub(crate) fn run(mut self) {
        self.write_until_closed();
        // Whether the journal closed or failed, a snapshot under way is finished before the
        // store's directory lock is released.
        self.checkpoint_done();
    }

    fn write_until_closed(&mut self) {
        let mut spare = Vec::new();
        loop {
            let (mut batch, upto, sync) = {
                let mut g = self.shared.inner.lock();
                while g.buf.is_empty() && !g.closing {
                    self.shared.work.wait(&mut g);
                }
                if g.buf.is_empty() {
                    break;
                }
                let batch = std::mem::replace(&mut g.buf, std::mem::take(&mut spare));
                (batch, g.next_lsn - 1, std::mem::take(&mut g.sync_wanted))
            };
            let shared = Arc::clone(&self.shared);
            let files = shared.files.lock();
            let result = self.write(&batch, sync);
            self.since_checkpoint += batch.len() as u64;
            batch.clear();
            spare = batch;
            if !self.settle(upto, result) {
                return;
            }
            drop(files);
            if self
                .checkpointing
                .as_ref()
                .is_some_and(JoinHandle::is_finished)
            {
                self.checkpoint_done();
            }
            let threshold = self.shared.config.checkpoint_bytes.max(self.snapshot_bytes);
            if self.since_checkpoint > threshold && self.checkpointing.is_none() {
                let shared = Arc::clone(&self.shared);
                let _files = shared.files.lock();
                if let Err(e) = self.checkpoint() {
                    self.fail(e);
                    return;
                }
            }
        }
        // A clean close: whatever was written without an fsync (acks, claims) is made durable,
        // and the segment ends at its last record.
        if let Err(e) = self.segment.finish() {
            error!(dir = %self.shared.dir.display(), error = %e, "journal: the last fsync at close failed");
        }
    }

    /// Waits for the snapshot thread, if there is one (finished, or at close), and takes its
    /// answer. A failed
    /// snapshot costs nothing but disk and time at the next open: the segments it would have
    /// replaced are all still there, so the flusher goes on and a later checkpoint tries again.
    fn checkpoint_done(&mut self) {
        let Some(handle) = self.checkpointing.take() else {
            return;
        };
        let dir = self.shared.dir.display();
        match handle.join() {
            Ok(Ok(snapshot_bytes)) => self.snapshot_bytes = snapshot_bytes,
            Ok(Err(e)) => {
                self.shared
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                error!(dir = %dir, error = %e, "journal: a checkpoint failed; the journal keeps its segments and tries again later");
            }
            Err(_) => {
                self.shared
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                error!(dir = %dir, "journal: the checkpoint thread panicked; the journal keeps its segments and tries again later");
            }
        }
    }

    fn write(&mut self, batch: &[u8], sync: bool) -> Result<(), StoreError> {
        let dir = &self.shared.dir;
        let counters = &self.shared.counters;
        let started = Instant::now();
        if !batch.is_empty() {
            self.segment
                .append(batch)
                .map_err(|e| format::io_error(dir, "write the journal in", &e))?;
            counters.writes.fetch_add(1, Ordering::Relaxed);
        }
        if sync && self.shared.config.durability == Durability::Full {
            let fsync_started = Instant::now();
            self.segment
                .sync_data()
                .map_err(|e| format::io_error(dir, "fsync the journal in", &e))?;
            counters.fsync_latency.observe(fsync_started.elapsed());
            counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        // One observation per batch (not per record): the flusher's own cost is two clock
        // reads and a few relaxed adds per write.
        if !batch.is_empty() || sync {
            counters.commit_latency.observe(started.elapsed());
        }
        Ok(())
    }

    /// Records that everything up to `upto` is written (answering its waiters), or that the
    /// journal failed. Returns false when it failed.
    fn settle(&self, upto: u64, result: Result<(), StoreError>) -> bool {
        match result {
            Ok(()) => {
                let mut g = self.shared.inner.lock();
                g.written_lsn = upto;
                self.shared.written.notify_all();
                let waiters = std::mem::take(&mut g.waiters);
                for (target, tx) in waiters {
                    if target <= upto {
                        let _ = tx.send(Ok(()));
                    } else {
                        g.waiters.push((target, tx));
                    }
                }
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// A write or fsync failed: what is in memory may now differ from what is on disk, so the
    /// store refuses everything from here on (every waiter gets the error) until tidings is
    /// restarted and replays the journal — the only state it can vouch for.
    fn fail(&self, e: StoreError) {
        error!(dir = %self.shared.dir.display(), error = %e, "journal failed: the store refuses every operation until tidings restarts");
        let mut g = self.shared.inner.lock();
        g.failed = Some(e.clone());
        self.shared.written.notify_all();
        for (_, tx) in g.waiters.drain(..) {
            let _ = tx.send(Err(e.clone()));
        }
    }

    /// Captures the state, closes the segment, starts the next one and starts the thread that
    /// writes the snapshot (see the module docs). Called with the files lock held.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let (capture, lsn, tail) = {
            let mut g = self.shared.inner.lock();
            let capture = g.machine.capture();
            g.sync_wanted = false;
            (capture, g.next_lsn - 1, std::mem::take(&mut g.buf))
        };
        let locked = started.elapsed();
        // The records logged before the capture belong to the old segment, which is cut to
        // its records and fsynced whatever the durability: only the last segment may have a
        // torn tail or zeros at open, so a segment is whole on disk before the next one
        // starts.
        let shared = Arc::clone(&self.shared);
        let result = self.write(&tail, false).and_then(|()| {
            shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.segment
                .finish()
                .map_err(|e| format::io_error(&shared.dir, "fsync the journal in", &e))
        });
        if !self.settle(lsn, result) {
            return Ok(());
        }
        // From here the flusher writes the records after `lsn` to the new segment (its
        // directory entry is fsynced before anything in it is confirmed) while the snapshot
        // of the state as of `lsn` is written beside it.
        self.segment = SegmentWriter::new(
            format::create_segment(&self.shared.dir, lsn + 1)?,
            self.shared.config.write_ahead_bytes,
        );
        self.since_checkpoint = 0;
        let thread = std::thread::Builder::new()
            .name("tidings-checkpoint".to_owned())
            .spawn(move || write_checkpoint(&shared, capture, lsn, started, locked))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the journal's checkpoint: {e}"))
            })?;
        self.checkpointing = Some(thread);
        Ok(())
    }
}

/// The checkpoint thread: encodes the capture of the state after record `lsn`, makes it the
/// snapshot and removes the segments it covers. Answers the snapshot's size.
fn write_checkpoint(
    shared: &Shared,
    capture: Capture,
    lsn: u64,
    started: Instant,
    locked: std::time::Duration,
) -> Result<u64, StoreError> {
    let dir = &shared.dir;
    let messages = capture.messages();
    // The temporary file is written without the files lock (a copy taken meanwhile holds
    // part of it, which open ignores); the steps that change what open reads are taken
    // under it, so that `with_files_still` sees the directory before or after each. They
    // are renames: the old files' blocks are freed after, in slices (`empty_trash`).
    let snapshot_bytes = format::write_snapshot_file(dir, lsn, &capture)?;
    let written = started.elapsed();
    drop(capture);
    {
        let _files = shared.files.lock();
        format::install_snapshot(dir)?;
        trash_covered_segments(dir, lsn)?;
    }
    format::empty_trash(dir)?;
    shared.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    info!(
        lsn,
        snapshot_bytes,
        messages,
        locked_ms = locked.as_millis() as u64,
        write_ms = written.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "journal checkpoint"
    );
    Ok(snapshot_bytes)
}

/// Moves to trash the segments whose records the snapshot after `lsn` holds: those that
/// start at or before it (the segment after it starts at `lsn + 1`, and no other starts while
/// a checkpoint is under way).
fn trash_covered_segments(dir: &Path, lsn: u64) -> Result<(), StoreError> {
    for (first, path) in format::list_segments(dir)? {
        if first <= lsn {
            format::move_to_trash(&path)?;
        }
    }
    format::sync_dir(dir)
}

/// Starts the segment after record `lsn`, makes `state` (the state after `lsn`) the snapshot,
/// and removes the segments the snapshot covers. A crash between any two steps leaves a
/// directory that opens to the same state.
pub(crate) fn rotate(dir: &Path, lsn: u64, state: &Capture) -> Result<(File, u64), StoreError> {
    let segment = format::create_segment(dir, lsn + 1)?;
    let snapshot_bytes = format::write_snapshot_file(dir, lsn, state)?;
    format::install_snapshot(dir)?;
    trash_covered_segments(dir, lsn)?;
    format::empty_trash(dir)?;
    Ok((segment, snapshot_bytes))
}
