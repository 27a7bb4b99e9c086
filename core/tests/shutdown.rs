//! Shutdown with appends in flight loses nothing acknowledged; one shard's storage failing
//! is reported and fails only its partitions.

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tidelog_core::{Durability, Engine, EngineConfig, Error, ReadRequest, Record, TopicConfig};
use tidelog_io::sim::SimDisk;
use tidelog_io::{BackendKind, Completion, Storage, StorageFactory, Wait};

#[test]
fn close_with_appends_in_flight_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(2)).unwrap();
    engine.create_topic("t", TopicConfig::default().partitions(4)).unwrap();
    let producers: Vec<_> = (0..3u32)
        .map(|producer| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                for i in 0..20_000u32 {
                    let value = format!("p{producer}-{i}");
                    let durability = [Durability::None, Durability::Written, Durability::Durable]
                        [i as usize % 3];
                    let partition = i % 4;
                    pending.push((
                        partition,
                        value.clone(),
                        engine.append_async(
                            "t",
                            partition,
                            &[Record::new(value.as_bytes())],
                            durability,
                        ),
                    ));
                }
                let mut acked = Vec::new();
                for (partition, value, ack) in pending {
                    match ack.wait() {
                        Ok(result) => acked.push((partition, result.base_offset, value)),
                        Err(Error::Closed | Error::ShardStopped { .. }) => {}
                        Err(other) => panic!("unexpected error during shutdown: {other}"),
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(30));
    engine.close().unwrap();
    let acked: Vec<_> = producers.into_iter().flat_map(|p| p.join().unwrap()).collect();
    assert!(!acked.is_empty());
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(2)).unwrap();
    for (partition, offset, value) in &acked {
        let fetch = engine.read("t", *partition, ReadRequest::new(*offset).max_bytes(1)).unwrap();
        let record = fetch.records().next().unwrap().unwrap();
        assert_eq!(record.offset() as u64, *offset);
        assert_eq!(
            record.value(),
            Some(value.as_bytes()),
            "acknowledged record {partition}@{offset} changed"
        );
    }
    engine.close().unwrap();
}

/// A simulated storage whose `complete` fails (the whole ring, not one operation) once the
/// test says so, for the storages made after `fail_from` was set.
struct FailingRing {
    inner: Box<dyn Storage>,
    shard: usize,
    failing_shard: Arc<AtomicUsize>,
}

impl Storage for FailingRing {
    common::storage_pass_through!(open, close, submit, in_flight, queue_depth);
    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        if self.failing_shard.load(Ordering::SeqCst) == self.shard {
            return Err(io::Error::other("ring failed (injected)"));
        }
        self.inner.complete(out, wait)
    }
}

impl std::fmt::Debug for FailingRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailingRing").field("shard", &self.shard).finish()
    }
}

/// Numbers the storages it makes: the control storage is first, then shard 0, shard 1, ...
#[derive(Debug)]
struct FailingFactory {
    disk: SimDisk,
    made: AtomicUsize,
    failing_shard: Arc<AtomicUsize>,
}

impl StorageFactory for FailingFactory {
    fn kind(&self) -> BackendKind {
        BackendKind::Simulated
    }
    fn create(&self) -> io::Result<Box<dyn Storage>> {
        let index = self.made.fetch_add(1, Ordering::SeqCst);
        // Storage 0 is the engine's control storage; shards start at 1.
        let shard = index.wrapping_sub(1);
        Ok(Box::new(FailingRing {
            inner: Box::new(self.disk.storage()),
            shard,
            failing_shard: self.failing_shard.clone(),
        }))
    }
}

#[test]
fn a_failed_ring_fails_its_shards_partitions_and_is_reported() {
    let failing_shard = Arc::new(AtomicUsize::new(usize::MAX - 1)); // none yet
    let factory = FailingFactory {
        disk: SimDisk::new(9),
        made: AtomicUsize::new(0),
        failing_shard: failing_shard.clone(),
    };
    // Manual shards: shard creation order (and so which storage is which) is fixed.
    let engine = Engine::open(
        "/sim/data",
        EngineConfig::default().shards(2).manual_shards(true).storage(Arc::new(factory)),
    )
    .unwrap();
    engine.create_topic("t", TopicConfig::default().partitions(4)).unwrap();
    for partition in 0..4 {
        engine.append("t", partition, &[Record::new(b"before")], Durability::Durable).unwrap();
    }
    let victim = engine.shard_of("t", 0);
    failing_shard.store(victim, Ordering::SeqCst);
    for partition in 0..4 {
        let result = engine.append("t", partition, &[Record::new(b"after")], Durability::Durable);
        if engine.shard_of("t", partition) == victim {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::ShardStopped { .. } | Error::PartitionFailed { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("ring failed"), "the cause is reported: {err}");
            assert!(matches!(
                engine.partition_info("t", partition),
                Err(Error::ShardStopped { .. })
            ));
        } else {
            result.unwrap();
            assert_eq!(engine.partition_info("t", partition).unwrap().high_watermark, 2);
        }
    }
    let closed = engine.close();
    assert!(
        matches!(&closed, Err(Error::ShardStopped { shard, .. }) if *shard == victim),
        "{closed:?}"
    );
}
