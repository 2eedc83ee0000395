//! See [`tidings_fuzz::decode_msgpack`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::decode_msgpack(data));
