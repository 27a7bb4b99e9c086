//! The io_uring backend: one ring per shard thread, driven by the shard's own loop.
//!
//! [`UringStorage`] implements [`Storage`] on an `io_uring` instance (the
//! `io-uring` crate, not tokio-uring: see `docs/ARCHITECTURE.md`):
//!
//! - **ring setup**: created on the thread that uses it, so it asks for
//!   `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (completions are processed only
//!   when the owner enters the ring: no inter-processor interrupts, no task work stealing the
//!   shard's time) plus `TASKRUN_FLAG` and `SUBMIT_ALL`, falling back to fewer flags where the
//!   kernel refuses them. No SQPOLL by default (it takes one of this machine's two cores), no
//!   IOPOLL. With `SINGLE_ISSUER`, only the creating thread may submit, reap or drop the
//!   storage (the kernel answers `EEXIST` to anyone else);
//! - **operations**: `Write`/`Read` go out as `WRITE_FIXED`/`READ_FIXED` when their buffer is a
//!   slot of the storage's registered [`BufferPool`](crate::BufferPool) (from
//!   [`Storage::alloc_buf`], or [`Storage::alloc_read_buf`] while more than half the pool is
//!   free), else as plain `WRITE`/`READ`;
//!   `SyncData` is `FSYNC` with `IORING_FSYNC_DATASYNC`; `Allocate` is `FALLOCATE` mode 0;
//! - **files** live in the ring's registered file table (`FileId` = slot), opened through
//!   [`open_std`](crate::portable::open_std) (O_DIRECT where the file system takes it);
//!   directory and metadata operations are synchronous, shared with the portable backend;
//! - **ownership** (STYLE §7): each operation in flight owns its buffer in a slab indexed by
//!   the SQE's `user_data`; only its CQE hands the buffer back. Dropping the storage submits
//!   whatever is queued and waits for every CQE before any buffer is freed;
//! - **links**, **waker**, **registered buffers** and **faults**: see [`UringStorage`].
//!
//! [`probe`] tells whether io_uring can be used here at all, for `--io auto`.

mod probe;
mod registration;
mod storage;
mod waker;

#[cfg(test)]
mod tests;

use std::io;

pub use probe::{ProbeReport, probe};
pub use storage::{PoolStats, UringStats, UringStorage};

use crate::storage::{BackendKind, Storage, StorageFactory};

/// Default bound on operations in flight per storage (as the portable backend's).
pub const URING_QUEUE_DEPTH: usize = 256;
/// Largest queue depth a configuration may ask for (the ring gets the next power of two
/// above it plus one entry for the waker; the kernel's limit is 32768 entries).
pub const URING_QUEUE_DEPTH_MAX: usize = 4096;
/// Default number of registered buffer slots per storage.
pub const BUFFER_POOL_SLOTS: usize = 16;
/// Default bytes per registered buffer slot.
pub const BUFFER_POOL_SLOT_BYTES: usize = 256 * 1024;
/// Most slots a pool may have: the kernel registers at most 16384 buffers per ring
/// (`IORING_MAX_REG_BUFFERS`), and an SQE's buffer index is 16 bits.
pub const BUFFER_POOL_SLOTS_MAX: usize = 16_384;
/// Largest slot: the kernel refuses to register a single buffer above 1 GiB.
pub const BUFFER_POOL_SLOT_BYTES_MAX: usize = 1 << 30;
/// Default size of the registered file table (capped at the process's `RLIMIT_NOFILE`, which
/// the kernel enforces on the table); files opened beyond it use plain descriptors.
pub const REGISTERED_FILES: u32 = 1024;

const _: () = assert!(URING_QUEUE_DEPTH <= URING_QUEUE_DEPTH_MAX);
const _: () = assert!(BUFFER_POOL_SLOTS <= BUFFER_POOL_SLOTS_MAX);
const _: () = assert!(BUFFER_POOL_SLOTS_MAX <= u16::MAX as usize + 1);
const _: () = assert!(BUFFER_POOL_SLOT_BYTES <= BUFFER_POOL_SLOT_BYTES_MAX);
const _: () = assert!(BUFFER_POOL_SLOT_BYTES.is_multiple_of(crate::BLOCK_SIZE));
// The default pool (4 MiB) fits twice in this machine's 8 MiB RLIMIT_MEMLOCK.
const _: () = assert!(BUFFER_POOL_SLOTS * BUFFER_POOL_SLOT_BYTES <= 4 << 20);

/// How a [`UringStorage`] is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UringConfig {
    /// Most operations in flight (submitted, completion not yet collected).
    pub queue_depth: usize,
    /// Slots in the storage's buffer pool; 0 for no pool ([`Storage::alloc_buf`] then always
    /// gives heap buffers).
    pub buffer_pool_slots: usize,
    /// Bytes per pool slot (rounded up to whole blocks).
    pub buffer_pool_slot_bytes: usize,
    /// Register the pool with the ring (`WRITE_FIXED`/`READ_FIXED`). If registration fails
    /// (`RLIMIT_MEMLOCK`), the pool is still used, unregistered.
    pub register_buffers: bool,
    /// Size of the registered file table; 0 for plain descriptors only.
    pub registered_files: u32,
    /// Ask for `SINGLE_ISSUER | DEFER_TASKRUN` (falls back if refused).
    pub single_issuer: bool,
    /// Use a kernel submission-polling thread that sleeps after this many idle milliseconds.
    /// Off by default: on two cores it takes one away from the shards.
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            queue_depth: URING_QUEUE_DEPTH,
            buffer_pool_slots: BUFFER_POOL_SLOTS,
            buffer_pool_slot_bytes: BUFFER_POOL_SLOT_BYTES,
            register_buffers: true,
            registered_files: REGISTERED_FILES,
            single_issuer: true,
            sqpoll_idle_ms: None,
        }
    }
}

impl UringConfig {
    /// The default configuration with another queue depth.
    pub fn with_queue_depth(queue_depth: usize) -> Self {
        Self { queue_depth, ..Self::default() }
    }

    /// Check every field against its limit.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=URING_QUEUE_DEPTH_MAX).contains(&self.queue_depth) {
            return Err(format!(
                "queue depth {} outside 1..={URING_QUEUE_DEPTH_MAX}",
                self.queue_depth
            ));
        }
        if self.buffer_pool_slots > BUFFER_POOL_SLOTS_MAX {
            return Err(format!(
                "{} buffer pool slots above the limit of {BUFFER_POOL_SLOTS_MAX}",
                self.buffer_pool_slots
            ));
        }
        if self.buffer_pool_slots > 0
            && !(1..=BUFFER_POOL_SLOT_BYTES_MAX).contains(&self.buffer_pool_slot_bytes)
        {
            return Err(format!(
                "buffer pool slot of {} bytes outside 1..={BUFFER_POOL_SLOT_BYTES_MAX}",
                self.buffer_pool_slot_bytes
            ));
        }
        Ok(())
    }
}

/// Makes [`UringStorage`]s, each on the thread that calls [`StorageFactory::create`].
#[derive(Clone, Debug, Default)]
pub struct UringFactory {
    config: UringConfig,
}

impl UringFactory {
    /// A factory for storages set up as `config` says.
    pub fn new(config: UringConfig) -> Self {
        Self { config }
    }

    /// The configuration storages are made with.
    pub fn config(&self) -> &UringConfig {
        &self.config
    }
}

impl StorageFactory for UringFactory {
    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn create(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(UringStorage::new(self.config.clone())?))
    }
}
