//! What the journal store adds to the conformance suite: the state survives a reopen (with and
//! without checkpoints in between), a torn tail is cut, and damaged, foreign or newer files and a
//! second process are refused with an error that names the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tidings_core::store::{
    ClaimOptions, NewMessage, Retention, Settle, StartFrom, Store, StoreError, SubscriptionName,
    Topic,
};
use tidings_store_journal::{FORMAT_VERSION, JournalConfig, JournalStore};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn msg(n: u64) -> NewMessage {
    NewMessage {
        attachments: Vec::new(),
        event: "e".to_owned(),
        data: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200)),
        key: Some(format!("k{n}")),
        published_at: 1_000 + n,
    }
}

fn config(checkpoint_bytes: u64) -> JournalConfig {
    JournalConfig {
        checkpoint_bytes,
        ..JournalConfig::default()
    }
}

/// Everything a client can see of a store, as text.
async fn visible(store: &impl Store) -> String {
    let mut out = String::new();
    for topic in store.topics().await.unwrap() {
        let info = store.topic_info(&topic).await.unwrap();
        let history = store.history(&topic, 0, usize::MAX).await.unwrap();
        let dead = store.dead_letters(&topic).await.unwrap();
        out += &format!("{info:?}\n{history:?}\n{dead:?}\n");
    }
    out += &format!("{:?}\n", store.members().await.unwrap());
    out
}

/// A workload touching every kind of record: publishes with keys, subscriptions, members,
/// claims that hand out and dead-letter, acks, requeues, settles alone and with a claim
/// (a dispatcher's turn), retention, a dead-letter requeue.
async fn workload(store: &impl Store, rounds: u64) {
    let t = Topic::new("orders.eu").unwrap();
    let group = SubscriptionName::group("packers").unwrap();
    let me = SubscriptionName::identity("auditor").unwrap();
    store.subscribe(&t, &group, StartFrom::New).await.unwrap();
    store.set_member(&t, &group, "p1", true).await.unwrap();
    store.set_member(&t, &group, "p2", true).await.unwrap();
    store.set_member(&t, &group, "p1", false).await.unwrap();
    for n in 0..rounds {
        store.append(&t, msg(n), 60_000).await.unwrap();
        if n == 3 {
            store.subscribe(&t, &me, StartFrom::Earliest).await.unwrap();
        }
        let opts = ClaimOptions {
            now: 2_000 + n,
            max: 2,
            ack_timeout: 10,
            max_deliveries: 2,
        };
        let claimed = store.claim(&t, &group, opts).await.unwrap();
        if n % 3 == 0 {
            // Settled as one record.
            let batch: Vec<Settle> = claimed
                .claimed
                .iter()
                .map(|c| Settle::Requeue {
                    offset: c.message.offset,
                    not_before: opts.now + 5,
                })
                .chain(
                    claimed
                        .claimed
                        .first()
                        .map(|c| Settle::Ack(c.message.offset)),
                )
                .collect();
            if n % 2 == 0 {
                store.settle(&t, &group, &batch).await.unwrap();
            } else {
                // A dispatcher's turn: the settle and the next claim in one record.
                store
                    .settle_and_claim(&t, &group, &batch, opts)
                    .await
                    .unwrap();
            }
            continue;
        }
        for (i, c) in claimed.claimed.iter().enumerate() {
            if i % 2 == 0 {
                store.ack(&t, &group, c.message.offset).await.unwrap();
            } else {
                store
                    .requeue(&t, &group, c.message.offset, opts.now)
                    .await
                    .unwrap();
            }
        }
        if n % 7 == 0 && n > 3 {
            let opts = ClaimOptions {
                max_deliveries: 0,
                ..opts
            };
            store.claim(&t, &me, opts).await.unwrap();
        }
    }
    let retention = Retention {
        max_messages: rounds / 2,
        ..Retention::default()
    };
    store
        .enforce_retention(&t, retention, 5_000, 0)
        .await
        .unwrap();
    if let Some(dead) = store.dead_letters(&t).await.unwrap().last() {
        assert!(
            store
                .requeue_dead(&t, dead.message.id, 6_000)
                .await
                .unwrap()
        );
    }
    store.release_in_flight(7_000).await.unwrap();
}

fn reopen_gives_the_same_state(checkpoint_bytes: u64, rounds: u64) {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let before = {
            let store = JournalStore::open(dir.path(), config(checkpoint_bytes)).unwrap();
            workload(&store, rounds).await;
            visible(&store).await
        };
        assert!(before.contains("orders.eu"), "{before}");
        let store = JournalStore::open(dir.path(), config(checkpoint_bytes)).unwrap();
        assert_eq!(visible(&store).await, before);
        drop(store);
        // Twice: the first reopen checkpointed what it replayed.
        let store = JournalStore::open(dir.path(), config(checkpoint_bytes)).unwrap();
        assert_eq!(visible(&store).await, before);
    });
}

#[test]
fn a_reopened_journal_has_the_state_it_was_closed_with() {
    reopen_gives_the_same_state(64 << 20, 60);
}

#[test]
fn a_reopened_journal_has_the_state_it_was_closed_with_across_checkpoints() {
    // 4 KiB: dozens of checkpoints during the workload.
    reopen_gives_the_same_state(4 << 10, 400);
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = JournalStore::open(dir.path(), config(4 << 10)).unwrap();
        workload(&store, 400).await;
    });
    // Old segments were removed: only the current one (and the snapshot) remain.
    let segments = wal_files(dir.path());
    assert_eq!(segments.len(), 1, "{segments:?}");
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// A journal whose `n` appended messages are only in its segment (no checkpoint ran), as a
/// crash leaves it.
fn crashed_journal(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
        let t = Topic::new("t").unwrap();
        for i in 0..n {
            store.append(&t, msg(i), 0).await.unwrap();
        }
        drop(store);
    });
    dir
}

fn retained(dir: &Path) -> Result<u64, StoreError> {
    block_on(async {
        let store = JournalStore::open(dir, JournalConfig::default())?;
        let info = store.topic_info(&Topic::new("t").unwrap()).await?;
        Ok(info.map_or(0, |i| i.retained))
    })
}

#[test]
fn a_torn_tail_is_cut_back_to_the_last_whole_record() {
    for cut in [1, 7, 20, 100] {
        let dir = crashed_journal(10);
        let wal = wal_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&wal).unwrap().len();
        // The last record is ~260 bytes: cutting up to 100 bytes tears it and only it.
        fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(len - cut)
            .unwrap();
        assert_eq!(retained(dir.path()).unwrap(), 9, "cut {cut}");
        // Cut for good: the next open sees a clean journal with the same 9.
        assert_eq!(retained(dir.path()).unwrap(), 9, "cut {cut}, reopened");
    }
}

#[test]
fn a_zero_filled_tail_is_cut_too() {
    let dir = crashed_journal(5);
    let wal = wal_files(dir.path()).pop().unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&wal)
        .unwrap()
        .write_all(&[0; 4096])
        .unwrap();
    assert_eq!(retained(dir.path()).unwrap(), 5);
}

/// Where a segment's records end: the segment header is 24 bytes, each record a payload
/// length (u32, never 0), a crc (u32), an lsn (u64) and the payload.
fn records_end(segment: &[u8]) -> usize {
    let mut end = 24;
    while end + 4 <= segment.len() {
        let len = u32::from_le_bytes(segment[end..end + 4].try_into().unwrap());
        if len == 0 {
            break;
        }
        end += 16 + len as usize;
    }
    end
}

/// The journal's files as a crash after `n` confirmed appends leaves them (copied while the
/// writer touches nothing, the store still open), with the copy's last segment: the records,
/// then the zeros the flusher writes ahead of them.
fn journal_as_a_crash_leaves_it(n: u64) -> (tempfile::TempDir, PathBuf, usize) {
    let copy = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        write_ahead_bytes: 64 << 10,
        ..JournalConfig::default()
    };
    block_on(async {
        let store = JournalStore::open(dir.path(), config).unwrap();
        let t = Topic::new("t").unwrap();
        for i in 0..n {
            store.append(&t, msg(i), 0).await.unwrap();
        }
        store.with_files_still(|from| {
            for entry in fs::read_dir(from).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().unwrap() != "LOCK" {
                    fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
                }
            }
        });
    });
    let wal = wal_files(copy.path()).pop().unwrap();
    let bytes = fs::read(&wal).unwrap();
    let end = records_end(&bytes);
    assert!(
        bytes.len() >= end + (32 << 10),
        "no zeros written ahead of the records: {} bytes, records up to {end}",
        bytes.len()
    );
    (copy, wal, end)
}

/// A crash leaves zeros after the records (written ahead: an fsync then need not write the
/// file's size); open reads every record, cuts the zeros, and the next open finds it clean.
#[test]
fn a_crash_leaves_zeros_written_ahead_and_open_keeps_every_record() {
    let (dir, wal, end) = journal_as_a_crash_leaves_it(10);
    assert!(end > 10 * 200, "{end}");
    assert_eq!(retained(dir.path()).unwrap(), 10);
    // That open cut the zeros, checkpointed the segment away and closed cleanly.
    assert!(!wal.exists());
    for w in wal_files(dir.path()) {
        let bytes = fs::read(&w).unwrap();
        assert_eq!(records_end(&bytes), bytes.len(), "{w:?} ends in zeros");
    }
    assert_eq!(retained(dir.path()).unwrap(), 10);
}

/// A crash inside the last write leaves a torn record before the zeros: it is cut like any
/// torn tail, and every record before it is kept.
#[test]
fn a_torn_record_before_the_zeros_is_cut() {
    let (dir, wal, end) = journal_as_a_crash_leaves_it(10);
    let mut bytes = fs::read(&wal).unwrap();
    // Zero the last 100 bytes of the last record: its checksum fails, zeros follow.
    bytes[end - 100..end].fill(0);
    fs::write(&wal, &bytes).unwrap();
    assert_eq!(retained(dir.path()).unwrap(), 9);
}

/// The zeros do not hide damage: a flipped byte with whole records after it still refuses.
#[test]
fn a_flipped_byte_before_whole_records_and_zeros_refuses_to_open() {
    let (dir, wal, end) = journal_as_a_crash_leaves_it(10);
    let mut bytes = fs::read(&wal).unwrap();
    bytes[end - 5 * 260] ^= 0x40;
    fs::write(&wal, &bytes).unwrap();
    let err = retained(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(text) if text.contains("checksum")),
        "{err}"
    );
}

/// A clean close leaves the segment ending at its last record, with no zeros.
#[test]
fn a_clean_close_cuts_the_zeros_written_ahead() {
    let dir = crashed_journal(10);
    let wal = wal_files(dir.path()).pop().unwrap();
    let bytes = fs::read(&wal).unwrap();
    assert!(bytes.len() > 10 * 200, "{} bytes", bytes.len());
    assert_eq!(
        records_end(&bytes),
        bytes.len(),
        "the segment ends in zeros"
    );
}

fn flip_byte(path: &Path, at_from_end: u64) {
    let mut bytes = fs::read(path).unwrap();
    let i = bytes.len() - at_from_end as usize;
    bytes[i] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_before_whole_records_refuses_to_open_and_names_the_file() {
    let dir = crashed_journal(10);
    let wal = wal_files(dir.path()).pop().unwrap();
    // Inside the 5th record from the end: whole records follow it.
    flip_byte(&wal, 5 * 260);
    let before = fs::read(&wal).unwrap();
    let err = retained(dir.path()).unwrap_err();
    let StoreError::Corrupt(text) = &err else {
        panic!("{err}")
    };
    assert!(text.contains(&wal.display().to_string()), "{text}");
    assert!(text.contains("checksum"), "{text}");
    assert_eq!(fs::read(&wal).unwrap(), before, "nothing may be changed");
}

#[test]
fn a_damaged_snapshot_refuses_to_open() {
    let dir = crashed_journal(10);
    retained(dir.path()).unwrap(); // this open checkpoints: a snapshot now holds the 10
    let snapshot = dir.path().join("snapshot");
    flip_byte(&snapshot, 100);
    let err = retained(dir.path()).unwrap_err();
    let StoreError::Corrupt(text) = &err else {
        panic!("{err}")
    };
    assert!(
        text.contains("snapshot") && text.contains("checksum"),
        "{text}"
    );
}

#[test]
fn a_newer_format_or_a_foreign_file_is_refused_and_left_alone() {
    let dir = crashed_journal(3);
    let wal = wal_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&wal).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    fs::write(&wal, &bytes).unwrap();
    let err = retained(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("newer tidings") && err.contains("v99"),
        "{err}"
    );
    assert_eq!(fs::read(&wal).unwrap(), bytes);

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("snapshot"), b"SQLite format 3\0 and more").unwrap();
    let err = retained(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a tidings snapshot file"), "{err}");
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
    let err = JournalStore::open(dir.path(), JournalConfig::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(t) if t.contains("in use by another")),
        "{err}"
    );
}

#[test]
fn an_idle_claim_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
        let t = Topic::new("t").unwrap();
        let me = SubscriptionName::identity("me").unwrap();
        store.subscribe(&t, &me, StartFrom::New).await.unwrap();
        drop(store);
        let wal = wal_files(dir.path()).pop().unwrap();
        let before = fs::metadata(&wal).unwrap().len();
        let store = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
        let wal = wal_files(dir.path()).pop().unwrap();
        let before_idle = fs::metadata(&wal).unwrap().len();
        for now in 0..100 {
            let opts = ClaimOptions {
                now,
                max: 10,
                ack_timeout: 10,
                max_deliveries: 3,
            };
            assert!(store.claim(&t, &me, opts).await.unwrap().claimed.is_empty());
        }
        drop(store);
        assert!(before > 0);
        assert_eq!(fs::metadata(&wal).unwrap().len(), before_idle);
    });
}

/// `max_retained_bytes`: a publish that does not fit is refused and logs nothing; a reopen with
/// a lower bound still replays everything stored; space comes back with retention.
#[test]
fn a_full_store_refuses_publishes_and_logs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let each = tidings_store_memory::footprint(&msg(0).event, &msg(0).data, &[]);
    let bounded = |max| JournalConfig {
        max_retained_bytes: Some(max),
        ..JournalConfig::default()
    };
    let t = Topic::new("t").unwrap();
    block_on(async {
        let store = JournalStore::open(dir.path(), bounded(each * 3)).unwrap();
        for n in 0..3 {
            store.append(&t, msg(n), 60_000).await.unwrap();
        }
        let records = store.stats().records;
        assert_eq!(store.stats().footprint, each * 3);
        let err = store.append(&t, msg(3), 60_000).await.unwrap_err();
        assert!(matches!(err, StoreError::Full(_)), "{err}");
        assert_eq!(
            store.stats().records,
            records,
            "a refused publish is not logged"
        );
        // A repeat of a stored key is answered as the duplicate it is.
        assert!(store.append(&t, msg(1), 60_000).await.unwrap().duplicate);
        drop(store);

        let store = JournalStore::open(dir.path(), bounded(each)).unwrap();
        assert_eq!(
            retained_in(&store, &t).await,
            3,
            "replay ignores the new bound"
        );
        assert_eq!(store.stats().footprint, each * 3);
        assert!(matches!(
            store.append(&t, msg(3), 60_000).await,
            Err(StoreError::Full(_))
        ));
        let keep_none = Retention {
            max_messages: 0,
            ..Retention::default()
        };
        store.enforce_retention(&t, keep_none, 0, 0).await.unwrap();
        assert_eq!(store.stats().footprint, 0);
        store.append(&t, msg(3), 60_000).await.unwrap();
    });
}

async fn retained_in(store: &JournalStore, t: &Topic) -> u64 {
    store.topic_info(t).await.unwrap().unwrap().retained
}

/// A copy of `tests/fixtures/journal-v1`: a journal written by the v1 code (before binary
/// attachments) with `make_v1_fixture.rs.txt` beside it — a v1 snapshot of topic
/// `orders.eu` (id:auditor and group:packers from the earliest, member m1, messages 1–3 with
/// keys k1–k3) and a v1 segment after it (messages 4–5, auditor claims 1–2 and acks 1).
fn v1_fixture() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1");
    let dir = tempfile::tempdir().unwrap();
    for name in ["snapshot", "wal-00000000000000000007.log"] {
        fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn version_of(file: &Path) -> u32 {
    let bytes = fs::read(file).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

#[test]
fn a_v1_journal_opens_and_moves_to_v2_with_attachments() {
    use tidings_core::store::StoredMessage;
    let dir = v1_fixture();
    assert_eq!(version_of(&dir.path().join("snapshot")), 1);
    let t = Topic::new("orders.eu").unwrap();
    let auditor = SubscriptionName::identity("auditor").unwrap();
    let packers = SubscriptionName::group("packers").unwrap();
    let binary = NewMessage {
        event: "file".to_owned(),
        data: r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.to_owned(),
        attachments: vec![bytes::Bytes::from_static(&[0, 255, 1]), bytes::Bytes::new()],
        key: None,
        published_at: 9_000,
    };
    let check_v1_state = |history: &[StoredMessage]| {
        let data: Vec<&str> = history.iter().take(5).map(|m| m.data.as_str()).collect();
        assert_eq!(
            data,
            [
                r#"{"n":1}"#,
                r#"{"n":2}"#,
                r#"{"n":3}"#,
                r#"{"n":4}"#,
                r#"{"n":5}"#
            ]
        );
        assert!(history.iter().take(5).all(|m| m.attachments.is_empty()));
    };
    block_on(async {
        let store = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
        let history = store.history(&t, 1, 100).await.unwrap();
        check_v1_state(&history);
        let info = store.topic_info(&t).await.unwrap().unwrap();
        let auditor_info = info
            .subscriptions
            .iter()
            .find(|s| s.name == auditor)
            .unwrap();
        assert_eq!((auditor_info.cursor, auditor_info.in_flight), (3, 1));
        assert_eq!(
            store.members().await.unwrap(),
            vec![(t.clone(), packers.clone(), "m1".to_owned())]
        );
        // The keys of v1 records still deduplicate.
        let dup = store
            .append(&t, msg_keyed("k4", 9_000), 60_000)
            .await
            .unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.offset, 4);
        let r = store.append(&t, binary.clone(), 0).await.unwrap();
        assert_eq!(r.offset, 6);
    });
    // Replayed records made open checkpoint: the directory is in this build's format now,
    // so an older tidings refuses it as newer rather than misreading it.
    assert_eq!(version_of(&dir.path().join("snapshot")), FORMAT_VERSION);
    for wal in wal_files(dir.path()) {
        assert_eq!(version_of(&wal), FORMAT_VERSION, "{}", wal.display());
    }
    block_on(async {
        let store = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
        let history = store.history(&t, 1, 100).await.unwrap();
        check_v1_state(&history);
        assert_eq!(history[5].data, binary.data);
        assert_eq!(history[5].attachments, binary.attachments);
        // Through a checkpoint (a v2 snapshot) too.
        let claimed = store
            .claim(
                &t,
                &packers,
                ClaimOptions {
                    now: 10_000,
                    max: 10,
                    ack_timeout: 1_000,
                    max_deliveries: 5,
                },
            )
            .await
            .unwrap();
        assert_eq!(claimed.claimed.len(), 6);
        assert_eq!(claimed.claimed[5].message.attachments, binary.attachments);
    });
    let store = JournalStore::open(dir.path(), config(1)).unwrap();
    block_on(async {
        let history = store.history(&t, 6, 1).await.unwrap();
        assert_eq!(history[0].attachments, binary.attachments);
    });
}

/// A v1 directory whose snapshot is all there is (no record after it) opens too, and a
/// snapshot or segment claiming a version past this build's is refused untouched.
#[test]
fn a_v1_snapshot_alone_opens_and_a_newer_file_is_refused() {
    let dir = v1_fixture();
    fs::remove_file(dir.path().join("wal-00000000000000000007.log")).unwrap();
    let t = Topic::new("orders.eu").unwrap();
    block_on(async {
        let store = JournalStore::open(dir.path(), JournalConfig::default()).unwrap();
        assert_eq!(store.history(&t, 1, 100).await.unwrap().len(), 3);
    });
    let snapshot = dir.path().join("snapshot");
    let mut bytes = fs::read(&snapshot).unwrap();
    let newer = FORMAT_VERSION + 1;
    bytes[8..12].copy_from_slice(&newer.to_le_bytes());
    fs::write(&snapshot, &bytes).unwrap();
    let err = retained(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("newer tidings") && err.contains(&format!("v{newer}")),
        "{err}"
    );
    assert_eq!(fs::read(&snapshot).unwrap(), bytes);
}

fn msg_keyed(key: &str, at: u64) -> NewMessage {
    NewMessage {
        key: Some(key.to_owned()),
        published_at: at,
        ..msg(0)
    }
}

/// A checkpoint renames the files it replaces to `*.deleting` and frees them after; a process
/// stopped before that leaves them behind, and the next open removes them without reading
/// them (their bytes here would not even decode).
#[test]
fn open_removes_what_a_checkpoint_left_to_delete() {
    let dir = crashed_journal(5);
    for name in ["snapshot.deleting", "wal-00000000000000000001.log.deleting"] {
        fs::write(dir.path().join(name), vec![0xAB; 3 << 20]).unwrap();
    }
    assert_eq!(retained(dir.path()).unwrap(), 5);
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".deleting"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A checkpoint that cannot write its snapshot (here `snapshot.tmp` is a directory, as a full
/// disk would fail it too) is counted and the journal goes on: every operation is answered,
/// no segment is removed, and a reopen once the obstacle is gone has the same state.
#[test]
fn a_failed_checkpoint_keeps_the_journal_serving_and_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("snapshot.tmp")).unwrap();
    block_on(async {
        let before = {
            let store = JournalStore::open(dir.path(), config(4 << 10)).unwrap();
            workload(&store, 200).await;
            // The flusher takes a checkpoint's answer at its next write after the thread
            // ended: write until it has (bounded), without waiting on a clock.
            let t = Topic::new("orders.eu").unwrap();
            for n in 0..10_000 {
                if store.stats().checkpoint_failures > 0 {
                    break;
                }
                store.append(&t, msg(1_000_000 + n), 0).await.unwrap();
            }
            assert!(store.stats().checkpoint_failures > 0, "{:?}", store.stats());
            assert!(
                store.metrics().errors > 0,
                "in /metrics as tidings_store_errors_total"
            );
            assert_eq!(store.stats().checkpoints, 0);
            visible(&store).await
        };
        assert!(wal_files(dir.path()).len() > 1, "the segments are kept");
        fs::remove_dir(dir.path().join("snapshot.tmp")).unwrap();
        let store = JournalStore::open(dir.path(), config(4 << 10)).unwrap();
        assert_eq!(visible(&store).await, before);
    });
}

fn turn_opts(now: u64, max: usize) -> ClaimOptions {
    ClaimOptions {
        now,
        max,
        ack_timeout: 1_000,
        max_deliveries: 5,
    }
}

/// The queue state of `auditor` on `orders.eu` that the ids of messages do not change: the
/// topic's counts and every subscription's, then (offset, attempt) of a claim of everything
/// due at 10,000 — which also shows each entry's due time and attempt count.
async fn queue_state(store: &JournalStore) -> String {
    let t = Topic::new("orders.eu").unwrap();
    let auditor = SubscriptionName::identity("auditor").unwrap();
    let info = store.topic_info(&t).await.unwrap().unwrap();
    let claimed = store
        .claim(&t, &auditor, turn_opts(10_000, 100))
        .await
        .unwrap();
    let claimed: Vec<(u64, u32)> = claimed
        .claimed
        .iter()
        .map(|c| (c.message.offset, c.attempt))
        .collect();
    format!("{info:?}\n{claimed:?}")
}

/// The turns of `tests/fixtures/journal-v2-separate/make_fixture.rs.txt`, on `store`.
async fn fixture_turns(store: &JournalStore) {
    let t = Topic::new("orders.eu").unwrap();
    let auditor = SubscriptionName::identity("auditor").unwrap();
    store
        .subscribe(&t, &auditor, StartFrom::Earliest)
        .await
        .unwrap();
    for n in 1..=6 {
        let m = NewMessage {
            event: "order".to_owned(),
            data: format!("{{\"n\":{n}}}"),
            attachments: Vec::new(),
            key: None,
            published_at: 1_000 + n,
        };
        store.append(&t, m, 60_000).await.unwrap();
    }
    let (_, c) = store
        .settle_and_claim(&t, &auditor, &[], turn_opts(2_000, 3))
        .await
        .unwrap();
    assert_eq!(c.claimed.len(), 3);
    let batch = [
        Settle::Ack(1),
        Settle::Requeue {
            offset: 2,
            not_before: 2_500,
        },
    ];
    let (flags, c) = store
        .settle_and_claim(&t, &auditor, &batch, turn_opts(2_100, 2))
        .await
        .unwrap();
    assert_eq!(flags, [true, true]);
    let offsets: Vec<u64> = c.claimed.iter().map(|c| c.message.offset).collect();
    assert_eq!(offsets, [4, 5]);
}

/// A dispatcher's turn (`settle_and_claim`) is one record — of the kind of what changed, none
/// when nothing did — and the journal as a kill -9 leaves it (every record written to the
/// OS, copied while the writer is still) replays to the state the live store has.
#[test]
fn a_turn_is_one_record_and_replays_after_a_crash_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let t = Topic::new("orders.eu").unwrap();
    let auditor = SubscriptionName::identity("auditor").unwrap();
    let live = block_on(async {
        let store = JournalStore::open(dir.path(), config(1 << 30)).unwrap();
        fixture_turns(&store).await;
        // subscribe + 6 appends + a claim alone + the turn that settled and claimed.
        assert_eq!(store.lsn(), 9);
        // Nothing to settle that is pending, nothing to claim: no record.
        let (flags, c) = store
            .settle_and_claim(&t, &auditor, &[Settle::Ack(99)], turn_opts(2_200, 0))
            .await
            .unwrap();
        assert_eq!((flags, c.claimed.len()), (vec![false], 0));
        assert_eq!(store.lsn(), 9);
        // A settle with nothing to claim: one record.
        let (flags, _) = store
            .settle_and_claim(&t, &auditor, &[Settle::Ack(3)], turn_opts(2_200, 0))
            .await
            .unwrap();
        assert_eq!(flags, [true]);
        assert_eq!(store.lsn(), 10);
        // An unknown subscription fails and logs nothing.
        let nobody = SubscriptionName::identity("nobody").unwrap();
        assert!(matches!(
            store
                .settle_and_claim(&t, &nobody, &[Settle::Ack(1)], turn_opts(2_200, 1))
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.lsn(), 10);
        // One more turn that settles and claims, then the crash.
        let (_, c) = store
            .settle_and_claim(&t, &auditor, &[Settle::Ack(4)], turn_opts(2_600, 5))
            .await
            .unwrap();
        let offsets: Vec<u64> = c.claimed.iter().map(|c| c.message.offset).collect();
        assert_eq!(offsets, [2, 6]);
        assert_eq!(store.lsn(), 11);
        store.wait_until_written().unwrap();
        store.with_files_still(|d| {
            for entry in fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().is_some_and(|n| n != "LOCK") {
                    fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
                }
            }
        });
        let state = queue_state(&store).await;
        drop(store);
        state
    });
    assert!(live.contains("cursor: 7"), "{live}");
    block_on(async {
        let store = JournalStore::open(copy.path(), config(1 << 30)).unwrap();
        assert_eq!(queue_state(&store).await, live);
    });
}

/// A journal written before a turn was one record (`tests/fixtures/journal-v2-separate`: a
/// turn as a SETTLE record then a CLAIM record, with `make_fixture.rs.txt` beside it) opens,
/// to the state the same turns make now.
#[test]
fn a_journal_with_a_turn_as_two_records_opens_to_the_same_state() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v2-separate");
    let old = tempfile::tempdir().unwrap();
    fs::copy(
        src.join("wal-00000000000000000001.log"),
        old.path().join("wal-00000000000000000001.log"),
    )
    .unwrap();
    let now = tempfile::tempdir().unwrap();
    block_on(async {
        let store = JournalStore::open(now.path(), config(1 << 30)).unwrap();
        fixture_turns(&store).await;
        let expected = queue_state(&store).await;
        let store = JournalStore::open(old.path(), config(1 << 30)).unwrap();
        // The two records of the second turn are there (10 records, where now it is 9).
        assert_eq!(store.lsn(), 10);
        assert_eq!(queue_state(&store).await, expected);
        let history = store
            .history(&Topic::new("orders.eu").unwrap(), 1, 10)
            .await
            .unwrap();
        assert_eq!(history.len(), 6);
        assert_eq!(history[5].data, r#"{"n":6}"#);
    });
    // The fixture is v2; open checkpointed what it replayed (its segment is gone), so the
    // directory is v3 now and a v2 build (which does not know a turn as one record) refuses
    // it as newer.
    assert_eq!(version_of(&src.join("wal-00000000000000000001.log")), 2);
    assert_eq!(version_of(&old.path().join("snapshot")), FORMAT_VERSION);
    for wal in wal_files(old.path()) {
        assert_eq!(version_of(&wal), FORMAT_VERSION, "{}", wal.display());
    }
}
