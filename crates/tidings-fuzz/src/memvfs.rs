//! An in-memory SQLite VFS for the `store_crash` target: files are byte vectors in this
//! process, the WAL index ("shared memory") is heap memory shared by the connections to one
//! database, and locks are tracked between those connections as the unix VFS tracks them
//! between the connections of one process.
//!
//! Why: on a RAM disk the target still spent ~45% of its time in the kernel (file copies,
//! `fcntl` locks, `pread`/`pwrite`, creating and deleting files), so the long run of 10 million
//! executions was out of reach. Every write SQLite makes lands in the vector at once, exactly
//! as a `pwrite` lands in the page cache: a copy of the vectors at a crash point is what
//! `kill -9` leaves on disk, as the file copies were. `xSync` does nothing, which is what
//! `Durability::Os` (the target's setting) relies on anyway: a process crash loses nothing
//! the OS has.
//!
//! What this VFS does not model is the unix VFS itself (its locking and mmap'd `-shm` file);
//! those are SQLite's, exercised by the store's own tests and the `kill -9` test
//! (`crates/tidings/tests/crash.rs`), which run on the real file system.
//!
//! The unsafe code is the C interface: SQLite calls these functions with pointers it owns
//! and guarantees valid for the call (and `sqlite3_file` blocks of `szOsFile` bytes that it
//! allocates and we initialise in `x_open`).

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rusqlite::ffi;

/// The VFS's name, for `SqliteStore::open_for_fuzzing`.
pub const NAME: &str = "tidings-memvfs";

/// The lock levels of `xLock` (SQLITE_LOCK_*).
const NONE: c_int = 0;
const SHARED: c_int = 1;
const RESERVED: c_int = 2;
const PENDING: c_int = 3;
const EXCLUSIVE: c_int = 4;

/// One file: its bytes, the database locks of its handles, and (for a database) its WAL index.
#[derive(Default)]
struct MemFile {
    data: Mutex<Vec<u8>>,
    locks: Mutex<FileLocks>,
    shm: Mutex<Shm>,
}

#[derive(Default)]
struct FileLocks {
    /// Handles holding SHARED or more.
    shared: u32,
    reserved: Option<u64>,
    pending: Option<u64>,
    exclusive: Option<u64>,
}

/// The WAL index: its regions (boxed, so the pointers SQLite keeps stay valid), the handles
/// that mapped it, and the eight shm locks (positive: shared holders; -1: exclusive).
#[derive(Default)]
struct Shm {
    regions: Vec<Box<[u8]>>,
    mapped: u32,
    slots: [i32; ffi::SQLITE_SHM_NLOCK as usize],
}

/// The named files. A file without a name (a temporary one) is in no map.
fn files() -> &'static Mutex<HashMap<String, Arc<MemFile>>> {
    static FILES: OnceLock<Mutex<HashMap<String, Arc<MemFile>>>> = OnceLock::new();
    FILES.get_or_init(Default::default)
}

/// A file's bytes, if it exists.
pub fn read(name: &str) -> Option<Vec<u8>> {
    let file = files().lock().get(name).cloned()?;
    let data = file.data.lock().clone();
    Some(data)
}

/// Creates or replaces a file.
pub fn write(name: &str, bytes: &[u8]) {
    let file = Arc::new(MemFile::default());
    *file.data.lock() = bytes.to_vec();
    files().lock().insert(name.to_owned(), file);
}

/// Removes a file (handles still open keep their bytes until they close).
pub fn remove(name: &str) {
    files().lock().remove(name);
}

/// Removes every file whose name starts with `prefix`.
pub fn remove_all(prefix: &str) {
    files().lock().retain(|name, _| !name.starts_with(prefix));
}

/// Our `sqlite3_file`: SQLite allocates `szOsFile` bytes and `x_open` fills them.
#[repr(C)]
struct Handle {
    base: ffi::sqlite3_file,
    file: *const MemFile,
    /// A number that no other handle has, for the lock tables.
    id: u64,
    lock: c_int,
    /// The shm slots this handle holds shared / exclusive (bit i = slot i).
    shm_shared: u16,
    shm_exclusive: u16,
    shm_mapped: bool,
    /// Set for SQLITE_OPEN_DELETEONCLOSE: the name to remove at close.
    delete_on_close: *mut c_char,
}

impl Handle {
    /// # Safety
    /// `p` is a handle `x_open` initialised and `x_close` has not run.
    unsafe fn from<'a>(p: *mut ffi::sqlite3_file) -> &'a mut Handle {
        // SAFETY: the caller's contract above; `Handle` starts with the `sqlite3_file`.
        unsafe { &mut *(p.cast::<Handle>()) }
    }
}

/// The file of a handle, detached from the handle's borrow (so the handle's lock fields can
/// change while the file's mutexes are held).
///
/// # Safety
/// `file` is a handle's `Arc::into_raw`, released only in `x_close`, after the last use.
unsafe fn mem_file<'a>(file: *const MemFile) -> &'a MemFile {
    // SAFETY: the caller's contract above.
    unsafe { &*file }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Registers the VFS once (not as the default); returns its name.
///
/// # Panics
///
/// If SQLite refuses the registration.
pub fn register() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: the default VFS lives as long as the process; ours is leaked on purpose.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            assert!(!default.is_null(), "SQLite has no default VFS");
            let name = CString::new(NAME).unwrap_or_default();
            let vfs = Box::new(ffi::sqlite3_vfs {
                iVersion: 2,
                szOsFile: std::mem::size_of::<Handle>() as c_int,
                mxPathname: 512,
                pNext: std::ptr::null_mut(),
                zName: name.into_raw(),
                pAppData: default.cast(),
                xOpen: Some(x_open),
                xDelete: Some(x_delete),
                xAccess: Some(x_access),
                xFullPathname: Some(x_full_pathname),
                xDlOpen: (*default).xDlOpen,
                xDlError: (*default).xDlError,
                xDlSym: (*default).xDlSym,
                xDlClose: (*default).xDlClose,
                xRandomness: Some(x_randomness),
                xSleep: Some(x_sleep),
                xCurrentTime: Some(x_current_time),
                xGetLastError: Some(x_get_last_error),
                xCurrentTimeInt64: Some(x_current_time_int64),
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            });
            let rc = ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0);
            assert_eq!(rc, ffi::SQLITE_OK, "cannot register the in-memory VFS");
        }
    });
    NAME
}

/// The default VFS, kept in our `pAppData`, for what is not about files.
unsafe fn default_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `vfs` is the `sqlite3_vfs` `register` leaked.
    unsafe { (*vfs).pAppData.cast() }
}

unsafe fn name_of(z: *const c_char) -> Option<String> {
    if z.is_null() {
        None
    } else {
        // SAFETY: SQLite's names are NUL-terminated.
        Some(unsafe { CStr::from_ptr(z) }.to_string_lossy().into_owned())
    }
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    p_file: *mut ffi::sqlite3_file,
    flags: c_int,
    p_out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes `szOsFile` writable bytes at `p_file`, a NUL-terminated name or null,
    // and a valid `p_out_flags` or null.
    let name = unsafe { name_of(z_name) };
    let file = match &name {
        Some(name) => {
            let mut files = files().lock();
            match files.get(name) {
                Some(file) => file.clone(),
                None if flags & ffi::SQLITE_OPEN_CREATE != 0 => {
                    let file = Arc::new(MemFile::default());
                    files.insert(name.clone(), file.clone());
                    file
                }
                None => return ffi::SQLITE_CANTOPEN,
            }
        }
        None => Arc::new(MemFile::default()),
    };
    let delete_on_close = match (&name, flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0) {
        (Some(name), true) => CString::new(name.as_str())
            .map(CString::into_raw)
            .unwrap_or(std::ptr::null_mut()),
        _ => std::ptr::null_mut(),
    };
    let handle = Handle {
        base: ffi::sqlite3_file {
            pMethods: &IO_METHODS,
        },
        file: Arc::into_raw(file),
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        lock: NONE,
        shm_shared: 0,
        shm_exclusive: 0,
        shm_mapped: false,
        delete_on_close,
    };
    // SAFETY: SQLite gives `szOsFile` bytes, the size of a `Handle`.
    unsafe { p_file.cast::<Handle>().write(handle) };
    if !p_out_flags.is_null() {
        unsafe { *p_out_flags = flags };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    // SAFETY: `z_name` is a NUL-terminated name or null.
    if let Some(name) = unsafe { name_of(z_name) } {
        remove(&name);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    flags: c_int,
    p_res_out: *mut c_int,
) -> c_int {
    // SAFETY: `z_name` is a NUL-terminated name and `p_res_out` a valid out-pointer.
    let exists = unsafe { name_of(z_name) }
        .and_then(|name| files().lock().get(&name).cloned())
        .map(|file| {
            // As the unix VFS: an empty file does not "exist" (SQLITE_ACCESS_EXISTS).
            flags != ffi::SQLITE_ACCESS_EXISTS || !file.data.lock().is_empty()
        })
        .unwrap_or(false);
    unsafe { *p_res_out = c_int::from(exists) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    n_out: c_int,
    z_out: *mut c_char,
) -> c_int {
    // SAFETY: `z_name` is NUL-terminated and `z_out` has room for `n_out` bytes (checked).
    let name = unsafe { CStr::from_ptr(z_name) }.to_bytes_with_nul();
    if name.len() > usize::try_from(n_out).unwrap_or(0) {
        return ffi::SQLITE_CANTOPEN;
    }
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr().cast(), z_out, name.len()) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    // SAFETY: `vfs` is ours (its `pAppData` the default VFS, which lives as long as the process);
    // the arguments are passed on as SQLite gave them.
    unsafe {
        let d = default_vfs(vfs);
        match (*d).xRandomness {
            Some(f) => f(d, n, out),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    // SAFETY: as `x_randomness`.
    unsafe {
        let d = default_vfs(vfs);
        match (*d).xSleep {
            Some(f) => f(d, micros),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    // SAFETY: as `x_randomness`.
    unsafe {
        let d = default_vfs(vfs);
        match (*d).xCurrentTime {
            Some(f) => f(d, out),
            None => ffi::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn x_current_time_int64(
    vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: as `x_randomness`.
    unsafe {
        let d = default_vfs(vfs);
        match (*d).xCurrentTimeInt64 {
            Some(f) => f(d, out),
            None => ffi::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _n: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}

unsafe extern "C" fn x_close(p: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `p` is a handle `x_open` initialised; after this call SQLite never uses it again.
    unsafe {
        x_unlock(p, NONE);
        x_shm_unmap(p, 0);
        let h = Handle::from(p);
        drop(Arc::from_raw(h.file));
        h.file = std::ptr::null();
        if !h.delete_on_close.is_null() {
            let name = CString::from_raw(h.delete_on_close);
            h.delete_on_close = std::ptr::null_mut();
            remove(&name.to_string_lossy());
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    p: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `p` is an open handle and `buf` has `amt` writable bytes.
    let h = unsafe { Handle::from(p) };
    let (Ok(amt), Ok(offset)) = (usize::try_from(amt), usize::try_from(offset)) else {
        return ffi::SQLITE_IOERR_READ;
    };
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), amt) };
    let data = unsafe { mem_file(h.file) }.data.lock();
    let available = data.len().saturating_sub(offset).min(amt);
    if available > 0 {
        out[..available].copy_from_slice(&data[offset..offset + available]);
    }
    if available < amt {
        // SQLite requires the rest zeroed on a short read.
        out[available..].fill(0);
        return ffi::SQLITE_IOERR_SHORT_READ;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_write(
    p: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `p` is an open handle and `buf` has `amt` readable bytes.
    let h = unsafe { Handle::from(p) };
    let (Ok(amt), Ok(offset)) = (usize::try_from(amt), usize::try_from(offset)) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), amt) };
    let mut data = unsafe { mem_file(h.file) }.data.lock();
    if data.len() < offset + amt {
        data.resize(offset + amt, 0);
    }
    data[offset..offset + amt].copy_from_slice(bytes);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_truncate(p: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: `p` is an open handle.
    let h = unsafe { Handle::from(p) };
    let Ok(size) = usize::try_from(size) else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    unsafe { mem_file(h.file) }.data.lock().truncate(size);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_sync(_p: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(p: *mut ffi::sqlite3_file, out: *mut ffi::sqlite3_int64) -> c_int {
    // SAFETY: `p` is an open handle and `out` a valid out-pointer.
    let h = unsafe { Handle::from(p) };
    let len = unsafe { mem_file(h.file) }.data.lock().len();
    unsafe { *out = ffi::sqlite3_int64::try_from(len).unwrap_or(ffi::sqlite3_int64::MAX) };
    ffi::SQLITE_OK
}

/// Raises this handle's lock as `unixLock` does between the connections of one process.
unsafe extern "C" fn x_lock(p: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: `p` is an open handle.
    let h = unsafe { Handle::from(p) };
    if h.lock >= level {
        return ffi::SQLITE_OK;
    }
    let id = h.id;
    let file = unsafe { mem_file(h.file) };
    let mut locks = file.locks.lock();
    let other = |holder: Option<u64>| holder.is_some_and(|x| x != id);
    match level {
        SHARED => {
            if other(locks.pending) || other(locks.exclusive) {
                return ffi::SQLITE_BUSY;
            }
            locks.shared += 1;
            h.lock = SHARED;
        }
        RESERVED => {
            if other(locks.reserved) || other(locks.pending) || other(locks.exclusive) {
                return ffi::SQLITE_BUSY;
            }
            locks.reserved = Some(id);
            h.lock = RESERVED;
        }
        EXCLUSIVE => {
            if other(locks.pending) || other(locks.exclusive) {
                return ffi::SQLITE_BUSY;
            }
            // PENDING first: no new SHARED lock while the others drain.
            locks.pending = Some(id);
            h.lock = PENDING;
            if locks.shared > 1 {
                return ffi::SQLITE_BUSY;
            }
            locks.exclusive = Some(id);
            h.lock = EXCLUSIVE;
        }
        _ => return ffi::SQLITE_MISUSE,
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_unlock(p: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: `p` is an open handle.
    let h = unsafe { Handle::from(p) };
    if h.lock <= level {
        return ffi::SQLITE_OK;
    }
    let id = h.id;
    let file = unsafe { mem_file(h.file) };
    let mut locks = file.locks.lock();
    let mine = |holder: &mut Option<u64>| {
        if *holder == Some(id) {
            *holder = None;
        }
    };
    mine(&mut locks.exclusive);
    mine(&mut locks.pending);
    mine(&mut locks.reserved);
    if level == NONE && h.lock >= SHARED {
        locks.shared = locks.shared.saturating_sub(1);
    }
    h.lock = level;
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(p: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: `p` is an open handle and `out` a valid out-pointer.
    let h = unsafe { Handle::from(p) };
    let locks = unsafe { mem_file(h.file) }.locks.lock();
    let reserved = locks.reserved.is_some() || locks.pending.is_some() || locks.exclusive.is_some();
    unsafe { *out = c_int::from(reserved) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _p: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_p: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_p: *mut ffi::sqlite3_file) -> c_int {
    // As the unix VFS by default.
    ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

unsafe extern "C" fn x_shm_map(
    p: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    // SAFETY: `p` is an open handle and `pp` a valid out-pointer; the regions are boxed, so the
    // pointers handed out stay valid until the last handle unmaps.
    let h = unsafe { Handle::from(p) };
    let (Ok(region), Ok(size)) = (usize::try_from(region), usize::try_from(size)) else {
        return ffi::SQLITE_IOERR_SHMMAP;
    };
    let file = unsafe { mem_file(h.file) };
    let mut shm = file.shm.lock();
    if !h.shm_mapped {
        h.shm_mapped = true;
        shm.mapped += 1;
    }
    if shm.regions.len() <= region {
        if extend == 0 {
            unsafe { *pp = std::ptr::null_mut() };
            return ffi::SQLITE_OK;
        }
        while shm.regions.len() <= region {
            shm.regions.push(vec![0u8; size].into_boxed_slice());
        }
    }
    unsafe { *pp = shm.regions[region].as_mut_ptr().cast() };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shm_lock(
    p: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: `p` is an open handle.
    let h = unsafe { Handle::from(p) };
    let (Ok(offset), Ok(n)) = (usize::try_from(offset), usize::try_from(n)) else {
        return ffi::SQLITE_MISUSE;
    };
    if offset + n > ffi::SQLITE_SHM_NLOCK as usize {
        return ffi::SQLITE_MISUSE;
    }
    let mask: u16 = (((1u32 << n) - 1) << offset) as u16;
    let file = unsafe { mem_file(h.file) };
    let mut shm = file.shm.lock();
    if flags & ffi::SQLITE_SHM_UNLOCK != 0 {
        release_shm_slots(h, &mut shm, mask);
    } else if flags & ffi::SQLITE_SHM_SHARED != 0 {
        // SQLite takes shared locks one slot at a time.
        if h.shm_shared & mask == 0 {
            if shm.slots[offset] < 0 {
                return ffi::SQLITE_BUSY;
            }
            shm.slots[offset] += 1;
            h.shm_shared |= mask;
        }
    } else {
        // Exclusive: no other handle may hold any of the slots (this one's own shared lock
        // on a slot is upgraded).
        for slot in offset..offset + n {
            let bit = 1u16 << slot;
            let others = match shm.slots[slot] {
                -1 => i32::from(h.shm_exclusive & bit == 0),
                shared => shared - i32::from(h.shm_shared & bit != 0),
            };
            if others != 0 {
                return ffi::SQLITE_BUSY;
            }
        }
        for slot in offset..offset + n {
            shm.slots[slot] = -1;
        }
        h.shm_shared &= !mask;
        h.shm_exclusive |= mask;
    }
    ffi::SQLITE_OK
}

/// Releases the shm locks `h` holds among the slots of `mask`.
fn release_shm_slots(h: &mut Handle, shm: &mut Shm, mask: u16) {
    for (slot, count) in shm.slots.iter_mut().enumerate() {
        let bit = 1u16 << slot;
        if mask & bit == 0 {
            continue;
        }
        if h.shm_exclusive & bit != 0 {
            *count = 0;
        } else if h.shm_shared & bit != 0 {
            *count -= 1;
        }
    }
    h.shm_exclusive &= !mask;
    h.shm_shared &= !mask;
}

unsafe extern "C" fn x_shm_barrier(_p: *mut ffi::sqlite3_file) {
    std::sync::atomic::fence(Ordering::SeqCst);
}

unsafe extern "C" fn x_shm_unmap(p: *mut ffi::sqlite3_file, _delete: c_int) -> c_int {
    // SAFETY: `p` is an open handle.
    let h = unsafe { Handle::from(p) };
    if !h.shm_mapped {
        return ffi::SQLITE_OK;
    }
    let file = unsafe { mem_file(h.file) };
    let mut shm = file.shm.lock();
    release_shm_slots(h, &mut shm, u16::MAX);
    h.shm_mapped = false;
    shm.mapped -= 1;
    if shm.mapped == 0 {
        // The last connection is gone: the next one rebuilds the index from the WAL, as
        // with a `-shm` file that the first connection of a process truncates.
        shm.regions.clear();
    }
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn open(name: &str) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        Connection::open_with_flags_and_vfs(name, flags, register()).unwrap()
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn two_connections_share_a_wal_database_with_snapshots_and_a_crash_copy_recovers() {
        let name = "/memvfs-test/a.db";
        let writer = open(name);
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        writer
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let reader = open(name);
        assert_eq!(count(&reader), 1);

        // A read transaction keeps its snapshot while the writer commits.
        reader.execute_batch("BEGIN").unwrap();
        assert_eq!(count(&reader), 1);
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert_eq!(count(&reader), 1);
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&reader), 2);

        // Two writers: the second waits for the first (busy, no wait set).
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let other = open(name);
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        assert!(other.execute_batch("BEGIN IMMEDIATE").is_err());
        writer.execute_batch("COMMIT").unwrap();

        // The files as they are now, under new names: everything committed is there, found
        // in the WAL (nothing was checkpointed into the database file yet).
        write("/memvfs-test/b.db", &read(name).unwrap());
        write(
            "/memvfs-test/b.db-wal",
            &read("/memvfs-test/a.db-wal").unwrap(),
        );
        assert_eq!(count(&open("/memvfs-test/b.db")), 2);
        // Without the WAL the commits are gone: the copy is what decides.
        write("/memvfs-test/c.db", &read(name).unwrap());
        let without_wal = open("/memvfs-test/c.db");
        assert!(
            without_wal
                .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                .is_err()
        );
        drop((writer, reader, other, without_wal));
        remove_all("/memvfs-test/");
        assert!(read(name).is_none());
    }
}
