//! tidelog's benchmark suite: the cases behind `tidelog bench`, each measured beside its raw
//! baseline in the same run (`suite`), the baselines themselves (`raw`), and the statistics
//! both report (`stats`). Criterion micro-benchmarks live in `benches/`.

pub mod raw;
pub mod stats;
pub mod streaming;
pub mod suite;

/// Deterministic pseudo-random numbers (xorshift64) for benchmark inputs: bytes nothing
/// compresses or special-cases, and targets no predictor learns — the same on every run.
#[derive(Clone, Debug)]
pub struct Xorshift(u64);

impl Xorshift {
    /// The generator every benchmark starts from.
    pub fn new() -> Self {
        Xorshift(0x9e37_79b9_7f4a_7c15)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `len` bytes, one per value.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
