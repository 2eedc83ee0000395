//! Kill -9 while appending: every append the journal confirmed is there after a reopen
//! (`tidings_store_tests::crash`: the child is this binary's ignored test, run by the parent).
//! The checkpoint threshold is small, so that checkpoints (snapshot, new segment, old ones
//! removed) happen while the child runs and the kill can land inside one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tidings_store_journal::{Durability, JournalConfig, JournalStore};

const CHILD_DIR: &str = "TIDINGS_JOURNAL_CRASH_CHILD_DIR";

fn open(path: &std::path::Path) -> JournalStore {
    let config = JournalConfig {
        durability: Durability::Full,
        checkpoint_bytes: 64 << 10,
        ..JournalConfig::default()
    };
    JournalStore::open(path, config).unwrap()
}

/// The child process of `confirmed_appends_survive_sigkill`. Not a test of its own.
#[test]
#[ignore = "the child process of confirmed_appends_survive_sigkill, which runs it; not a test"]
fn crash_child_process_not_a_test() {
    tidings_store_tests::crash::child(CHILD_DIR, open);
}

#[test]
fn confirmed_appends_survive_sigkill() {
    tidings_store_tests::crash::parent(CHILD_DIR, "journal", open);
}
