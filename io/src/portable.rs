//! The portable backend: plain `pread`/`pwrite`/`fdatasync` on the calling thread.
//!
//! Operations run synchronously inside [`Storage::submit`]; their completions wait in a
//! bounded queue until [`Storage::complete`] collects them. It works on any Linux file system
//! and is the fallback when io_uring is unavailable.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::buffer::BLOCK_SIZE;
use crate::storage::{
    BackendKind, Completion, DirEntry, DirLock, FileId, Metadata, Op, OpenOptions, Parker, Storage,
    StorageFactory, Submission, Wait, Wake, cancelled,
};

/// Default bound on operations whose completions have not been collected.
pub const PORTABLE_QUEUE_DEPTH: usize = 256;

struct OpenFile {
    file: File,
    direct: bool,
}

/// `pread`/`pwrite`/`fdatasync` storage. See the module documentation.
pub struct PortableStorage {
    files: Vec<Option<OpenFile>>,
    free_ids: Vec<u32>,
    done: VecDeque<Completion>,
    queue_depth: usize,
    /// The previous submission was linked and failed: cancel the next.
    cancel_next: bool,
    parker: Arc<Parker>,
}

impl std::fmt::Debug for PortableStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortableStorage")
            .field("open_files", &(self.files.len() - self.free_ids.len()))
            .field("in_flight", &self.done.len())
            .finish()
    }
}

impl Default for PortableStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl PortableStorage {
    /// A storage with the default queue depth.
    pub fn new() -> Self {
        Self::with_queue_depth(PORTABLE_QUEUE_DEPTH)
    }

    /// A storage that holds at most `queue_depth` uncollected completions.
    pub fn with_queue_depth(queue_depth: usize) -> Self {
        assert!(queue_depth > 0);
        Self {
            files: Vec::new(),
            free_ids: Vec::new(),
            done: VecDeque::with_capacity(queue_depth),
            queue_depth,
            cancel_next: false,
            parker: Arc::new(Parker::default()),
        }
    }

    fn get(&self, file: FileId) -> io::Result<&OpenFile> {
        self.files.get(file.0 as usize).and_then(Option::as_ref).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{file:?} is not open"))
        })
    }

    fn execute(&mut self, op: &mut Op) -> io::Result<usize> {
        match op {
            Op::Write { file, offset, buf } => {
                let open = self.get(*file)?;
                check_direct(open.direct, *offset, buf.len(), buf.as_ptr())?;
                open.file.write_at(buf.as_slice(), *offset)
            }
            Op::Read { file, offset, len, buf } => {
                let open = self.get(*file)?;
                assert!(*len <= buf.capacity(), "read of {len} bytes into a smaller buffer");
                check_direct(open.direct, *offset, *len, buf.as_ptr())?;
                let n = read_full(&open.file, &mut buf.full_mut()[..*len], *offset)?;
                buf.set_len(n);
                Ok(n)
            }
            Op::SyncData { file } => self.get(*file)?.file.sync_data().map(|()| 0),
            Op::Allocate { file, offset, len } => {
                let fd = self.get(*file)?.file.as_raw_fd();
                let (offset, len) = (to_off(*offset)?, to_off(*len)?);
                // SAFETY: `fd` belongs to a `File` owned by `self.files` and stays open for the
                // duration of the call; `fallocate` takes no pointers, so there is no memory for
                // it to read or write.
                let rc = unsafe { libc::fallocate(fd, 0, offset, len) };
                if rc == 0 { Ok(0) } else { Err(io::Error::last_os_error()) }
            }
        }
    }
}

fn to_off(value: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(value)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))
}

/// `pread` until `buf` is full or end of file (a single `pread` may return short).
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(done)
}

/// Direct I/O takes only block-aligned offsets, lengths and buffers; catching a violation
/// here gives a clear error instead of the kernel's bare `EINVAL`.
pub(crate) fn check_direct(
    direct: bool,
    offset: u64,
    len: usize,
    ptr: *const u8,
) -> io::Result<()> {
    let block = BLOCK_SIZE as u64;
    if direct
        && (!offset.is_multiple_of(block)
            || !len.is_multiple_of(BLOCK_SIZE)
            || !(ptr as usize).is_multiple_of(BLOCK_SIZE))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unaligned direct I/O: offset {offset}, length {len}"),
        ));
    }
    Ok(())
}

/// Open `path` with `options` through `std::fs`, falling back to buffered I/O when the file
/// system refuses `O_DIRECT`. Returns the file and whether direct I/O was granted. Shared by
/// the portable and io_uring backends.
pub fn open_std(path: &Path, options: OpenOptions) -> io::Result<(File, bool)> {
    let open = |direct: bool| {
        let mut std_options = fs::OpenOptions::new();
        std_options.read(true).write(!options.read_only);
        if options.create_new {
            std_options.create_new(true);
        } else if options.create {
            std_options.create(true);
        }
        if direct {
            std_options.custom_flags(libc::O_DIRECT);
        }
        std_options.open(path)
    };
    if options.direct {
        match open(true) {
            Ok(file) => return Ok((file, true)),
            // EINVAL: this file system does not do O_DIRECT (tmpfs, some FUSE): buffered it is.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(path = %path.display(), "O_DIRECT refused; using buffered I/O");
            }
            Err(err) => return Err(err),
        }
    }
    open(false).map(|file| (file, false))
}

/// Take the `LOCK` file lock in `dir` with `flock` semantics. Shared by the real backends.
pub fn lock_dir_std(dir: &Path) -> io::Result<DirLock> {
    let path = dir.join("LOCK");
    let file =
        fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
    // `File::try_lock` would do, but it is stable only since Rust 1.89, above the workspace MSRV.
    // SAFETY: `file` owns its descriptor and keeps it open for the duration of the call;
    // `flock` takes no pointers, so there is no memory for it to read or write.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(DirLock::new(dir.to_path_buf(), Box::new(file)));
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is locked by another holder", path.display()),
        ));
    }
    Err(err)
}

/// `read_dir` through `std::fs`, sorted by name. Shared by the real backends.
pub fn read_dir_std(path: &Path) -> io::Result<Vec<DirEntry>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name().into_string().map_err(|raw| {
            io::Error::new(io::ErrorKind::InvalidData, format!("non-UTF-8 file name {raw:?}"))
        })?;
        entries.push(DirEntry { name, is_dir: entry.file_type()?.is_dir() });
    }
    entries.sort();
    Ok(entries)
}

/// `fsync` of a directory. Shared by the real backends.
pub fn sync_dir_std(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Size and type of a path through `std::fs`.
pub fn metadata_std(path: &Path) -> io::Result<Metadata> {
    let meta = fs::metadata(path)?;
    Ok(Metadata { len: meta.len(), is_dir: meta.is_dir() })
}

impl Storage for PortableStorage {
    fn kind(&self) -> BackendKind {
        BackendKind::Portable
    }

    fn open(&mut self, path: &Path, options: OpenOptions) -> io::Result<FileId> {
        let (file, direct) = open_std(path, options)?;
        let open = Some(OpenFile { file, direct });
        Ok(match self.free_ids.pop() {
            Some(id) => {
                self.files[id as usize] = open;
                FileId(id)
            }
            None => {
                let id = u32::try_from(self.files.len())
                    .map_err(|_| io::Error::other("more than 2^32 open files"))?;
                self.files.push(open);
                FileId(id)
            }
        })
    }

    fn close(&mut self, file: FileId) -> io::Result<()> {
        self.get(file)?;
        self.files[file.0 as usize] = None;
        self.free_ids.push(file.0);
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

    fn submit(&mut self, mut submission: Submission) -> Result<(), Submission> {
        if self.done.len() >= self.queue_depth {
            return Err(submission);
        }
        let result = if std::mem::take(&mut self.cancel_next) {
            Err(cancelled())
        } else {
            self.execute(&mut submission.op)
        };
        if submission.link_next {
            self.cancel_next = !submission.op.completed_in_full(&result);
        }
        self.done.push_back(Completion {
            token: submission.token,
            result,
            buf: submission.op.into_buf(),
        });
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        // Operations run inside `submit`: whatever is in flight has completed already, so
        // only an idle wait ever blocks.
        if let (Wait::Idle(timeout), true) = (wait, self.done.is_empty()) {
            self.parker.park(timeout);
        }
        let n = self.done.len();
        out.extend(self.done.drain(..));
        Ok(n)
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.parker.clone()
    }

    fn sync_data_now(&mut self, file: FileId) -> io::Result<()> {
        self.get(file)?.file.sync_data()
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

/// Makes [`PortableStorage`]s.
#[derive(Debug, Default, Clone)]
pub struct PortableFactory;

impl StorageFactory for PortableFactory {
    fn kind(&self) -> BackendKind {
        BackendKind::Portable
    }
    fn create(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(PortableStorage::new()))
    }
}
