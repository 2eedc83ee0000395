//! The journal's one writer: takes the records callers logged, writes them to the current
//! segment in one `write`, fsyncs when a caller waits for durability, answers the callers, and
//! checkpoints when the journal has grown.
//!
//! Group commit falls out of the loop: while one batch is written and fsynced, the records of
//! every caller that comes meanwhile pile up in the buffer and go out together in the next.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tidings_core::store::StoreError;
use tracing::{error, info};

use crate::format;
use crate::{Durability, Shared};

pub(crate) struct Flusher {
    pub(crate) shared: Arc<Shared>,
    /// The segment records are appended to.
    pub(crate) segment: File,
    /// Bytes written to segments since the last snapshot.
    pub(crate) since_checkpoint: u64,
    /// The size of the last snapshot: a checkpoint waits until the journal has grown at least
    /// as much, so that the cost of writing snapshots stays proportional to what is written.
    pub(crate) snapshot_bytes: u64,
}

impl Flusher {
    pub(crate) fn run(mut self) {
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
            let threshold = self.shared.config.checkpoint_bytes.max(self.snapshot_bytes);
            if self.since_checkpoint > threshold {
                let shared = Arc::clone(&self.shared);
                let _files = shared.files.lock();
                let result = self.checkpoint();
                if let Err(e) = result {
                    self.fail(e);
                    return;
                }
            }
        }
        // A clean close: whatever was written without an fsync (acks, claims) is made durable.
        if let Err(e) = self.segment.sync_data() {
            error!(dir = %self.shared.dir.display(), error = %e, "journal: the last fsync at close failed");
        }
    }

    fn write(&mut self, batch: &[u8], sync: bool) -> Result<(), StoreError> {
        let dir = &self.shared.dir;
        let counters = &self.shared.counters;
        let started = Instant::now();
        if !batch.is_empty() {
            self.segment
                .write_all(batch)
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

    /// Writes a snapshot of the state and removes the segments it covers.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let (body, lsn, tail) = {
            let mut g = self.shared.inner.lock();
            let mut body = Vec::with_capacity(self.snapshot_bytes as usize + 4096);
            g.machine.encode(&mut body);
            g.sync_wanted = false;
            (body, g.next_lsn - 1, std::mem::take(&mut g.buf))
        };
        let encoded = started.elapsed();
        // The records logged before the snapshot was taken belong to the old segment, which
        // is fsynced whatever the durability: only the last segment may have a torn tail at
        // open, so a segment is whole on disk before the next one starts.
        let shared = Arc::clone(&self.shared);
        let result = self.write(&tail, false).and_then(|()| {
            shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.segment
                .sync_data()
                .map_err(|e| format::io_error(&shared.dir, "fsync the journal in", &e))
        });
        if !self.settle(lsn, result) {
            return Ok(());
        }
        let (segment, snapshot_bytes) = rotate(&self.shared.dir, lsn, &body)?;
        self.segment = segment;
        self.snapshot_bytes = snapshot_bytes;
        self.since_checkpoint = 0;
        self.shared
            .counters
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        info!(
            lsn,
            snapshot_bytes,
            locked_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "journal checkpoint"
        );
        Ok(())
    }
}

/// Starts the segment after record `lsn`, makes `body` (the state after `lsn`) the snapshot,
/// and removes the segments the snapshot covers. A crash between any two steps leaves a
/// directory that opens to the same state.
pub(crate) fn rotate(dir: &Path, lsn: u64, body: &[u8]) -> Result<(File, u64), StoreError> {
    let segment = format::create_segment(dir, lsn + 1)?;
    let snapshot_bytes = format::write_snapshot(dir, lsn, body)?;
    for (first, path) in format::list_segments(dir)? {
        if first <= lsn {
            std::fs::remove_file(&path)
                .map_err(|e| format::io_error(&path, "remove the old segment", &e))?;
        }
    }
    format::sync_dir(dir)?;
    Ok((segment, snapshot_bytes))
}
