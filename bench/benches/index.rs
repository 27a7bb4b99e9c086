//! Sparse index lookups and loads, on the index of one full default-size segment: 256 MiB of
//! log with an entry every 4 KiB (`INDEX_INTERVAL_BYTES`), 65,536 entries.
//!
//! `cargo bench -p tidelog-bench --bench index -- --warm-up-time 1 --measurement-time 3`
//!
//! - `lookup/offset`, `lookup/time`: one lookup per iteration, each for the next of a fixed
//!   sequence of uniformly random targets (so neither the branch predictor nor the cache sees
//!   the same path twice in a row); throughput in lookups.
//! - `load/offset`, `load/time`: `Index::load` of a whole file (header check, every entry's
//!   CRC-32C, monotonicity), with a plain copy and a one-pass CRC-32C of the same bytes
//!   beside it as baselines; throughput in file bytes.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tidelog_bench::Xorshift;
use tidelog_core::limits::{INDEX_INTERVAL_BYTES, SEGMENT_SIZE_BYTES_DEFAULT};
use tidelog_core::segment::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex, encode_file};

/// A segment's base offset: far from zero, as in a long-lived partition.
const BASE_OFFSET: u64 = 1_000_000_000;
/// Records between two entries: 4 KiB of 100-byte records in 1,000-record batches would be
/// fewer, but any spacing gives the same search; 40 keeps offsets realistic for small records.
const RECORDS_PER_ENTRY: u32 = 40;
const TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Distinct random targets cycled through.
const TARGETS: usize = 4096;

fn entry_count() -> u32 {
    (SEGMENT_SIZE_BYTES_DEFAULT / u64::from(INDEX_INTERVAL_BYTES)) as u32
}

fn offset_entries() -> Vec<OffsetEntry> {
    (1..=entry_count())
        .map(|i| OffsetEntry {
            relative_offset: i * RECORDS_PER_ENTRY,
            position: i * INDEX_INTERVAL_BYTES,
        })
        .collect()
}

fn time_entries() -> Vec<TimeEntry> {
    // One entry per 4 KiB, 5 ms apart: timestamps strictly increase, as `may_follow` needs.
    (1..=entry_count())
        .map(|i| TimeEntry {
            max_timestamp: TIMESTAMP_MS + i64::from(i) * 5,
            relative_offset: i * RECORDS_PER_ENTRY,
            position: i * INDEX_INTERVAL_BYTES,
        })
        .collect()
}

/// Deterministic, uniform values in `0..bound`.
fn random_below(bound: u64, count: usize) -> Vec<u64> {
    let mut random = Xorshift::new();
    (0..count).map(|_| random.next_u64() % bound).collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    let span = u64::from(entry_count() * RECORDS_PER_ENTRY);

    let offset_index = OffsetIndex::written(BASE_OFFSET, offset_entries());
    let offsets: Vec<u64> =
        random_below(span, TARGETS).into_iter().map(|r| BASE_OFFSET + r).collect();
    let mut next = 0usize;
    group.bench_function("offset/65536_entries", |b| {
        b.iter(|| {
            next = (next + 1) % TARGETS;
            offset_index.lookup(black_box(offsets[next]))
        })
    });

    let time_index = TimeIndex::written(BASE_OFFSET, time_entries());
    let times: Vec<i64> = random_below(u64::from(entry_count()) * 5, TARGETS)
        .into_iter()
        .map(|r| TIMESTAMP_MS + r as i64)
        .collect();
    let mut next = 0usize;
    group.bench_function("time/65536_entries", |b| {
        b.iter(|| {
            next = (next + 1) % TARGETS;
            time_index.lookup(black_box(times[next]))
        })
    });
    group.finish();
}

/// The same bytes copied, and checksummed in one pass: what a load cannot beat.
fn baselines(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, file: &[u8]) {
    group.bench_function(format!("{name}/baseline_copy"), |b| b.iter(|| black_box(file).to_vec()));
    group.bench_function(format!("{name}/baseline_crc32c"), |b| {
        b.iter(|| crc32c::crc32c(black_box(file)))
    });
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    // A load of ~0.8 or ~1.5 MB takes around a millisecond: fewer samples keep the run short.
    group.sample_size(30);

    let offset_file = encode_file(BASE_OFFSET, &offset_entries());
    group.throughput(Throughput::Bytes(offset_file.len() as u64));
    group.bench_function("offset/65536_entries", |b| {
        b.iter(|| {
            let (index, damage) = OffsetIndex::load(BASE_OFFSET, black_box(&offset_file));
            assert!(damage.is_none());
            index
        })
    });
    baselines(&mut group, "offset", &offset_file);

    let time_file = encode_file(BASE_OFFSET, &time_entries());
    group.throughput(Throughput::Bytes(time_file.len() as u64));
    group.bench_function("time/65536_entries", |b| {
        b.iter(|| {
            let (index, damage) = TimeIndex::load(BASE_OFFSET, black_box(&time_file));
            assert!(damage.is_none());
            index
        })
    });
    baselines(&mut group, "time", &time_file);
    group.finish();
}

criterion_group!(benches, lookup, load);
criterion_main!(benches);
