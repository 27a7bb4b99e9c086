//! Replay from the segment files: how fast a reader gets through old data that is no longer
//! in the tail cache (a reopened engine), at a given fetch size — and, with `cold`, what the
//! replay does to appends of another partition on the same shard.
//!
//! ```sh
//! cargo run --release -p tidelog-tools --example replay_reads -- [MB] [FETCH_KIB] [uring|portable] [ROUNDS] [warm|cold]
//! ```
//!
//! Writes MB megabytes of 1 KiB records (default 512) to partition 0 of a one-shard engine in
//! a temporary directory, reopens the engine, then reads everything from offset 0 in fetches
//! of FETCH_KIB (default 256: the io_uring pool's slot size, so reads can go out as
//! `READ_FIXED`), ROUNDS times (default 5), printing MB/s of fetched batches per round.
//!
//! `warm` (the default) leaves the files in the page cache: it measures the engine's read
//! path (read, CRC check of every batch, hand-over), not the device. `cold` drops the
//! partition's files from the page cache before each round (`posix_fadvise(DONTNEED)`), so
//! every fetch waits for the device, and runs a second thread that appends one 1 KiB record
//! at a time (`Written`) to partition 1 — on the same shard — for as long as the round lasts,
//! printing those appends' latencies: a shard that waited for its reads would hold them up.

use std::error::Error;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use tidelog_core::{Durability, Engine, EngineConfig, IoChoice, ReadRequest, Record, TopicConfig};

/// Drop every file under `dir` from the page cache (written back first: `DONTNEED` leaves
/// dirty pages).
fn drop_from_page_cache(dir: &Path) -> Result<(), Box<dyn Error>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            drop_from_page_cache(&path)?;
        } else if let Ok(file) = std::fs::File::open(&path) {
            let _ = file.sync_all();
            posix_fadvise(file.as_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)?;
        }
    }
    Ok(())
}

/// Append one record at a time to partition 1 until `stop`; the appends' latencies.
fn append_meanwhile(engine: &Engine, stop: &AtomicBool) -> tidelog_core::Result<Histogram<u64>> {
    // Constant, valid bounds: cannot fail.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let value = vec![0x33u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        engine.append("replay", 1, &[Record::new(&value)], Durability::Written)?;
        latency.saturating_record(started.elapsed().as_micros() as u64);
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(latency)
}

/// Argument `name`, parsed, or `default` when it is not given.
fn arg<T: std::str::FromStr>(value: Option<String>, name: &str, default: T) -> Result<T, String> {
    value.map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name}: not a number: {v:?}")))
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mb: usize = arg(args.next(), "MB", 512)?;
    let fetch_kib: usize = arg(args.next(), "FETCH_KIB", 256)?;
    let io = match args.next().as_deref() {
        None | Some("uring") => IoChoice::Uring,
        Some("portable") => IoChoice::Portable,
        Some(other) => return Err(format!("unknown backend {other:?}: uring or portable").into()),
    };
    let rounds: usize = arg(args.next(), "ROUNDS", 5)?;
    let cold = match args.next().as_deref() {
        None | Some("warm") => false,
        Some("cold") => true,
        Some(other) => return Err(format!("unknown cache mode {other:?}: warm or cold").into()),
    };
    let dir = tempfile::tempdir()?;
    let config = || EngineConfig::default().io(io).shards(1);
    let value = vec![0x5au8; 1024];
    let records: Vec<Record<'_>> = (0..64).map(|_| Record::new(&value)).collect();
    let appends = mb * 1_000_000 / (1024 * records.len());
    {
        let engine = Engine::open(dir.path(), config())?;
        engine.create_topic("replay", TopicConfig::default().partitions(2))?;
        for _ in 0..appends {
            engine.append("replay", 0, &records, Durability::None)?;
        }
        engine.close()?;
    }
    let engine = Arc::new(Engine::open(dir.path(), config())?);
    let end = engine.partition_info("replay", 0)?.high_watermark;
    let cache = if cold { "cold" } else { "warm" };
    println!("{io:?}: {end} records of 1 KiB, fetches of {fetch_kib} KiB, page cache {cache}");
    for round in 1..=rounds {
        if cold {
            drop_from_page_cache(dir.path())?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let appender = cold.then(|| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || append_meanwhile(&engine, &stop))
        });
        let started = Instant::now();
        let (mut offset, mut bytes) = (0u64, 0usize);
        while offset < end {
            let request = ReadRequest::new(offset).max_bytes(fetch_kib * 1024);
            let fetch = engine.read("replay", 0, request)?;
            bytes += fetch.len_bytes();
            offset = fetch.next_offset();
        }
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        print!(
            "round {round}: {:.0} MB/s ({bytes} bytes in {seconds:.3} s)",
            bytes as f64 / 1e6 / seconds
        );
        // A panic in the appender is a bug worth seeing: passed on.
        let appended = appender.map(|a| a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        match appended.transpose()? {
            Some(h) => println!(
                "; appends to partition 1 meanwhile: {} (µs) p50 {} p99 {} p99.9 {} max {}",
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            ),
            None => println!(),
        }
    }
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.close()?,
        Err(_) => unreachable!("the appender threads have ended"),
    }
    Ok(())
}
