//! A storage between the engine and the simulated disk, driven by the simulation's seed:
//!
//! - **power loss at any storage call**: armed with [`Interposer::arm_crash`], it calls
//!   [`SimDisk::crash`] just before the n-th storage call from now (any shard's, or the
//!   engine's own catalog storage), so a crash can land between two operations of one shard
//!   round, in the middle of a topic creation, or inside recovery;
//! - **latency**: submissions wait in the interposer and reach the disk in random portions
//!   (execution is deferred, so a crash can take operations the engine believes in flight), and
//!   completions are held back for a random number of reaps (a latency spike: they come back
//!   late, out of order with later ones — but never before an earlier completion of their
//!   own linked chain: a chain's completions come back in order, as from io_uring and the
//!   other backends). The simulated disk itself shuffles completions within one reap.
//!
//! Blocking waits ([`Wait::One`]) always make progress, so the engine's synchronous slow
//! paths (recovery, index loading, reads with the queue full) never wait forever.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use tidelog_io::sim::{SimDisk, SimRng};
use tidelog_io::storage::Wake;
use tidelog_io::{
    AlignedBuf, BackendKind, Completion, DirEntry, DirLock, FileId, Metadata, OpenOptions, Storage,
    StorageFactory, Submission, Wait,
};

/// Latency model of one seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// Probability that a completion is held back.
    pub hold_probability: f64,
    /// Most reaps a held completion waits.
    pub hold_reaps_max: u64,
    /// Probability that a reap hands only part of the waiting submissions to the disk.
    pub defer_probability: f64,
}

/// What the interposer did, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterposerStats {
    /// Storage calls seen.
    pub calls: u64,
    /// Completions held back.
    pub held: u64,
    /// Reaps that handed only part of the waiting submissions to the disk.
    pub deferred: u64,
    /// Crashes fired by an armed trigger.
    pub crashes: u64,
}

#[derive(Debug)]
struct Plan {
    disk: SimDisk,
    rng: SimRng,
    latency: Latency,
    /// Fire a crash just before the call with this number.
    crash_at: Option<u64>,
    /// A crash fired since the flag was last cleared.
    crashed: bool,
    stats: InterposerStats,
}

impl Plan {
    /// Count one storage call; fire the armed crash if this is its call.
    fn call(&mut self) {
        self.stats.calls += 1;
        if self.crash_at.is_some_and(|at| self.stats.calls >= at) {
            self.crash_at = None;
            self.crashed = true;
            self.stats.crashes += 1;
            self.disk.crash();
        }
    }
}

/// The shared control of every storage an engine makes through it: a cloneable handle.
#[derive(Clone, Debug)]
pub struct Interposer {
    plan: Arc<Mutex<Plan>>,
}

impl Interposer {
    pub fn new(disk: SimDisk, seed: u64, latency: Latency) -> Self {
        let plan = Plan {
            disk,
            rng: SimRng::new(seed ^ 0x1A7E_5C1E),
            latency,
            crash_at: None,
            crashed: false,
            stats: InterposerStats::default(),
        };
        Self { plan: Arc::new(Mutex::new(plan)) }
    }

    fn lock(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cut the power just before the `calls`-th storage call from now (1: the next one).
    pub fn arm_crash(&self, calls: u64) {
        let mut plan = self.lock();
        plan.crash_at = Some(plan.stats.calls + calls.max(1));
    }

    /// Forget an armed crash that has not fired.
    pub fn disarm(&self) {
        self.lock().crash_at = None;
    }

    pub fn is_armed(&self) -> bool {
        self.lock().crash_at.is_some()
    }

    /// Whether an armed crash fired since [`Interposer::clear_crashed`].
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    pub fn clear_crashed(&self) {
        self.lock().crashed = false;
    }

    pub fn latency(&self) -> Latency {
        self.lock().latency
    }

    pub fn set_latency(&self, latency: Latency) {
        self.lock().latency = latency;
    }

    pub fn stats(&self) -> InterposerStats {
        self.lock().stats
    }
}

impl StorageFactory for Interposer {
    fn kind(&self) -> BackendKind {
        BackendKind::Simulated
    }

    fn create(&self) -> io::Result<Box<dyn Storage>> {
        let inner = self.lock().disk.storage();
        let depth = inner.queue_depth();
        Ok(Box::new(InterposedStorage {
            inner: Box::new(inner),
            interposer: self.clone(),
            waiting: VecDeque::new(),
            held: Vec::new(),
            depth,
            reaps: 0,
            chains: BTreeMap::new(),
            next_chain: 0,
            linked: false,
        }))
    }
}

/// One storage behind the interposer.
pub struct InterposedStorage {
    inner: Box<dyn Storage>,
    interposer: Interposer,
    /// Submitted, not yet handed to the disk.
    waiting: VecDeque<Submission>,
    /// Completed on the disk, not yet handed back, in completion order.
    held: Vec<Held>,
    depth: usize,
    /// `complete` calls so far.
    reaps: u64,
    /// The chain of every submission handed to the disk whose completion has not been seen.
    chains: BTreeMap<u64, u64>,
    next_chain: u64,
    /// The last submission handed to the disk was linked to the next.
    linked: bool,
}

struct Held {
    /// Reap at which it may come back.
    release_at: u64,
    chain: u64,
    completion: Completion,
}

impl InterposedStorage {
    fn call(&self) {
        self.interposer.lock().call();
    }

    /// Hand `count` waiting submissions to the disk and run them.
    fn run(&mut self, count: usize, fresh: &mut Vec<Completion>) -> io::Result<()> {
        for _ in 0..count {
            let Some(submission) = self.waiting.pop_front() else { break };
            let (token, link_next) = (submission.token, submission.link_next);
            if let Err(rejected) = self.inner.submit(submission) {
                self.waiting.push_front(rejected);
                break;
            }
            if !self.linked {
                self.next_chain += 1;
            }
            self.chains.insert(token, self.next_chain);
            self.linked = link_next;
        }
        self.call();
        self.inner.complete(fresh, Wait::No).map(|_| ())
    }
}

impl InterposedStorage {
    /// Hold fresh completions back at random; one whose chain has a completion held is held
    /// behind it.
    fn hold_or_return(
        &mut self,
        fresh: Vec<Completion>,
        out: &mut Vec<Completion>,
        latency: Latency,
    ) {
        let mut plan = self.interposer.lock();
        for completion in fresh {
            let chain = self.chains.remove(&completion.token).unwrap_or(0);
            let behind = self.held.iter().filter(|h| h.chain == chain).map(|h| h.release_at).max();
            let release_at = match behind {
                Some(at) => Some(at),
                None if plan.rng.chance(latency.hold_probability) => {
                    Some(self.reaps + plan.rng.between(1, latency.hold_reaps_max.max(1)))
                }
                None => None,
            };
            match release_at {
                Some(release_at) => {
                    plan.stats.held += 1;
                    self.held.push(Held { release_at, chain, completion });
                }
                None => out.push(completion),
            }
        }
    }
}

impl Storage for InterposedStorage {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn open(&mut self, path: &Path, options: OpenOptions) -> io::Result<FileId> {
        self.call();
        self.inner.open(path, options)
    }

    fn close(&mut self, file: FileId) -> io::Result<()> {
        if self.waiting.iter().any(|s| s.op.file() == file) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("close of {file:?} with operations in flight"),
            ));
        }
        self.call();
        self.inner.close(file)
    }

    fn is_direct(&self, file: FileId) -> bool {
        self.inner.is_direct(file)
    }

    fn file_len(&mut self, file: FileId) -> io::Result<u64> {
        self.call();
        self.inner.file_len(file)
    }

    fn set_len(&mut self, file: FileId, len: u64) -> io::Result<()> {
        self.call();
        self.inner.set_len(file, len)
    }

    fn submit(&mut self, submission: Submission) -> Result<(), Submission> {
        if self.in_flight() >= self.depth {
            return Err(submission);
        }
        self.waiting.push_back(submission);
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.waiting.len() + self.held.len() + self.inner.in_flight()
    }

    fn queue_depth(&self) -> usize {
        self.depth
    }

    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        let before = out.len();
        self.reaps += 1;
        // Release what is due, never overtaking an earlier completion of the same chain.
        let mut blocked = BTreeSet::new();
        let mut kept = Vec::new();
        for held in std::mem::take(&mut self.held) {
            if held.release_at <= self.reaps && !blocked.contains(&held.chain) {
                out.push(held.completion);
            } else {
                blocked.insert(held.chain);
                kept.push(held);
            }
        }
        self.held = kept;
        let latency = self.interposer.lock().latency;
        let mut fresh = Vec::new();
        let count = {
            let mut plan = self.interposer.lock();
            let all = self.waiting.len();
            if all > 1 && wait == Wait::No && plan.rng.chance(latency.defer_probability) {
                plan.stats.deferred += 1;
                plan.rng.between(1, all as u64 - 1) as usize
            } else {
                all
            }
        };
        if let Err(err) = self.run(count, &mut fresh) {
            // Power loss: nothing queued or held ever comes back.
            self.waiting.clear();
            self.held.clear();
            out.truncate(before);
            return Err(err);
        }
        self.hold_or_return(fresh, out, latency);
        if wait != Wait::No && out.len() == before {
            // A blocking wait returns something if anything is in flight.
            if !self.waiting.is_empty() {
                let mut fresh = Vec::new();
                let all = self.waiting.len();
                if let Err(err) = self.run(all, &mut fresh) {
                    self.waiting.clear();
                    self.held.clear();
                    return Err(err);
                }
                self.hold_or_return(fresh, out, Latency::default());
            }
            if out.len() == before && !self.held.is_empty() {
                // The first held completion has nothing of its chain before it.
                out.push(self.held.remove(0).completion);
            }
        }
        Ok(out.len() - before)
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.inner.waker()
    }

    fn alloc_buf(&mut self, len: usize) -> AlignedBuf {
        self.inner.alloc_buf(len)
    }

    fn alloc_read_buf(&mut self, len: usize) -> AlignedBuf {
        self.inner.alloc_read_buf(len)
    }

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        self.call();
        self.inner.create_dir_all(path)
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.call();
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        self.call();
        self.inner.remove_dir_all(path)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.call();
        self.inner.rename(from, to)
    }

    fn read_dir(&mut self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.call();
        self.inner.read_dir(path)
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        self.call();
        self.inner.sync_dir(path)
    }

    fn metadata(&mut self, path: &Path) -> io::Result<Metadata> {
        self.call();
        self.inner.metadata(path)
    }

    fn lock_dir(&mut self, dir: &Path) -> io::Result<DirLock> {
        self.call();
        self.inner.lock_dir(dir)
    }
}
