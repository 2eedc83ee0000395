//! The SQLite store against the model of `tidings-store-tests`, with crash points.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tidings_core::store::{Millis, StartFrom};
use tidings_store_sqlite::{Durability, SqliteConfig, SqliteStore};
use tidings_store_tests::model::{Case, Op, run_case_with_crashes};

use crate::memvfs;

/// Most operations one input runs (more bytes are ignored).
const MAX_OPS: usize = 48;
/// Most crashes one input runs: each one reopens the store.
const MAX_CRASHES: usize = 4;

/// Reads bytes front to back; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }
}

/// The operations of one input and the steps before which the store crashes.
pub(crate) fn decode(data: &[u8]) -> (Case, Vec<usize>) {
    const SHORT: &[u8] = &[0, 1, 5, 10, 20];
    let mut b = Bytes(data);
    let dedup_window: Millis = b.pick(&[0, 1, 5, 10, 20]);
    let mut ops = Vec::new();
    let mut crashes = Vec::new();
    while !b.0.is_empty() && ops.len() < MAX_OPS {
        let tag = b.byte();
        // The low nibble picks the operation, the high bits its topic and subscription: two
        // topics, three subscriptions (as the model-based test).
        let topic = (tag >> 4) & 1;
        let sub = (tag >> 5) % 3;
        let op = match tag & 0x0f {
            0 | 1 => Op::Tick(b.pick(&[0, 1, 2, 5, 10, 20])),
            2 | 3 => Op::Append {
                topic,
                key: match b.byte() % 4 {
                    3 => None,
                    k => Some(k),
                },
                len: b.byte() % 6,
                skew: b.pick(&[0, 0, 1, 5]),
            },
            4 => Op::Subscribe {
                topic,
                sub,
                from: match b.byte() {
                    0..=63 => StartFrom::New,
                    64..=127 => StartFrom::Earliest,
                    n => StartFrom::Offset(u64::from(n % 12)),
                },
            },
            5 => Op::Unsubscribe { topic, sub },
            6 | 7 => Op::Claim {
                topic,
                sub,
                max: b.byte() % 4,
                ack_timeout: b.pick(SHORT),
                max_deliveries: b.byte() % 4,
            },
            8 | 9 => Op::Ack {
                topic,
                sub,
                offset: b.byte() % 10,
            },
            10 => Op::Requeue {
                topic,
                sub,
                offset: b.byte() % 10,
                delay: b.pick(SHORT),
            },
            11 => Op::RequeueDead {
                topic,
                pick: b.byte(),
            },
            12 => Op::Retention {
                topic,
                max_age: b.pick(&[0, 5, 10, 20, 50, 1000]),
                max_messages: b.pick(&[0, 1, 2, 4, 8, 100]),
                max_bytes: b.pick(&[0, 5, 10, 20, 50, 255]),
            },
            // A dispatcher's turn (`Store::settle_and_claim`): up to four entries, then a claim
            // unless the count byte's high bit says settle alone. (Added after the corpus was
            // first written: tag 13 was a crash point before, 14 and 15 still are.)
            13 => {
                let count = b.byte();
                let entries = (0..count % 5)
                    .map(|_| {
                        let offset = b.byte() % 10;
                        let delay = b.byte();
                        // Even: an ack; odd: a requeue with a short delay.
                        (
                            offset,
                            (delay % 2 == 1).then(|| SHORT[usize::from(delay / 2) % SHORT.len()]),
                        )
                    })
                    .collect();
                let claim = (count < 128).then(|| (b.byte() % 4, b.pick(SHORT), b.byte() % 4));
                Op::Settle {
                    topic,
                    sub,
                    entries,
                    claim,
                }
            }
            _ => {
                if crashes.len() < MAX_CRASHES && crashes.last() != Some(&ops.len()) {
                    crashes.push(ops.len());
                }
                continue;
            }
        };
        ops.push(op);
    }
    (Case { dedup_window, ops }, crashes)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(
        || match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(e) => panic!("cannot build a tokio runtime: {e}"),
        },
    )
}

/// Where an input's files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// In the target's in-memory VFS (`memvfs`): the default, about twice as fast.
    Memory,
    /// On the file system (a RAM disk when there is one), with SQLite's unix VFS: the replay
    /// test runs the corpus this way too, to check that both give the same verdicts.
    Disk,
}

/// The directory of one input: a unique prefix in the VFS, or a temporary directory.
enum Scratch {
    Memory(String),
    Disk(tempfile::TempDir),
}

impl Scratch {
    fn new(files: Files) -> Scratch {
        match files {
            Files::Memory => {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                memvfs::register();
                Scratch::Memory(format!(
                    "/tidings-fuzz/{}/",
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ))
            }
            Files::Disk => {
                // A RAM disk when there is one (this target is bound by file I/O).
                let shm = Path::new("/dev/shm");
                let dir = if shm.is_dir() {
                    tempfile::tempdir_in(shm)
                } else {
                    tempfile::tempdir()
                };
                match dir {
                    Ok(dir) => Scratch::Disk(dir),
                    Err(e) => panic!("cannot create a scratch directory: {e}"),
                }
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        match self {
            Scratch::Memory(prefix) => PathBuf::from(format!("{prefix}{name}")),
            Scratch::Disk(dir) => dir.path().join(name),
        }
    }

    fn vfs(&self) -> Option<&'static str> {
        match self {
            Scratch::Memory(_) => Some(memvfs::NAME),
            Scratch::Disk(_) => None,
        }
    }

    fn read(&self, p: &Path) -> Result<Option<Vec<u8>>, String> {
        match self {
            Scratch::Memory(_) => Ok(memvfs::read(&p.to_string_lossy())),
            Scratch::Disk(_) => loop {
                match std::fs::read(p) {
                    Ok(bytes) => return Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    // libFuzzer's timer signals interrupt system calls (EINTR).
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read {}: {e}", p.display())),
                }
            },
        }
    }

    fn write(&self, p: &Path, bytes: &[u8]) -> Result<(), String> {
        match self {
            Scratch::Memory(_) => {
                memvfs::write(&p.to_string_lossy(), bytes);
                Ok(())
            }
            Scratch::Disk(_) => loop {
                match std::fs::write(p, bytes) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("write {}: {e}", p.display())),
                }
            },
        }
    }

    fn open(&self, p: &Path) -> Result<SqliteStore, String> {
        SqliteStore::open_for_fuzzing(p, config(), self.vfs()).map_err(|e| e.to_string())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Scratch::Memory(prefix) = self {
            memvfs::remove_all(prefix);
        }
    }
}

fn config() -> SqliteConfig {
    SqliteConfig {
        // A commit is written to the OS before it is confirmed: that survives a process crash,
        // which is what the crash points simulate (the file copies see what the OS has).
        durability: Durability::Os,
        ..SqliteConfig::default()
    }
}

fn wal_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// What `kill -9` leaves at this instant: the database file and its WAL as the OS has them,
/// copied while the store still runs (the WAL index is rebuilt from the WAL on open).
fn crash_copy(scratch: &Scratch, store: &SqliteStore, to: &Path) -> Result<(), String> {
    let from = store.path();
    let db = scratch
        .read(from)?
        .ok_or_else(|| format!("{} is gone", from.display()))?;
    scratch.write(to, &db)?;
    if let Some(wal) = scratch.read(&wal_of(from))? {
        scratch.write(&wal_of(to), &wal)?;
    }
    Ok(())
}

/// A crash point: [`crash_copy`], then the old store goes away (without a checkpoint, as a
/// killed process) and a new one opens the copy.
fn crash(store: SqliteStore, scratch: &Scratch, n: &mut usize) -> Result<SqliteStore, String> {
    *n += 1;
    let to = scratch.path(&format!("crash-{n}.db"));
    crash_copy(scratch, &store, &to)?;
    drop(store);
    scratch.open(&to)
}

/// The files of a new store as a crash right after [`SqliteStore::open`] created it leaves
/// them (the schema is in the WAL). Made once per process and kind of files: creating the
/// schema is a quarter of an input's work, and it is the same every time.
struct Template {
    db: Vec<u8>,
    wal: Vec<u8>,
}

fn template(files: Files) -> &'static Template {
    static MEMORY: OnceLock<Template> = OnceLock::new();
    static DISK: OnceLock<Template> = OnceLock::new();
    let cell = match files {
        Files::Memory => &MEMORY,
        Files::Disk => &DISK,
    };
    cell.get_or_init(|| {
        let made = (|| {
            let scratch = Scratch::new(files);
            let store = scratch.open(&scratch.path("new.db"))?;
            let to = scratch.path("template.db");
            crash_copy(&scratch, &store, &to)?;
            drop(store);
            let read = |p: &Path| {
                scratch
                    .read(p)?
                    .ok_or_else(|| format!("{} is missing", p.display()))
            };
            Ok::<_, String>(Template {
                db: read(&to)?,
                wal: read(&wal_of(&to))?,
            })
        })();
        match made {
            Ok(template) => template,
            Err(e) => panic!("cannot make the template store: {e}"),
        }
    })
}

/// A new store: the [`template`]'s files, opened by [`SqliteStore::open_for_fuzzing`] (which
/// checks the schema version, as on every restart).
fn new_store(scratch: &Scratch, files: Files) -> Result<SqliteStore, String> {
    let path = scratch.path("store.db");
    let t = template(files);
    scratch.write(&path, &t.db)?;
    scratch.write(&wal_of(&path), &t.wal)?;
    scratch.open(&path)
}

/// Decodes the input into store operations (those of the model-based test) and crash points,
/// runs them on a new SQLite store and on the model, and crashes the store at each crash
/// point: [`crash`] copies the files as a killed process leaves them and reopens the copy.
/// Every answer must equal the model's, and so must the whole visible state after each reopen
/// (what was appended stays appended, acked stays acked, claimed stays in flight).
///
/// The store is opened with [`SqliteStore::open_for_fuzzing`]: the same writes, reads and
/// transactions as [`SqliteStore::open`], on this thread instead of the store's two threads.
///
/// # Panics
///
/// When the store differs from the model.
pub fn store_crash(data: &[u8]) {
    store_crash_in(data, Files::Memory);
}

/// [`store_crash`] with the files in `files`.
///
/// # Panics
///
/// When the store differs from the model.
pub fn store_crash_in(data: &[u8], files: Files) {
    let (case, crashes) = decode(data);
    if case.ops.is_empty() {
        return;
    }
    let scratch = Scratch::new(files);
    let store = match new_store(&scratch, files) {
        Ok(store) => store,
        Err(e) => panic!("cannot open the store: {e}"),
    };
    let mut n = 0;
    let result = runtime().block_on(run_case_with_crashes(store, &case, &crashes, |store| {
        crash(store, &scratch, &mut n)
    }));
    if let Err(e) = result {
        panic!(
            "store differs from the model ({files:?} files; crashes before steps {crashes:?}): {e}\n{case:#?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_fall_between_operations() {
        // Window 1; subscribe; append; crash; crash (the same point); claim; crash at the end.
        let input = [1, 0x04, 0, 0x02, 0, 3, 0, 0x0e, 0x0e, 0x06, 3, 1, 3, 0x0f];
        let (case, crashes) = decode(&input);
        assert_eq!(case.dedup_window, 1);
        assert_eq!(case.ops.len(), 3);
        assert!(matches!(case.ops[2], Op::Claim { max: 3, .. }));
        assert_eq!(crashes, [2, 3]);
        store_crash_in(&input, Files::Memory);
        store_crash_in(&input, Files::Disk);
    }
}
