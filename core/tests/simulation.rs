//! Deterministic simulation (STYLE §10): a seed drives a whole engine — several shards and
//! partitions, manual shards on one thread, the simulated disk, a manual clock — through a
//! random workload with faults, power losses and restarts, checking every result against a
//! reference model (`simulation/`).
//!
//! - `TIDELOG_SIM_SEED=S` replays one seed (what a failure prints);
//! - `TIDELOG_SIM_SEEDS=N` runs seeds `0..N` (default 500, the CI run);
//! - `TIDELOG_SIM_DURATION=10m` runs fresh seeds (from `TIDELOG_SIM_SEED_BASE`, else from
//!   the time) until the duration is up;
//! - `TIDELOG_SIM_VERBOSE=1` prints every step.

#[path = "simulation/mod.rs"]
mod simulation;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use simulation::{Counters, run_seed};

/// A seed running longer than this is hung (the engine looping): report it and abort.
const SEED_TIME_LIMIT: Duration = Duration::from_secs(120);

fn parse_duration(text: &str) -> Duration {
    let (number, unit) =
        text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().expect("TIDELOG_SIM_DURATION is a number with s, m or h");
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => panic!("TIDELOG_SIM_DURATION unit {other:?}: use s, m or h"),
    }
}

/// Abort the process (with the seed and the replay command) if one seed runs too long.
fn watchdog(current: Arc<AtomicU64>, started: Arc<AtomicU64>, origin: Instant) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let seed = current.load(Ordering::SeqCst);
            let since = started.load(Ordering::SeqCst);
            let elapsed = origin.elapsed().as_secs().saturating_sub(since);
            if seed != u64::MAX && elapsed > SEED_TIME_LIMIT.as_secs() {
                eprintln!(
                    "simulation seed {seed} has run for {elapsed} s: hung. Replay with:\n  \
                     TIDELOG_SIM_SEED={seed} TIDELOG_SIM_VERBOSE=1 cargo test -p tidelog-core \
                     --test simulation -- --nocapture"
                );
                std::process::abort();
            }
        }
    });
}

fn print_report(counters: &Counters, elapsed: Duration) {
    eprintln!("simulation report ({:.1} s):", elapsed.as_secs_f64());
    for (name, n) in &counters.0 {
        eprintln!("  {name:<60} {n:>12}");
    }
    eprintln!("  {:<60} {:>12}", "records lost or corrupted", 0);
}

/// The engine's own log, with `RUST_LOG` (e.g. `RUST_LOG=tidelog_core=debug`).
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[test]
fn seeds_hold_every_invariant() {
    init_tracing();
    let origin = Instant::now();
    let current = Arc::new(AtomicU64::new(u64::MAX));
    let started = Arc::new(AtomicU64::new(0));
    watchdog(current.clone(), started.clone(), origin);
    let single = std::env::var("TIDELOG_SIM_SEED").ok().map(|s| s.parse::<u64>().expect("a seed"));
    let duration = std::env::var("TIDELOG_SIM_DURATION").ok().map(|d| parse_duration(&d));
    let count: u64 =
        std::env::var("TIDELOG_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(500);
    let base: u64 = match std::env::var("TIDELOG_SIM_SEED_BASE") {
        Ok(base) => base.parse().expect("TIDELOG_SIM_SEED_BASE is a number"),
        Err(_) if duration.is_some() => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
                << 20
        }
        Err(_) => 0,
    };
    if duration.is_some() {
        eprintln!("simulation: seeds from {base}");
    }
    let mut totals = Counters::default();
    let mut seed = single.unwrap_or(base);
    loop {
        current.store(seed, Ordering::SeqCst);
        started.store(origin.elapsed().as_secs(), Ordering::SeqCst);
        let report = run_seed(seed);
        totals.merge(&report.counters);
        seed += 1;
        let done = match (single, duration) {
            (Some(_), _) => true,
            (None, Some(limit)) => origin.elapsed() >= limit,
            (None, None) => seed >= base + count,
        };
        if done {
            break;
        }
    }
    current.store(u64::MAX, Ordering::SeqCst);
    print_report(&totals, origin.elapsed());
}

#[test]
fn a_seed_replays_byte_for_byte() {
    let seed = std::env::var("TIDELOG_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let first = run_seed(seed);
    let second = run_seed(seed);
    assert!(!first.image.is_empty());
    assert_eq!(first.counters.0, second.counters.0, "seed {seed}: two runs did different work");
    assert_eq!(first.image.len(), second.image.len(), "seed {seed}: different files");
    for ((path_a, bytes_a), (path_b, bytes_b)) in first.image.iter().zip(&second.image) {
        assert_eq!(path_a, path_b);
        assert!(bytes_a == bytes_b, "seed {seed}: {} differs between two runs", path_a.display());
    }
}
