//! The journal store against the model of `tidings-store-tests`, with crash points that may
//! tear the journal's tail.
//!
//! The input is the one [`store_crash`](crate::store_crash) reads (operations and crash points),
//! so both targets share a corpus. At each crash point the journal's files are copied as the
//! OS has them once every logged record is written, and the copy's last segment is cut at a
//! byte the input picks anywhere after the newest record whose operation was confirmed durable
//! — a power loss that kept only part of the unsynced tail, possibly mid-record. The copy must
//! open (cutting the torn record), hold every confirmed change, and equal the model as it was
//! after some prefix of the operations.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use tidings_store_journal::{Durability, JournalConfig, JournalStore};
use tidings_store_tests::model::run_case_with_lossy_crashes;

use crate::store::decode;

/// The segment header and a record header of the journal's format v1 (`tidings-store-journal`
/// docs): the cut is computed from the records' own lengths.
const SEGMENT_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(
        || match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(e) => panic!("cannot build a tokio runtime: {e}"),
        },
    )
}

fn config() -> JournalConfig {
    JournalConfig {
        // Confirmed once written to the OS: the crash copies see what the OS has.
        durability: Durability::Os,
        // Tiny, so that inputs cross checkpoints (snapshot, new segment, old ones removed).
        checkpoint_bytes: 512,
        // Small, so that crash copies end in zeros written ahead of the records, and cuts
        // land in them, in records before them, and past them.
        write_ahead_bytes: 192,
        ..JournalConfig::default()
    }
}

fn scratch() -> tempfile::TempDir {
    // A RAM disk when there is one: this target is bound by file I/O.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    dir.unwrap_or_else(|e| panic!("cannot create a scratch directory: {e}"))
}

fn little_u32(b: &[u8]) -> usize {
    let mut raw = [0; 4];
    raw.copy_from_slice(&b[..4]);
    u32::from_le_bytes(raw) as usize
}

fn little_u64(b: &[u8]) -> u64 {
    let mut raw = [0; 8];
    raw.copy_from_slice(&b[..8]);
    u64::from_le_bytes(raw)
}

/// Where the records up to `must_keep` end in a segment's bytes.
fn kept_end(segment: &[u8], must_keep: u64) -> usize {
    let mut pos = SEGMENT_HEADER;
    let mut end = SEGMENT_HEADER.min(segment.len());
    while pos + RECORD_HEADER <= segment.len() {
        // Zeros written ahead of the records: no record has a length of 0.
        if little_u32(&segment[pos..]) == 0 {
            break;
        }
        let next = pos + RECORD_HEADER + little_u32(&segment[pos..]);
        if next > segment.len() || little_u64(&segment[pos + 8..]) > must_keep {
            break;
        }
        end = next;
        pos = next;
    }
    end
}

/// Copies every file of `from` into `to`; returns the segments' names.
fn copy_dir(from: &Path, to: &Path) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(from).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        // Files a checkpoint no longer needs, which it frees while the copy runs; open
        // ignores them.
        if name.ends_with(".deleting") {
            continue;
        }
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if name.starts_with("wal-") {
            segments.push(name.clone());
        }
        fs::write(to.join(&name), bytes).map_err(|e| e.to_string())?;
    }
    Ok(segments)
}

/// Copies the journal as a crash leaves it (see the module docs) and opens the copy.
fn crash(
    store: JournalStore,
    root: &Path,
    n: &mut usize,
    must_keep: u64,
    cut: u8,
) -> Result<JournalStore, String> {
    store.wait_until_written().map_err(|e| e.to_string())?;
    *n += 1;
    let to = root.join(format!("crash-{n}"));
    fs::create_dir(&to).map_err(|e| e.to_string())?;
    let mut segments = store.with_files_still(|dir| copy_dir(dir, &to))?;
    drop(store);
    segments.sort();
    if let Some(last) = segments.last() {
        let path = to.join(last);
        let bytes = fs::read(&path).map_err(|e| e.to_string())?;
        let low = kept_end(&bytes, must_keep);
        let keep = low + (usize::from(cut) * (bytes.len() - low)) / 255;
        fs::write(&path, &bytes[..keep]).map_err(|e| e.to_string())?;
    }
    JournalStore::open(&to, config()).map_err(|e| e.to_string())
}

/// Decodes the input as [`store_crash`](crate::store_crash) does, runs the operations on a new
/// journal store and on the model, and crashes the store at each crash point (see the module
/// docs). The byte that picks each cut is read from the input too.
///
/// # Panics
///
/// When the store differs from the model, loses a confirmed change, or does not reopen.
pub fn journal_crash(data: &[u8]) {
    let (case, crashes) = decode(data);
    if case.ops.is_empty() {
        return;
    }
    let root = scratch();
    let store = JournalStore::open(&root.path().join("journal"), config())
        .unwrap_or_else(|e| panic!("cannot open the journal: {e}"));
    let mut n = 0;
    // The cut of the k-th crash: a byte of the input, spread over it.
    let cut_of = |k: usize| data[(k * 131 + 7) % data.len()];
    let result = runtime().block_on(run_case_with_lossy_crashes(
        store,
        &case,
        &crashes,
        JournalStore::lsn,
        |store, must_keep| {
            let cut = cut_of(n);
            crash(store, root.path(), &mut n, must_keep, cut)
        },
    ));
    if let Err(e) = result {
        panic!("journal differs from the model (crashes before steps {crashes:?}): {e}\n{case:#?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_every_confirmed_change_and_a_prefix_of_the_rest() {
        // Window 1; subscribe; append; crash; claim; ack; crash, cut anywhere; crash at the end.
        let input = [
            1, 0x04, 0, 0x02, 0, 3, 0, 0x0d, 0x06, 3, 1, 3, 0x08, 1, 0x0e, 0x0f,
        ];
        for cut in [0u8, 1, 100, 254, 255] {
            let mut input = input.to_vec();
            input.push(cut);
            journal_crash(&input);
        }
    }
}
