//! See [`tidings_fuzz::decode_eio3`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::decode_eio3(data));
