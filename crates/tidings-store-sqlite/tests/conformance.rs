//! The store conformance suite and the model test against [`SqliteStore`], each test (and
//! each model case) on a new file in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tidings_store_sqlite::{Durability, SqliteConfig, SqliteStore};
use tidings_store_tests::WithGuard;

fn temp_store() -> WithGuard<SqliteStore, tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        durability: Durability::Full,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&dir.path().join("tidings.db"), config).unwrap();
    WithGuard { store, guard: dir }
}

tidings_store_tests::store_conformance_tests!(temp_store(), model_cases = 64);
