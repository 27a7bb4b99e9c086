//! [`SimStorage`]: one thread's view of a [`SimDisk`](super::SimDisk), implementing
//! [`Storage`].

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::namespace::{Ino, components, errno, path_of};
use super::rng::SimRng;
use super::{Disk, FaultKind, OpKind, lock};
use crate::buffer::BLOCK_SIZE;
use crate::portable::check_direct;
use crate::storage::{
    BackendKind, Completion, DirEntry, DirLock, FileId, Metadata, Op, OpenOptions, Parker, Storage,
    Submission, Wait, Wake, cancelled,
};

/// The name of the lock file [`Storage::lock_dir`] creates, as the portable backend does.
const LOCK_FILE_NAME: &str = "LOCK";

/// An open file of one storage.
#[derive(Debug)]
struct Handle {
    ino: Ino,
    /// The path it was opened by (normalised): what fault rules match data operations against.
    path: PathBuf,
    direct: bool,
    read_only: bool,
}

/// A storage on a simulated disk: its own open files and submission queue, the disk's shared
/// files. Made by [`SimDisk::storage`](super::SimDisk::storage); dies at a crash.
pub struct SimStorage {
    disk: Arc<Mutex<Disk>>,
    /// The disk epoch this storage was made in; any other means the disk crashed since.
    epoch: u64,
    queue_depth: usize,
    handles: Vec<Option<Handle>>,
    free_ids: Vec<u32>,
    queue: VecDeque<Submission>,
    /// The previous submission was linked and did not complete in full: cancel the next.
    cancel_next: bool,
    parker: Arc<Parker>,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStorage")
            .field("epoch", &self.epoch)
            .field("open_files", &(self.handles.len() - self.free_ids.len()))
            .field("in_flight", &self.queue.len())
            .field("queue_depth", &self.queue_depth)
            .finish()
    }
}

/// The error every call on a storage returns after its disk crashed.
fn crashed() -> io::Error {
    io::Error::other(
        "the simulated disk crashed (power loss): this storage is dead; \
         make a new one with SimDisk::storage",
    )
}

fn not_open(file: FileId) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{file:?} is not open"))
}

/// Pick the length of a short transfer of `n` bytes: a random prefix, whole blocks for direct
/// I/O. `None` when `n` is too small to shorten.
fn short_len(rng: &mut SimRng, n: usize, direct: bool) -> Option<usize> {
    if direct {
        let blocks = n / BLOCK_SIZE;
        (blocks >= 2).then(|| rng.between(1, blocks as u64 - 1) as usize * BLOCK_SIZE)
    } else {
        (n >= 2).then(|| rng.between(1, n as u64 - 1) as usize)
    }
}

/// The end offset of `len` bytes at `offset`, or `EFBIG` if it overflows.
fn end_of(offset: u64, len: u64) -> io::Result<u64> {
    offset.checked_add(len).ok_or_else(|| errno(libc::EFBIG))
}

struct LockGuard {
    disk: Arc<Mutex<Disk>>,
    dir: Ino,
    token: u64,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Never panic in drop: a poisoned disk means a test is failing already.
        let Ok(mut disk) = self.disk.lock() else { return };
        // A crash released the lock, and someone may hold a newer one: leave that alone.
        if disk.locks.get(&self.dir) == Some(&self.token) {
            disk.locks.remove(&self.dir);
        }
    }
}

impl SimStorage {
    pub(crate) fn new(disk: Arc<Mutex<Disk>>, queue_depth: usize) -> Self {
        assert!(queue_depth > 0, "queue depth must be at least 1");
        let epoch = lock(&disk).epoch;
        Self {
            disk,
            epoch,
            queue_depth,
            handles: Vec::new(),
            free_ids: Vec::new(),
            queue: VecDeque::with_capacity(queue_depth),
            cancel_next: false,
            parker: Arc::new(Parker::default()),
        }
    }

    fn handle(handles: &[Option<Handle>], file: FileId) -> io::Result<&Handle> {
        handles.get(file.0 as usize).and_then(Option::as_ref).ok_or_else(|| not_open(file))
    }

    /// Run one data operation against the disk.
    fn execute(disk: &mut Disk, handles: &[Option<Handle>], op: &mut Op) -> io::Result<usize> {
        let handle = Self::handle(handles, op.file())?;
        let (ino, direct) = (handle.ino, handle.direct);
        match op {
            Op::Write { offset, buf, .. } => {
                if handle.read_only {
                    return Err(errno(libc::EBADF));
                }
                check_direct(direct, *offset, buf.len(), buf.as_ptr())?;
                disk.begin(OpKind::Write, &[&handle.path])?;
                let mut n = buf.len();
                if disk.rng.chance(disk.config.short_write_probability)
                    && let Some(short) = short_len(&mut disk.rng, n, direct)
                {
                    n = short;
                    disk.stats.count_fault(OpKind::Write, FaultKind::Short);
                }
                if n == 0 {
                    return Ok(0);
                }
                let end = end_of(*offset, n as u64)?;
                disk.check_file_size(end)?;
                let growth = end.saturating_sub(disk.namespace.file(ino)?.len());
                disk.check_capacity(OpKind::Write, growth)?;
                let bytes = &buf.as_slice()[..n];
                disk.namespace.modify_file(ino, |file| file.write(*offset, bytes))?;
                Ok(n)
            }
            Op::Read { offset, len, buf, .. } => {
                check_direct(direct, *offset, *len, buf.as_ptr())?;
                if *len > buf.capacity() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("read of {len} bytes into a buffer of {}", buf.capacity()),
                    ));
                }
                disk.begin(OpKind::Read, &[&handle.path])?;
                let file_len = disk.namespace.file(ino)?.len();
                let available = file_len.saturating_sub(*offset);
                let mut n = (*len).min(usize::try_from(available).unwrap_or(usize::MAX));
                if disk.rng.chance(disk.config.short_read_probability)
                    && let Some(short) = short_len(&mut disk.rng, n, direct)
                {
                    n = short;
                    disk.stats.count_fault(OpKind::Read, FaultKind::Short);
                }
                let n = disk.namespace.file(ino)?.read(*offset, &mut buf.full_mut()[..n]);
                buf.set_len(n);
                Ok(n)
            }
            Op::SyncData { .. } => {
                if let Err(err) = disk.begin(OpKind::SyncData, &[&handle.path]) {
                    // fsyncgate: the unsynced changes will never become durable.
                    disk.namespace.modify_file(ino, |file| file.drop_unsynced())?;
                    return Err(err);
                }
                disk.namespace.modify_file(ino, |file| file.sync())?;
                Ok(0)
            }
            Op::Allocate { offset, len, .. } => {
                if handle.read_only {
                    return Err(errno(libc::EBADF));
                }
                if *len == 0 {
                    return Err(errno(libc::EINVAL));
                }
                disk.begin(OpKind::Allocate, &[&handle.path])?;
                let end = end_of(*offset, *len)?;
                disk.check_file_size(end)?;
                let current = disk.namespace.file(ino)?.len();
                if end > current {
                    disk.check_capacity(OpKind::Allocate, end - current)?;
                    disk.namespace.modify_file(ino, |file| file.set_len(end))?;
                }
                Ok(0)
            }
        }
    }

    /// Lock the disk and check it has not crashed since this storage was made.
    fn live_disk(disk: &Mutex<Disk>, epoch: u64) -> io::Result<std::sync::MutexGuard<'_, Disk>> {
        let guard = lock(disk);
        if guard.epoch != epoch {
            return Err(crashed());
        }
        Ok(guard)
    }
}

impl Drop for SimStorage {
    fn drop(&mut self) {
        // Never panic in drop: a poisoned disk means a test is failing already.
        let Ok(mut disk) = self.disk.lock() else { return };
        if disk.epoch != self.epoch {
            return; // The crash already closed everything.
        }
        for handle in self.handles.iter().flatten() {
            disk.namespace.close(handle.ino);
        }
    }
}

impl Storage for SimStorage {
    fn kind(&self) -> BackendKind {
        BackendKind::Simulated
    }

    fn open(&mut self, path: &Path, options: OpenOptions) -> io::Result<FileId> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::Open, &[path])?;
        if options.read_only && (options.create || options.create_new) {
            // As `std::fs::OpenOptions` (and so the portable backend) refuses it.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "creating a file requires write access",
            ));
        }
        let names = components(path)?;
        let ino = disk.namespace.open(&names, options.create, options.create_new)?;
        let handle = Some(Handle {
            ino,
            path: path_of(&names),
            direct: options.direct,
            read_only: options.read_only,
        });
        Ok(match self.free_ids.pop() {
            Some(id) => {
                self.handles[id as usize] = handle;
                FileId(id)
            }
            None => match u32::try_from(self.handles.len()) {
                Ok(id) => {
                    self.handles.push(handle);
                    FileId(id)
                }
                Err(_) => {
                    disk.namespace.close(ino);
                    return Err(io::Error::other("more than 2^32 open files"));
                }
            },
        })
    }

    fn close(&mut self, file: FileId) -> io::Result<()> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        let ino = Self::handle(&self.handles, file)?.ino;
        let in_flight = self.queue.iter().filter(|s| s.op.file() == file).count();
        if in_flight > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("close of {file:?} with {in_flight} operations in flight"),
            ));
        }
        disk.stats.count_op(OpKind::Close);
        disk.namespace.close(ino);
        self.handles[file.0 as usize] = None;
        self.free_ids.push(file.0);
        Ok(())
    }

    fn is_direct(&self, file: FileId) -> bool {
        Self::handle(&self.handles, file).is_ok_and(|handle| handle.direct)
    }

    fn file_len(&mut self, file: FileId) -> io::Result<u64> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        let handle = Self::handle(&self.handles, file)?;
        disk.begin(OpKind::FileLen, &[&handle.path])?;
        Ok(disk.namespace.file(handle.ino)?.len())
    }

    fn set_len(&mut self, file: FileId, len: u64) -> io::Result<()> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        let handle = Self::handle(&self.handles, file)?;
        if handle.read_only {
            return Err(errno(libc::EINVAL)); // ftruncate on a descriptor not open for writing
        }
        disk.begin(OpKind::SetLen, &[&handle.path])?;
        disk.check_file_size(len)?;
        let current = disk.namespace.file(handle.ino)?.len();
        disk.check_capacity(OpKind::SetLen, len.saturating_sub(current))?;
        disk.namespace.modify_file(handle.ino, |data| data.set_len(len))
    }

    fn submit(&mut self, submission: Submission) -> Result<(), Submission> {
        if self.queue.len() >= self.queue_depth {
            return Err(submission);
        }
        self.queue.push_back(submission);
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.queue.len()
    }

    fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.parker.clone()
    }

    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        // Queued operations run here, so only an idle wait with nothing queued blocks.
        if let (Wait::Idle(timeout), true) = (wait, self.queue.is_empty()) {
            self.parker.park(timeout);
        }
        let mut disk = match Self::live_disk(&self.disk, self.epoch) {
            Ok(disk) => disk,
            Err(err) => {
                self.queue.clear(); // power loss: what was queued never ran
                return Err(err);
            }
        };
        if self.queue.is_empty() {
            return Ok(0);
        }
        // Run everything in submission order, grouping each chain's completions in order.
        let mut chains: Vec<VecDeque<Completion>> = Vec::new();
        let mut chain = VecDeque::new();
        while let Some(mut submission) = self.queue.pop_front() {
            let result = if std::mem::take(&mut self.cancel_next) {
                disk.stats.cancelled += 1;
                Err(cancelled())
            } else {
                Self::execute(&mut disk, &self.handles, &mut submission.op)
            };
            if submission.link_next {
                self.cancel_next = !submission.op.completed_in_full(&result);
            }
            chain.push_back(Completion {
                token: submission.token,
                result,
                buf: submission.op.into_buf(),
            });
            if !submission.link_next {
                chains.push(std::mem::take(&mut chain));
            }
        }
        if !chain.is_empty() {
            chains.push(chain);
        }
        // Hand them back in a seeded random interleaving of the chains.
        let mut count = 0;
        while !chains.is_empty() {
            let pick = disk.rng.index(chains.len());
            if let Some(done) = chains[pick].pop_front() {
                out.push(done);
                count += 1;
            }
            if chains[pick].is_empty() {
                chains.swap_remove(pick);
            }
        }
        Ok(count)
    }

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::CreateDir, &[path])?;
        disk.namespace.create_dir_all(&components(path)?)
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::Remove, &[path])?;
        disk.namespace.remove_file(&components(path)?)
    }

    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::Remove, &[path])?;
        disk.namespace.remove_dir_all(&components(path)?)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::Rename, &[from, to])?;
        disk.namespace.rename(&components(from)?, &components(to)?)
    }

    fn read_dir(&mut self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::ReadDir, &[path])?;
        disk.namespace.list(&components(path)?)
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::SyncDir, &[path])?;
        disk.namespace.sync_dir(&components(path)?)
    }

    fn metadata(&mut self, path: &Path) -> io::Result<Metadata> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::Metadata, &[path])?;
        disk.namespace.metadata(&components(path)?)
    }

    fn lock_dir(&mut self, dir: &Path) -> io::Result<DirLock> {
        let mut disk = Self::live_disk(&self.disk, self.epoch)?;
        disk.begin(OpKind::LockDir, &[dir])?;
        let ino = disk.namespace.resolve_dir(&components(dir)?)?;
        disk.namespace.ensure_file(ino, LOCK_FILE_NAME)?;
        if disk.locks.contains_key(&ino) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another holder", dir.display()),
            ));
        }
        let token = disk.next_lock_token;
        disk.next_lock_token += 1;
        disk.locks.insert(ino, token);
        let guard = LockGuard { disk: Arc::clone(&self.disk), dir: ino, token };
        Ok(DirLock::new(dir.to_path_buf(), Box::new(guard)))
    }
}
