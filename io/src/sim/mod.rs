//! The simulated storage backend: an in-memory file system with a precise durability model,
//! deterministic power-loss crashes and fault injection, for the engine's crash and fault
//! tests (STYLE §9, §10). Tests only: it holds everything in memory behind one mutex.
//!
//! ```
//! use std::path::Path;
//! use tidelog_io::sim::SimDisk;
//! use tidelog_io::storage::{write_all_at, sync_data};
//! use tidelog_io::{OpenOptions, Storage};
//!
//! let disk = SimDisk::new(7);
//! let mut storage = disk.storage();
//! storage.create_dir_all(Path::new("/sim/data"))?;
//! storage.sync_dir(Path::new("/"))?;
//! storage.sync_dir(Path::new("/sim"))?;
//! let file = storage.open(Path::new("/sim/data/log"), OpenOptions::create())?;
//! storage.sync_dir(Path::new("/sim/data"))?;
//! write_all_at(&mut storage, file, 0, b"durable")?;
//! sync_data(&mut storage, file)?;
//! write_all_at(&mut storage, file, 7, b" and not")?;
//!
//! let report = disk.crash();
//! assert!(storage.file_len(file).is_err(), "the old storage died with the disk");
//! let image = disk.read(Path::new("/sim/data/log"))?;
//! assert!(image.starts_with(b"durable"), "synced bytes always survive");
//! assert_eq!(report.writes_kept + report.writes_lost + report.writes_torn, 1);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Determinism
//!
//! Every random choice — completion order, short transfers, the fate of each unsynced change
//! at a crash — is drawn from one [`SimRng`] per disk, seeded by [`SimDisk::new`]. The same
//! seed and the same sequence of calls into the disk (from all its storages together) give
//! the same results, completion orders and crash images, always. Storages used from several
//! threads interleave their calls as the scheduler pleases; a simulation that must replay
//! drives them from one thread.
//!
//! # Execution and completion
//!
//! - [`Storage::submit`] only queues, up to the queue depth (default [`SIM_QUEUE_DEPTH`]); a
//!   full queue hands the submission back unchanged.
//! - [`Storage::complete`] runs every queued operation, in submission order, against the disk
//!   as it is then (synchronous metadata calls made after a submit but before `complete` have
//!   already happened). Two overlapping writes in one batch therefore land in submission order;
//!   a real ring promises no such thing, so do not rely on it.
//! - Completions come back in a seeded random order: a *chain* (submissions joined by
//!   `link_next`) keeps its order, different chains and unlinked operations interleave at
//!   random. `Wait::No` and `Wait::One` both complete everything queued; with nothing in
//!   flight they return 0 at once.
//! - Links behave as in io_uring: an operation that fails, or a write or read that transfers
//!   fewer bytes than asked ([`Op::completed_in_full`]), makes the next submission complete
//!   with `ECANCELED` ([`cancelled`]), which cancels its own successor in turn if linked.
//! - Reads see the latest contents, unsynced writes included.
//! - Direct I/O is always granted; offsets, lengths and buffers must then be block-aligned,
//!   checked exactly as the portable backend does.
//!
//! # Durability
//!
//! Each file has a *durable image* and an ordered list of *unsynced changes*: writes, and
//! length changes (`set_len`, and growth by `fallocate`). What reads see is the durable image
//! with the changes replayed over it.
//!
//! - `fdatasync` ([`Op::SyncData`], on any handle of the file, from any storage) makes every
//!   change that executed before it durable.
//! - A *failed* `fdatasync` (an injected `EIO` or `ENOSPC`) takes the file's unsynced changes
//!   off the path to durability: reads still see them, but no later `fdatasync` makes them
//!   durable and a crash always loses them. This is what Linux does after a writeback error
//!   (the pages are marked clean once the error is reported — "fsyncgate"), and why the
//!   engine must fail stop instead of retrying (STYLE §5).
//! - Directory entries change when a file is created (`open` with `create`), a directory is
//!   made ([`Storage::create_dir_all`]), an entry is removed ([`Storage::remove_file`], and
//!   every entry [`Storage::remove_dir_all`] removes, children first), or renamed. Each is an
//!   unsynced change of the parent directory, in order, until [`Storage::sync_dir`] of that
//!   directory makes all of its changes durable. A rename within one directory is one change.
//!   A rename between directories is two — the removal in the source, the new entry in the
//!   target — each made durable by its own directory's `sync_dir`: **a rename is durable only
//!   once both parents have been synced.**
//! - Names and data are independent. A file whose entry (or an ancestor directory's entry) is
//!   not durable vanishes at a crash even if its data was synced; a durable entry of a file
//!   whose data was never synced survives with whatever the data rule below leaves.
//! - The root `/` always exists and is durable.
//!
//! # Crash
//!
//! [`SimDisk::crash`] is a power loss between two calls:
//!
//! 1. Every storage of the disk dies: each later call on it fails with an error saying the
//!    disk crashed, its queued operations are dropped unexecuted, its directory locks are
//!    released. Make new storages with [`SimDisk::storage`]; they see the crash image.
//! 2. **Directories.** Each directory keeps its durable entries plus a uniformly random prefix
//!    (none to all) of its unsynced entry changes, as a journaling file system commits
//!    metadata in order. One coupling: while *both* halves of a rename between directories
//!    are unsynced, they survive together (if the random prefix of one directory includes its
//!    half, the other directory's prefix is extended to include the other half): the file is
//!    found under the old name or the new one, never neither nor both. Once one parent has
//!    been synced the halves are independent, so a crash may leave the file under both names
//!    or — if only the source was synced — under neither: sync both parents. Nodes no longer
//!    reachable from `/` vanish, including files that were removed while still open.
//! 3. **File data.** For each surviving file, the unsynced changes are replayed over the
//!    durable image in execution order:
//!    - each write independently is *kept* (all of it lands), *lost* (none of it), or *torn*:
//!      a random non-empty strict subset of its [`SECTOR_SIZE`]-byte sectors lands, sectors
//!      counted at absolute file offsets, a partial sector at either end landing as a unit.
//!      Each outcome has probability 1/3 (a write within one sector is kept or lost, 1/2
//!      each). Later writes can survive where earlier ones do not, so every byte ends as its
//!      durable value or the value of one of the unsynced writes covering it, or as zero
//!      where the file grew and no surviving write covers it;
//!    - length changes — `set_len`, `fallocate` growth, and each write that extended the file
//!      — are metadata journaled in order: a uniformly random prefix of them survives. A
//!      surviving truncation discards the bytes beyond it at that point of the replay; a
//!      surviving extension exposes zeros where no surviving write landed (the "zeros at the
//!      tail" outcome of delayed allocation); data that landed beyond the final surviving
//!      length is not visible.
//!
//!    Synced data and synced entries always survive byte for byte. The outcome is recorded
//!    in a [`CrashReport`] ([`SimDisk::last_crash`]).
//!
//! # Faults
//!
//! - [`FaultRule`]s ([`SimDisk::inject_fault`]) fail chosen operations with `EIO` or `ENOSPC`:
//!   the n-th next of a kind, optionally only under a path prefix, once or persistently. A
//!   failed operation changes nothing (except `fdatasync`, above).
//! - A capacity ([`SimDisk::set_capacity_bytes`]): used bytes are the summed lengths of live
//!   files (named by an entry, or open), holes included. A write, `set_len` or `fallocate`
//!   that would grow the total past the capacity fails with `ENOSPC` and changes nothing.
//!   Removing a file frees its space at once (when its last handle closes).
//! - Short writes and reads with configurable probabilities: a short write stores a prefix
//!   and returns its length; for direct files the short length is a whole number of blocks
//!   (so only transfers of two blocks or more are shortened) to keep a resubmission aligned.
//! - [`SimDisk::flip_bit`] corrupts stored bytes in every version the disk holds.
//! - Files larger than the configured `file_size_bytes_max` fail with `EFBIG`: memory is real.
//!
//! [`SimDisk::stats`] counts operations and injected faults by kind.
//!
//! # Deliberate differences from a real file system
//!
//! Opening a directory fails with `EISDIR` even read-only; `sync_dir` of a file fails with
//! `ENOTDIR`; a directory's `metadata().len` is 0; there are no permissions, symbolic links or
//! hard links (except the double name a crash can leave, above); names must be UTF-8; `..`
//! is resolved lexically. [`Storage::lock_dir`] creates a `LOCK` file in the directory, as the
//! portable backend does, and holds the lock in memory.

mod fault;
mod file;
mod namespace;
mod rng;
mod storage;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use fault::{FaultError, FaultId, FaultKind, FaultRule, OpKind, SimStats};
pub use file::SECTOR_SIZE;
pub use rng::SimRng;
pub use storage::SimStorage;

use fault::FaultRules;
use namespace::{Ino, Namespace, components};

use crate::storage::{BackendKind, DirEntry, Storage, StorageFactory};
#[cfg(doc)]
use crate::storage::{Op, cancelled};

// A disk is shared by the shard threads of one simulated machine; each storage moves into one.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    const fn moved_into_a_thread<T: Send>() {}
    shared_between_threads::<SimDisk>();
    shared_between_threads::<SimFactory>();
    moved_into_a_thread::<SimStorage>();
};

/// Default bound on a simulated storage's in-flight operations.
pub const SIM_QUEUE_DEPTH: usize = 256;

/// Default largest simulated file: contents live in memory.
pub const SIM_FILE_SIZE_BYTES_MAX: u64 = 1 << 30;

/// Tunables of a [`SimDisk`].
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Queue depth of the storages [`SimDisk::storage`] makes.
    pub queue_depth: usize,
    /// Probability that a write of at least two bytes (two blocks for direct I/O) completes
    /// short.
    pub short_write_probability: f64,
    /// Probability that a read that could return at least two bytes (two blocks for direct
    /// I/O) returns fewer.
    pub short_read_probability: f64,
    /// Total bytes the disk holds; `None` for no limit.
    pub capacity_bytes: Option<u64>,
    /// Largest file; operations that would make one longer fail with `EFBIG`.
    pub file_size_bytes_max: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            queue_depth: SIM_QUEUE_DEPTH,
            short_write_probability: 0.0,
            short_read_probability: 0.0,
            capacity_bytes: None,
            file_size_bytes_max: SIM_FILE_SIZE_BYTES_MAX,
        }
    }
}

/// What one [`SimDisk::crash`] did to the unsynced state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced writes that landed whole.
    pub writes_kept: u64,
    /// Unsynced writes of which nothing landed.
    pub writes_lost: u64,
    /// Unsynced writes of which some sectors landed and some did not.
    pub writes_torn: u64,
    /// Bytes of unsynced writes that did not land (lost and torn writes together).
    pub bytes_lost: u64,
    /// Sectors of torn writes that did not land.
    pub sectors_torn: u64,
    /// Length changes (`set_len`, `fallocate` growth, extending writes) that did not survive.
    pub length_changes_lost: u64,
    /// Unsynced directory entry changes that did not survive.
    pub entries_lost: u64,
    /// Files named in the name space before the crash that no longer exist after it.
    pub files_vanished: u64,
}

/// The state behind a [`SimDisk`]: one per simulated machine.
#[derive(Debug)]
pub(crate) struct Disk {
    seed: u64,
    pub(crate) rng: SimRng,
    pub(crate) config: SimConfig,
    pub(crate) namespace: Namespace,
    /// Bumped by each crash; a storage from an older epoch is dead.
    pub(crate) epoch: u64,
    /// Held directory locks: directory inode → token of the holder.
    pub(crate) locks: BTreeMap<Ino, u64>,
    pub(crate) next_lock_token: u64,
    faults: FaultRules,
    pub(crate) stats: SimStats,
    last_crash: Option<CrashReport>,
}

impl Disk {
    /// An operation of `kind` on `paths` reaches the device: count it and let the fault rules
    /// decide whether it fails.
    pub(crate) fn begin(&mut self, kind: OpKind, paths: &[&Path]) -> io::Result<()> {
        self.stats.count_op(kind);
        match self.faults.check(kind, paths) {
            None => Ok(()),
            Some(error) => {
                self.stats.count_fault(kind, error.into());
                Err(error.to_error())
            }
        }
    }

    /// Whether growing the live files by `growth_bytes` stays within the capacity; counts a
    /// `NoSpace` fault against `kind` when it does not.
    pub(crate) fn check_capacity(&mut self, kind: OpKind, growth_bytes: u64) -> io::Result<()> {
        match self.config.capacity_bytes {
            Some(capacity)
                if self.namespace.used_bytes().saturating_add(growth_bytes) > capacity =>
            {
                self.stats.count_fault(kind, FaultKind::NoSpace);
                Err(crate::storage::no_space())
            }
            _ => Ok(()),
        }
    }

    /// `EFBIG` if a file would grow past the size limit.
    pub(crate) fn check_file_size(&self, end: u64) -> io::Result<()> {
        if end > self.config.file_size_bytes_max {
            return Err(namespace::errno(libc::EFBIG));
        }
        Ok(())
    }
}

/// Lock the disk state. A poisoned mutex means a thread panicked while holding it, which only
/// happens when a test is already failing; the panic here reports that rather than hiding it.
pub(crate) fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().expect("simulated disk mutex poisoned: a test panicked while holding it")
}

/// A simulated machine's disk: a cloneable handle to one in-memory file system. See the module
/// documentation for the model.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<Disk>>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = lock(&self.inner);
        f.debug_struct("SimDisk")
            .field("seed", &disk.seed)
            .field("epoch", &disk.epoch)
            .field("used_bytes", &disk.namespace.used_bytes())
            .finish()
    }
}

impl SimDisk {
    /// An empty disk (only `/`) with the default configuration, all randomness from `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, SimConfig::default())
    }

    /// An empty disk with `config`.
    ///
    /// # Panics
    /// If the queue depth is 0.
    pub fn with_config(seed: u64, config: SimConfig) -> Self {
        assert!(config.queue_depth > 0, "queue depth must be at least 1");
        let disk = Disk {
            seed,
            rng: SimRng::new(seed),
            config,
            namespace: Namespace::default(),
            epoch: 0,
            locks: BTreeMap::new(),
            next_lock_token: 0,
            faults: FaultRules::default(),
            stats: SimStats::default(),
            last_crash: None,
        };
        Self { inner: Arc::new(Mutex::new(disk)) }
    }

    /// The seed the disk was made with: print it with any failure.
    pub fn seed(&self) -> u64 {
        lock(&self.inner).seed
    }

    /// A new storage (one per shard thread) with the configured queue depth.
    pub fn storage(&self) -> SimStorage {
        let depth = lock(&self.inner).config.queue_depth;
        self.storage_with_queue_depth(depth)
    }

    /// A new storage holding at most `queue_depth` operations in flight.
    ///
    /// # Panics
    /// If `queue_depth` is 0.
    pub fn storage_with_queue_depth(&self, queue_depth: usize) -> SimStorage {
        SimStorage::new(Arc::clone(&self.inner), queue_depth)
    }

    /// A factory making storages on this disk.
    pub fn factory(&self) -> SimFactory {
        SimFactory { disk: self.clone() }
    }

    /// Simulate a power loss (see the module documentation) and report what it did.
    pub fn crash(&self) -> CrashReport {
        let mut guard = lock(&self.inner);
        let disk = &mut *guard;
        disk.epoch += 1;
        disk.locks.clear();
        disk.stats.crashes += 1;
        let mut report = CrashReport::default();
        disk.namespace.crash(&mut disk.rng, &mut report);
        disk.last_crash = Some(report.clone());
        report
    }

    /// The report of the latest crash.
    pub fn last_crash(&self) -> Option<CrashReport> {
        lock(&self.inner).last_crash.clone()
    }

    /// Add a fault rule; it stays until it fires (once) or is cleared (persistent).
    pub fn inject_fault(&self, rule: FaultRule) -> FaultId {
        lock(&self.inner).faults.add(rule)
    }

    /// Remove a fault rule; false if it had already fired or been cleared.
    pub fn clear_fault(&self, id: FaultId) -> bool {
        lock(&self.inner).faults.remove(id)
    }

    /// Remove every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.inner).faults.clear();
    }

    /// Limit the total bytes of live files (`None`: no limit). Lowering it below what is used
    /// fails only later growth; nothing is taken away.
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<u64>) {
        lock(&self.inner).config.capacity_bytes = capacity_bytes;
    }

    /// Bytes held by live files now.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.inner).namespace.used_bytes()
    }

    /// Set the probability of short writes.
    pub fn set_short_write_probability(&self, probability: f64) {
        lock(&self.inner).config.short_write_probability = probability;
    }

    /// Set the probability of short reads.
    pub fn set_short_read_probability(&self, probability: f64) {
        lock(&self.inner).config.short_read_probability = probability;
    }

    /// Flip bit `bit` (0–7) of the byte at `offset` of the file at `path`, in every version
    /// the disk holds (current view, durable image, unsynced writes), so that no crash outcome
    /// repairs it. Fails if the file does not exist or the offset is past both its current
    /// and durable ends.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut disk = lock(&self.inner);
        disk.namespace.flip_bit(&components(path)?, offset, bit)?;
        disk.stats.bit_flips += 1;
        Ok(())
    }

    /// A copy of the operation and fault counters.
    pub fn stats(&self) -> SimStats {
        lock(&self.inner).stats.clone()
    }

    /// The current contents of the file at `path` (what a read sees now).
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = lock(&self.inner);
        let ino = disk.namespace.resolve(&components(path)?)?;
        Ok(disk.namespace.file(ino)?.current().to_vec())
    }

    /// The durable contents of the file at `path`: what a crash now would leave of its data if
    /// its name survives.
    pub fn read_durable(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = lock(&self.inner);
        let ino = disk.namespace.resolve(&components(path)?)?;
        Ok(disk.namespace.file(ino)?.durable().to_vec())
    }

    /// Whether the file at `path` has changes no `fdatasync` has made durable yet.
    pub fn has_unsynced_data(&self, path: &Path) -> io::Result<bool> {
        let disk = lock(&self.inner);
        let ino = disk.namespace.resolve(&components(path)?)?;
        Ok(disk.namespace.file(ino)?.has_unsynced())
    }

    /// Current length of the file at `path`.
    pub fn file_len(&self, path: &Path) -> io::Result<u64> {
        let disk = lock(&self.inner);
        let ino = disk.namespace.resolve(&components(path)?)?;
        Ok(disk.namespace.file(ino)?.len())
    }

    /// Whether `path` names a file or directory now.
    pub fn exists(&self, path: &Path) -> bool {
        let disk = lock(&self.inner);
        components(path).and_then(|names| disk.namespace.resolve(&names)).is_ok()
    }

    /// The directory at `path`, sorted by name.
    pub fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        lock(&self.inner).namespace.list(&components(path)?)
    }

    /// Every file and directory path now, sorted (`/` itself excluded).
    pub fn paths(&self) -> Vec<PathBuf> {
        lock(&self.inner).namespace.paths(false)
    }

    /// Every path in the durable name space, sorted: the names that survive any crash now.
    pub fn durable_paths(&self) -> Vec<PathBuf> {
        lock(&self.inner).namespace.paths(true)
    }
}

/// Makes [`SimStorage`]s on one [`SimDisk`].
#[derive(Clone, Debug)]
pub struct SimFactory {
    disk: SimDisk,
}

impl SimFactory {
    /// A factory for storages on `disk`.
    pub fn new(disk: SimDisk) -> Self {
        Self { disk }
    }

    /// The disk the storages use.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }
}

impl StorageFactory for SimFactory {
    fn kind(&self) -> BackendKind {
        BackendKind::Simulated
    }

    fn create(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(self.disk.storage()))
    }
}
