//! Manually run shards: with the simulated disk and a manual clock a whole engine runs on the
//! test's thread, deterministically.

use std::sync::Arc;

use tidelog_core::{Durability, Engine, EngineConfig, ReadRequest, Record, TopicConfig};
use tidelog_io::ManualClock;
use tidelog_io::sim::SimDisk;

/// Run a fixed workload on a fresh simulated disk; return every file's bytes.
fn run(seed: u64) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let disk = SimDisk::new(seed);
    let clock = ManualClock::new(1_700_000_000_000);
    let config = || {
        EngineConfig::default()
            .shards(3)
            .manual_shards(true)
            .storage(Arc::new(disk.factory()))
            .clock(Arc::new(clock.clone()))
    };
    let engine = Engine::open("/sim/data", config()).unwrap();
    engine
        .create_topic(
            "t",
            TopicConfig::default()
                .partitions(5)
                .segment_size_bytes(16 * 1024)
                .record_size_bytes_max(4096),
        )
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..300u32 {
        let value = format!("record {i} {}", "x".repeat((i as usize * 7) % 300));
        let durability =
            [Durability::None, Durability::Written, Durability::Durable][i as usize % 3];
        pending.push(engine.append_async("t", i % 5, &[Record::new(value.as_bytes())], durability));
        if i % 7 == 0 {
            engine.step((i % 3) as usize);
            clock.advance_ms(1);
        }
    }
    for ack in pending {
        engine.block_on(ack).unwrap();
    }
    for partition in 0..5 {
        let fetch = engine.read("t", partition, ReadRequest::new(0)).unwrap();
        assert_eq!(fetch.records().count(), 60);
    }
    engine.close().unwrap();
    // Reopen (recovery runs on the same thread) and check.
    let engine = Engine::open("/sim/data", config()).unwrap();
    assert_eq!(engine.partition_info("t", 4).unwrap().high_watermark, 60);
    engine.close().unwrap();
    let mut files: Vec<_> = disk
        .paths()
        .into_iter()
        .filter_map(|p| disk.read(&p).ok().map(|bytes| (p, bytes)))
        .collect();
    files.sort();
    files
}

#[test]
fn manual_shards_run_on_the_callers_thread_and_are_deterministic() {
    let first = run(42);
    let second = run(42);
    assert!(!first.is_empty());
    assert_eq!(first.len(), second.len());
    for ((path_a, bytes_a), (path_b, bytes_b)) in first.iter().zip(&second) {
        assert_eq!(path_a, path_b);
        assert!(bytes_a == bytes_b, "{} differs between two runs of one seed", path_a.display());
    }
}
