//! Many appends in flight from several threads, every durability, across shards: everything
//! is acknowledged, nothing is lost, order holds per partition — on every backend and both
//! I/O modes — and streaming consumers reading while it is written see every record exactly
//! once, in order.

use std::time::{Duration, Instant};

use tidelog_core::{
    Consumer, ConsumerConfig, Durability, Engine, EngineConfig, IoChoice, ReadRequest, Record,
    TopicConfig,
};

/// Records each producer sends; each partition gets `PER_PRODUCER / partitions` of them.
const PER_PRODUCER: u32 = 6000;

/// A streaming consumer of `partitions`, running until it has `expected` records from each:
/// offsets contiguous from 0 (nothing skipped, nothing twice) and each producer's records in
/// the order it sent them.
fn consume(engine: Engine, partitions: Vec<u32>, expected: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let assignments: Vec<(u32, u64)> = partitions.iter().map(|&p| (p, 0)).collect();
        let mut consumer =
            Consumer::new(&engine, "t", &assignments, ConsumerConfig::default()).unwrap();
        let mut next: std::collections::HashMap<u32, u64> =
            partitions.iter().map(|&p| (p, 0)).collect();
        let mut last_i: std::collections::HashMap<(u32, u32), u32> = Default::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        while next.values().any(|&n| n < expected) {
            assert!(Instant::now() < deadline, "consumer stalled at {next:?}");
            for fetch in consumer.poll(Duration::from_millis(100)).unwrap() {
                let partition = fetch.partition();
                for record in fetch.records() {
                    let record = record.unwrap();
                    let at = next.get_mut(&partition).unwrap();
                    assert_eq!(record.offset() as u64, *at, "partition {partition}");
                    *at += 1;
                    let value = String::from_utf8(record.value().unwrap().to_vec()).unwrap();
                    let mut words = value.split(' ');
                    let producer: u32 = words.next().unwrap()[1..].parse().unwrap();
                    let i: u32 = words.next().unwrap()[1..].parse().unwrap();
                    if let Some(previous) = last_i.insert((partition, producer), i) {
                        assert!(
                            previous < i,
                            "partition {partition}: p{producer} i{i} after i{previous}"
                        );
                    }
                }
            }
        }
        assert!(next.values().all(|&n| n == expected), "more records than sent: {next:?}");
    })
}

fn stress(io: IoChoice, direct: bool) {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Engine::open(dir.path(), EngineConfig::default().shards(2).io(io).direct_io(direct))
            .unwrap();
    let partitions = 4u32;
    engine
        .create_topic(
            "t",
            TopicConfig::default().partitions(partitions).segment_size_bytes(1 << 20),
        )
        .unwrap();
    let expected = u64::from(3 * PER_PRODUCER / partitions);
    let consumers = vec![
        consume(engine.clone(), vec![0, 2], expected),
        consume(engine.clone(), vec![1, 3], expected),
    ];
    let producers: Vec<_> = (0..3u32)
        .map(|producer| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut pending = std::collections::VecDeque::new();
                for i in 0..PER_PRODUCER {
                    // 1 KiB single-record appends, as an open-loop producer sends them.
                    let partition = (producer + i) % partitions;
                    let durability = [Durability::Durable, Durability::Written, Durability::None, Durability::Durable][i as usize % 4];
                    let value = format!("p{producer} i{i} {}", "z".repeat((i % 900) as usize));
                    pending.push_back(engine.append_async("t", partition, &[Record::new(value.as_bytes())], durability));
                    if pending.len() >= 512 {
                        let front: tidelog_core::Pending<_> = pending.pop_front().unwrap();
                        match front.wait_timeout(Duration::from_secs(20)) {
                            Ok(result) => {
                                result.unwrap();
                            }
                            Err(_) => panic!("an append was not acknowledged within 20 s ({io:?}, direct {direct})"),
                        }
                    }
                }
                for ack in pending {
                    match ack.wait_timeout(Duration::from_secs(20)) {
                        Ok(result) => {
                            result.unwrap();
                        }
                        Err(_) => panic!("an append was not acknowledged within 20 s ({io:?}, direct {direct})"),
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    for consumer in consumers {
        consumer.join().unwrap();
    }
    let started = Instant::now();
    let mut total = 0;
    for partition in 0..partitions {
        let info = engine.partition_info("t", partition).unwrap();
        assert!(info.durable_offset <= info.high_watermark && info.failed.is_none(), "{info:?}");
        let mut offset = 0;
        while offset < info.high_watermark {
            let fetch = engine.read("t", partition, ReadRequest::new(offset)).unwrap();
            for record in fetch.records() {
                assert_eq!(record.unwrap().offset() as u64, offset);
                offset += 1;
            }
        }
        total += offset;
    }
    assert_eq!(total, 18_000);
    assert!(started.elapsed() < Duration::from_secs(30));
    engine.close().unwrap();
}

#[test]
fn stress_portable_buffered() {
    stress(IoChoice::Portable, false);
}

#[test]
fn stress_portable_direct() {
    stress(IoChoice::Portable, true);
}

#[test]
fn stress_uring_buffered() {
    if tidelog_io::uring::probe().is_ok() {
        stress(IoChoice::Uring, false);
    }
}

#[test]
fn stress_uring_direct() {
    if tidelog_io::uring::probe().is_ok() {
        stress(IoChoice::Uring, true);
    }
}

/// Thousands of durable appends to one partition arriving while its fdatasync is in flight:
/// they must accumulate in one buffer and go out together (a buffer per append once made a
/// chain longer than the submission queue, which then never went out).
fn durable_flood(io: IoChoice, direct: bool) {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Engine::open(dir.path(), EngineConfig::default().shards(1).io(io).direct_io(direct))
            .unwrap();
    engine.create_topic("t", TopicConfig::default()).unwrap();
    let producers: Vec<_> = (0..4u32)
        .map(|producer| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let value = vec![producer as u8; 1024];
                let pending: Vec<_> = (0..2000)
                    .map(|_| engine.append_async("t", 0, &[Record::new(&value)], Durability::Durable))
                    .collect();
                for ack in pending {
                    match ack.wait_timeout(Duration::from_secs(20)) {
                        Ok(result) => {
                            result.unwrap();
                        }
                        Err(_) => panic!("a durable append was not acknowledged within 20 s ({io:?}, direct {direct})"),
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let info = engine.partition_info("t", 0).unwrap();
    assert_eq!(info.durable_offset, 8000);
    assert!(info.stats.syncs < 8000, "group commit shared the syncs: {:?}", info.stats);
    engine.close().unwrap();
}

#[test]
fn durable_flood_portable() {
    durable_flood(IoChoice::Portable, false);
    durable_flood(IoChoice::Portable, true);
}

#[test]
fn durable_flood_uring() {
    if tidelog_io::uring::probe().is_ok() {
        durable_flood(IoChoice::Uring, false);
        durable_flood(IoChoice::Uring, true);
    }
}
