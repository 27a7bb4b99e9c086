//! Group commit under a slow fdatasync: appends that arrive one at a time while a sync is in
//! flight must accumulate and go out together when it completes — however many arrive.
//! (The first io_uring version sealed a buffer per round while waiting; after enough rounds
//! the chain was longer than the submission queue and never went out.)
//!
//! A storage wrapper holds `fdatasync` completions back while the test says so (and never
//! looks idle, so the engine submits its syncs rather than running them inline); shards run
//! manually, so the test decides what happens between rounds.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tidelog_core::{Durability, Engine, EngineConfig, Record, TopicConfig};
use tidelog_io::sim::SimDisk;
use tidelog_io::{BackendKind, Completion, Op, Storage, StorageFactory, Submission, Wait};

/// Delegates to a simulated storage, but keeps `fdatasync` completions while `hold` is set.
struct HoldSyncs {
    inner: Box<dyn Storage>,
    /// Pretend one operation is always in flight (shard storages, not the control one).
    busy: bool,
    hold: Arc<AtomicBool>,
    syncs: Arc<Mutex<Vec<u64>>>,
    held: Vec<Completion>,
}

impl Storage for HoldSyncs {
    common::storage_pass_through!(open, close);
    fn submit(&mut self, submission: Submission) -> Result<(), Submission> {
        if matches!(submission.op, Op::SyncData { .. }) {
            self.syncs.lock().unwrap().push(submission.token);
        }
        self.inner.submit(submission)
    }
    // Never idle: an idle shard syncs inline (`sync_data_now`), which this test must not
    // take; a busy one submits the fdatasync and keeps working while it is in flight.
    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.held.len() + usize::from(self.busy)
    }
    fn queue_depth(&self) -> usize {
        self.inner.queue_depth() + usize::from(self.busy)
    }
    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        let before = out.len();
        let mut fresh = Vec::new();
        // The simulated disk runs everything queued when asked; it never needs to block.
        let wait = if matches!(wait, Wait::Idle(_)) { Wait::No } else { wait };
        self.inner.complete(&mut fresh, wait)?;
        let mut syncs = self.syncs.lock().unwrap();
        for completion in fresh {
            if syncs.contains(&completion.token) {
                self.held.push(completion);
            } else {
                out.push(completion);
            }
        }
        if !self.hold.load(Ordering::SeqCst) {
            out.append(&mut self.held);
            syncs.clear();
        }
        Ok(out.len() - before)
    }
}

#[derive(Debug)]
struct HoldFactory {
    disk: SimDisk,
    hold: Arc<AtomicBool>,
    made: std::sync::atomic::AtomicUsize,
}

impl StorageFactory for HoldFactory {
    fn kind(&self) -> BackendKind {
        BackendKind::Simulated
    }
    fn create(&self) -> io::Result<Box<dyn Storage>> {
        // The first storage is the engine's control storage (topic metadata): not busy.
        let busy = self.made.fetch_add(1, Ordering::SeqCst) > 0;
        Ok(Box::new(HoldSyncs {
            inner: Box::new(self.disk.storage()),
            busy,
            hold: self.hold.clone(),
            syncs: Default::default(),
            held: Vec::new(),
        }))
    }
}

impl std::fmt::Debug for HoldSyncs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldSyncs").field("held", &self.held.len()).finish()
    }
}

#[test]
fn appends_arriving_during_a_slow_fdatasync_go_out_together() {
    for direct in [false, true] {
        let hold = Arc::new(AtomicBool::new(false));
        let factory =
            HoldFactory { disk: SimDisk::new(5), hold: hold.clone(), made: Default::default() };
        let config = EngineConfig::default()
            .shards(1)
            .manual_shards(true)
            .direct_io(direct)
            .storage(Arc::new(factory));
        let engine = Engine::open("/sim/data", config).unwrap();
        engine.create_topic("t", TopicConfig::default()).unwrap();
        hold.store(true, Ordering::SeqCst);
        // One append per round while the first fdatasync is held: far more rounds than the
        // submission queue is deep.
        let mut pending = Vec::new();
        for i in 0..600u32 {
            pending.push(engine.append_async(
                "t",
                0,
                &[Record::new(format!("r{i}").as_bytes())],
                Durability::Durable,
            ));
            engine.step(0);
        }
        assert!(pending.iter().all(|p| !p.is_ready()), "nothing is durable while the sync is held");
        hold.store(false, Ordering::SeqCst);
        for _ in 0..200 {
            engine.step(0);
            if pending.iter().all(|p| p.is_ready()) {
                break;
            }
        }
        assert!(
            pending.iter().all(|p| p.is_ready()),
            "appends made during a slow fdatasync were never written (direct {direct})"
        );
        for ack in pending {
            engine.block_on(ack).unwrap();
        }
        let info = engine.partition_info("t", 0).unwrap();
        assert_eq!(info.durable_offset, 600);
        assert!(
            info.stats.syncs <= 3,
            "the 599 waiting appends shared one or two syncs: {:?}",
            info.stats
        );
        engine.close().unwrap();
    }
}
