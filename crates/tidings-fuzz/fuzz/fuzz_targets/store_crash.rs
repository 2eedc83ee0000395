//! See [`tidings_fuzz::store_crash`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::store_crash(data));
