//! Manually run shards: with the simulated disk and a manual clock a whole engine runs on the
//! test's thread, deterministically.

mod common;

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

/// A storage whose completions come back two reaps late (as a real device's would: an
/// operation takes time), so a shard round can pass without any progress while operations
/// are in flight.
struct TwoReapsLate {
    inner: Box<dyn tidelog_io::Storage>,
    /// Completions with the reap they arrived in.
    late: Vec<(u64, tidelog_io::Completion)>,
    reaps: u64,
}

impl tidelog_io::Storage for TwoReapsLate {
    common::storage_pass_through!(open, close, submit, queue_depth);
    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.late.len()
    }
    fn complete(
        &mut self,
        out: &mut Vec<tidelog_io::Completion>,
        wait: tidelog_io::Wait,
    ) -> std::io::Result<usize> {
        self.reaps += 1;
        let mut fresh = Vec::new();
        self.inner.complete(&mut fresh, tidelog_io::Wait::No)?;
        self.late.extend(fresh.into_iter().map(|c| (self.reaps, c)));
        let ripe = self.late.iter().filter(|(at, _)| at + 2 <= self.reaps).count();
        // A blocking wait takes what is there.
        let take = if ripe == 0 && wait != tidelog_io::Wait::No { self.late.len() } else { ripe };
        out.extend(self.late.drain(..take).map(|(_, c)| c));
        Ok(take)
    }
}

#[derive(Debug)]
struct TwoReapsLateFactory(SimDisk);

impl tidelog_io::StorageFactory for TwoReapsLateFactory {
    fn kind(&self) -> tidelog_io::BackendKind {
        tidelog_io::BackendKind::Simulated
    }
    fn create(&self) -> std::io::Result<Box<dyn tidelog_io::Storage>> {
        let inner = Box::new(self.0.storage());
        Ok(Box::new(TwoReapsLate { inner, late: Vec::new(), reaps: 0 }))
    }
}

/// Found by the simulation (`simulation.rs`, seed 23): `Engine::close` stepped the manual
/// shards only until a round made no progress, then blocked waiting for a shutdown that
/// needed more rounds — forever, since nothing else steps a manual shard.
#[test]
fn close_steps_manual_shards_until_completions_arrive() {
    let disk = SimDisk::new(5);
    let config = EngineConfig::default()
        .shards(1)
        .manual_shards(true)
        .storage(Arc::new(TwoReapsLateFactory(disk)))
        .clock(Arc::new(ManualClock::new(1_700_000_000_000)));
    let engine = Engine::open("/sim/data", config).unwrap();
    engine.create_topic("t", TopicConfig::default()).unwrap();
    // The write and its fdatasync are submitted; their completions come two rounds later.
    let pending = engine.append_async("t", 0, &[Record::new(b"in flight")], Durability::Durable);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let closing = engine.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(closing.close());
    });
    let closed = done_rx.recv_timeout(std::time::Duration::from_secs(20));
    assert!(matches!(closed, Ok(Ok(()))), "close did not finish: {closed:?}");
    assert_eq!(pending.wait().unwrap().base_offset, 0);
}

/// Found by the simulation (seeds 65, 104, a full disk): segment preparation that failed
/// (ENOSPC) gave up its spare file — and started a new one at once, failing again, forever:
/// the shard never went idle. A failed preparation now stops preparing (rolls grow files),
/// as the partition's `prepare_failed` flag always said.
#[test]
fn a_failed_segment_preparation_is_not_retried_in_a_loop() {
    let disk = SimDisk::new(104);
    let engine = Engine::open(
        "/sim/data",
        EngineConfig::default()
            .shards(1)
            .manual_shards(true)
            .storage(Arc::new(disk.factory()))
            .clock(Arc::new(ManualClock::new(1_700_000_000_000)))
            .segment_preparation(tidelog_core::SegmentPreparation::ZeroFill),
    )
    .unwrap();
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(64 * 1024).record_size_bytes_max(4096),
        )
        .unwrap();
    // Room for the records, not for a prepared 64 KiB segment.
    disk.set_capacity_bytes(Some(disk.used_bytes() + 48 * 1024));
    for i in 0..40 {
        let value = format!("record {i} {}", "p".repeat(900)).into_bytes();
        engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
    }
    let busy_rounds = (0..1000).take_while(|_| engine.step_all()).count();
    assert!(busy_rounds < 1000, "the shard is still busy after 1000 rounds");
    assert_eq!(engine.partition_info("t", 0).unwrap().failed, None);
    engine.close().unwrap();
}

/// A storage that, once armed, returns nothing to non-blocking reaps until the first
/// blocking one, which gets the first completion of every linked chain but not the rest:
/// those come with the next reap. Allowed by the storage contract (a chain's completions
/// come back in order; different chains in any order), and what a slow device does.
struct ChainTailsLate {
    inner: Box<dyn tidelog_io::Storage>,
    armed: Arc<std::sync::atomic::AtomicBool>,
    /// The last submission was linked to the next.
    linked: bool,
    /// Submissions that follow a linked one.
    tails: std::collections::BTreeSet<u64>,
    waiting: Vec<tidelog_io::Completion>,
}

impl tidelog_io::Storage for ChainTailsLate {
    common::storage_pass_through!(open, close, queue_depth);
    fn submit(&mut self, submission: tidelog_io::Submission) -> Result<(), tidelog_io::Submission> {
        let (token, link_next) = (submission.token, submission.link_next);
        self.inner.submit(submission)?;
        if self.linked {
            self.tails.insert(token);
        }
        self.linked = link_next;
        Ok(())
    }
    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.waiting.len()
    }
    fn complete(
        &mut self,
        out: &mut Vec<tidelog_io::Completion>,
        wait: tidelog_io::Wait,
    ) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        self.inner.complete(&mut self.waiting, tidelog_io::Wait::No)?;
        let before = out.len();
        if !self.armed.load(Ordering::SeqCst) {
            out.append(&mut self.waiting);
        } else if wait == tidelog_io::Wait::One {
            self.armed.store(false, Ordering::SeqCst);
            let (tails, heads) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|c| self.tails.contains(&c.token));
            self.waiting = tails;
            out.extend(heads);
        }
        Ok(out.len() - before)
    }
}

#[derive(Debug)]
struct ChainTailsLateFactory(SimDisk, Arc<std::sync::atomic::AtomicBool>);

impl tidelog_io::StorageFactory for ChainTailsLateFactory {
    fn kind(&self) -> tidelog_io::BackendKind {
        tidelog_io::BackendKind::Simulated
    }
    fn create(&self) -> std::io::Result<Box<dyn tidelog_io::Storage>> {
        Ok(Box::new(ChainTailsLate {
            inner: Box::new(self.0.storage()),
            armed: self.1.clone(),
            linked: false,
            tails: Default::default(),
            waiting: Vec::new(),
        }))
    }
}

/// Found by the simulation (seed 6771): completions a shard reaped while it waited for one
/// operation of its own (a read on the shard's thread) were stashed for the next round —
/// but the round's own reap, later in the same round, dispatched what it reaped first. A
/// write's completion was stashed, the fdatasync linked after it came back in that reap and
/// was handled first: the sync "covered" records not yet written, the durable offset could
/// not pass the high watermark, and nothing synced again — the `Durable` append was never
/// acknowledged (a clean close then dropped it unanswered). Stashed completions are now
/// dispatched before any reaped after them.
#[test]
fn completions_stashed_during_a_read_are_handled_before_later_ones() {
    let disk = SimDisk::new(6771);
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let config = EngineConfig::default()
        .shards(1)
        .manual_shards(true)
        .storage(Arc::new(ChainTailsLateFactory(disk, armed.clone())))
        .clock(Arc::new(ManualClock::new(1_700_000_000_000)));
    let engine = Engine::open("/sim/data", config).unwrap();
    engine.create_topic("t", TopicConfig::default().partitions(2)).unwrap();
    engine.append("t", 1, &[Record::new(b"on disk")], Durability::Durable).unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    // A write of partition 1 in flight, so partition 0's write goes out with a linked sync.
    let other = engine.append_async("t", 1, &[Record::new(b"other")], Durability::None);
    engine.step(0);
    let durable = engine.append_async("t", 0, &[Record::new(b"durable")], Durability::Durable);
    engine.step(0);
    // A lookup reads partition 1's log on the shard's thread: its wait reaps the writes
    // (stashed), and the round's reap then gets the sync.
    assert_eq!(engine.offset_for_timestamp("t", 1, 0).unwrap(), Some(0));
    for _ in 0..20 {
        engine.step(0);
    }
    assert!(durable.is_ready(), "the durable append was never acknowledged");
    assert_eq!(engine.block_on(durable).unwrap().base_offset, 0);
    assert_eq!(engine.block_on(other).unwrap().base_offset, 1);
    engine.close().unwrap();
}

/// Found by the simulation (seed 14898, direct I/O, `Fallocate`, short writes): a spare
/// segment prepared by this process was opened without `O_DIRECT`, so after a roll onto it
/// the active file was buffered while the rolled segment's was direct — and the guard that
/// keeps writes to a direct file from overlapping in flight looked only at the active file.
/// The rolled segment's last buffer went out while the rest of a short write to the same
/// block was still in flight; that rest then landed over it with its zero padding, and a
/// batch acknowledged (and later closed and synced) read back as zeros. The guard now holds
/// writes back whenever any file being written is direct.
#[test]
fn direct_io_writes_after_a_roll_onto_a_prepared_spare_never_overlap() {
    for seed in 0..60 {
        let disk = SimDisk::with_config(
            seed,
            tidelog_io::SimConfig { short_write_probability: 0.5, ..Default::default() },
        );
        let config = EngineConfig::default()
            .shards(1)
            .manual_shards(true)
            .storage(Arc::new(TwoReapsLateFactory(disk)))
            .clock(Arc::new(ManualClock::new(1_700_000_000_000)))
            .direct_io(true)
            .segment_preparation(tidelog_core::SegmentPreparation::Fallocate);
        let engine = Engine::open("/sim/data", config.clone()).unwrap();
        engine
            .create_topic(
                "t",
                TopicConfig::default().segment_size_bytes(32 * 1024).record_size_bytes_max(16384),
            )
            .unwrap();
        let values: Vec<Vec<u8>> = (0..80)
            .map(|i| format!("record {i} {}", "s".repeat(100 + i * 431 % 7000)).into_bytes())
            .collect();
        let mut pending = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let durability = if i % 3 == 0 { Durability::Durable } else { Durability::None };
            pending.push(engine.append_async("t", 0, &[Record::new(value)], durability));
            engine.step(0);
            if i % 6 == 5 {
                // Let the spare get prepared between bursts.
                for ack in pending.drain(..) {
                    engine.block_on(ack).unwrap();
                }
                for _ in 0..10 {
                    engine.step(0);
                }
            }
        }
        for ack in pending {
            engine.block_on(ack).unwrap();
        }
        engine.close().unwrap();
        let engine = Engine::open("/sim/data", config).unwrap();
        let mut offset = 0;
        while offset < values.len() as u64 {
            let fetch = engine.read("t", 0, ReadRequest::new(offset)).unwrap();
            for record in fetch.records() {
                let record = record.unwrap();
                assert_eq!(
                    record.value().unwrap(),
                    &values[record.offset() as usize][..],
                    "seed {seed}: record {}",
                    record.offset()
                );
            }
            offset = fetch.next_offset();
        }
        engine.close().unwrap();
    }
}
