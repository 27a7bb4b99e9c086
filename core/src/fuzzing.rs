//! The bodies of the fuzz targets (`fuzz/`, STYLE §12), here so that the same code runs two
//! ways: under libFuzzer (`cargo fuzz run <target>`, nightly) and on stable in
//! `core/tests/fuzz_smoke.rs`, which runs every target over its committed corpus plus
//! deterministic mutations. Not part of the API.
//!
//! Each body must never panic on any input (a panic is a bug in the decoder), and checks
//! what must hold for inputs that decode: a valid batch re-encodes to the same records, an
//! index or metadata file round-trips, a scan's end is consistent with what it reported.

use std::path::Path;

use crate::config::{Durability, IoChoice, SegmentPreparation, TopicConfig};
use crate::consumer::Delivery;
use crate::record::{BatchIter, BatchOptions, BatchView, Header, Record, encode_batch};
use crate::segment::index::{IndexEntry, OffsetIndex, TimeIndex, encode_file};
use crate::segment::scan::scan_log;
use crate::topic::TopicMeta;

/// A fuzz target's body.
pub type Body = fn(&[u8]);

/// The fuzz targets, by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: [(&str, Body); 5] = [
    ("record_batch", record_batch),
    ("index_files", index_files),
    ("recovery_scan", recovery_scan),
    ("topic_meta", topic_meta),
    ("config_values", config_values),
];

/// A record decoded from a batch, owned: what re-encoding must reproduce.
type Decoded = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(Vec<u8>, Option<Vec<u8>>)>, i64);

fn decode_records(batch: &BatchView<'_>) -> Option<Vec<Decoded>> {
    let mut out = Vec::new();
    for record in batch.records().ok()? {
        let record = record.ok()?;
        let mut headers = Vec::new();
        for header in record.headers() {
            let header = header.ok()?;
            headers.push((header.key.to_vec(), header.value.map(<[u8]>::to_vec)));
        }
        out.push((
            record.key().map(<[u8]>::to_vec),
            record.value().map(<[u8]>::to_vec),
            headers,
            record.timestamp(),
        ));
    }
    Some(out)
}

/// Record batch decoding: `BatchView::parse`, `verify_crc`, `validate`, records and headers,
/// and `BatchIter` over a run of batches.
pub fn record_batch(data: &[u8]) {
    for batch in BatchIter::new(data) {
        let Ok(batch) = batch else { break };
        assert!(batch.total_len() <= data.len());
        let _ = batch.verify_crc();
        // Accessors are plain loads on a parsed batch.
        let _ = (batch.base_offset(), batch.last_offset(), batch.max_timestamp());
        let _ = (batch.compression(), batch.timestamp_type(), batch.delete_horizon_ms());
        if batch.validate().is_err() {
            // Decoding records of an invalid batch may fail, never panic.
            if let Ok(records) = batch.records() {
                for record in records.take(1 << 16) {
                    let Ok(record) = record else { break };
                    let _ = record.headers().count();
                }
            }
            continue;
        }
        // A valid batch decodes in full, with as many records as it says.
        let records = decode_records(&batch).expect("a validated batch decodes");
        assert_eq!(records.len(), batch.record_count() as usize);
        // Re-encoding its records (header keys that are UTF-8) gives the same records back.
        let utf8 = records.iter().all(|r| r.2.iter().all(|(k, _)| std::str::from_utf8(k).is_ok()));
        if !utf8 || records.is_empty() {
            continue;
        }
        let headers: Vec<Vec<Header<'_>>> = records
            .iter()
            .map(|r| {
                r.2.iter()
                    .map(|(k, v)| Header {
                        key: std::str::from_utf8(k).expect("checked above"),
                        value: v.as_deref(),
                    })
                    .collect()
            })
            .collect();
        let again: Vec<Record<'_>> = records
            .iter()
            .zip(&headers)
            .map(|(r, h)| Record {
                key: r.0.as_deref(),
                value: r.1.as_deref(),
                headers: h,
                timestamp: Some(r.3),
            })
            .collect();
        let encoded = encode_batch(&again, 0, BatchOptions::default());
        let reparsed = BatchView::parse(&encoded).expect("an encoded batch parses");
        reparsed.validate().expect("an encoded batch validates");
        assert_eq!(
            decode_records(&reparsed).as_ref(),
            Some(&records),
            "re-encoding changed records"
        );
    }
}

fn u64_from(data: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    let n = data.len().min(8);
    raw[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(raw)
}

/// Index files: the first 8 bytes are the segment base offset, the rest a file given to
/// `OffsetIndex::load` and `TimeIndex::load`; lookups on what loads; what loads re-encodes
/// to a file that loads back the same, undamaged.
pub fn index_files(data: &[u8]) {
    let base = u64_from(data);
    let file = data.get(8..).unwrap_or_default();
    let (offsets, _) = OffsetIndex::load(base, file);
    let (times, _) = TimeIndex::load(base, file);
    check_index(base, offsets.entries());
    check_index(base, times.entries());
    // Lookups at targets taken from the data and the entries themselves.
    let target = u64_from(file);
    let _ = offsets.lookup(target);
    let _ = offsets.lookup(base.saturating_add(target & 0xffff));
    for entry in offsets.entries() {
        let at = base + u64::from(entry.relative_offset);
        let found = offsets.lookup(at).expect("an entry's own offset finds an entry");
        assert!(u64::from(found.relative_offset) <= u64::from(entry.relative_offset));
    }
    for entry in times.entries() {
        if let Some(found) = times.lookup(entry.max_timestamp) {
            assert!(found.max_timestamp < entry.max_timestamp);
        }
    }
    let _ = times.lookup(target as i64);
    let _ = times.max_timestamp();
}

fn check_index<E: IndexEntry + PartialEq + std::fmt::Debug>(base: u64, entries: &[E]) {
    let bytes = encode_file(base, entries);
    let (again, damage) = crate::segment::index::Index::<E>::load(base, &bytes);
    assert_eq!(damage, None, "a re-encoded index loads without damage");
    assert_eq!(again.entries(), entries, "an index round-trips");
}

/// The recovery scan over arbitrary bytes as a log file: the first 8 bytes (big-endian, as
/// in a batch) give the offset expected at position 0 — so a real segment scans in full.
pub fn recovery_scan(data: &[u8]) {
    let offset = data.get(..8).map_or(0, |b| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        i64::from_be_bytes(raw).max(0) as u64
    });
    let len = data.len() as u64;
    let mut batches = Vec::new();
    let read = |position: u64, want: usize| -> std::io::Result<&[u8]> {
        let start = (position as usize).min(data.len());
        let end = start.saturating_add(want).min(data.len());
        Ok(&data[start..end])
    };
    let end = scan_log(read, Path::new("fuzz.log"), 0, offset, len, |_, batch| batches.push(batch))
        .expect("reading from memory does not fail");
    assert!(end.position <= len);
    assert_eq!(end.stop.is_none(), end.position == len, "{end:?}");
    let (mut position, mut next) = (0, offset);
    for batch in &batches {
        assert_eq!(batch.position, position, "batches are reported back to back");
        assert_eq!(batch.base_offset, next, "offsets continue");
        assert!(batch.next_offset > batch.base_offset);
        position += batch.len;
        next = batch.next_offset;
    }
    assert_eq!((end.position, end.next_offset), (position, next));
}

/// Topic metadata files: `TopicMeta::decode`; what decodes re-encodes to the same bytes
/// and decodes back equal; its configuration validates or not, never panics.
pub fn topic_meta(data: &[u8]) {
    let Ok(meta) = TopicMeta::decode(data) else { return };
    let encoded = meta.encode();
    let again = TopicMeta::decode(&encoded).expect("an encoded topic decodes");
    assert_eq!(again, meta, "topic metadata round-trips");
    let _ = meta.config().validate();
}

/// Configuration and command-line values: the text parsers (`Durability`, `IoChoice`,
/// `SegmentPreparation`, `Delivery`), whose names parse back; and `TopicConfig::validate`
/// on arbitrary field values, whose acceptance implies the limits hold.
pub fn config_values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for part in text.split(['\n', ' ']).chain(std::iter::once(text.as_ref())) {
        if let Ok(durability) = part.parse::<Durability>() {
            assert_eq!(durability.name().parse::<Durability>(), Ok(durability));
        }
        if let Ok(io) = part.parse::<IoChoice>() {
            assert_eq!(io.name().parse::<IoChoice>(), Ok(io));
        }
        let _ = part.parse::<SegmentPreparation>();
        if let Ok(Delivery::MicroBatch(interval)) = part.parse::<Delivery>() {
            assert!(!interval.is_zero());
        }
    }
    let mut fields = data.chunks(8).map(u64_from);
    let mut next = || fields.next().unwrap_or(0);
    let config = TopicConfig {
        partitions: next() as u32,
        segment_size_bytes: next(),
        segment_age_ms: next(),
        retention_bytes: Some(next()).filter(|v| v % 2 == 0),
        retention_ms: Some(next()).filter(|v| v % 2 == 0),
        record_size_bytes_max: next() as u32,
    };
    if config.validate().is_ok() {
        assert!(
            config.partitions >= 1 && config.partitions <= crate::limits::PARTITIONS_PER_TOPIC_MAX
        );
        assert!(config.segment_size_bytes >= crate::limits::SEGMENT_SIZE_BYTES_MIN);
        assert!(config.segment_size_bytes <= crate::limits::SEGMENT_SIZE_BYTES_MAX);
        assert!(config.record_size_bytes_max <= crate::limits::BATCH_SIZE_BYTES_MAX);
        assert!(config.segment_size_bytes.is_multiple_of(tidelog_io::BLOCK_SIZE as u64));
    }
}

/// Seed inputs for every target, made from real encodings (what `fuzz/corpus/` holds;
/// `core/tests/fuzz_smoke.rs` writes them with `TIDELOG_FUZZ_WRITE_CORPUS=1`).
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    use crate::segment::index::{OffsetEntry, TimeEntry};
    let mut out = Vec::new();
    let headers = [Header::new("trace", b"abc"), Header { key: "null", value: None }];
    let batches = [
        encode_batch(&[Record::new(b"hello")], 1_700_000_000_000, BatchOptions::default()),
        encode_batch(
            &[
                Record::new(b"v1").with_key(b"k1"),
                Record::tombstone(b"k2"),
                Record::new(b"").with_headers(&headers).with_timestamp(1_700_000_000_005),
                Record { key: None, value: None, headers: &[], timestamp: Some(-1) },
            ],
            1_700_000_000_000,
            BatchOptions::default(),
        ),
        encode_batch(&[Record::new(&[7u8; 300]); 3], 0, BatchOptions::default()),
    ];
    for (i, batch) in batches.iter().enumerate() {
        out.push(("record_batch", format!("batch-{i}"), batch.clone()));
    }
    // A log: the batches back to back with continuing offsets.
    let mut log = Vec::new();
    let mut offset = 0i64;
    for batch in &batches {
        let mut batch = batch.clone();
        crate::record::set_base_offset(&mut batch, offset);
        offset = BatchView::parse(&batch).expect("encoded").last_offset() + 1;
        log.extend_from_slice(&batch);
    }
    out.push(("record_batch", "run-of-batches".to_string(), log.clone()));
    out.push(("recovery_scan", "log".to_string(), log.clone()));
    let mut torn = log.clone();
    torn.truncate(log.len() - 17);
    out.push(("recovery_scan", "torn-tail".to_string(), torn));
    let mut garbage = log.clone();
    garbage.extend_from_slice(&[0; 64]);
    out.push(("recovery_scan", "zero-tail".to_string(), garbage));
    let base = 1234u64;
    let offsets: Vec<OffsetEntry> =
        (0..6).map(|i| OffsetEntry { relative_offset: i * 10, position: i * 4096 }).collect();
    let times: Vec<TimeEntry> = (0..6)
        .map(|i| TimeEntry {
            max_timestamp: 1_700_000_000_000 + i64::from(i),
            relative_offset: i * 10,
            position: i * 4096,
        })
        .collect();
    for (name, file) in [
        ("offset-index", encode_file(base, &offsets)),
        ("time-index", encode_file(base, &times)),
        ("empty-offset-index", encode_file::<OffsetEntry>(base, &[])),
    ] {
        let mut input = base.to_le_bytes().to_vec();
        input.extend_from_slice(&file);
        out.push(("index_files", name.to_string(), input));
    }
    let meta = TopicMeta::new(
        "orders",
        42,
        1_700_000_000_000,
        &TopicConfig::default().partitions(3).retention_bytes(Some(1 << 30)),
    );
    out.push(("topic_meta", "orders".to_string(), meta.encode()));
    let meta = TopicMeta::new("t", 1, 0, &TopicConfig::default().retention_ms(None));
    out.push(("topic_meta", "minimal".to_string(), meta.encode()));
    for (name, text) in [
        ("durability", "none written durable"),
        ("io", "auto uring portable"),
        ("preparation", "grow fallocate zero-fill"),
        ("delivery", "streaming micro-batch:100ms micro-batch:1s micro-batch:250us"),
    ] {
        out.push(("config_values", name.to_string(), text.as_bytes().to_vec()));
    }
    let valid = TopicConfig::default();
    let mut fields = Vec::new();
    for v in [
        u64::from(valid.partitions),
        valid.segment_size_bytes,
        valid.segment_age_ms,
        0,
        2,
        u64::from(valid.record_size_bytes_max),
    ] {
        fields.extend_from_slice(&v.to_le_bytes());
    }
    out.push(("config_values", "topic-config".to_string(), fields));
    out
}
