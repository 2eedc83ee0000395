//! The checks of the fuzz targets, as plain functions over bytes.
//!
//! Each function takes one fuzz input, runs it through a decoder we own (or a random operation
//! sequence through the SQLite or journal store) and panics when a property breaks: "no panic" is the
//! least of it, every target also checks a round trip or a model. The same functions run
//!
//! - under libFuzzer: `fuzz/` is a `cargo fuzz` crate (nightly, not a workspace member) whose
//!   targets are one line each, e.g. `fuzz_target!(|data| tidings_fuzz::decode_packet(data))`;
//!   `scripts/fuzz` runs them all;
//! - under `cargo test` on stable: `tests/fuzz_corpus.rs` replays every file of the checked-in
//!   corpus `fuzz/corpus/<target>/` (minimized with `cargo fuzz cmin`) through its check.
//!
//! | target | input | property |
//! |---|---|---|
//! | [`decode_packet`] | a Socket.IO packet | `decode(encode(p)) == p`, and the encoding is stable |
//! | [`decode_msgpack`] | a `socket.io-msgpack-parser` packet | `decode(encode(p)) == p` with its attachments, and the encoding is stable |
//! | [`decode_eio3`] | an Engine.IO v3 polling body | re-encoded as text or binary payload, it decodes to the same packets |
//! | [`decode_engine`] | an Engine.IO packet / a polling body | decode → encode → decode is stable |
//! | [`decode_ws`] | bytes a client sends on a WebSocket | the same messages in any chunking, within the limits, each re-encoded frame decodes to itself |
//! | [`wire_payloads`] | a built-in event's JSON payload | the handler's parse is deterministic, its result re-parses to itself, errors are `bad_request` |
//! | [`decode_node`] | a message on a Node adapter channel | it decodes the same twice; the Node form of what it decodes to reads back as itself; a request gets an answer |
//! | [`config_file`] | a `--config` TOML file | a valid file's effective config, written back as TOML, loads to the same config |
//! | [`store_crash`] | operations with crash points | the SQLite store equals the model, also after every crash and reopen |
//! | [`journal_crash`] | the same (its corpus is `store_crash`'s) | the journal store equals the model; a crash, its tail cut anywhere after the last confirmed change, keeps every confirmed change and a prefix of the rest |
#![deny(unsafe_code)]

mod codec;
mod config;
mod journal;
mod memvfs;
mod node;
mod store;
mod wire;
mod ws;

pub use codec::{decode_eio3, decode_engine, decode_msgpack, decode_packet};
pub use config::config_file;
pub use journal::journal_crash;
pub use node::decode_node;
pub use store::{Files, store_crash, store_crash_in};
pub use wire::wire_payloads;
pub use ws::decode_ws;

/// A target's check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every target's name (its directory under `fuzz/corpus/`) and check.
pub const TARGETS: &[(&str, Check)] = &[
    ("decode_packet", decode_packet),
    ("decode_engine", decode_engine),
    ("decode_msgpack", decode_msgpack),
    ("decode_eio3", decode_eio3),
    ("decode_ws", decode_ws),
    ("decode_node", decode_node),
    ("wire_payloads", wire_payloads),
    ("config_file", config_file),
    ("store_crash", store_crash),
];
