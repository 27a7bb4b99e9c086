//! Every fuzz target (`fuzz/`, bodies in `tidelog_core::fuzzing`) on the stable toolchain:
//! over its committed seed corpus (`fuzz/corpus/<target>/`) and a few thousand deterministic
//! mutations of it (bit flips, truncations, splices, insertions, interesting values), so
//! `cargo test` exercises the decoders the fuzzers do. A panic is a decoder bug: the test
//! prints the target and the input (hex) to add to the corpus as a regression.
//!
//! `TIDELOG_FUZZ_WRITE_CORPUS=1` rewrites the seed files from `fuzzing::seed_corpus()`;
//! `TIDELOG_FUZZ_MUTATIONS=N` sets the mutations per target (default 3000).

use std::path::{Path, PathBuf};

use tidelog_core::fuzzing;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// xorshift64*: a fixed stream, so a failing mutation replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn mutate(rng: &mut Rng, inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut data = inputs[rng.below(inputs.len())].clone();
    for _ in 0..1 + rng.below(3) {
        match rng.below(7) {
            0 | 1 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            2 => data.truncate(rng.below(data.len() + 1)),
            3 => {
                let other = &inputs[rng.below(inputs.len())];
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            4 => {
                let at = rng.below(data.len() + 1);
                let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            5 if data.len() >= 4 => {
                // An interesting 32-bit value (lengths, counts) at a random place.
                let at = rng.below(data.len() - 3);
                let values = [0u32, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 49, 61, 4096];
                let value = values[rng.below(values.len())];
                data[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
            _ if !data.is_empty() => {
                let at = rng.below(data.len());
                data.remove(at);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

fn run(target: &str, body: fn(&[u8]), input: &[u8], what: &str) {
    let outcome = std::panic::catch_unwind(|| body(input));
    if let Err(panic) = outcome {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("fuzz target {target} panicked on {what} ({} bytes): {hex}", input.len());
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    if std::env::var_os("TIDELOG_FUZZ_WRITE_CORPUS").is_some() {
        for (target, name, bytes) in fuzzing::seed_corpus() {
            let dir = corpus_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    let mutations: usize =
        std::env::var("TIDELOG_FUZZ_MUTATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(3000);
    for (target, body) in fuzzing::TARGETS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let inputs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
        for (file, input) in files.iter().zip(&inputs) {
            run(target, body, input, &file.display().to_string());
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
        for i in 0..mutations {
            let input = mutate(&mut rng, &inputs);
            run(target, body, &input, &format!("mutation {i}"));
        }
        eprintln!("fuzz smoke: {target}: {} corpus inputs, {mutations} mutations", inputs.len());
    }
}

#[test]
fn the_committed_corpus_holds_the_generated_seeds() {
    for (target, name, bytes) in fuzzing::seed_corpus() {
        let path = corpus_dir(target).join(format!("seed-{name}"));
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (TIDELOG_FUZZ_WRITE_CORPUS=1 writes it)", path.display())
        });
        assert!(committed == bytes, "{} is stale (TIDELOG_FUZZ_WRITE_CORPUS=1)", path.display());
    }
}
