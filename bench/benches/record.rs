//! Record-batch encode and decode throughput, each beside its raw baselines (CRC-32C alone and
//! a plain copy of the same bytes) measured in the same run.
//!
//! `cargo bench -p tidelog-bench --bench record -- --warm-up-time 1 --measurement-time 3`
//!
//! Throughput is in bytes of encoded batch. The bar: encode + CRC of 1 KiB records at 1 GB/s
//! or more, decode + CRC verification likewise.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tidelog_bench::Xorshift;
use tidelog_core::record::{BatchBuilder, BatchOptions, BatchView, Record, encode_batch};

const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// One workload: `count` records of `value_size` bytes, each with a short key.
struct Workload {
    name: &'static str,
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

impl Workload {
    fn new(name: &'static str, value_size: usize, count: usize) -> Workload {
        let mut random = Xorshift::new();
        let keys = (0..count).map(|i| format!("key-{i:06}").into_bytes()).collect();
        let values = (0..count).map(|_| random.bytes(value_size)).collect();
        Workload { name, keys, values }
    }

    fn records(&self) -> Vec<Record<'_>> {
        self.keys
            .iter()
            .zip(&self.values)
            .enumerate()
            .map(|(i, (key, value))| {
                Record::new(value).with_key(key).with_timestamp(TIMESTAMP_MS + i as i64)
            })
            .collect()
    }
}

fn workloads() -> [Workload; 2] {
    [Workload::new("1KiB_x64", 1024, 64), Workload::new("100B_x1000", 100, 1000)]
}

fn baselines(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, batch: &[u8]) {
    group.bench_function(format!("{name}/baseline_crc32c"), |b| {
        b.iter(|| crc32c::crc32c(black_box(batch)))
    });
    let mut copy = Vec::with_capacity(batch.len());
    group.bench_function(format!("{name}/baseline_copy"), |b| {
        b.iter(|| {
            copy.clear();
            copy.extend_from_slice(black_box(batch));
            black_box(copy.as_ptr());
        })
    });
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for workload in workloads() {
        let records = workload.records();
        let batch = encode_batch(&records, TIMESTAMP_MS, BatchOptions::default());
        group.throughput(Throughput::Bytes(batch.len() as u64));
        let name = workload.name;

        // Fresh allocation per batch, sized exactly once.
        group.bench_function(format!("{name}/encode_batch"), |b| {
            b.iter(|| encode_batch(black_box(&records), TIMESTAMP_MS, BatchOptions::default()))
        });

        // The steady state of a producer: one buffer recycled batch after batch.
        let mut spare = Some(Vec::with_capacity(batch.len()));
        group.bench_function(format!("{name}/builder_reused_buffer"), |b| {
            b.iter(|| {
                let buffer = spare.take().unwrap_or_default();
                let mut builder = BatchBuilder::with_buffer(buffer, BatchOptions::default());
                for record in black_box(&records) {
                    builder.push(record, TIMESTAMP_MS);
                }
                let batch = builder.finish();
                black_box(&batch);
                spare = Some(batch);
            })
        });

        baselines(&mut group, name, &batch);
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for workload in workloads() {
        let records = workload.records();
        let batch = encode_batch(&records, TIMESTAMP_MS, BatchOptions::default());
        group.throughput(Throughput::Bytes(batch.len() as u64));
        let name = workload.name;

        // The append path: delimit, CRC, and check every record.
        group.bench_function(format!("{name}/parse_validate"), |b| {
            b.iter(|| BatchView::parse(black_box(&batch)).and_then(|view| view.validate()))
        });

        // The read path: delimit, CRC, then hand every record's key and value to a consumer.
        group.bench_function(format!("{name}/parse_verify_iterate"), |b| {
            b.iter(|| {
                let view = BatchView::parse(black_box(&batch)).unwrap();
                view.verify_crc().unwrap();
                let mut bytes = 0usize;
                for record in view.records().unwrap() {
                    let record = record.unwrap();
                    bytes += record.key().map_or(0, <[u8]>::len);
                    bytes += record.value().map_or(0, <[u8]>::len);
                    black_box(record.offset());
                }
                bytes
            })
        });

        baselines(&mut group, name, &batch);
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
