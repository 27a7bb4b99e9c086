//! Fuzz target `recovery_scan`: the body is `tidelog_core::fuzzing::recovery_scan` (also run on stable by
//! `core/tests/fuzz_smoke.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_core::fuzzing::recovery_scan(data));
