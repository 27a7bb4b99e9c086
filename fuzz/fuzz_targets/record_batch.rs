//! Fuzz target `record_batch`: the body is `tidelog_core::fuzzing::record_batch` (also run on stable by
//! `core/tests/fuzz_smoke.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_core::fuzzing::record_batch(data));
