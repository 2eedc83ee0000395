//! The store conformance suite and the model test against [`JournalStore`], each test (and
//! each model case) on a new directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tidings_store_journal::{JournalConfig, JournalStore};
use tidings_store_tests::WithGuard;

fn temp_store() -> WithGuard<JournalStore, tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let store = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
    WithGuard { store, guard: dir }
}

tidings_store_tests::store_conformance_tests!(temp_store(), model_cases = 64);
