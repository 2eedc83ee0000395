//! The segment the flusher appends to, written ahead with zeros.
//!
//! `fdatasync` of a file whose size changed must also write the new size (the inode) before
//! it returns: on this project's test machine (ext4, measured with `/sys/block/*/stat`) an
//! fsync after an append costs three write requests to the disk where an overwrite inside the
//! file costs two, and on a file system with a journal the size change is a journal commit.
//! The flusher fsyncs once per group commit — thousands of times a second — so the segment is
//! extended with zeros [`JournalConfig::write_ahead_bytes`](crate::JournalConfig) at a time,
//! and the records overwrite them: the size changes, and its cost is paid, once per extension
//! instead of once per fsync. PostgreSQL fills its WAL segments with zeros for the same reason.
//!
//! What a crash leaves: the records, then zeros (or, inside the last write, a torn record
//! followed by zeros). Open reads zeros after the last whole record as the end of the segment
//! and cuts them (`format::read_segment`); a segment is cut to its records before the next one
//! is created and at a clean close, so only the last segment can have zeros after a crash.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::format::SEGMENT_HEADER_LEN;

/// What one write of zeros writes at most (a static buffer, written as many times as needed).
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The segment being appended to: see the [module docs](self).
pub(crate) struct SegmentWriter {
    file: File,
    /// Where the next record goes: the end of the records.
    end: u64,
    /// The file's length: records, then zeros up to here.
    len: u64,
    write_ahead: u64,
}

impl SegmentWriter {
    /// A segment just created: its header written and nothing after it.
    pub(crate) fn new(file: File, write_ahead: u64) -> SegmentWriter {
        let header = SEGMENT_HEADER_LEN as u64;
        SegmentWriter {
            file,
            end: header,
            len: header,
            write_ahead,
        }
    }

    /// Writes `bytes` after the records (not yet durable: see [`SegmentWriter::sync_data`]),
    /// first extending the file with zeros if they would reach past its end.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.end + bytes.len() as u64;
        if end > self.len && self.write_ahead > 0 {
            // Zeros from the records' new end to a write-ahead boundary past it: the records
            // themselves fill the rest.
            let to = end.div_ceil(self.write_ahead) * self.write_ahead + self.write_ahead;
            let mut at = end.max(self.len);
            while at < to {
                let n = (to - at).min(ZEROS.len() as u64) as usize;
                self.file.write_all_at(&ZEROS[..n], at)?;
                at += n as u64;
            }
            self.len = to;
        }
        self.file.write_all_at(bytes, self.end)?;
        self.end = end;
        self.len = self.len.max(end);
        Ok(())
    }

    /// Makes what was appended durable.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Cuts the zeros after the records and makes the segment durable as it is: before the
    /// next segment starts (only the last segment may end in zeros after a crash) and at a
    /// clean close.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.len > self.end {
            self.file.set_len(self.end)?;
            self.len = self.end;
            // The size changed: `sync_all`, not `sync_data`.
            return self.file.sync_all();
        }
        self.file.sync_data()
    }

    /// The end of the records (for tests).
    #[cfg(test)]
    pub(crate) fn end(&self) -> u64 {
        self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn segment(write_ahead: u64) -> (tempfile::TempDir, std::path::PathBuf, SegmentWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&[7; SEGMENT_HEADER_LEN]).unwrap();
        (dir, path.clone(), SegmentWriter::new(f, write_ahead))
    }

    #[test]
    fn records_overwrite_zeros_written_ahead_and_finish_cuts_the_rest() {
        let (_dir, path, mut w) = segment(4096);
        w.append(&[1; 100]).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len >= 4096 + 124, "not written ahead: {len}");
        assert_eq!(len % 4096, 0, "{len}");
        // Appends inside the zeros do not extend the file.
        w.append(&[2; 1000]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        // One past the end extends it again, by whole steps.
        w.append(&vec![3; 9000]).unwrap();
        let longer = std::fs::metadata(&path).unwrap().len();
        assert!(longer >= w.end() + 4096 && longer % 4096 == 0, "{longer}");
        let bytes = std::fs::read(&path).unwrap();
        let end = w.end() as usize;
        assert_eq!(&bytes[..SEGMENT_HEADER_LEN], &[7; SEGMENT_HEADER_LEN]);
        let records = &bytes[SEGMENT_HEADER_LEN..end];
        assert_eq!(records.len(), 10_100);
        assert!(records[..100].iter().all(|&b| b == 1));
        assert!(records[100..1100].iter().all(|&b| b == 2));
        assert!(records[1100..].iter().all(|&b| b == 3));
        assert!(
            bytes[end..].iter().all(|&b| b == 0),
            "not zeros after the records"
        );
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes[..end]);
    }

    #[test]
    fn without_write_ahead_the_file_ends_at_its_records() {
        let (_dir, path, mut w) = segment(0);
        w.append(&[1; 100]).unwrap();
        w.append(&[2; 50]).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            SEGMENT_HEADER_LEN as u64 + 150
        );
        w.finish().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            SEGMENT_HEADER_LEN as u64 + 150
        );
    }
}
