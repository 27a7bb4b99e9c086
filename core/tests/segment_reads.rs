//! Fetches that the tail cache cannot serve read the segment file:
//!
//! - into a buffer from `Storage::alloc_read_buf` — on io_uring a registered pool slot while
//!   more than half the pool is free (`READ_FIXED`), else the heap — and nothing else asks
//!   for one (recovery's and index loading's reads are not handed to readers);
//! - through the ring, without the shard waiting: while a fetch's read is in flight, the
//!   shard serves appends to its other partitions.

mod common;

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidelog_core::{Durability, Engine, EngineConfig, IoChoice, ReadRequest, Record, TopicConfig};
use tidelog_io::{
    AlignedBuf, BackendKind, Completion, Op, Storage, StorageFactory, Submission, Wait,
};

#[derive(Debug, Default)]
struct Counts {
    /// `alloc_read_buf` calls.
    read_bufs: AtomicUsize,
    /// Of those, answered with a pool slot.
    pooled: AtomicUsize,
}

struct CountingReads {
    inner: Box<dyn Storage>,
    counts: Arc<Counts>,
}

impl Storage for CountingReads {
    common::storage_pass_through!(open, close, submit, in_flight, queue_depth, complete);
    fn alloc_read_buf(&mut self, len: usize) -> AlignedBuf {
        let buf = self.inner.alloc_read_buf(len);
        self.counts.read_bufs.fetch_add(1, Ordering::SeqCst);
        if buf.is_pooled() {
            self.counts.pooled.fetch_add(1, Ordering::SeqCst);
        }
        buf
    }
}

#[derive(Debug)]
struct CountingFactory {
    inner: Arc<dyn StorageFactory>,
    counts: Arc<Counts>,
}

impl StorageFactory for CountingFactory {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn create(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(CountingReads { inner: self.inner.create()?, counts: self.counts.clone() }))
    }
}

fn config(choice: IoChoice, counts: &Arc<Counts>) -> EngineConfig {
    let base = EngineConfig::default().shards(1).io(choice).pin_shards(false);
    let real = base.clone().storage_factory().unwrap();
    base.storage(Arc::new(CountingFactory { inner: real, counts: counts.clone() }))
}

#[test]
fn segment_reads_go_into_read_buffers_pooled_on_io_uring() {
    let mut choices = vec![IoChoice::Portable];
    match tidelog_io::uring::probe() {
        Ok(_) => choices.push(IoChoice::Uring),
        Err(reason) => println!("skipped io_uring: {reason}"),
    }
    for choice in choices {
        let dir = tempfile::tempdir().unwrap();
        let counts = Arc::new(Counts::default());
        let values: Vec<Vec<u8>> = (0..400u32).map(|i| vec![i as u8; 1000]).collect();
        {
            let engine = Engine::open(dir.path(), config(choice, &counts)).unwrap();
            engine.create_topic("t", TopicConfig::default().partitions(1)).unwrap();
            for value in &values {
                engine.append("t", 0, &[Record::new(value)], Durability::Written).unwrap();
            }
            engine.close().unwrap();
        }
        assert_eq!(counts.read_bufs.load(Ordering::SeqCst), 0, "{choice:?}: writes only");
        // Reopened, the tail cache is empty: reads come from the segment file.
        let engine = Engine::open(dir.path(), config(choice, &counts)).unwrap();
        assert_eq!(
            counts.read_bufs.load(Ordering::SeqCst),
            0,
            "{choice:?}: recovery's reads are not fetches"
        );
        let mut offset = 0u64;
        let mut fetches = Vec::new();
        while offset < values.len() as u64 {
            let fetch = engine.read("t", 0, ReadRequest::new(offset).max_bytes(16 * 1024)).unwrap();
            for record in fetch.records() {
                let record = record.unwrap();
                assert_eq!(record.offset() as u64, offset);
                assert_eq!(record.value().unwrap(), &values[offset as usize][..]);
                offset += 1;
            }
            // Held, as a consumer holds what it has not processed yet.
            fetches.push(fetch);
        }
        let (read_bufs, pooled) =
            (counts.read_bufs.load(Ordering::SeqCst), counts.pooled.load(Ordering::SeqCst));
        let slots = tidelog_io::uring::BUFFER_POOL_SLOTS;
        assert!(read_bufs > slots, "{choice:?}: ~400 KB in fetches of 16 KiB: {read_bufs}");
        if choice == IoChoice::Uring {
            // Held fetches keep their slots: reads take them until half the pool is left.
            assert_eq!(pooled, slots / 2, "{choice:?}: slots taken by {read_bufs} held reads");
        } else {
            assert_eq!(pooled, 0, "{choice:?}: no pool");
        }
        drop(fetches);
        engine.close().unwrap();
    }
}

/// Keeps the completions of the reads a partition submitted (a fetch's; not the ones the
/// engine waits for on the spot, recovery's) while `hold` is set.
struct HoldReads {
    inner: Box<dyn Storage>,
    gate: Arc<Gate>,
    held: Vec<Completion>,
}

#[derive(Debug, Default)]
struct Gate {
    hold: AtomicBool,
    /// Tokens of partition reads submitted.
    reads: Mutex<HashSet<u64>>,
}

/// Token of the operations the engine waits for on the spot (`ShardIo::run_now`).
const RUN_NOW_TOKEN: u64 = u64::MAX;

impl Storage for HoldReads {
    common::storage_pass_through!(open, close, queue_depth);
    fn submit(&mut self, submission: Submission) -> Result<(), Submission> {
        let token = submission.token;
        let read = matches!(submission.op, Op::Read { .. }) && token != RUN_NOW_TOKEN;
        self.inner.submit(submission)?;
        if read {
            self.gate.reads.lock().unwrap().insert(token);
        }
        Ok(())
    }
    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.held.len()
    }
    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        let before = out.len();
        if !self.gate.hold.load(Ordering::SeqCst) {
            out.append(&mut self.held);
        }
        // With only held reads in flight, the inner storage has nothing to wait for.
        let wait = if out.len() > before || self.inner.in_flight() == 0 && wait == Wait::One {
            Wait::No
        } else {
            wait
        };
        let mut fresh = Vec::new();
        self.inner.complete(&mut fresh, wait)?;
        let reads = self.gate.reads.lock().unwrap();
        for completion in fresh {
            if self.gate.hold.load(Ordering::SeqCst) && reads.contains(&completion.token) {
                self.held.push(completion);
            } else {
                out.push(completion);
            }
        }
        Ok(out.len() - before)
    }
}

#[derive(Debug)]
struct HoldFactory {
    inner: Arc<dyn StorageFactory>,
    gate: Arc<Gate>,
}

impl StorageFactory for HoldFactory {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn create(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(HoldReads {
            inner: self.inner.create()?,
            gate: self.gate.clone(),
            held: vec![],
        }))
    }
}

/// An engine (one shard, portable backend, behind [`HoldReads`]) whose topic "t" (`topic`)
/// holds `records` records of `value` in partition 0, reopened so its tail cache is empty:
/// a fetch from offset 0 reads the segment file. Holds fetch reads from now on.
fn reopened_with_reads_held(
    dir: &std::path::Path,
    gate: &Arc<Gate>,
    topic: TopicConfig,
    records: usize,
    value: &[u8],
) -> Engine {
    let config = || {
        let base = EngineConfig::default().shards(1).io(IoChoice::Portable).pin_shards(false);
        let real = base.clone().storage_factory().unwrap();
        base.storage(Arc::new(HoldFactory { inner: real, gate: gate.clone() }))
    };
    let engine = Engine::open(dir, config()).unwrap();
    engine.create_topic("t", topic).unwrap();
    for _ in 0..records {
        engine.append("t", 0, &[Record::new(value)], Durability::Written).unwrap();
    }
    engine.close().unwrap();
    let engine = Engine::open(dir, config()).unwrap();
    gate.hold.store(true, Ordering::SeqCst);
    engine
}

/// Wait until a fetch read has gone out through the ring (and is held).
fn wait_for_a_held_read(gate: &Gate) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.reads.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no fetch read went out through the ring");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn the_shard_serves_appends_while_a_fetch_reads_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let value = vec![7u8; 1000];
    let topic = TopicConfig::default().partitions(2);
    let engine = reopened_with_reads_held(dir.path(), &gate, topic, 100, &value);
    assert_eq!(engine.shard_of("t", 0), engine.shard_of("t", 1), "one shard holds both");
    let fetch = engine.read_async("t", 0, ReadRequest::new(0));
    wait_for_a_held_read(&gate);
    // The read is held in flight; the shard goes on serving the other partition.
    for i in 0..10 {
        let appended = engine.append("t", 1, &[Record::new(b"meanwhile")], Durability::Written);
        assert_eq!(appended.unwrap().base_offset, i);
    }
    let fetch = match fetch.try_take() {
        Err(pending) => pending,
        Ok(answered) => panic!("answered while its read was held: {answered:?}"),
    };
    gate.hold.store(false, Ordering::SeqCst);
    // Wake the shard so that it reaps the released read.
    engine.append("t", 1, &[Record::new(b"wake")], Durability::Written).unwrap();
    let fetch = fetch.wait().unwrap();
    let mut offset = 0u64;
    for record in fetch.records() {
        let record = record.unwrap();
        assert_eq!(record.offset() as u64, offset);
        assert_eq!(record.value().unwrap(), &value[..]);
        offset += 1;
    }
    assert!(offset > 0, "the fetch holds records from offset 0");
    engine.close().unwrap();
}

#[test]
fn a_fetch_read_in_flight_holds_up_neither_a_close_nor_durable_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let value = vec![7u8; 1000];
    let topic = TopicConfig::default().partitions(1).segment_size_bytes(16 * 1024);
    let engine = reopened_with_reads_held(dir.path(), &gate, topic, 5, &value);
    let fetch = engine.read_async("t", 0, ReadRequest::new(0));
    wait_for_a_held_read(&gate);
    // Roll the segment being read (16 KiB segments), then ask for durability: the rolled
    // segment must close — its read still held in flight — for the durable offset to pass it.
    for _ in 0..30 {
        engine.append("t", 0, &[Record::new(&value)], Durability::Written).unwrap();
    }
    assert!(engine.partition_info("t", 0).unwrap().segments.len() > 1, "rolled");
    let durable = engine.append_async("t", 0, &[Record::new(b"durable")], Durability::Durable);
    let durable = match durable.wait_timeout(Duration::from_secs(10)) {
        Ok(acknowledged) => acknowledged.unwrap(),
        Err(_) => {
            // Let the read go, so the engine can still close when the test unwinds.
            gate.hold.store(false, Ordering::SeqCst);
            engine.append("t", 0, &[Record::new(b"wake")], Durability::Written).unwrap();
            panic!("a durable append waited for a fetch read of the closing segment");
        }
    };
    let info = engine.partition_info("t", 0).unwrap();
    assert!(info.durable_offset > durable.base_offset, "{info:?}");
    let fetch = match fetch.try_take() {
        Err(pending) => pending,
        Ok(answered) => panic!("answered while its read was held: {answered:?}"),
    };
    gate.hold.store(false, Ordering::SeqCst);
    engine.append("t", 0, &[Record::new(b"wake")], Durability::Written).unwrap();
    let fetch = fetch.wait().unwrap();
    assert_eq!(fetch.records().next().unwrap().unwrap().value().unwrap(), &value[..]);
    engine.close().unwrap();
}
