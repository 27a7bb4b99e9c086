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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// While above zero, the queue looks full; each `complete` counts one down.
    no_room: Arc<AtomicUsize>,
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
        if self.busy && self.no_room.load(Ordering::SeqCst) > 0 {
            return self.queue_depth();
        }
        self.inner.in_flight() + self.held.len() + usize::from(self.busy)
    }
    fn queue_depth(&self) -> usize {
        self.inner.queue_depth() + usize::from(self.busy)
    }
    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        let before = out.len();
        if self.busy {
            let _ =
                self.no_room.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
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
    no_room: Arc<AtomicUsize>,
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
            no_room: self.no_room.clone(),
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
        let factory = HoldFactory {
            disk: SimDisk::new(5),
            hold: hold.clone(),
            no_room: Default::default(),
            made: Default::default(),
        };
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

/// Records written while a sync was in flight are owed a sync of their own. If the queue is
/// full when that sync is due, a clean close must wait for room and sync them — not close the
/// log with them unsynced.
#[test]
fn a_close_syncs_what_was_written_during_a_sync_even_after_a_full_queue() {
    let hold = Arc::new(AtomicBool::new(false));
    let no_room = Arc::new(AtomicUsize::new(0));
    let disk = SimDisk::new(9);
    let factory = HoldFactory {
        disk: disk.clone(),
        hold: hold.clone(),
        no_room: no_room.clone(),
        made: Default::default(),
    };
    let config = EngineConfig::default().shards(1).manual_shards(true).storage(Arc::new(factory));
    let engine = Engine::open("/sim/data", config).unwrap();
    engine.create_topic("t", TopicConfig::default()).unwrap();
    hold.store(true, Ordering::SeqCst);
    // A durable append: its write and (held) fdatasync go out.
    let durable = engine.append_async("t", 0, &[Record::new(b"a")], Durability::Durable);
    engine.step(0);
    // A written one while that sync is held: written at once, not yet synced.
    let written = engine.append_async("t", 0, &[Record::new(b"b")], Durability::Written);
    for _ in 0..10 {
        engine.step(0);
    }
    assert!(written.is_ready() && !durable.is_ready());
    engine.block_on(written).unwrap();
    // The held sync completes while the queue is full for a while: the sync "b" needs cannot
    // go out then.
    no_room.store(20, Ordering::SeqCst);
    hold.store(false, Ordering::SeqCst);
    engine.step(0);
    engine.block_on(durable).unwrap();
    engine.close().unwrap();
    let log = std::path::Path::new("/sim/data/topics/t/0/00000000000000000000.log");
    assert!(disk.exists(log));
    assert!(!disk.has_unsynced_data(log).unwrap(), "a clean close left written records unsynced");
    assert_eq!(no_room.load(Ordering::SeqCst), 0, "the close waited for room");
}
