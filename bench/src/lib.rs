//! tidelog's benchmark suite: the cases behind `tidelog bench`, each measured beside its raw
//! baseline in the same run (`suite`), the baselines themselves (`raw`), and the statistics
//! both report (`stats`). Criterion micro-benchmarks live in `benches/`.

pub mod raw;
pub mod stats;
pub mod streaming;
pub mod suite;
