//! The on-disk schema and its version check.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tidings_core::store::StoreError;
use tracing::info;

use crate::ops::db;

/// The schema version this build writes. A file of version 1 is migrated at open; a newer
/// one is refused.
pub const SCHEMA_VERSION: i64 = 2;

/// Schema 1, which [`MIGRATE_TO_2`] brings to the current version. Invariants the code relies on:
/// - a topic retains exactly the offsets `first_seq..=head` (retention trims from the front), so
///   `retained = head + 1 - first_seq`; `retained_bytes` is the sum of their `size`;
/// - every `pending` row is below its subscription's `cursor` and its message is retained;
/// - `due_at` is the ack deadline of an in-flight entry and the `not_before` of a waiting one;
/// - dead letters hold a copy of their message, so they outlive its retention.
///
/// Columns named `seq` hold offsets (`offset` is an SQL keyword).
const SCHEMA: &str = "
CREATE TABLE tidings_meta (
    key   TEXT PRIMARY KEY,
    value ANY NOT NULL
) STRICT;

CREATE TABLE topics (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    head           INTEGER NOT NULL,
    first_seq      INTEGER NOT NULL,
    retained_bytes INTEGER NOT NULL
) STRICT;

CREATE TABLE messages (
    topic        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    id           BLOB NOT NULL,
    event        TEXT NOT NULL,
    data         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    published_at INTEGER NOT NULL,
    PRIMARY KEY (topic, seq)
) STRICT;

CREATE TABLE idempotency (
    topic INTEGER NOT NULL,
    key   TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    id    BLOB NOT NULL,
    at    INTEGER NOT NULL,
    PRIMARY KEY (topic, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_at ON idempotency (topic, at);

CREATE TABLE subscriptions (
    id     INTEGER PRIMARY KEY,
    topic  INTEGER NOT NULL,
    name   TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    gaps   INTEGER NOT NULL,
    UNIQUE (topic, name)
) STRICT;

CREATE TABLE pending (
    sub       INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    due_at    INTEGER NOT NULL,
    PRIMARY KEY (sub, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX pending_due ON pending (sub, due_at);

CREATE TABLE members (
    sub      INTEGER NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (sub, identity)
) STRICT, WITHOUT ROWID;

CREATE TABLE dead_letters (
    sub          INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    id           BLOB NOT NULL,
    event        TEXT NOT NULL,
    data         TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    dead_at      INTEGER NOT NULL,
    PRIMARY KEY (sub, seq)
) STRICT;
CREATE INDEX dead_letters_id ON dead_letters (id);
";

/// Schema 1 → 2 (2026-12-06): durable messages keep their binary attachments. The column
/// is NULL for a message without binary (every row of a version-1 file), else each
/// attachment as a little-endian u32 length and its bytes (`ops.rs`); `size` counts them.
/// Adding a nullable column rewrites no row, so the migration is instant at any size.
const MIGRATE_TO_2: &str = "
ALTER TABLE messages ADD COLUMN attachments BLOB;
ALTER TABLE dead_letters ADD COLUMN attachments BLOB;
UPDATE tidings_meta SET value = 2 WHERE key = 'schema_version';
";

/// Creates the schema in an empty database, or checks the version of an existing one.
pub(crate) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let has_meta: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tidings_meta')",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if has_meta {
        let version: Option<i64> = tx
            .query_row(
                "SELECT value FROM tidings_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        return match version {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(1) => {
                tx.execute_batch(MIGRATE_TO_2).map_err(db)?;
                tx.commit().map_err(db)?;
                info!(path = %path.display(), from = 1, to = SCHEMA_VERSION, "migrated store schema");
                Ok(())
            }
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::Corrupt(format!(
                "{}: schema version {v} is newer than this build of tidings supports \
                 ({SCHEMA_VERSION}); run a newer tidings",
                path.display()
            ))),
            Some(v) => Err(StoreError::Corrupt(format!(
                "{}: unknown schema version {v} (this build supports {SCHEMA_VERSION})",
                path.display()
            ))),
            None => Err(StoreError::Corrupt(format!(
                "{}: tidings_meta has no schema_version",
                path.display()
            ))),
        };
    }
    let tables: i64 = tx
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if tables > 0 {
        return Err(StoreError::Corrupt(format!(
            "{}: not a tidings database (it has tables but no tidings_meta)",
            path.display()
        )));
    }
    tx.execute_batch(SCHEMA).map_err(db)?;
    tx.execute(
        "INSERT INTO tidings_meta (key, value) VALUES ('schema_version', 1)",
        [],
    )
    .map_err(db)?;
    tx.execute_batch(MIGRATE_TO_2).map_err(db)?;
    tx.commit().map_err(db)?;
    info!(path = %path.display(), version = SCHEMA_VERSION, "created store schema");
    Ok(())
}
