//! See [`tidings_fuzz::wire_payloads`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::wire_payloads(data));
