//! Consumers in both delivery modes.

use std::time::{Duration, Instant};

use tidelog_core::{
    Consumer, ConsumerConfig, Delivery, Durability, Engine, EngineConfig, Record, TopicConfig,
};

fn engine(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(dir, EngineConfig::default().shards(2)).unwrap();
    engine.create_topic("t", TopicConfig::default().partitions(4)).unwrap();
    engine
}

fn values(fetches: &[tidelog_core::Fetch]) -> Vec<(u32, String)> {
    fetches
        .iter()
        .flat_map(|f| {
            f.records().map(move |r| {
                (f.partition(), String::from_utf8(r.unwrap().value().unwrap().to_vec()).unwrap())
            })
        })
        .collect()
}

#[test]
fn streaming_consumer_is_woken_by_appends_on_any_partition() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let partitions: Vec<(u32, u64)> = (0..4).map(|p| (p, 0)).collect();
    let mut consumer = Consumer::new(&engine, "t", &partitions, ConsumerConfig::default()).unwrap();
    assert!(consumer.poll(Duration::from_millis(20)).unwrap().is_empty());
    let producer = engine.clone();
    let handle = std::thread::spawn(move || {
        for i in 0..40u32 {
            producer
                .append("t", i % 4, &[Record::new(format!("m{i}").as_bytes())], Durability::None)
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let mut got = Vec::new();
    let started = Instant::now();
    while got.len() < 40 && started.elapsed() < Duration::from_secs(10) {
        got.extend(values(&consumer.poll(Duration::from_secs(1)).unwrap()));
    }
    handle.join().unwrap();
    assert_eq!(got.len(), 40);
    for p in 0..4u32 {
        let mine: Vec<_> = got.iter().filter(|(q, _)| *q == p).map(|(_, v)| v.clone()).collect();
        let want: Vec<_> = (0..40u32).filter(|i| i % 4 == p).map(|i| format!("m{i}")).collect();
        assert_eq!(mine, want, "partition {p} in order");
    }
    assert_eq!(consumer.positions(), vec![(0, 10), (1, 10), (2, 10), (3, 10)]);
}

#[test]
fn micro_batch_consumer_hands_over_on_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let config = ConsumerConfig {
        delivery: Delivery::MicroBatch(Duration::from_millis(100)),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&engine, "t", &[(0, 0), (1, 0)], config).unwrap();
    for i in 0..10u32 {
        engine
            .append("t", i % 2, &[Record::new(format!("m{i}").as_bytes())], Durability::Written)
            .unwrap();
    }
    let started = Instant::now();
    let batch = values(&consumer.poll(Duration::from_secs(5)).unwrap());
    let waited = started.elapsed();
    assert_eq!(batch.len(), 10, "everything visible at the trigger comes in one batch");
    assert!(
        waited >= Duration::from_millis(60),
        "handed over at the trigger, not at once: {waited:?}"
    );
    // Nothing new: the next trigger hands over nothing.
    assert!(consumer.poll(Duration::from_secs(5)).unwrap().is_empty());
    // A timeout shorter than the interval returns empty.
    assert!(consumer.poll(Duration::from_millis(1)).unwrap().is_empty());
}

#[test]
fn bad_assignments_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    assert!(Consumer::new(&engine, "t", &[(9, 0)], ConsumerConfig::default()).is_err());
    assert!(Consumer::new(&engine, "missing", &[(0, 0)], ConsumerConfig::default()).is_err());
    let config = ConsumerConfig { max_bytes: 0, ..ConsumerConfig::default() };
    assert!(Consumer::new(&engine, "t", &[(0, 0)], config).is_err());
}
