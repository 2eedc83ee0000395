//! The files of a journal directory and their on-disk format (version 3; versions 1 and 2 are
//! read).
//!
//! ```text
//! LOCK                         held (flock) by the process that has the directory open
//! snapshot                     the whole state as of one record (absent until the first checkpoint)
//! wal-<first lsn, 20 digits>.log   segments of records, in order
//!
//! segment  = "TDNGWAL\0" | version u32 | first lsn u64 | crc32c of the above u32 | record*
//! record   = payload length u32 | crc32c u32 | lsn u64 | payload
//!            (the crc covers the length, the lsn and the payload; integers little-endian)
//! snapshot = "TDNGSNAP" | version u32 | lsn u64 | body length u64 | body | crc32c of all before u32
//! ```
//!
//! Versions: **v1** (the first release of the journal) and **v2** (2026-12-06: durable
//! messages with binary attachments). v2 adds one record kind, an append with attachments
//! (`op.rs`), and writes every snapshot message with its attachments; v1 records are v2
//! records, so v1 segments replay as they are, and a v1 snapshot is decoded as v1. Open then
//! checkpoints into v2 files as soon as it replayed anything (and new segments are always
//! v2), so an older tidings refuses the directory afterwards as "written by a newer tidings".
//!
//! **v3** (2026-12-06, evening) adds one more record kind: a dispatcher's turn as one record
//! (`SETTLE_CLAIM`, `op.rs`) where it was a `SETTLE` and a `CLAIM` record before. Nothing else
//! changed: v2 segments replay as they are (their two records give the same state) and a v2
//! snapshot body is a v3 one. The version is bumped so that an older build refuses a
//! directory that may hold the new record with the clear "written by a newer tidings" (new
//! segments are always v3) instead of stopping at a record kind it does not know.
//!
//! Every record has a log sequence number (lsn): 1 for the first, +1 each, never reused. A
//! snapshot holds the state after record `lsn`; at open, records up to it are skipped.
//!
//! # What a crash can leave, and what open does with it
//! - **A torn tail** — the last segment ends inside a record, or its last record's checksum
//!   fails (at the file's end or before zeros): the tail is cut back to the last whole record,
//!   with a warning naming the file and the bytes cut. No record was confirmed from there: a
//!   confirmation waits for the write (and its fsync) of its record.
//! - **Zeros after the last record** of the last segment — written ahead of the records by the
//!   flusher (`segment.rs`: an fsync that need not change the file's size is cheaper), or a
//!   write the OS had not finished: cut, with an info line.
//! - **Anything else** — a bad checksum with whole records after it, a gap in the lsns, a bad
//!   file header, a segment that is not the last ending early, a snapshot whose checksum fails:
//!   open refuses with [`StoreError::Corrupt`] naming the file and the byte, and changes nothing.
//! - **A file of a newer version**: refused with a message saying so; nothing is rewritten.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tidings_core::store::StoreError;
use tidings_store_memory::Capture;

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 3;

const SEGMENT_MAGIC: &[u8; 8] = b"TDNGWAL\0";
const SNAPSHOT_MAGIC: &[u8; 8] = b"TDNGSNAP";
/// Magic, version, first lsn, crc.
pub(crate) const SEGMENT_HEADER_LEN: usize = 8 + 4 + 8 + 4;
/// Length, crc, lsn.
pub(crate) const RECORD_HEADER_LEN: usize = 4 + 4 + 8;
const SNAPSHOT_HEADER_LEN: usize = 8 + 4 + 8 + 8;

pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// The file name of the segment whose first record is `first_lsn`.
pub(crate) fn segment_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

fn corrupt(path: &Path, at: usize, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!(
        "{} at byte {at}: {what}; the journal was left as it is (see docs/RELIABILITY.md)",
        path.display()
    ))
}

pub(crate) fn io_error(path: &Path, what: &str, e: &io::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
}

/// Appends a whole record (header and payload) to `buf`, the payload written by `payload`.
/// Returns the record's start in `buf`.
pub(crate) fn push_record(buf: &mut Vec<u8>, lsn: u64, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    payload(buf);
    let len = u32::try_from(buf.len() - start - RECORD_HEADER_LEN).unwrap_or(u32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 8..start + 16].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[start..start + 4]), &buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The header of a new segment whose first record will be `first_lsn`.
pub(crate) fn segment_header(first_lsn: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
    h.extend_from_slice(SEGMENT_MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn le_u32(b: &[u8]) -> u32 {
    let mut raw = [0; 4];
    raw.copy_from_slice(&b[..4]);
    u32::from_le_bytes(raw)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut raw = [0; 8];
    raw.copy_from_slice(&b[..8]);
    u64::from_le_bytes(raw)
}

/// Checks magic and version; `kind` names the file in errors. Returns the version.
fn check_magic_and_version(
    path: &Path,
    bytes: &[u8],
    magic: &[u8; 8],
    kind: &str,
) -> Result<u32, StoreError> {
    if bytes.len() < 12 || &bytes[..8] != magic {
        return Err(corrupt(path, 0, format!("not a tidings {kind} file")));
    }
    let version = le_u32(&bytes[8..]);
    if version > FORMAT_VERSION {
        return Err(StoreError::Corrupt(format!(
            "{} was written by a newer tidings (journal format v{version}); this tidings reads \
             v{FORMAT_VERSION}: run the newer version, nothing was changed",
            path.display()
        )));
    }
    if version == 0 {
        return Err(corrupt(path, 8, "a format version of 0"));
    }
    Ok(version)
}

/// A segment read at open: its records, and where its whole records end.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) first_lsn: u64,
    pub(crate) bytes: Vec<u8>,
    /// (lsn, payload range in `bytes`) of every whole record, in order.
    pub(crate) records: Vec<(u64, std::ops::Range<usize>)>,
    /// Bytes past the last whole record (a torn tail, or zeros), 0 for a clean segment.
    pub(crate) torn: usize,
    /// Whether those bytes hold (part of) a record, not only zeros: a write a crash
    /// interrupted, worth a warning. Zeros alone are what the flusher writes ahead of its
    /// records (`segment.rs`).
    pub(crate) torn_record: bool,
}

/// Reads and checks a segment. Only the last segment may have a torn tail (`may_be_torn`).
pub(crate) fn read_segment(path: &Path, may_be_torn: bool) -> Result<Segment, StoreError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, "read", &e))?;
    if bytes.len() < SEGMENT_HEADER_LEN && may_be_torn {
        // Created, header not (all) written yet: a crash right after creating the file. No
        // record can be in it.
        let first_lsn = 0;
        let torn = bytes.len();
        return Ok(Segment {
            path: path.to_owned(),
            first_lsn,
            bytes,
            records: Vec::new(),
            torn,
            torn_record: torn > 0,
        });
    }
    check_magic_and_version(path, &bytes, SEGMENT_MAGIC, "journal segment")?;
    if bytes.len() < SEGMENT_HEADER_LEN || crc32c::crc32c(&bytes[..20]) != le_u32(&bytes[20..]) {
        return Err(corrupt(path, 0, "a segment header with a bad checksum"));
    }
    let first_lsn = le_u64(&bytes[12..]);
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    let torn_or = |pos: usize, what: &str| -> Result<usize, StoreError> {
        if may_be_torn {
            Ok(bytes.len() - pos)
        } else {
            Err(corrupt(
                path,
                pos,
                format!("{what} in a segment that is not the last"),
            ))
        }
    };
    let mut torn = 0;
    let mut torn_record = false;
    let mut expected = first_lsn;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.iter().all(|&b| b == 0) {
            // Written ahead (`segment.rs`), or a write the OS had not finished.
            torn = torn_or(pos, "zeros")?;
            break;
        }
        if rest.len() < RECORD_HEADER_LEN {
            torn = torn_or(pos, "a partial record header")?;
            torn_record = true;
            break;
        }
        let len = le_u32(rest) as usize;
        let end = RECORD_HEADER_LEN + len;
        if end > rest.len() {
            torn = torn_or(pos, "a record longer than the file")?;
            torn_record = true;
            break;
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&rest[..4]), &rest[8..end]);
        if crc != le_u32(&rest[4..]) {
            // The last record, at the file's end or before the zeros written ahead of the
            // records (`segment.rs`): the write a crash interrupted.
            if rest[end..].iter().all(|&b| b == 0) {
                torn = torn_or(pos, "a last record with a bad checksum")?;
                torn_record = true;
                break;
            }
            return Err(corrupt(
                path,
                pos,
                "a record with a bad checksum followed by more records",
            ));
        }
        let lsn = le_u64(&rest[8..]);
        if lsn != expected {
            return Err(corrupt(
                path,
                pos,
                format!("record {lsn} where {expected} was due"),
            ));
        }
        records.push((lsn, pos + RECORD_HEADER_LEN..pos + end));
        expected += 1;
        pos += end;
    }
    Ok(Segment {
        path: path.to_owned(),
        first_lsn,
        bytes,
        records,
        torn,
        torn_record,
    })
}

/// The segments of `dir`, sorted by first lsn.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list", &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list", &e))?;
        let name = entry.file_name();
        if let Some(lsn) = name.to_str().and_then(parse_segment_name) {
            out.push((lsn, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A snapshot read at open.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Its format version (1, 2 or 3: how its body is encoded; 2 and 3 alike).
    pub(crate) version: u32,
    /// The state is as of this record.
    pub(crate) lsn: u64,
    pub(crate) body: Vec<u8>,
}

/// Reads the snapshot, if there is one.
pub(crate) fn read_snapshot(dir: &Path) -> Result<Option<Snapshot>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path, "read", &e)),
    };
    let version = check_magic_and_version(&path, &bytes, SNAPSHOT_MAGIC, "snapshot")?;
    if bytes.len() < SNAPSHOT_HEADER_LEN + 4 {
        return Err(corrupt(&path, bytes.len(), "a snapshot cut short"));
    }
    let lsn = le_u64(&bytes[12..]);
    let body_len = le_u64(&bytes[20..]);
    let end = usize::try_from(body_len)
        .ok()
        .and_then(|n| n.checked_add(SNAPSHOT_HEADER_LEN))
        .filter(|&end| end + 4 == bytes.len())
        .ok_or_else(|| corrupt(&path, 20, "a body length that does not match the file"))?;
    if crc32c::crc32c(&bytes[..end]) != le_u32(&bytes[end..]) {
        return Err(corrupt(&path, end, "a snapshot with a bad checksum"));
    }
    // The body in place (a shift, not a second copy of a file as big as the state).
    let mut body = bytes;
    body.truncate(end);
    body.drain(..SNAPSHOT_HEADER_LEN);
    Ok(Some(Snapshot { version, lsn, body }))
}

/// How much of a snapshot is encoded and written before it is fsynced: what the journal's
/// fsyncs may have to wait behind while a snapshot is written (tens of milliseconds on an
/// ordinary SSD), and the memory the encoding takes.
const SNAPSHOT_WRITE_SLICE: usize = 8 << 20;

/// Writes the snapshot of `state` (the state after record `lsn`) to a temporary file,
/// fsynced; answers its size. [`install_snapshot`] then makes it the current one. A crash at
/// any point leaves either the old snapshot or the new one (open reads only the installed
/// one).
///
/// The body is encoded straight into the file, a slice at a time, each fsynced before the
/// next: the encoding is never whole in memory (it is about the size of the retained data), and
/// a snapshot of gigabytes written at once would leave that much dirty in the page cache, which
/// the journal's own fsyncs (confirming publishes meanwhile) then wait behind for seconds.
/// The header, which holds the body's length, is written last, over the space left for it.
pub(crate) fn write_snapshot_file(
    dir: &Path,
    lsn: u64,
    state: &Capture,
) -> Result<u64, StoreError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let write = || -> io::Result<u64> {
        let mut f = File::create(&tmp)?;
        f.write_all(&[0; SNAPSHOT_HEADER_LEN])?;
        let mut body_len = 0u64;
        let mut body_crc = 0u32;
        state.encode_to(SNAPSHOT_WRITE_SLICE, &mut |piece: &[u8]| {
            f.write_all(piece)?;
            f.sync_data()?;
            body_len += piece.len() as u64;
            body_crc = crc32c::crc32c_append(body_crc, piece);
            Ok::<(), io::Error>(())
        })?;
        let mut header = Vec::with_capacity(SNAPSHOT_HEADER_LEN);
        header.extend_from_slice(SNAPSHOT_MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&lsn.to_le_bytes());
        header.extend_from_slice(&body_len.to_le_bytes());
        let len = usize::try_from(body_len).map_err(io::Error::other)?;
        let crc = crc32c::crc32c_combine(crc32c::crc32c(&header), body_crc, len);
        f.write_all(&crc.to_le_bytes())?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&header)?;
        f.sync_all()?;
        Ok(header.len() as u64 + body_len + 4)
    };
    write().map_err(|e| io_error(&tmp, "write", &e))
}

/// Makes the snapshot [`write_snapshot_file`] wrote the current one: renamed over the old one,
/// the directory fsynced. The old one is kept as trash (a hard link), so that the rename frees
/// no blocks: [`empty_trash`] does, later and in slices.
pub(crate) fn install_snapshot(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    let old = trash_name(&path);
    match fs::remove_file(&old) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&old, "remove", &e)),
    }
    match fs::hard_link(&path, &old) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {} // the first snapshot
        Err(e) => return Err(io_error(&old, "create", &e)),
    }
    fs::rename(dir.join(SNAPSHOT_TMP), &path).map_err(|e| io_error(&path, "replace", &e))?;
    sync_dir(dir)
}

/// What a file is renamed to when it is no longer needed: open ignores it and
/// [`empty_trash`] removes it.
const TRASH_SUFFIX: &str = ".deleting";

fn trash_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TRASH_SUFFIX);
    PathBuf::from(name)
}

/// Whether a journal directory's file is trash (see [`move_to_trash`]).
pub(crate) fn is_trash(name: &str) -> bool {
    name.ends_with(TRASH_SUFFIX)
}

/// Renames `path` to trash: from this instant open no longer reads it. The caller fsyncs the
/// directory.
pub(crate) fn move_to_trash(path: &Path) -> Result<(), StoreError> {
    fs::rename(path, trash_name(path)).map_err(|e| io_error(path, "move to trash", &e))
}

/// How much of a trash file is freed at a time.
const TRASH_SLICE: u64 = 64 << 20;

/// Removes the trash of `dir`. A big file is cut from its end in slices, each fsynced, before
/// it is unlinked: freeing gigabytes at once (on a file system that discards freed blocks)
/// holds up the file system's journal, and with it the fsyncs that confirm publishes, for
/// hundreds of milliseconds; a slice at a time, each waits at most for one slice.
pub(crate) fn empty_trash(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list", &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list", &e))?;
        if !entry.file_name().to_str().is_some_and(is_trash) {
            continue;
        }
        let path = entry.path();
        let free = || -> io::Result<()> {
            let f = OpenOptions::new().write(true).open(&path)?;
            let mut len = f.metadata()?.len();
            while len > TRASH_SLICE {
                len -= TRASH_SLICE;
                f.set_len(len)?;
                f.sync_all()?;
            }
            drop(f);
            fs::remove_file(&path)
        };
        free().map_err(|e| io_error(&path, "remove", &e))?;
    }
    Ok(())
}

/// Creates the segment whose first record is `first_lsn`, header written and fsynced, with
/// the directory entry fsynced too.
pub(crate) fn create_segment(dir: &Path, first_lsn: u64) -> Result<File, StoreError> {
    let path = dir.join(segment_name(first_lsn));
    let create = || -> io::Result<File> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        f.write_all(&segment_header(first_lsn))?;
        f.sync_all()?;
        Ok(f)
    };
    let f = create().map_err(|e| io_error(&path, "create", &e))?;
    sync_dir(dir)?;
    Ok(f)
}

/// Cuts a torn tail off a segment, leaving its whole records.
pub(crate) fn cut_tail(segment: &Segment) -> Result<(), StoreError> {
    let keep = (segment.bytes.len() - segment.torn) as u64;
    let cut = || -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(&segment.path)?;
        f.set_len(keep)?;
        f.sync_all()
    };
    cut().map_err(|e| io_error(&segment.path, "cut the torn tail of", &e))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync the directory", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("wal-42.log"), None);
        assert_eq!(parse_segment_name("snapshot"), None);
    }
}
