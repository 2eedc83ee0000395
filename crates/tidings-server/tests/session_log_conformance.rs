//! The session log conformance suite against [`MemorySessionLog`], a fresh log per test. (It
//! keeps nothing across a restart and is not shared by nodes: the restart and shared groups of
//! the suite are for the SQLite and Redis logs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tidings_server::MemorySessionLog;

tidings_store_tests::session_log_conformance_tests!(MemorySessionLog::new);
