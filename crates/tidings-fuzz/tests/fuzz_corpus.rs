//! Replays the checked-in corpus of every fuzz target through its check: the fuzzers' smoke
//! run, on stable, as part of `cargo test`. A failing input is named in the panic message.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = corpus(target);
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: {} fails (see the panic above)", file.display());
        }
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn decode_packet_corpus() {
    replay("decode_packet", tidings_fuzz::decode_packet);
}

#[test]
fn decode_msgpack_corpus() {
    replay("decode_msgpack", tidings_fuzz::decode_msgpack);
}

#[test]
fn decode_eio3_corpus() {
    replay("decode_eio3", tidings_fuzz::decode_eio3);
}

#[test]
fn decode_engine_corpus() {
    replay("decode_engine", tidings_fuzz::decode_engine);
}

#[test]
fn decode_node_corpus() {
    replay("decode_node", tidings_fuzz::decode_node);
}

#[test]
fn decode_ws_corpus() {
    replay("decode_ws", tidings_fuzz::decode_ws);
}

#[test]
fn wire_payloads_corpus() {
    replay("wire_payloads", tidings_fuzz::wire_payloads);
}

#[test]
fn config_file_corpus() {
    replay("config_file", tidings_fuzz::config_file);
}

#[test]
fn store_crash_corpus() {
    // As the fuzzer runs it: the files in the target's in-memory VFS.
    replay("store_crash", tidings_fuzz::store_crash);
}

#[test]
fn store_crash_corpus_on_disk() {
    // The same inputs with real files and SQLite's unix VFS: the in-memory VFS must not change
    // a verdict.
    replay("store_crash", |data| {
        tidings_fuzz::store_crash_in(data, tidings_fuzz::Files::Disk)
    });
}

#[test]
fn every_target_has_a_replay_test() {
    let tested = [
        "decode_packet",
        "decode_engine",
        "decode_msgpack",
        "decode_eio3",
        "decode_ws",
        "decode_node",
        "wire_payloads",
        "config_file",
        "store_crash",
    ];
    for (name, _) in tidings_fuzz::TARGETS {
        assert!(tested.contains(name), "{name} has no replay test");
        let target = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(target.is_file(), "{} is missing", target.display());
    }
}

#[test]
fn journal_crash_corpus() {
    // The journal target reads the input format of store_crash: it shares that corpus.
    replay("store_crash", tidings_fuzz::journal_crash);
}
