//! The storage seam: the small interface every backend (portable, io_uring, simulated)
//! implements and the engine is written against (STYLE §9).
//!
//! It is shaped for a completion-based kernel interface:
//! - data operations are *submitted* with an owned buffer and *complete* later, handing the
//!   buffer back ([`Submission`] → [`Completion`]); the backend owns the buffer while the
//!   operation is in flight, so a dropped waiter can never leave the kernel writing into freed
//!   memory (STYLE §7);
//! - a submission may be *linked* to the next one: the next starts only if this one succeeds,
//!   otherwise it completes with `ECANCELED` (io_uring's `IOSQE_IO_LINK`). This is how a write
//!   and the `fdatasync` that covers it travel together;
//! - the submission queue is bounded: a full queue hands the submission back, which is
//!   backpressure, never unbounded buffering;
//! - metadata operations (open, truncate, rename, directory sync, ...) are synchronous: they are
//!   rare and never on the append path (segments are prepared ahead of the writer).
//!
//! One `Storage` value belongs to one thread (a shard) at a time; it is `Send` so it can be
//! moved into that thread, but not `Sync`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::buffer::AlignedBuf;

/// Which backend implements a [`Storage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `pread`/`pwrite`/`fdatasync` on the calling thread.
    Portable,
    /// io_uring with registered buffers and files.
    Uring,
    /// In-memory simulated disk with fault injection (tests only).
    Simulated,
}

impl BackendKind {
    /// Short lower-case name, as used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Portable => "portable",
            BackendKind::Uring => "uring",
            BackendKind::Simulated => "simulated",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Handle of a file opened through a [`Storage`]; valid only with the storage that issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// How to open a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file if it does not exist.
    pub create: bool,
    /// Fail if the file already exists (implies `create`).
    pub create_new: bool,
    /// Open for reading only.
    pub read_only: bool,
    /// Ask for direct I/O (`O_DIRECT`): the backend may refuse (e.g. tmpfs) and fall back to
    /// buffered I/O; [`Storage::is_direct`] tells which was granted. Direct files take only
    /// block-aligned offsets, lengths and buffers.
    pub direct: bool,
}

impl OpenOptions {
    /// Open an existing file for reading and writing.
    pub fn read_write() -> Self {
        Self::default()
    }
    /// Open for reading only.
    pub fn read_only() -> Self {
        Self { read_only: true, ..Self::default() }
    }
    /// Open for reading and writing, creating the file if needed.
    pub fn create() -> Self {
        Self { create: true, ..Self::default() }
    }
    /// Create a new file; fail if it exists.
    pub fn create_new() -> Self {
        Self { create: true, create_new: true, ..Self::default() }
    }
    /// Request direct I/O.
    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }
}

/// A data operation.
#[derive(Debug)]
pub enum Op {
    /// Write all of `buf` (its length) at `offset`. May complete short: the result says how
    /// many bytes were written and the caller submits the rest.
    Write { file: FileId, offset: u64, buf: AlignedBuf },
    /// Read up to `len` bytes at `offset` into the start of `buf` (whose length is set to the
    /// number read). Short at end of file.
    Read { file: FileId, offset: u64, len: usize, buf: AlignedBuf },
    /// `fdatasync`: make every completed write to `file` durable.
    SyncData { file: FileId },
    /// Reserve `len` bytes at `offset` (`fallocate` mode 0: extends the size).
    Allocate { file: FileId, offset: u64, len: u64 },
}

impl Op {
    /// The file the operation targets.
    pub fn file(&self) -> FileId {
        match self {
            Op::Write { file, .. }
            | Op::Read { file, .. }
            | Op::SyncData { file }
            | Op::Allocate { file, .. } => *file,
        }
    }

    /// Short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Write { .. } => "write",
            Op::Read { .. } => "read",
            Op::SyncData { .. } => "fdatasync",
            Op::Allocate { .. } => "fallocate",
        }
    }

    /// Whether `result` means the operation did all it was asked to: no error, and for a write
    /// or read, every byte. Anything else breaks a link chain, as io_uring does ("for
    /// completions, this also includes short reads or writes" — the kernel commit that added
    /// `IOSQE_IO_LINK`). A read cut short by end of file is therefore a link failure too.
    pub fn completed_in_full(&self, result: &io::Result<usize>) -> bool {
        match (self, result) {
            (Op::Write { buf, .. }, Ok(n)) => *n == buf.len(),
            (Op::Read { len, .. }, Ok(n)) => n == len,
            (Op::SyncData { .. } | Op::Allocate { .. }, Ok(_)) => true,
            (_, Err(_)) => false,
        }
    }

    /// Give back the buffer the operation owns, if any.
    pub fn into_buf(self) -> Option<AlignedBuf> {
        match self {
            Op::Write { buf, .. } | Op::Read { buf, .. } => Some(buf),
            Op::SyncData { .. } | Op::Allocate { .. } => None,
        }
    }
}

/// An operation handed to [`Storage::submit`], tagged by a caller-chosen token.
#[derive(Debug)]
pub struct Submission {
    /// Returned unchanged in the completion.
    pub token: u64,
    /// What to do.
    pub op: Op,
    /// Start the *next* submission only if this one succeeds in full; otherwise the next
    /// completes with `ECANCELED`. A short write *or read* counts as a failure for the link, as
    /// in io_uring (see [`Op::completed_in_full`]).
    pub link_next: bool,
}

impl Submission {
    /// An unlinked submission.
    pub fn new(token: u64, op: Op) -> Self {
        Self { token, op, link_next: false }
    }
    /// A submission linked to the one submitted after it.
    pub fn linked(token: u64, op: Op) -> Self {
        Self { token, op, link_next: true }
    }
}

/// The outcome of a submission.
#[derive(Debug)]
pub struct Completion {
    /// The submission's token.
    pub token: u64,
    /// Bytes transferred (0 for sync and allocate), or the error.
    pub result: io::Result<usize>,
    /// The buffer the operation owned, handed back (reads: filled, length = bytes read).
    pub buf: Option<AlignedBuf>,
}

/// How long [`Storage::complete`] may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Return at once with whatever has completed.
    No,
    /// Block until at least one completion is available (returns at once if nothing is in
    /// flight).
    One,
    /// The owner has nothing else to do: block until a completion is available, the storage's
    /// [`Storage::waker`] is woken, or the timeout (if any) passes. A wake that came before
    /// the call is not lost: the call then returns at once.
    Idle(Option<Duration>),
}

/// Wakes a thread blocked in [`Storage::complete`] with [`Wait::Idle`]. Any thread may call
/// it; wakes are not counted (several before the next wait count as one).
pub trait Wake: Send + Sync + fmt::Debug {
    /// Wake the storage's owner.
    fn wake(&self);
}

/// A [`Wake`] for backends with no kernel queue to sleep in: a flag and a condition
/// variable.
#[derive(Debug, Default)]
pub struct Parker {
    woken: std::sync::Mutex<bool>,
    ready: std::sync::Condvar,
}

impl Parker {
    /// Block until woken or `timeout` passes; consumes the wake.
    pub fn park(&self, timeout: Option<Duration>) {
        // The flag is a plain bool: a poisoned lock still holds a valid one.
        let mut woken = self.woken.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*woken {
            woken = match timeout {
                Some(timeout) => {
                    self.ready
                        .wait_timeout(woken, timeout)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self.ready.wait(woken).unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
        *woken = false;
    }
}

impl Wake for Parker {
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.ready.notify_one();
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// File name (not the full path).
    pub name: String,
    /// True for a directory.
    pub is_dir: bool,
}

/// What [`Storage::metadata`] reports of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Size in bytes.
    pub len: u64,
    /// True for a directory.
    pub is_dir: bool,
}

/// An exclusive lock on a directory, held until dropped.
pub struct DirLock {
    _guard: Box<dyn Send + Sync>,
    path: PathBuf,
}

impl DirLock {
    /// Wrap a backend-specific guard.
    pub fn new(path: PathBuf, guard: Box<dyn Send + Sync>) -> Self {
        Self { _guard: guard, path }
    }
    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirLock").field("path", &self.path).finish()
    }
}

/// The storage interface. See the module documentation for the model.
pub trait Storage: Send {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Open (or create) a file.
    fn open(&mut self, path: &Path, options: OpenOptions) -> io::Result<FileId>;
    /// Close a file. It must have no operation in flight.
    fn close(&mut self, file: FileId) -> io::Result<()>;
    /// Whether `file` was opened with direct I/O.
    fn is_direct(&self, file: FileId) -> bool;
    /// Current size of an open file.
    fn file_len(&mut self, file: FileId) -> io::Result<u64>;
    /// Truncate or extend an open file (`ftruncate`). Not durable until the file is synced.
    fn set_len(&mut self, file: FileId, len: u64) -> io::Result<()>;

    /// Queue a data operation. A full queue hands the submission back unchanged: the caller
    /// must reap completions first. Operations may start at once or only when
    /// [`Storage::complete`] is called.
    fn submit(&mut self, submission: Submission) -> Result<(), Submission>;
    /// Number of operations submitted whose completion has not yet been returned.
    fn in_flight(&self) -> usize;
    /// Most operations that may be in flight at once.
    fn queue_depth(&self) -> usize;
    /// Move finished completions into `out`, blocking as `wait` says; returns how many.
    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize>;
    /// Start what `submit` has queued without waiting for anything, where a backend batches
    /// submissions until its next `complete` (io_uring). The owner calls it after handling
    /// completions that submitted more (the next write or fdatasync of a group commit), so
    /// that work starts now rather than after whatever the owner does before its next
    /// `complete`. Default: nothing to do (the operations ran inside `submit`, or run when
    /// completions are collected).
    fn submit_staged(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// What wakes this storage's owner from [`Wait::Idle`], for other threads to hold.
    fn waker(&self) -> std::sync::Arc<dyn Wake>;

    /// `fdatasync` on the calling thread, now, for a caller with nothing else in flight. On
    /// io_uring an `IORING_OP_FSYNC` always goes to a kernel worker thread (fsync cannot be
    /// done without blocking), costing two thread hand-offs; when nothing else is in flight a
    /// plain system call is cheaper. The default submits the operation and waits for it.
    fn sync_data_now(&mut self, file: FileId) -> io::Result<()> {
        assert_eq!(self.in_flight(), 0, "sync_data_now needs an idle storage");
        const TOKEN: u64 = u64::MAX;
        if self.submit(Submission::new(TOKEN, Op::SyncData { file })).is_err() {
            return Err(io::Error::other("fdatasync rejected by an idle queue"));
        }
        let mut out = Vec::with_capacity(1);
        loop {
            self.complete(&mut out, Wait::One)?;
            if let Some(done) = out.pop() {
                assert_eq!(done.token, TOKEN, "unexpected completion during sync_data_now");
                return done.result.map(|_| ());
            }
        }
    }

    /// A buffer of at least `len` bytes (length 0) suited to this storage's data operations.
    /// Backends with registered buffers (io_uring) hand out a slot of their pre-registered pool
    /// when `len` fits a slot and one is free, so the operation can skip the kernel's
    /// per-operation page pinning; otherwise, and by default, a heap buffer. Either way it is
    /// an ordinary [`AlignedBuf`], usable with any storage, and may be dropped on any thread.
    ///
    /// Bytes past the length are initialised but, for a reused pool slot, not necessarily
    /// zero: call [`AlignedBuf::zero_spare`] where that matters.
    fn alloc_buf(&mut self, len: usize) -> AlignedBuf {
        AlignedBuf::with_capacity(len)
    }

    /// A buffer for a read whose bytes may be held long after it completes (a fetch handed
    /// to a consumer, who keeps a view of it): like [`Storage::alloc_buf`], but a pool slot
    /// only while more than half the pool is free, so readers never hold the slots writes
    /// need. By default, and when no slot will do, a heap buffer.
    fn alloc_read_buf(&mut self, len: usize) -> AlignedBuf {
        AlignedBuf::with_capacity(len)
    }

    /// Create a directory and its parents.
    fn create_dir_all(&mut self, path: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove_file(&mut self, path: &Path) -> io::Result<()>;
    /// Remove a directory and everything below it.
    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()>;
    /// Atomically rename `from` to `to` (replacing `to`). Durable after [`Storage::sync_dir`]
    /// of both parents.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// List a directory, sorted by name.
    fn read_dir(&mut self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Make the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&mut self, path: &Path) -> io::Result<()>;
    /// Size and type of a path.
    fn metadata(&mut self, path: &Path) -> io::Result<Metadata>;
    /// Take an exclusive lock on `dir` (which must exist); fails with
    /// [`io::ErrorKind::WouldBlock`] if another holder has it.
    fn lock_dir(&mut self, dir: &Path) -> io::Result<DirLock>;
}

/// Something that makes storages: one per shard thread, all over the same files.
pub trait StorageFactory: Send + Sync + fmt::Debug {
    /// Which backend the storages are.
    fn kind(&self) -> BackendKind;
    /// A new storage for one thread.
    fn create(&self) -> io::Result<Box<dyn Storage>>;
}

/// Submit `op` and wait for its completion. For code with nothing else in flight on this
/// storage (start-up, recovery, tools): completions of other operations would be an error in
/// the caller's bookkeeping, so they are asserted against.
pub fn run(storage: &mut dyn Storage, op: Op) -> (io::Result<usize>, Option<AlignedBuf>) {
    assert_eq!(storage.in_flight(), 0, "run() needs an idle storage");
    const TOKEN: u64 = u64::MAX;
    if let Err(rejected) = storage.submit(Submission::new(TOKEN, op)) {
        // An idle queue with room for at least one operation cannot be full.
        let name = rejected.op.name();
        return (
            Err(io::Error::other(format!("{name} rejected by an idle queue"))),
            rejected.op.into_buf(),
        );
    }
    let mut out = Vec::with_capacity(1);
    loop {
        if let Err(err) = storage.complete(&mut out, Wait::One)
            && out.is_empty()
        {
            return (Err(err), None);
        }
        if let Some(done) = out.pop() {
            assert_eq!(done.token, TOKEN, "unexpected completion during run()");
            return (done.result, done.buf);
        }
    }
}

/// Write all of `bytes` at `offset`, resubmitting after short writes.
pub fn write_all_at(
    storage: &mut dyn Storage,
    file: FileId,
    offset: u64,
    bytes: &[u8],
) -> io::Result<()> {
    let mut done = 0usize;
    while done < bytes.len() {
        let buf = AlignedBuf::from_slice(&bytes[done..]);
        let (result, _) = run(storage, Op::Write { file, offset: offset + done as u64, buf });
        match result? {
            0 => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes")),
            n => done += n,
        }
    }
    Ok(())
}

/// Read exactly `len` bytes at `offset` (or fewer at end of file), resubmitting after short
/// reads. Returns the bytes read.
pub fn read_at(
    storage: &mut dyn Storage,
    file: FileId,
    offset: u64,
    len: usize,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let want = len - out.len();
        let buf = AlignedBuf::with_capacity(want);
        let (result, buf) =
            run(storage, Op::Read { file, offset: offset + out.len() as u64, len: want, buf });
        let n = result?;
        if n == 0 {
            break;
        }
        let buf = buf.ok_or_else(|| io::Error::other("read completion without its buffer"))?;
        out.extend_from_slice(&buf.as_slice()[..n]);
    }
    Ok(out)
}

/// Run `fdatasync` on `file` and wait for it.
pub fn sync_data(storage: &mut dyn Storage, file: FileId) -> io::Result<()> {
    run(storage, Op::SyncData { file }).0.map(|_| ())
}

/// Read a whole file by path.
pub fn read_file(storage: &mut dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, OpenOptions::read_only())?;
    let result = storage.file_len(file).and_then(|len| read_at(storage, file, 0, len as usize));
    let closed = storage.close(file);
    let bytes = result?;
    closed?;
    Ok(bytes)
}

/// Create `path` and any missing parents, durably: each directory created is made to survive a
/// crash by syncing its parent.
pub fn create_dir_all_durable(storage: &mut dyn Storage, path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(dir) = at {
        match storage.metadata(dir) {
            Ok(meta) if meta.is_dir => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => missing.push(dir),
            Err(err) => return Err(err),
        }
        at = dir.parent().filter(|p| !p.as_os_str().is_empty());
    }
    for dir in missing.into_iter().rev() {
        storage.create_dir_all(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            storage.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Replace the file at `path` with `bytes`, durably: write a temporary file beside it, sync it,
/// rename it over `path`, sync the directory. A crash at any point leaves either the old or the
/// new contents.
pub fn write_file_atomic(storage: &mut dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let file = storage.open(&tmp, OpenOptions::create())?;
    let result = storage
        .set_len(file, 0)
        .and_then(|()| write_all_at(storage, file, 0, bytes))
        .and_then(|()| sync_data(storage, file));
    let closed = storage.close(file);
    result?;
    closed?;
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}

/// The error a cancelled linked operation completes with.
pub fn cancelled() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
}

/// The error a full device gives.
pub fn no_space() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// The error of a failed device operation.
pub fn io_failure() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}
