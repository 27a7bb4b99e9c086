//! Committed data directories of each on-disk format version must keep opening, with exactly
//! the records they were written with (STYLE §11).
//!
//! `core/tests/fixtures/v1/` was written by format version 1 (segment files of Kafka v2
//! batches, index version 1, topic metadata version 1). `clean/` was closed cleanly; `torn/`
//! is the same directory with a torn batch appended to one partition's active segment, as a
//! crash leaves it.
//!
//! To write a new version's fixtures (never rewrite an old version's):
//! `TIDELOG_WRITE_FIXTURES=core/tests/fixtures/vN cargo test -p tidelog-core --test fixtures -- --ignored`

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidelog_core::{Durability, Engine, EngineConfig, Header, ReadRequest, Record, TopicConfig};
use tidelog_io::ManualClock;

const TOPIC: &str = "fixture";
const PARTITIONS: u32 = 2;
const RECORDS_PER_PARTITION: u64 = 300;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1").join(name)
}

/// The records the fixtures hold: deterministic keys, values, headers and timestamps.
fn record_value(partition: u32, i: u64) -> Vec<u8> {
    format!("partition {partition} record {i} {}", "·".repeat((i % 13) as usize)).into_bytes()
}

fn record_key(i: u64) -> Option<Vec<u8>> {
    (!i.is_multiple_of(3)).then(|| format!("key-{}", i % 17).into_bytes())
}

const BASE_TIME_MS: i64 = 1_700_000_000_000;

fn write_fixture(dir: &Path) {
    let clock = ManualClock::new(BASE_TIME_MS);
    let config = EngineConfig::default().shards(1).clock(Arc::new(clock.clone()));
    let engine = Engine::open(dir, config).unwrap();
    engine
        .create_topic(
            TOPIC,
            TopicConfig::default()
                .partitions(PARTITIONS)
                .segment_size_bytes(16 * 1024)
                .record_size_bytes_max(8192),
        )
        .unwrap();
    for partition in 0..PARTITIONS {
        let mut i = 0;
        while i < RECORDS_PER_PARTITION {
            let count = 1 + (i % 4);
            let values: Vec<(Option<Vec<u8>>, Vec<u8>)> = (i..(i + count)
                .min(RECORDS_PER_PARTITION))
                .map(|j| (record_key(j), record_value(partition, j)))
                .collect();
            let headers =
                [Header { key: "n", value: Some(b"1") }, Header { key: "null", value: None }];
            let records: Vec<Record<'_>> = values
                .iter()
                .enumerate()
                .map(|(k, (key, value))| {
                    let record = Record::new(value)
                        .with_timestamp(BASE_TIME_MS + (i + k as u64) as i64 * 10)
                        .with_headers(&headers);
                    match key {
                        Some(key) => record.with_key(key),
                        None => record,
                    }
                })
                .collect();
            engine.append(TOPIC, partition, &records, Durability::Durable).unwrap();
            i += values.len() as u64;
            clock.advance_ms(1);
        }
    }
    engine.close().unwrap();
    std::fs::remove_file(dir.join("LOCK")).ok();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn check_records(dir: &Path) {
    let engine = Engine::open(dir, EngineConfig::default().shards(2)).unwrap();
    assert_eq!(engine.topics(), vec![TOPIC.to_string()]);
    for partition in 0..PARTITIONS {
        let info = engine.partition_info(TOPIC, partition).unwrap();
        assert_eq!(info.high_watermark, RECORDS_PER_PARTITION, "partition {partition}");
        assert!(info.segments.len() > 1, "the fixture has closed segments");
        let mut offset = 0;
        while offset < info.high_watermark {
            let fetch = engine.read(TOPIC, partition, ReadRequest::new(offset)).unwrap();
            for record in fetch.records() {
                let record = record.unwrap();
                let i = record.offset() as u64;
                assert_eq!(i, offset);
                assert_eq!(record.value(), Some(&record_value(partition, i)[..]));
                assert_eq!(record.key(), record_key(i).as_deref());
                assert_eq!(record.timestamp(), BASE_TIME_MS + i as i64 * 10);
                let headers: Vec<_> = record
                    .headers()
                    .map(|h| h.unwrap())
                    .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect();
                assert_eq!(
                    headers,
                    vec![(b"n".to_vec(), Some(b"1".to_vec())), (b"null".to_vec(), None)]
                );
                offset += 1;
            }
        }
        assert_eq!(
            engine.offset_for_timestamp(TOPIC, partition, BASE_TIME_MS + 1234).unwrap(),
            Some(124)
        );
    }
    engine.close().unwrap();
}

#[test]
fn v1_clean_fixture_opens() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir("clean"), dir.path());
    check_records(dir.path());
}

#[test]
fn v1_torn_fixture_recovers_to_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir("torn"), dir.path());
    check_records(dir.path());
}

#[test]
#[ignore = "writes fixtures; run by hand for a new format version"]
fn write_fixtures() {
    let Ok(root) = std::env::var("TIDELOG_WRITE_FIXTURES") else { return };
    let root = PathBuf::from(root);
    let clean = root.join("clean");
    write_fixture(&clean);
    let torn = root.join("torn");
    copy_dir(&clean, &torn);
    // A crash mid-append: the first 100 bytes of a valid batch after the last one.
    let partition = torn.join("topics").join(TOPIC).join("1");
    let mut logs: Vec<_> = std::fs::read_dir(&partition)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let active = logs.last().unwrap();
    let batch = tidelog_core::record::encode_batch(
        &[Record::new(&[7u8; 500])],
        BASE_TIME_MS,
        Default::default(),
    );
    let mut bytes = std::fs::read(active).unwrap();
    bytes.extend_from_slice(&batch[..100]);
    std::fs::write(active, bytes).unwrap();
}
