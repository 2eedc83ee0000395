//! The session log conformance suite against [`SqliteSessionLog`]: the behaviours of every log
//! and those of a log that outlives its process, each test on a new file in a temporary
//! directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::PathBuf;

use tidings_store_sqlite::SqliteSessionLog;
use tidings_store_tests::session_log::LogBackend;

/// A recovery file in a temporary directory, deleted with it.
struct TempFile {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn temp_file() -> TempFile {
    let dir = tempfile::tempdir().unwrap();
    TempFile {
        path: dir.path().join("recovery.sqlite3"),
        _dir: dir,
    }
}

impl LogBackend for TempFile {
    type Log = SqliteSessionLog;

    fn open(&self) -> impl Future<Output = SqliteSessionLog> {
        std::future::ready(SqliteSessionLog::open(&self.path).unwrap())
    }
}

tidings_store_tests::session_log_conformance_tests!(temp_file());
tidings_store_tests::session_log_restart_tests!(temp_file());
