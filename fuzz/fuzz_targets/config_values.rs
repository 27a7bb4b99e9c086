//! Fuzz target `config_values`: the body is `tidelog_core::fuzzing::config_values` (also run on stable by
//! `core/tests/fuzz_smoke.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidelog_core::fuzzing::config_values(data));
