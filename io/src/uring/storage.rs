//! [`UringStorage`]: the [`Storage`] on one io_uring instance.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, Fixed, FsyncFlags, SubmitArgs, Timespec};
use io_uring::{IoUring, opcode, squeue};

use super::UringConfig;
use super::registration::register_pool;
use super::waker::EventFd;
use crate::buffer::{AlignedBuf, BufferPool};
use crate::portable::{
    check_direct, lock_dir_std, metadata_std, open_std, read_dir_std, sync_dir_std,
};
use crate::storage::{
    BackendKind, Completion, DirEntry, DirLock, FileId, Metadata, Op, OpenOptions, Storage,
    Submission, Wait, Wake, cancelled,
};

/// `user_data` of the armed eventfd read; every other value is a slab index.
const WAKE_USER_DATA: u64 = u64::MAX;

/// Bytes the eventfd read takes (the counter).
const WAKE_READ_BYTES: u32 = 8;

/// How long a dropping storage waits between reports that its operations are still running.
const DRAIN_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Counts of what the storage did, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringStats {
    /// Plain `WRITE`s submitted.
    pub writes: u64,
    /// `WRITE_FIXED`s submitted (pooled buffer, registered pool).
    pub writes_fixed: u64,
    /// Plain `READ`s submitted.
    pub reads: u64,
    /// `READ_FIXED`s submitted.
    pub reads_fixed: u64,
    /// `FSYNC` (datasync) submitted.
    pub syncs: u64,
    /// `FALLOCATE` submitted.
    pub allocates: u64,
    /// Submissions refused before reaching the kernel (unknown file, unaligned direct I/O, ...).
    pub refused: u64,
    /// Submissions completed with `ECANCELED` by the storage itself because an earlier member of
    /// their chain failed before they reached the kernel.
    pub cancelled_in_software: u64,
    /// Submissions held back until the tail of a chain already in the kernel completed (a
    /// chain cannot be extended across `io_uring_enter` calls).
    pub held_behind_chain: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// Wakes taken from the eventfd.
    pub wakes: u64,
    /// [`Storage::alloc_buf`] and [`Storage::alloc_read_buf`] answers from the pool.
    pub pool_allocs: u64,
    /// Their answers from the heap (too big for a slot, no slot to spare, pool absent).
    pub heap_allocs: u64,
}

/// The storage's buffer pool, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Number of slots.
    pub slots: usize,
    /// Bytes per slot.
    pub slot_bytes: usize,
    /// Slots not in use.
    pub free: usize,
    /// Whether the pool is registered with the ring (else its buffers go out as plain
    /// `WRITE`/`READ`).
    pub registered: bool,
    /// Why it is not registered, if it is not.
    pub unregistered_reason: Option<String>,
}

/// How a file is named in SQEs.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Slot of the registered file table.
    Fixed(u32),
    /// A plain descriptor (beyond the table).
    Fd(RawFd),
}

/// Build an SQE for `$target` with `$fd` bound to the right descriptor type.
macro_rules! with_target {
    ($target:expr, |$fd:ident| $build:expr) => {
        match $target {
            Target::Fixed(slot) => {
                let $fd = Fixed(slot);
                $build
            }
            Target::Fd(raw) => {
                let $fd = Fd(raw);
                $build
            }
        }
    };
}

struct OpenFile {
    /// Owns the descriptor (the registered table holds its own reference to the file).
    file: File,
    direct: bool,
    target: Target,
}

/// An operation the kernel (or a NOP standing in for it) has and whose CQE has not been reaped.
struct InFlight {
    token: u64,
    /// Owns the buffer the SQE points into: dropped or handed back only after the CQE.
    op: Op,
    link_next: bool,
    /// A submission refused before reaching the kernel that arrived in the middle of a kernel
    /// chain: it stands in the ring as a NOP, ending the chain there, and completes with this
    /// error (or `ECANCELED` if the chain failed before reaching it).
    refused: Option<io::Error>,
}

/// Submissions held back behind the tail of a chain that is already in the kernel.
struct Gate {
    /// Slab index of the chain's last submitted (linked) operation.
    tail: u32,
    waiting: VecDeque<Submission>,
}

/// The io_uring [`Storage`]. See the [module documentation](super) for the setup.
///
/// # Submission and completion
/// [`Storage::submit`] only queues an SQE (no system call); [`Storage::complete`] hands every
/// queued SQE to the kernel and reaps in the same `io_uring_enter`. A submission is handed back
/// when `queue_depth` operations are in flight (or, which the sizing rules out, the SQ is
/// full). `Wait::No` submits and reaps without blocking; `Wait::One` blocks until at least one
/// completion if anything is in flight; `Wait::Idle(timeout)` blocks until a completion, a wake
/// or the timeout. `EINTR`/`EAGAIN`/`EBUSY` from `io_uring_enter` are retried; any other error
/// is returned from `complete` and means the ring is unusable (the engine fails the shard).
///
/// # Links
/// `link_next` sets `IOSQE_IO_LINK`: the kernel starts the next SQE only if this one succeeded
/// *in full* — for `READ`/`WRITE` (fixed or not) the kernel counts a result short of the
/// requested length as a failure and completes the rest of the chain with `ECANCELED`
/// (`io_uring/rw.c` sets the expected result to the iterator's length and fails the request on
/// any other), which is [`Op::completed_in_full`]'s rule; `FSYNC`/`FALLOCATE` results are 0
/// or an error, so they cannot be short. Tests check both short cases against this kernel.
/// Where the kernel cannot carry the chain, the storage does, with the same outcome:
/// - a submission refused before reaching the kernel (unknown file, unaligned direct I/O)
///   completes with its error, and the rest of its chain with `ECANCELED`; if it came in the
///   middle of a kernel chain, a NOP takes its place so the kernel chain ends there;
/// - a chain cannot grow across `io_uring_enter` calls: if `complete` runs while a chain's last
///   submission still asks to be linked, later submissions wait in the storage until that
///   tail completes, then go to the kernel (tail in full) or complete with `ECANCELED`.
///
/// # Short transfers and errors
/// Short writes and reads complete as such (the caller resubmits the rest); `ENOSPC`, `EIO`
/// and every other per-operation error is that operation's completion.
///
/// # Waker
/// An eventfd with an 8-byte `READ` of it always armed in the ring (internal `user_data`; its
/// completion is never returned). See [`Wake`] and the waker module: a wake before the wait is
/// not lost, and a wake consumed by a non-idle `complete` is remembered for the next idle one.
///
/// # Registered buffers
/// The storage owns a [`BufferPool`] (default 16 × 256 KiB), registered with the ring slot by
/// slot; [`Storage::alloc_buf`] hands out its slots, and writes/reads of them go out as
/// `WRITE_FIXED`/`READ_FIXED` with the slot as buffer index. If registration is refused
/// (`RLIMIT_MEMLOCK`), the soft limit is raised to the hard one and registration retried; failing
/// that, the pool is used unregistered and a warning is logged once per process.
///
/// # Drop
/// Dropping the storage submits whatever is still queued, then waits for the completion of
/// every operation in the kernel (including the armed eventfd read, which it wakes) before any
/// buffer is freed. Operations still held behind a chain never reached the kernel and are
/// simply dropped. If waiting is impossible — the ring fails, or with `SINGLE_ISSUER` the
/// storage is dropped on a thread other than its creator — the buffers of the operations still
/// in flight (and the pool's region) are leaked rather than freed under the kernel, and an error
/// is logged.
pub struct UringStorage {
    ring: IoUring,
    setup: &'static str,
    queue_depth: usize,
    files: Vec<Option<OpenFile>>,
    free_ids: BTreeSet<u32>,
    /// Size of the registered file table: ids below it are table slots.
    registered_files: u32,
    slab: Vec<Option<InFlight>>,
    free_slab: Vec<u32>,
    /// Completions waiting to be collected.
    ready: VecDeque<Completion>,
    /// Submissions accepted whose completion has not been collected.
    in_flight: usize,
    /// SQEs staged for the next `io_uring_enter`. They go into the SQ only then, all at once,
    /// so the kernel (or an SQPOLL thread) never sees half a chain.
    staged: Vec<squeue::Entry>,
    /// SQEs staged or submitted (including the eventfd read) whose CQE has not been reaped.
    kernel_ops: usize,
    /// Slab index of the last SQE staged if it carries `IO_LINK`: the next SQE staged joins
    /// its chain.
    open_tail: Option<u32>,
    /// A chain failed before reaching the kernel: cancel the next submission.
    cancel_next: bool,
    gate: Option<Gate>,
    waker: Arc<EventFd>,
    /// The eventfd read's target. Owned by the kernel while `wake_armed`.
    wake_buf: AlignedBuf,
    wake_armed: bool,
    /// A wake was taken and not yet reported to an idle wait.
    woken: bool,
    pool: Option<BufferPool>,
    pool_registered: bool,
    pool_unregistered_reason: Option<String>,
    stats: UringStats,
    cqes: Vec<(u64, i32)>,
    /// Dropping: reap without re-arming the waker or releasing gates.
    closing: bool,
}

impl fmt::Debug for UringStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringStorage")
            .field("setup", &self.setup)
            .field("queue_depth", &self.queue_depth)
            .field("in_flight", &self.in_flight)
            .field("kernel_ops", &self.kernel_ops)
            .field("open_files", &self.files.iter().flatten().count())
            .field("pool_registered", &self.pool_registered)
            .finish()
    }
}

/// Create the ring with the most useful setup flags the kernel accepts.
fn build_ring(entries: u32, config: &UringConfig) -> io::Result<(IoUring, &'static str)> {
    type Configure = fn(&mut io_uring::Builder, u32);
    let mut attempts: Vec<(&'static str, Configure)> = Vec::new();
    if config.sqpoll_idle_ms.is_some() {
        attempts.push(("sqpoll+submit-all", |b, idle| {
            b.setup_sqpoll(idle).setup_submit_all();
        }));
    }
    if config.single_issuer {
        attempts.push(("single-issuer+defer-taskrun+submit-all", |b, _| {
            b.setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag().setup_submit_all();
        }));
    }
    attempts.push(("submit-all", |b, _| {
        b.setup_submit_all();
    }));
    attempts.push(("plain", |_, _| {}));
    let idle = config.sqpoll_idle_ms.unwrap_or(0);
    let mut refused = Vec::new();
    for (name, configure) in attempts {
        let mut builder = IoUring::builder();
        configure(&mut builder, idle);
        match builder.build(entries) {
            Ok(ring) => {
                if !refused.is_empty() {
                    tracing::debug!(?refused, setup = name, "io_uring setup flags refused");
                }
                return Ok((ring, name));
            }
            // EINVAL: flags this kernel does not know; EPERM for SQPOLL without privilege.
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL)) => refused.push(name),
            Err(err) if name.starts_with("sqpoll") && err.raw_os_error() == Some(libc::EPERM) => {
                refused.push(name)
            }
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::new(io::ErrorKind::Unsupported, "the kernel refused every io_uring setup"))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Offsets and lengths the kernel takes as `off_t` must fit it (`u64::MAX` would even mean
/// "the file position" to io_uring).
fn check_off(value: u64, what: &str) -> io::Result<u64> {
    if i64::try_from(value).is_err() {
        return Err(invalid(format!("{what} {value} beyond off_t")));
    }
    Ok(value)
}

fn check_rw_len(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| invalid(format!("transfer of {len} bytes above 4 GiB")))
}

impl UringStorage {
    /// A storage with the default configuration and `queue_depth`.
    pub fn with_queue_depth(queue_depth: usize) -> io::Result<Self> {
        Self::new(UringConfig::with_queue_depth(queue_depth))
    }

    /// Set up a ring, its file table, waker and buffer pool as `config` says. Call it on the
    /// thread that will use the storage.
    pub fn new(config: UringConfig) -> io::Result<Self> {
        config.validate().map_err(invalid)?;
        // Room for every operation in flight plus the eventfd read: the SQ can never fill.
        let entries = (config.queue_depth + 1).next_power_of_two();
        let entries = u32::try_from(entries).map_err(|_| invalid("queue too deep".to_owned()))?;
        let (ring, setup) = build_ring(entries, &config)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without IORING_FEAT_EXT_ARG (kernel before 5.11): no timed waits",
            ));
        }
        let nofile = crate::open_files::limit().map_or(0, |limit| limit.soft);
        let mut registered_files = config.registered_files.min(nofile.min(u32::MAX as u64) as u32);
        if registered_files > 0
            && let Err(err) = ring.submitter().register_files_sparse(registered_files)
        {
            tracing::warn!(%err, registered_files, "no registered file table; using descriptors");
            registered_files = 0;
        }
        let waker = Arc::new(EventFd::new()?);
        let (pool, pool_registered, pool_unregistered_reason) = if config.buffer_pool_slots > 0 {
            let pool = BufferPool::new(config.buffer_pool_slots, config.buffer_pool_slot_bytes);
            let registered = if config.register_buffers {
                register_pool(&ring.submitter(), &pool)
            } else {
                Err("registration disabled by configuration".to_owned())
            };
            (Some(pool), registered.is_ok(), registered.err())
        } else {
            (None, false, Some("no buffer pool configured".to_owned()))
        };
        let mut storage = Self {
            ring,
            setup,
            queue_depth: config.queue_depth,
            files: Vec::new(),
            free_ids: BTreeSet::new(),
            registered_files,
            slab: (0..config.queue_depth).map(|_| None).collect(),
            free_slab: (0..config.queue_depth as u32).rev().collect(),
            ready: VecDeque::with_capacity(config.queue_depth),
            in_flight: 0,
            staged: Vec::with_capacity(entries as usize),
            kernel_ops: 0,
            open_tail: None,
            cancel_next: false,
            gate: None,
            waker,
            wake_buf: AlignedBuf::with_capacity(WAKE_READ_BYTES as usize),
            wake_armed: false,
            woken: false,
            pool,
            pool_registered,
            pool_unregistered_reason,
            stats: UringStats::default(),
            cqes: Vec::with_capacity(config.queue_depth + 1),
            closing: false,
        };
        storage.arm_wake();
        Ok(storage)
    }

    /// The setup flags the kernel accepted, in words.
    pub fn setup(&self) -> &'static str {
        self.setup
    }

    /// What the storage has done so far.
    pub fn stats(&self) -> UringStats {
        self.stats
    }

    /// The buffer pool's state, if there is one.
    pub fn pool_stats(&self) -> Option<PoolStats> {
        self.pool.as_ref().map(|pool| PoolStats {
            slots: pool.slots(),
            slot_bytes: pool.slot_bytes(),
            free: pool.free_slots(),
            registered: self.pool_registered,
            unregistered_reason: self.pool_unregistered_reason.clone(),
        })
    }

    /// The storage's buffer pool (a handle to the same slots), if there is one.
    pub fn buffer_pool(&self) -> Option<&BufferPool> {
        self.pool.as_ref()
    }

    /// Size of the registered file table (files with lower ids are registered).
    pub fn registered_files(&self) -> u32 {
        self.registered_files
    }

    fn get(&self, file: FileId) -> io::Result<&OpenFile> {
        self.files
            .get(file.0 as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| invalid(format!("{file:?} is not open")))
    }

    /// Check what the kernel would refuse less clearly (or not at all), as the portable
    /// backend does; returns how to name the file.
    fn check(&self, op: &Op) -> io::Result<Target> {
        let open = self.get(op.file())?;
        match op {
            Op::Write { offset, buf, .. } => {
                check_direct(open.direct, *offset, buf.len(), buf.as_ptr())?;
                check_off(*offset, "offset")?;
                check_rw_len(buf.len())?;
            }
            Op::Read { offset, len, buf, .. } => {
                if *len > buf.capacity() {
                    return Err(invalid(format!(
                        "read of {len} bytes into a buffer of {}",
                        buf.capacity()
                    )));
                }
                check_direct(open.direct, *offset, *len, buf.as_ptr())?;
                check_off(*offset, "offset")?;
                check_rw_len(*len)?;
            }
            Op::SyncData { .. } => {}
            Op::Allocate { offset, len, .. } => {
                check_off(*offset, "offset")?;
                check_off(*len, "length")?;
            }
        }
        Ok(open.target)
    }

    /// Stage one SQE for the next `io_uring_enter`. Everything `entry` points at must be owned
    /// by the slab entry named by its `user_data` (or, for the waker, by `self.wake_buf`) and
    /// left untouched until its CQE is reaped — see the SAFETY argument in `enter`.
    fn stage(&mut self, entry: squeue::Entry) {
        self.staged.push(entry);
        self.kernel_ops += 1;
    }

    /// No room for one more SQE (never true with the sizing in `new`; checked anyway).
    fn sq_full(&mut self) -> bool {
        let sq = self.ring.submission();
        sq.len() + self.staged.len() >= sq.capacity()
    }

    fn arm_wake(&mut self) {
        debug_assert!(!self.wake_armed);
        let ptr = self.wake_buf.as_mut_ptr();
        let entry = opcode::Read::new(Fd(self.waker.raw()), ptr, WAKE_READ_BYTES)
            .build()
            .user_data(WAKE_USER_DATA);
        self.stage(entry);
        self.wake_armed = true;
    }

    fn slab_insert(&mut self, entry: InFlight) -> u32 {
        // At most `queue_depth` operations are accepted at once and each holds one slot.
        let Some(index) = self.free_slab.pop() else {
            unreachable!("slab full with at most queue_depth operations in flight")
        };
        self.slab[index as usize] = Some(entry);
        index
    }

    /// Take a submission in order: behind a gate, completed at once, or into the SQ. The SQ
    /// has room (checked by `submit`, and by the sizing when a gate is released).
    fn route(&mut self, submission: Submission) {
        if let Some(gate) = &mut self.gate {
            self.stats.held_behind_chain += 1;
            gate.waiting.push_back(submission);
            return;
        }
        let Submission { token, op, link_next } = submission;
        if std::mem::take(&mut self.cancel_next) {
            self.stats.cancelled_in_software += 1;
            self.cancel_next = link_next;
            self.ready.push_back(Completion {
                token,
                result: Err(cancelled()),
                buf: op.into_buf(),
            });
            return;
        }
        match self.check(&op) {
            Err(err) => {
                self.stats.refused += 1;
                self.cancel_next = link_next;
                if self.open_tail.take().is_some() {
                    // Mid-chain in the kernel: a NOP without IO_LINK ends the chain here.
                    let index = self.slab_insert(InFlight {
                        token,
                        op,
                        link_next: false,
                        refused: Some(err),
                    });
                    self.stage(opcode::Nop::new().build().user_data(index as u64));
                } else {
                    self.ready.push_back(Completion {
                        token,
                        result: Err(err),
                        buf: op.into_buf(),
                    });
                }
            }
            Ok(target) => {
                let index = self.slab_insert(InFlight { token, op, link_next, refused: None });
                let entry = self.build_entry(index, target);
                let entry = if link_next { entry.flags(squeue::Flags::IO_LINK) } else { entry };
                self.stage(entry);
                self.open_tail = link_next.then_some(index);
            }
        }
    }

    /// The SQE for the operation in slab slot `index`, pointing into the buffer it owns there.
    fn build_entry(&mut self, index: u32, target: Target) -> squeue::Entry {
        let pool = if self.pool_registered { self.pool.as_ref() } else { None };
        let Some(in_flight) = self.slab[index as usize].as_mut() else {
            unreachable!("slab slot {index} was just filled")
        };
        // Lengths were checked to fit u32 (`check_rw_len`) and buffer indexes to fit u16
        // (`BUFFER_POOL_SLOTS_MAX`).
        let entry = match &mut in_flight.op {
            Op::Write { offset, buf, .. } => {
                let (ptr, len) = (buf.as_ptr(), buf.len() as u32);
                match pool.and_then(|pool| pool.slot_of(buf)) {
                    Some(slot) => {
                        self.stats.writes_fixed += 1;
                        with_target!(target, |fd| opcode::WriteFixed::new(
                            fd,
                            ptr,
                            len,
                            slot as u16
                        )
                        .offset(*offset)
                        .build())
                    }
                    None => {
                        self.stats.writes += 1;
                        with_target!(target, |fd| opcode::Write::new(fd, ptr, len)
                            .offset(*offset)
                            .build())
                    }
                }
            }
            Op::Read { offset, len, buf, .. } => {
                let slot = pool.and_then(|pool| pool.slot_of(buf));
                let (ptr, len) = (buf.as_mut_ptr(), *len as u32);
                match slot {
                    Some(slot) => {
                        self.stats.reads_fixed += 1;
                        with_target!(target, |fd| opcode::ReadFixed::new(fd, ptr, len, slot as u16)
                            .offset(*offset)
                            .build())
                    }
                    None => {
                        self.stats.reads += 1;
                        with_target!(target, |fd| opcode::Read::new(fd, ptr, len)
                            .offset(*offset)
                            .build())
                    }
                }
            }
            Op::SyncData { .. } => {
                self.stats.syncs += 1;
                with_target!(target, |fd| opcode::Fsync::new(fd)
                    .flags(FsyncFlags::DATASYNC)
                    .build())
            }
            Op::Allocate { offset, len, .. } => {
                self.stats.allocates += 1;
                with_target!(target, |fd| opcode::Fallocate::new(fd, *len)
                    .offset(*offset)
                    .mode(0)
                    .build())
            }
        };
        entry.user_data(index as u64)
    }

    /// Hand queued SQEs to the kernel and wait for `want` CQEs (at most `timeout`). Returns
    /// whether the kernel was entered. Interruptions (`EINTR`, `EAGAIN`, `EBUSY`, `ETIME`) are
    /// not errors: the caller reaps and decides again.
    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        if !self.staged.is_empty() {
            let mut sq = self.ring.submission();
            // SAFETY: every staged SQE's resources stay valid and unaliased until its CQE:
            // - buffer: the SQE points into an `AlignedBuf` owned by the slab entry whose index
            //   is its `user_data` (or by `self.wake_buf` for the eventfd read). That memory is
            //   a heap allocation or pool slot that does not move when the `AlignedBuf` value
            //   moves; the slab entry is removed only in `finish`, after the CQE, or never if
            //   `Drop` cannot wait (the buffer is then leaked, not freed). Nothing reads or
            //   writes the buffer between staging and the CQE (the slab keeps it out of reach,
            //   `wake_buf` is untouched while armed), so the kernel's access is not aliased.
            //   The range is in bounds and initialised: writes cover `buf.len()`, reads
            //   `len <= capacity` (checked in `check`), the eventfd read 8 bytes of a block;
            //   fixed ones also lie inside their registered slot (the buffer starts at the
            //   slot's start and `capacity <= slot_bytes`).
            // - file: a table slot or descriptor of a file in `self.files`, which `close`
            //   refuses to remove while an operation on it is in flight; the eventfd is owned
            //   by `self.waker`, which lives as long as the storage (or is leaked with the
            //   buffers).
            let pushed = unsafe { sq.push_multiple(&self.staged) };
            // The SQ holds every operation in flight plus the waker (see `new`), and `submit`
            // checks `sq_full` first: a failure here is a broken invariant.
            assert!(pushed.is_ok(), "submission queue full despite its sizing");
            drop(sq);
            self.staged.clear();
            if let Some(tail) = self.open_tail.take() {
                // The kernel ends a chain at the end of a submission batch: whatever is
                // submitted after this must wait for the tail's outcome.
                self.gate = Some(Gate { tail, waiting: VecDeque::new() });
            }
        }
        let (pending, taskrun, overflow) = {
            let sq = self.ring.submission();
            (sq.len(), sq.taskrun(), sq.cq_overflow())
        };
        if want == 0 && pending == 0 && !taskrun && !overflow {
            // Nothing to submit and no deferred completions to run: no system call.
            return Ok(());
        }
        self.stats.enters += 1;
        let submitter = self.ring.submitter();
        let result = match (want, timeout) {
            (0, _) => submitter.submit(),
            (want, None) => submitter.submit_and_wait(want),
            (want, Some(timeout)) => {
                let timespec = Timespec::from(timeout);
                submitter.submit_with_args(want, &SubmitArgs::new().timespec(&timespec))
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME)
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(io::Error::new(err.kind(), format!("io_uring_enter failed: {err}"))),
        }
    }

    /// Move every CQE into `ready` (or the waker's state).
    fn reap(&mut self) -> io::Result<()> {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.ring.completion().map(|cqe| (cqe.user_data(), cqe.result())));
        let mut outcome = Ok(());
        for &(user_data, result) in &cqes {
            if let Err(err) = self.finish(user_data, result) {
                outcome = outcome.and(Err(err));
            }
        }
        self.cqes = cqes;
        outcome
    }

    fn finish(&mut self, user_data: u64, result: i32) -> io::Result<()> {
        self.kernel_ops -= 1;
        if user_data == WAKE_USER_DATA {
            self.wake_armed = false;
            if self.closing {
                return Ok(());
            }
            if result < 0 && result != -libc::EINTR && result != -libc::EAGAIN {
                let err = io::Error::from_raw_os_error(-result);
                return Err(io::Error::new(err.kind(), format!("eventfd read failed: {err}")));
            }
            if result >= 0 {
                self.woken = true;
                self.stats.wakes += 1;
            }
            self.arm_wake();
            return Ok(());
        }
        let index = user_data as usize;
        let Some(in_flight) = self.slab.get_mut(index).and_then(Option::take) else {
            return Err(io::Error::other(format!("completion for unknown user_data {user_data}")));
        };
        self.free_slab.push(index as u32);
        let InFlight { token, mut op, link_next, refused } = in_flight;
        let mut result = if result < 0 {
            Err(io::Error::from_raw_os_error(-result))
        } else {
            Ok(result as usize)
        };
        if let Some(err) = refused {
            result = if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::ECANCELED)) {
                Err(cancelled())
            } else {
                Err(err)
            };
        }
        if let (Op::Read { buf, .. }, Ok(n)) = (&mut op, &result) {
            // The kernel wrote `n <= len <= capacity` bytes at the buffer's start.
            buf.set_len(*n);
        }
        let is_gate_tail = self.gate.as_ref().is_some_and(|gate| gate.tail as usize == index);
        let in_full = op.completed_in_full(&result);
        debug_assert!(!is_gate_tail || link_next);
        self.ready.push_back(Completion { token, result, buf: op.into_buf() });
        if is_gate_tail {
            self.release_gate(in_full);
        }
        Ok(())
    }

    /// The chain tail a gate waited for has completed: route what waited behind it.
    fn release_gate(&mut self, tail_in_full: bool) {
        let Some(gate) = self.gate.take() else { return };
        if self.closing {
            return; // Never reached the kernel: the buffers are simply dropped.
        }
        if !tail_in_full {
            self.cancel_next = true;
        }
        for submission in gate.waiting {
            // Room: what waited was counted in flight, and the SQ holds every operation in
            // flight plus the waker.
            debug_assert!(!self.sq_full());
            self.route(submission);
        }
    }

    /// Give the caller what is ready.
    fn deliver(&mut self, out: &mut Vec<Completion>) -> usize {
        let n = self.ready.len();
        out.extend(self.ready.drain(..));
        self.in_flight -= n;
        n
    }

    /// Operations of `file` the storage holds (in the kernel, or waiting behind a chain).
    fn ops_on(&self, file: FileId) -> usize {
        let in_slab =
            self.slab.iter().flatten().filter(|in_flight| in_flight.op.file() == file).count();
        let waiting = self.gate.as_ref().map_or(0, |gate| {
            gate.waiting.iter().filter(|submission| submission.op.file() == file).count()
        });
        in_slab + waiting
    }

    /// Wait for every CQE of what the kernel holds. On failure, leak instead of free.
    fn drain(&mut self) {
        self.closing = true;
        self.open_tail = None;
        if let Some(gate) = self.gate.take() {
            drop(gate.waiting); // never reached the kernel
        }
        if self.wake_armed {
            self.waker.wake(); // completes the armed read
        }
        let mut started = Instant::now();
        while self.kernel_ops > 0 {
            let step = self.enter(1, Some(DRAIN_REPORT_INTERVAL)).and_then(|()| self.reap());
            if let Err(err) = step {
                tracing::error!(
                    %err,
                    operations = self.kernel_ops,
                    "cannot wait for io_uring operations while dropping the storage \
                     (wrong thread for a single-issuer ring?); leaking their buffers"
                );
                self.leak_in_flight();
                return;
            }
            if self.kernel_ops > 0 && started.elapsed() >= DRAIN_REPORT_INTERVAL {
                tracing::warn!(operations = self.kernel_ops, "still waiting for io_uring ops");
                started = Instant::now();
            }
        }
    }

    /// Keep everything the kernel may still touch allocated forever.
    fn leak_in_flight(&mut self) {
        for in_flight in self.slab.iter_mut().filter_map(Option::take) {
            std::mem::forget(in_flight);
        }
        if self.wake_armed {
            let wake_buf = std::mem::replace(&mut self.wake_buf, AlignedBuf::with_capacity(0));
            std::mem::forget(wake_buf);
        }
        if self.pool_registered {
            std::mem::forget(self.pool.clone()); // registered pages stay allocated
        }
        // The eventfd too: an armed read may still hold it.
        std::mem::forget(self.waker.clone());
    }
}

impl Drop for UringStorage {
    fn drop(&mut self) {
        self.drain();
        if self.kernel_ops == 0 && self.pool_registered {
            // Nothing in flight: the kernel unpins the pool now rather than at ring teardown.
            let _ = self.ring.submitter().unregister_buffers();
        }
    }
}

impl UringStorage {
    /// A pool slot while more than `keep(slots)` slots are free, else a heap buffer; counted.
    fn alloc_leaving(&mut self, len: usize, keep: impl Fn(usize) -> usize) -> AlignedBuf {
        let pooled =
            self.pool.as_ref().and_then(|pool| pool.alloc_leaving(len, keep(pool.slots())));
        if let Some(buf) = pooled {
            self.stats.pool_allocs += 1;
            return buf;
        }
        self.stats.heap_allocs += 1;
        AlignedBuf::with_capacity(len)
    }
}

impl Storage for UringStorage {
    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn open(&mut self, path: &Path, options: OpenOptions) -> io::Result<FileId> {
        let (file, direct) = open_std(path, options)?;
        let id = match self.free_ids.pop_first() {
            Some(id) => id,
            None => u32::try_from(self.files.len())
                .map_err(|_| io::Error::other("more than 2^32 open files"))?,
        };
        let target = if id < self.registered_files {
            if let Err(err) = self.ring.submitter().register_files_update(id, &[file.as_raw_fd()]) {
                if (id as usize) < self.files.len() {
                    self.free_ids.insert(id);
                }
                return Err(io::Error::new(
                    err.kind(),
                    format!("registering {} with the ring: {err}", path.display()),
                ));
            }
            Target::Fixed(id)
        } else {
            Target::Fd(file.as_raw_fd())
        };
        let open = Some(OpenFile { file, direct, target });
        if id as usize == self.files.len() {
            self.files.push(open);
        } else {
            self.files[id as usize] = open;
        }
        Ok(FileId(id))
    }

    fn close(&mut self, file: FileId) -> io::Result<()> {
        let target = self.get(file)?.target;
        let in_flight = self.ops_on(file);
        if in_flight > 0 {
            return Err(invalid(format!(
                "close of {file:?} with {in_flight} operations in flight"
            )));
        }
        if let Target::Fixed(slot) = target {
            self.ring.submitter().register_files_update(slot, &[-1])?;
        }
        self.files[file.0 as usize] = None; // closes the descriptor
        self.free_ids.insert(file.0);
        Ok(())
    }

    fn is_direct(&self, file: FileId) -> bool {
        self.get(file).is_ok_and(|open| open.direct)
    }

    fn file_len(&mut self, file: FileId) -> io::Result<u64> {
        Ok(self.get(file)?.file.metadata()?.len())
    }

    fn set_len(&mut self, file: FileId, len: u64) -> io::Result<()> {
        self.get(file)?.file.set_len(len)
    }

    fn submit(&mut self, submission: Submission) -> Result<(), Submission> {
        if self.in_flight >= self.queue_depth || self.sq_full() {
            return Err(submission);
        }
        self.route(submission);
        self.in_flight += 1;
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    fn submit_staged(&mut self) -> io::Result<()> {
        // No system call if nothing is staged and no deferred completion waits to run.
        self.enter(0, None)
    }

    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        let deadline = match wait {
            Wait::Idle(Some(timeout)) => Some(Instant::now() + timeout),
            _ => None,
        };
        let mut delivered = 0;
        loop {
            let (want, timeout) = match wait {
                _ if !self.ready.is_empty() => (0, None),
                Wait::No => (0, None),
                Wait::One if self.in_flight == 0 => (0, None),
                Wait::One => (1, None),
                Wait::Idle(_) if self.woken => (0, None),
                Wait::Idle(None) => (1, None),
                Wait::Idle(Some(_)) => {
                    let now = Instant::now();
                    match deadline.filter(|&deadline| deadline > now) {
                        Some(deadline) => (1, Some(deadline - now)),
                        None => (0, None), // timed out: one last look
                    }
                }
            };
            self.enter(want, timeout)?;
            self.reap()?;
            if !self.staged.is_empty() {
                // A gate released while reaping queued more: start it now, don't wait.
                self.enter(0, None)?;
                self.reap()?;
            }
            delivered += self.deliver(out);
            let done = match wait {
                Wait::No => true,
                Wait::One => delivered > 0 || self.in_flight == 0,
                Wait::Idle(_) => {
                    let timed_out = deadline.is_some_and(|deadline| Instant::now() >= deadline);
                    // An idle wait that ends for any reason consumes the wake: the owner
                    // checks its mailbox after every idle wait anyway.
                    let woken = std::mem::take(&mut self.woken);
                    delivered > 0 || woken || timed_out
                }
            };
            if done {
                return Ok(delivered);
            }
        }
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    fn sync_data_now(&mut self, file: FileId) -> io::Result<()> {
        assert_eq!(self.in_flight, 0, "sync_data_now needs an idle storage");
        self.stats.syncs += 1;
        self.get(file)?.file.sync_data()
    }

    fn alloc_buf(&mut self, len: usize) -> AlignedBuf {
        self.alloc_leaving(len, |_| 0)
    }

    fn alloc_read_buf(&mut self, len: usize) -> AlignedBuf {
        // Writes keep at least half the pool (rounded up: a one-slot pool is all theirs).
        self.alloc_leaving(len, |slots| slots - slots / 2)
    }

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn read_dir(&mut self, path: &Path) -> io::Result<Vec<DirEntry>> {
        read_dir_std(path)
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        sync_dir_std(path)
    }

    fn metadata(&mut self, path: &Path) -> io::Result<Metadata> {
        metadata_std(path)
    }

    fn lock_dir(&mut self, dir: &Path) -> io::Result<DirLock> {
        lock_dir_std(dir)
    }
}
