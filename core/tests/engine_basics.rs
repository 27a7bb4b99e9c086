//! The embedding API end to end on the portable backend.

use std::time::Duration;

use tidelog_core::{Durability, Engine, EngineConfig, Error, ReadRequest, Record, TopicConfig};

fn open(dir: &std::path::Path) -> Engine {
    Engine::open(dir, EngineConfig::default().shards(2)).unwrap()
}

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_topic("events", TopicConfig::default().partitions(4)).unwrap();
    let mut expected = Vec::new();
    for i in 0..200u32 {
        let value = format!("value-{i}");
        let durability =
            [Durability::None, Durability::Written, Durability::Durable][i as usize % 3];
        let result =
            engine.append("events", i % 4, &[Record::new(value.as_bytes())], durability).unwrap();
        expected.push((i % 4, result.base_offset, value));
    }
    let check = |engine: &Engine| {
        for partition in 0..4 {
            let mut offset = 0;
            let mut values = Vec::new();
            loop {
                let fetch = engine
                    .read("events", partition, ReadRequest::new(offset).max_bytes(256))
                    .unwrap();
                if fetch.is_empty() {
                    break;
                }
                for record in fetch.records() {
                    let record = record.unwrap();
                    assert_eq!(record.offset() as u64, offset);
                    values.push(String::from_utf8(record.value().unwrap().to_vec()).unwrap());
                    offset += 1;
                }
                assert_eq!(fetch.next_offset(), offset);
            }
            let want: Vec<_> = expected
                .iter()
                .filter(|(p, _, _)| *p == partition)
                .map(|(_, _, v)| v.clone())
                .collect();
            assert_eq!(values, want, "partition {partition}");
        }
    };
    check(&engine);
    engine.close().unwrap();
    let engine = open(dir.path());
    assert_eq!(engine.topics(), vec!["events".to_string()]);
    check(&engine);
    let info = engine.partition_info("events", 0).unwrap();
    assert_eq!(info.high_watermark, 50);
    assert_eq!(info.durable_offset, 50);
    engine.close().unwrap();
}

#[test]
fn errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .create_topic("t", TopicConfig::default().partitions(2).record_size_bytes_max(1000))
        .unwrap();
    assert!(matches!(
        engine.create_topic("t", TopicConfig::default()),
        Err(Error::TopicExists { .. })
    ));
    assert!(matches!(
        engine.create_topic("a/b", TopicConfig::default()),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(matches!(
        engine.append("nope", 0, &[Record::new(b"x")], Durability::None),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        engine.append("t", 2, &[Record::new(b"x")], Durability::None),
        Err(Error::PartitionOutOfRange { .. })
    ));
    assert!(matches!(engine.append("t", 0, &[], Durability::None), Err(Error::EmptyBatch)));
    let big = vec![7u8; 2000];
    assert!(matches!(
        engine.append("t", 0, &[Record::new(&big)], Durability::None),
        Err(Error::RecordTooLarge { .. })
    ));
    engine.append("t", 0, &[Record::new(b"x")], Durability::Written).unwrap();
    assert!(matches!(
        engine.read("t", 0, ReadRequest::new(5)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(engine.read("t", 0, ReadRequest::new(1)).unwrap().is_empty());
    assert!(matches!(
        Engine::open(dir.path(), EngineConfig::default()),
        Err(Error::DirectoryInUse { .. })
    ));
    engine.close().unwrap();
    assert!(matches!(
        engine.append("t", 0, &[Record::new(b"x")], Durability::None),
        Err(Error::Closed)
    ));
}

#[test]
fn long_poll_read_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_topic("t", TopicConfig::default()).unwrap();
    let reader = engine.clone();
    let handle = std::thread::spawn(move || {
        reader.read("t", 0, ReadRequest::new(0).max_wait(Duration::from_secs(10))).unwrap()
    });
    std::thread::sleep(Duration::from_millis(50));
    engine.append("t", 0, &[Record::new(b"wake")], Durability::None).unwrap();
    let fetch = handle.join().unwrap();
    assert_eq!(fetch.records().next().unwrap().unwrap().value(), Some(&b"wake"[..]));
    let started = std::time::Instant::now();
    let empty =
        engine.read("t", 0, ReadRequest::new(1).max_wait(Duration::from_millis(30))).unwrap();
    assert!(empty.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[test]
fn segments_roll_and_retention_deletes_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let config = TopicConfig::default()
        .segment_size_bytes(64 * 1024)
        .retention_bytes(Some(200 * 1024))
        .record_size_bytes_max(8192);
    engine.create_topic("t", config).unwrap();
    let value = vec![1u8; 1000];
    for _ in 0..1000 {
        engine.append("t", 0, &[Record::new(&value)], Durability::Written).unwrap();
    }
    let info = engine.partition_info("t", 0).unwrap();
    assert!(info.segments.len() > 10, "{} segments", info.segments.len());
    engine.run_maintenance().unwrap();
    let info = engine.partition_info("t", 0).unwrap();
    assert!(
        info.size_bytes() >= 200 * 1024 && info.size_bytes() < 300 * 1024,
        "{}",
        info.size_bytes()
    );
    assert!(info.log_start_offset > 0);
    assert_eq!(info.log_start_offset, info.segments[0].base_offset);
    assert!(matches!(
        engine.read("t", 0, ReadRequest::new(0)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let fetch = engine.read("t", 0, ReadRequest::new(info.log_start_offset)).unwrap();
    assert_eq!(fetch.records().next().unwrap().unwrap().offset() as u64, info.log_start_offset);
    // Reads across every remaining segment.
    let mut offset = info.log_start_offset;
    while offset < 1000 {
        let fetch = engine.read("t", 0, ReadRequest::new(offset).max_bytes(10_000)).unwrap();
        for record in fetch.records() {
            assert_eq!(record.unwrap().offset() as u64, offset);
            offset += 1;
        }
    }
    engine.close().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let reopened = engine.partition_info("t", 0).unwrap();
    assert_eq!(reopened.log_start_offset, info.log_start_offset);
    assert_eq!(reopened.high_watermark, 1000);
    assert_eq!(reopened.segments.len(), info.segments.len());
}

#[test]
fn timestamp_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(32 * 1024).record_size_bytes_max(8192),
        )
        .unwrap();
    let value = vec![0u8; 500];
    for i in 0..500i64 {
        engine
            .append(
                "t",
                0,
                &[Record::new(&value).with_timestamp(10_000 + i * 10)],
                Durability::Written,
            )
            .unwrap();
    }
    assert_eq!(engine.offset_for_timestamp("t", 0, 0).unwrap(), Some(0));
    assert_eq!(engine.offset_for_timestamp("t", 0, 10_000).unwrap(), Some(0));
    assert_eq!(engine.offset_for_timestamp("t", 0, 10_001).unwrap(), Some(1));
    assert_eq!(engine.offset_for_timestamp("t", 0, 12_345).unwrap(), Some(235));
    assert_eq!(engine.offset_for_timestamp("t", 0, 10_000 + 499 * 10).unwrap(), Some(499));
    assert_eq!(engine.offset_for_timestamp("t", 0, 20_000).unwrap(), None);
    engine.close().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.offset_for_timestamp("t", 0, 12_345).unwrap(), Some(235));
}

#[test]
fn delete_topic_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_topic("t", TopicConfig::default().partitions(3)).unwrap();
    engine.append("t", 1, &[Record::new(b"x")], Durability::Durable).unwrap();
    engine.delete_topic("t").unwrap();
    assert!(engine.topics().is_empty());
    assert!(matches!(engine.read("t", 0, ReadRequest::new(0)), Err(Error::UnknownTopic { .. })));
    engine.create_topic("t", TopicConfig::default()).unwrap();
    assert_eq!(engine.partition_info("t", 0).unwrap().high_watermark, 0);
    assert!(matches!(engine.delete_topic("zzz"), Err(Error::UnknownTopic { .. })));
}

#[test]
fn direct_io_appends_of_every_size_read_back_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let config = || EngineConfig::default().shards(1).direct_io(true);
    let engine = Engine::open(dir.path(), config()).unwrap();
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(256 * 1024).record_size_bytes_max(64 * 1024),
        )
        .unwrap();
    let mut expected = Vec::new();
    for i in 0..400usize {
        let value = vec![(i % 251) as u8; (i * 97) % 9000 + 1];
        let durability = [Durability::None, Durability::Written, Durability::Durable][i % 3];
        engine.append("t", 0, &[Record::new(&value)], durability).unwrap();
        expected.push(value);
    }
    let check = |engine: &Engine| {
        let mut offset = 0;
        let mut got = Vec::new();
        while offset < expected.len() as u64 {
            let fetch = engine.read("t", 0, ReadRequest::new(offset)).unwrap();
            for record in fetch.records() {
                got.push(record.unwrap().value().unwrap().to_vec());
            }
            offset = fetch.next_offset();
        }
        assert!(got == expected, "records differ");
    };
    check(&engine);
    assert!(engine.partition_info("t", 0).unwrap().segments.len() > 3);
    engine.close().unwrap();
    let engine = Engine::open(dir.path(), config()).unwrap();
    check(&engine);
    // Appending after recovery rewrites the partial last block correctly.
    engine.append("t", 0, &[Record::new(b"after")], Durability::Durable).unwrap();
    engine.close().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(1)).unwrap();
    assert_eq!(engine.partition_info("t", 0).unwrap().high_watermark, 401);
    engine.close().unwrap();
}

/// Found by the simulation (seed 22): a read served from the tail cache continued into the
/// next cached chunk with whatever budget was left and always took that chunk's first batch,
/// so it could return more than `max_bytes` (which only the first batch of a fetch may
/// exceed).
#[test]
fn reads_from_the_tail_cache_keep_to_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(1)).unwrap();
    engine.create_topic("t", TopicConfig::default()).unwrap();
    // Each append is written (and cached) on its own.
    for i in 0..4u8 {
        engine.append("t", 0, &[Record::new(&[i; 100])], Durability::Written).unwrap();
    }
    let one = engine.read("t", 0, ReadRequest::new(0).max_bytes(1)).unwrap().len_bytes();
    for max_bytes in [one, one + 1, one + one / 2, 2 * one, 2 * one + 1, 3 * one + 10] {
        let fetch = engine.read("t", 0, ReadRequest::new(0).max_bytes(max_bytes)).unwrap();
        assert!(
            fetch.len_bytes() <= max_bytes,
            "max_bytes {max_bytes}: {} bytes returned (a batch is {one})",
            fetch.len_bytes()
        );
        assert_eq!(fetch.len_bytes() / one, max_bytes / one, "max_bytes {max_bytes}");
    }
    engine.close().unwrap();
}

#[test]
fn a_batch_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let topic = TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(1 << 20);
    let values: Vec<Vec<u8>> =
        [100usize, 200 * 1024, 10, 40 * 1024, 5].iter().map(|&n| vec![n as u8; n]).collect();
    let engine = open(dir.path());
    engine.create_topic("big", topic).unwrap();
    for value in &values {
        engine.append("big", 0, &[Record::new(value)], Durability::Durable).unwrap();
    }
    let check = |engine: &Engine| {
        for (offset, value) in values.iter().enumerate() {
            let fetch = engine.read("big", 0, ReadRequest::new(offset as u64)).unwrap();
            let record = fetch.records().next().unwrap().unwrap();
            assert_eq!(record.offset() as usize, offset);
            assert_eq!(record.value().unwrap(), &value[..], "offset {offset}");
        }
        let info = engine.partition_info("big", 0).unwrap();
        assert_eq!(info.high_watermark, values.len() as u64);
        assert!(info.segments.len() >= 3, "{:?}", info.segments);
    };
    check(&engine);
    engine.close().unwrap();
    let engine = open(dir.path());
    check(&engine);
    engine.close().unwrap();
}
