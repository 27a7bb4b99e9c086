//! io_uring vs portable, same run: durable 4 KiB appends at queue depth 1 and 1 MiB
//! sequential O_DIRECT writes at queue depth 1 and 8.
//!
//! ```text
//! cargo run --release -p tidelog-io --example uring_qd1 -- [--dir /tmp] [--seconds 3] [--runs 3]
//! ```
//!
//! - *durable appends*: a 4 KiB `O_DIRECT` write linked to an `fdatasync`, one at a time, into
//!   a file whose blocks already hold data (written once first, as the engine's prepared
//!   segments are): appends/s and the cycle's p50/p99 in µs;
//! - *sequential*: 1 MiB `O_DIRECT` writes over a pre-written 1 GiB file, wrapping around,
//!   with 1 or 8 in flight: MB/s. (The portable backend runs each write inside `submit`, so its
//!   depth 8 is depth 1.)
//!
//! Each case alternates the two backends within each run; the summary prints the median (and
//! min–max) over runs and the uring/portable ratio. Run `fio` on the same files in the same
//! session for the raw baseline (commands printed at the end). Scratch files live in `--dir`
//! (default /tmp) and are removed at the end unless `--keep`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidelog_io::{
    AlignedBuf, BLOCK_SIZE, FileId, Op, OpenOptions, PortableStorage, Storage, Submission,
    UringConfig, UringStorage, Wait,
};

const APPEND_BYTES: usize = BLOCK_SIZE;
const APPEND_FILE_BYTES: u64 = 256 << 20;
const SEQ_BYTES: usize = 1 << 20;
const SEQ_FILE_BYTES: u64 = 1 << 30;

struct Args {
    dir: PathBuf,
    seconds: f64,
    runs: usize,
    keep: bool,
}

fn args() -> Args {
    let mut args = Args { dir: PathBuf::from("/tmp"), seconds: 3.0, runs: 3, keep: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = PathBuf::from(value()),
            "--seconds" => args.seconds = value().parse().expect("--seconds: a number"),
            "--runs" => args.runs = value().parse().expect("--runs: a count"),
            "--keep" => args.keep = true,
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Write `bytes` of a file once (so its blocks hold data), O_DIRECT, 1 MiB at a time.
fn prewrite(path: &Path, bytes: u64) {
    let mut s = PortableStorage::new();
    let file = s.open(path, OpenOptions::create().direct(true)).expect("open");
    assert!(s.is_direct(file), "{} refused O_DIRECT", path.display());
    let mut buf = AlignedBuf::with_capacity(SEQ_BYTES);
    buf.extend_from_slice(&vec![0xA5; SEQ_BYTES]);
    let mut offset = 0;
    while offset < bytes {
        let (result, back) = tidelog_io::storage::run(&mut s, Op::Write { file, offset, buf });
        assert_eq!(result.expect("prewrite"), SEQ_BYTES);
        buf = back.expect("buffer back");
        offset += SEQ_BYTES as u64;
    }
    tidelog_io::storage::sync_data(&mut s, file).expect("sync");
}

struct Appends {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

fn durable_appends(s: &mut dyn Storage, file: FileId, duration: Duration) -> Appends {
    let mut buf = s.alloc_buf(APPEND_BYTES);
    buf.extend_from_slice(&[0x5A; APPEND_BYTES]);
    let mut buf = Some(buf);
    let mut latencies_ns: Vec<u64> = Vec::with_capacity(100_000);
    let mut offset = 0u64;
    let mut out = Vec::with_capacity(2);
    let started = Instant::now();
    while started.elapsed() < duration {
        let t0 = Instant::now();
        let write = Op::Write { file, offset, buf: buf.take().expect("buffer") };
        s.submit(Submission::linked(1, write)).expect("room");
        s.submit(Submission::new(2, Op::SyncData { file })).expect("room");
        out.clear();
        while out.len() < 2 {
            s.complete(&mut out, Wait::One).expect("complete");
        }
        latencies_ns.push(t0.elapsed().as_nanos() as u64);
        for done in out.drain(..) {
            let n = done.result.expect("append");
            if done.token == 1 {
                assert_eq!(n, APPEND_BYTES);
                buf = done.buf;
            }
        }
        offset = (offset + APPEND_BYTES as u64) % APPEND_FILE_BYTES;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    let at = |q: f64| latencies_ns[((latencies_ns.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    Appends { per_second: latencies_ns.len() as f64 / elapsed, p50_us: at(0.50), p99_us: at(0.99) }
}

/// MB/s (10^6 bytes) of 1 MiB sequential writes with `depth` in flight.
fn sequential(s: &mut dyn Storage, file: FileId, depth: usize, duration: Duration) -> f64 {
    let mut free: Vec<AlignedBuf> = (0..depth)
        .map(|_| {
            let mut buf = s.alloc_buf(SEQ_BYTES);
            buf.extend_from_slice(&vec![0x3C; SEQ_BYTES]);
            buf
        })
        .collect();
    let mut offset = 0u64;
    let mut written = 0u64;
    let mut out = Vec::with_capacity(depth);
    let started = Instant::now();
    loop {
        let running = started.elapsed() < duration;
        while running && let Some(buf) = free.pop() {
            let op = Op::Write { file, offset, buf };
            if let Err(back) = s.submit(Submission::new(offset, op)) {
                free.push(back.op.into_buf().expect("buffer"));
                break;
            }
            offset = (offset + SEQ_BYTES as u64) % SEQ_FILE_BYTES;
        }
        if !running && s.in_flight() == 0 {
            break;
        }
        out.clear();
        s.complete(&mut out, Wait::One).expect("complete");
        for done in out.drain(..) {
            assert_eq!(done.result.expect("write"), SEQ_BYTES, "short write");
            written += SEQ_BYTES as u64;
            free.push(done.buf.expect("buffer"));
        }
    }
    written as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn summary(name: &str, unit: &str, uring: &mut [f64], portable: &mut [f64]) {
    let spread = |v: &[f64]| {
        let (lo, hi) =
            (v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(0.0, f64::max));
        format!("{lo:.0}–{hi:.0}")
    };
    let (u, p) = (median(uring), median(portable));
    println!(
        "{name:<34} uring {u:>9.1} {unit} ({})   portable {p:>9.1} {unit} ({})   uring/portable {:.2}",
        spread(uring),
        spread(portable),
        u / p
    );
}

fn main() {
    let args = args();
    let dir = args.dir.join(format!("tidelog-uring-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let append_path = dir.join("appends");
    let seq_path = dir.join("sequential");
    eprintln!("pre-writing {} and {} ...", append_path.display(), seq_path.display());
    prewrite(&append_path, APPEND_FILE_BYTES);
    prewrite(&seq_path, SEQ_FILE_BYTES);
    let duration = Duration::from_secs_f64(args.seconds);

    // 4 KiB appends use the default pool (256 KiB slots); 1 MiB writes need 1 MiB slots.
    let uring_small =
        || UringStorage::new(UringConfig { queue_depth: 8, ..UringConfig::default() });
    let uring_large = || {
        UringStorage::new(UringConfig {
            queue_depth: 8,
            buffer_pool_slots: 8,
            buffer_pool_slot_bytes: SEQ_BYTES,
            ..UringConfig::default()
        })
    };
    {
        let probe = uring_large().expect("uring");
        eprintln!(
            "uring setup: {}; 8 MiB pool registered: {:?}",
            probe.setup(),
            probe.pool_stats().map(|p| (p.registered, p.unregistered_reason))
        );
    }

    let direct = OpenOptions::read_write().direct(true);
    // (uring, portable) samples of: appends/s, p50, p99, MB/s qd1, MB/s qd8.
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 5];
    for run in 1..=args.runs {
        eprintln!("run {run}/{}", args.runs);
        for backend in ["uring", "portable"] {
            let mut s: Box<dyn Storage> = match backend {
                "uring" => Box::new(uring_small().expect("uring")),
                _ => Box::new(PortableStorage::new()),
            };
            let file = s.open(&append_path, direct).expect("open");
            let a = durable_appends(s.as_mut(), file, duration);
            let slot = |i: usize, results: &mut Vec<(Vec<f64>, Vec<f64>)>, v: f64| {
                let (uring, portable) = &mut results[i];
                if backend == "uring" { uring.push(v) } else { portable.push(v) }
            };
            slot(0, &mut results, a.per_second);
            slot(1, &mut results, a.p50_us);
            slot(2, &mut results, a.p99_us);
            eprintln!(
                "  {backend:<8} durable 4 KiB: {:.0}/s p50 {:.1} µs p99 {:.1} µs",
                a.per_second, a.p50_us, a.p99_us
            );
            drop(s);
            for (i, depth) in [(3, 1), (4, 8)] {
                let mut s: Box<dyn Storage> = match backend {
                    "uring" => Box::new(uring_large().expect("uring")),
                    _ => Box::new(PortableStorage::with_queue_depth(depth)),
                };
                let file = s.open(&seq_path, direct).expect("open");
                let mbps = sequential(s.as_mut(), file, depth, duration);
                slot(i, &mut results, mbps);
                eprintln!("  {backend:<8} 1 MiB seq qd{depth}: {mbps:.0} MB/s");
            }
        }
    }
    println!("\nmedian (min–max) of {} runs, {} s each:", args.runs, args.seconds);
    let names = [
        ("durable 4 KiB appends", "/s"),
        ("  p50 write+fdatasync", "µs"),
        ("  p99 write+fdatasync", "µs"),
        ("1 MiB sequential qd1", "MB/s"),
        ("1 MiB sequential qd8", "MB/s"),
    ];
    for ((name, unit), (uring, portable)) in names.into_iter().zip(&mut results) {
        summary(name, unit, uring, portable);
    }
    let secs = args.seconds.ceil() as u64;
    println!("\nraw baseline on the same files (same session):");
    println!(
        "  fio --ioengine=io_uring --name=fds --filename={} --size=256m --rw=write --bs=4k \
         --direct=1 --iodepth=1 --fdatasync=1 --time_based --runtime={secs} \
         --percentile_list=50:99 --output-format=json",
        append_path.display()
    );
    for depth in [1, 8] {
        println!(
            "  fio --ioengine=io_uring --name=seq --filename={} --size=1g --rw=write --bs=1m \
             --direct=1 --iodepth={depth} --time_based --runtime={secs} --output-format=json",
            seq_path.display()
        );
    }
    if args.keep {
        println!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
