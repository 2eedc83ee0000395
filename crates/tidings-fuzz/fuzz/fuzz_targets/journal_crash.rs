//! See [`tidings_fuzz::journal_crash`]. Its corpus is `store_crash`'s (the same input format):
//! `cargo fuzz run journal_crash fuzz/corpus/store_crash`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::journal_crash(data));
