//! Kill -9 while appending: every append the store confirmed is in the file afterwards
//! (`tidings_store_tests::crash`: the child is this binary's ignored test, run by the parent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tidings_store_sqlite::{Durability, SqliteConfig, SqliteStore};

const CHILD_DB: &str = "TIDINGS_CRASH_CHILD_DB";

fn open(path: &std::path::Path) -> SqliteStore {
    let config = SqliteConfig {
        durability: Durability::Full,
        ..SqliteConfig::default()
    };
    SqliteStore::open(path, config).unwrap()
}

/// The child process of `confirmed_appends_survive_sigkill`. Not a test of its own.
#[test]
#[ignore = "the child process of confirmed_appends_survive_sigkill, which runs it; not a test"]
fn crash_child_process_not_a_test() {
    tidings_store_tests::crash::child(CHILD_DB, open);
}

#[test]
fn confirmed_appends_survive_sigkill() {
    tidings_store_tests::crash::parent(CHILD_DB, "tidings.db", open);
}
