//! Appends through the `Engine` API: batches of 1,000 records of 100 bytes, `Durability::None`,
//! one shard, on the simulated in-memory disk (the shard's CPU cost with no device behind it)
//! and on the portable backend in a temporary directory (buffered `pwrite` into the page
//! cache).
//!
//! `cargo bench -p tidelog-bench --bench append -- --warm-up-time 1 --measurement-time 3`
//!
//! Per backend:
//! - `encode_wait_each`: `Engine::append`, one batch at a time — encoding on the caller's
//!   thread, then a round trip to the shard per batch;
//! - `encode_16_in_flight`: `Engine::append_async` keeping 16 appends outstanding, so the
//!   caller encodes the next batches while the shard works on earlier ones;
//! - `preencoded_16_in_flight`: `Engine::append_batch` of batches encoded before the timer
//!   starts, 16 outstanding: what is left is the shard's work (validation with CRC-32C, offset
//!   assignment, the copy into the write buffer, the writes) and the hand-off.
//!
//! Throughput is in records. Each sample opens a fresh engine (not timed) so memory stays
//! bounded; the last append of a sample waits for `Durability::Written`, so everything timed
//! has also been written, not just queued. The bar: 2M records/s or more on one core.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tidelog_bench::Xorshift;
use tidelog_core::record::{BatchOptions, encode_batch};
use tidelog_core::{
    AppendResult, Durability, Engine, EngineConfig, IoChoice, Pending, Record, TopicConfig,
};
use tidelog_io::sim::SimDisk;

const RECORDS_PER_BATCH: usize = 1000;
const VALUE_BYTES: usize = 100;
const IN_FLIGHT: usize = 16;
const TOPIC: &str = "bench";
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// Where the engine of a sample lives.
#[derive(Clone, Copy)]
enum Backend {
    Sim,
    Portable,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sim => "sim",
            Backend::Portable => "portable",
        }
    }
}

/// An engine with one shard and one topic of one partition, and what keeps its files alive.
struct Fixture {
    engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn open(backend: Backend) -> Fixture {
        let config = EngineConfig::default().shards(1);
        let (engine, dir) = match backend {
            Backend::Sim => {
                let disk = SimDisk::new(1);
                let engine =
                    Engine::open("/sim/bench", config.storage(Arc::new(disk.factory()))).unwrap();
                (engine, None)
            }
            Backend::Portable => {
                let dir = tempfile::Builder::new().prefix("tidelog-bench-").tempdir().unwrap();
                let engine = Engine::open(dir.path(), config.io(IoChoice::Portable)).unwrap();
                (engine, Some(dir))
            }
        };
        engine.create_topic(TOPIC, TopicConfig::default()).unwrap();
        Fixture { engine, _dir: dir }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.engine.close().unwrap();
    }
}

/// 1,000 distinct 100-byte values.
fn values() -> Vec<Vec<u8>> {
    let mut random = Xorshift::new();
    (0..RECORDS_PER_BATCH).map(|_| random.bytes(VALUE_BYTES)).collect()
}

/// The durability of the `i`-th of `iters` appends: the last waits for its write.
fn durability(i: u64, iters: u64) -> Durability {
    if i + 1 == iters { Durability::Written } else { Durability::None }
}

/// Wait for every append in `window` beyond `keep`.
fn drain(window: &mut VecDeque<Pending<AppendResult>>, keep: usize) {
    while window.len() > keep {
        window.pop_front().map(Pending::wait).transpose().unwrap();
    }
}

fn bench_backend(group: &mut BenchmarkGroup<'_, WallTime>, backend: Backend) {
    let values = values();
    let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
    let encoded = encode_batch(&records, TIMESTAMP_MS, BatchOptions::default());
    let name = backend.name();

    group.bench_function(format!("{name}/encode_wait_each"), |b| {
        b.iter_custom(|iters| {
            let fixture = Fixture::open(backend);
            let start = Instant::now();
            for i in 0..iters {
                fixture.engine.append(TOPIC, 0, &records, durability(i, iters)).unwrap();
            }
            start.elapsed()
        })
    });

    group.bench_function(format!("{name}/encode_{IN_FLIGHT}_in_flight"), |b| {
        b.iter_custom(|iters| {
            let fixture = Fixture::open(backend);
            let mut window = VecDeque::with_capacity(IN_FLIGHT);
            let start = Instant::now();
            for i in 0..iters {
                drain(&mut window, IN_FLIGHT - 1);
                window.push_back(fixture.engine.append_async(
                    TOPIC,
                    0,
                    &records,
                    durability(i, iters),
                ));
            }
            drain(&mut window, 0);
            start.elapsed()
        })
    });

    group.bench_function(format!("{name}/preencoded_{IN_FLIGHT}_in_flight"), |b| {
        b.iter_custom(|iters| {
            let fixture = Fixture::open(backend);
            // `append_batch` takes the batch by value: copies are made before the timer.
            let mut batches: Vec<Vec<u8>> = (0..iters).map(|_| encoded.clone()).collect();
            let mut window = VecDeque::with_capacity(IN_FLIGHT);
            let start = Instant::now();
            for (i, batch) in batches.drain(..).enumerate() {
                drain(&mut window, IN_FLIGHT - 1);
                window.push_back(fixture.engine.append_batch(
                    TOPIC,
                    0,
                    batch,
                    durability(i as u64, iters),
                ));
            }
            drain(&mut window, 0);
            start.elapsed()
        })
    });
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_100B_x1000_none");
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    // A batch takes around half a millisecond: 20 samples of a fresh engine each.
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    for backend in [Backend::Sim, Backend::Portable] {
        bench_backend(&mut group, backend);
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
