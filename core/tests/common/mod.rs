//! Shared by integration tests: a [`Storage`] wrapper that injects faults into any backend —
//! the real ones (portable, io_uring) as well as the simulated disk.
//!
//! [`Faults`] is the switchboard the test holds; [`FaultyFactory`] wraps a real factory (from
//! `EngineConfig::storage_factory`) and hands every storage it makes the same switchboard:
//!
//! - [`Faults::fail_next_write`] / [`Faults::fail_next_sync`]: the completion of the next
//!   write (or fdatasync) of a matching file becomes `EIO`. The operation itself really ran —
//!   a device error reported after the fact, as a failing disk does;
//! - [`Faults::slow`]: every completion is held back until that long after its submission,
//!   and at most [`Faults::slow`]'s queue depth operations are in flight (a slow device with
//!   a bounded queue: a full queue hands submissions back, which is backpressure).

#![allow(dead_code)] // each test file uses what it needs

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidelog_io::{
    BackendKind, Completion, FileId, Op, OpenOptions, Storage, StorageFactory, Submission, Wait,
};

/// Inside `impl Storage for W`, where `W` keeps the storage it wraps in a field
/// `inner: Box<dyn Storage>`: the methods that just call the same method of `inner`. Always
/// those no test wrapper changes (files' lengths, directories, buffers, the waker, ...), plus
/// the data-path ones named — and `alloc_read_buf` where named (else fetches read into the
/// heap, the trait's default) — so a wrapper writes only what it changes:
///
/// ```ignore
/// impl Storage for Wrapper {
///     common::storage_pass_through!(open, close, submit, in_flight, queue_depth);
///     fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> { .. }
/// }
/// ```
///
/// Never `sync_data_now`: its default runs through the wrapper's own `submit` and `complete`,
/// as a wrapper that changes completions needs; one that wants otherwise writes its own.
macro_rules! storage_pass_through {
    (@one open) => {
        fn open(
            &mut self,
            path: &::std::path::Path,
            options: ::tidelog_io::OpenOptions,
        ) -> ::std::io::Result<::tidelog_io::FileId> {
            self.inner.open(path, options)
        }
    };
    (@one close) => {
        fn close(&mut self, file: ::tidelog_io::FileId) -> ::std::io::Result<()> {
            self.inner.close(file)
        }
    };
    (@one submit) => {
        fn submit(
            &mut self,
            submission: ::tidelog_io::Submission,
        ) -> Result<(), ::tidelog_io::Submission> {
            self.inner.submit(submission)
        }
    };
    (@one in_flight) => {
        fn in_flight(&self) -> usize {
            self.inner.in_flight()
        }
    };
    (@one queue_depth) => {
        fn queue_depth(&self) -> usize {
            self.inner.queue_depth()
        }
    };
    (@one complete) => {
        fn complete(
            &mut self,
            out: &mut Vec<::tidelog_io::Completion>,
            wait: ::tidelog_io::Wait,
        ) -> ::std::io::Result<usize> {
            self.inner.complete(out, wait)
        }
    };
    (@one alloc_read_buf) => {
        fn alloc_read_buf(&mut self, len: usize) -> ::tidelog_io::AlignedBuf {
            self.inner.alloc_read_buf(len)
        }
    };
    // The directory operations, all `fn(&mut self, &Path) -> io::Result<()>`.
    (@path $($method:ident)*) => {
        $(
            fn $method(&mut self, path: &::std::path::Path) -> ::std::io::Result<()> {
                self.inner.$method(path)
            }
        )*
    };
    ($($method:ident),* $(,)?) => {
        $($crate::common::storage_pass_through!(@one $method);)*
        $crate::common::storage_pass_through!(
            @path create_dir_all remove_file remove_dir_all sync_dir
        );
        fn kind(&self) -> ::tidelog_io::BackendKind {
            self.inner.kind()
        }
        fn is_direct(&self, file: ::tidelog_io::FileId) -> bool {
            self.inner.is_direct(file)
        }
        fn file_len(&mut self, file: ::tidelog_io::FileId) -> ::std::io::Result<u64> {
            self.inner.file_len(file)
        }
        fn set_len(&mut self, file: ::tidelog_io::FileId, len: u64) -> ::std::io::Result<()> {
            self.inner.set_len(file, len)
        }
        fn waker(&self) -> ::std::sync::Arc<dyn ::tidelog_io::storage::Wake> {
            self.inner.waker()
        }
        fn submit_staged(&mut self) -> ::std::io::Result<()> {
            self.inner.submit_staged()
        }
        fn alloc_buf(&mut self, len: usize) -> ::tidelog_io::AlignedBuf {
            self.inner.alloc_buf(len)
        }
        fn rename(
            &mut self,
            from: &::std::path::Path,
            to: &::std::path::Path,
        ) -> ::std::io::Result<()> {
            self.inner.rename(from, to)
        }
        fn read_dir(
            &mut self,
            path: &::std::path::Path,
        ) -> ::std::io::Result<Vec<::tidelog_io::DirEntry>> {
            self.inner.read_dir(path)
        }
        fn metadata(
            &mut self,
            path: &::std::path::Path,
        ) -> ::std::io::Result<::tidelog_io::Metadata> {
            self.inner.metadata(path)
        }
        fn lock_dir(
            &mut self,
            dir: &::std::path::Path,
        ) -> ::std::io::Result<::tidelog_io::DirLock> {
            self.inner.lock_dir(dir)
        }
    };
}
#[allow(unused_imports)] // each test file uses what it needs
pub(crate) use storage_pass_through;

/// `EIO`.
pub const EIO: i32 = 5;

/// Which files an armed fault hits: those below `under` whose name ends with `suffix`.
#[derive(Clone, Debug)]
pub struct Target {
    pub under: PathBuf,
    pub suffix: String,
}

impl Target {
    pub fn new(under: impl Into<PathBuf>, suffix: &str) -> Self {
        Self { under: under.into(), suffix: suffix.to_owned() }
    }
    fn matches(&self, path: &Path) -> bool {
        path.starts_with(&self.under) && path.to_string_lossy().ends_with(&self.suffix)
    }
}

/// A fault that happened: the operation's name and the file's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    pub op: &'static str,
    pub path: PathBuf,
}

/// What the storages of a [`FaultyFactory`] do; shared by all of them.
#[derive(Debug, Default)]
pub struct Faults {
    fail_write: Mutex<Option<Target>>,
    fail_sync: Mutex<Option<Target>>,
    delay_us: AtomicU64,
    queue_depth: AtomicUsize,
    injected: Mutex<Vec<Injected>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Fail (`EIO`) the completion of the next write to a file `target` matches.
    pub fn fail_next_write(&self, target: Target) {
        *self.fail_write.lock().unwrap() = Some(target);
    }
    /// Fail (`EIO`) the next fdatasync of a file `target` matches.
    pub fn fail_next_sync(&self, target: Target) {
        *self.fail_sync.lock().unwrap() = Some(target);
    }
    /// Hold every completion back until `delay` after its submission, with at most
    /// `queue_depth` operations in flight; `Duration::ZERO` turns it off.
    pub fn slow(&self, delay: Duration, queue_depth: usize) {
        self.queue_depth.store(queue_depth, Ordering::SeqCst);
        self.delay_us.store(delay.as_micros() as u64, Ordering::SeqCst);
    }
    /// Faults injected so far.
    pub fn injected(&self) -> Vec<Injected> {
        self.injected.lock().unwrap().clone()
    }
    /// True while an armed fault has not fired yet.
    pub fn armed(&self) -> bool {
        self.fail_write.lock().unwrap().is_some() || self.fail_sync.lock().unwrap().is_some()
    }

    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::SeqCst))
    }
    /// Take the armed fault of `slot` if it matches `path`, and record it.
    fn take(&self, slot: &Mutex<Option<Target>>, op: &'static str, path: &Path) -> bool {
        let mut armed = slot.lock().unwrap();
        if armed.as_ref().is_some_and(|target| target.matches(path)) {
            *armed = None;
            self.injected.lock().unwrap().push(Injected { op, path: path.to_owned() });
            return true;
        }
        false
    }
}

/// Makes [`FaultyStorage`]s around the storages of a real factory.
#[derive(Debug)]
pub struct FaultyFactory {
    inner: Arc<dyn StorageFactory>,
    faults: Arc<Faults>,
}

impl FaultyFactory {
    pub fn new(inner: Arc<dyn StorageFactory>, faults: Arc<Faults>) -> Arc<Self> {
        Arc::new(Self { inner, faults })
    }
}

impl StorageFactory for FaultyFactory {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn create(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(FaultyStorage {
            inner: self.inner.create()?,
            faults: self.faults.clone(),
            paths: HashMap::new(),
            doomed: HashSet::new(),
            due: HashMap::new(),
            held: Vec::new(),
        }))
    }
}

/// A storage that delegates everything to `inner`, changing completions as [`Faults`] says.
pub struct FaultyStorage {
    inner: Box<dyn Storage>,
    faults: Arc<Faults>,
    /// The path of every open file.
    paths: HashMap<FileId, PathBuf>,
    /// Tokens of operations in flight whose completion becomes `EIO`.
    doomed: HashSet<u64>,
    /// When the completion of each operation in flight may be handed out (slow mode).
    due: HashMap<u64, Instant>,
    /// Completions the inner storage returned, in its order, each with when it is due.
    held: Vec<(Instant, Completion)>,
}

impl std::fmt::Debug for FaultyStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStorage")
            .field("kind", &self.inner.kind())
            .field("held", &self.held.len())
            .finish()
    }
}

impl FaultyStorage {
    /// Move whatever the inner storage completed (waiting as `wait` says) into `held`.
    fn pump(&mut self, wait: Wait) -> io::Result<()> {
        let mut fresh = Vec::new();
        self.inner.complete(&mut fresh, wait)?;
        let now = Instant::now();
        for mut completion in fresh {
            if self.doomed.remove(&completion.token) {
                completion.result = Err(io::Error::from_raw_os_error(EIO));
            }
            let due = self.due.remove(&completion.token).unwrap_or(now);
            self.held.push((due, completion));
        }
        Ok(())
    }

    /// Hand out every held completion that is due, keeping their order.
    fn deliver(&mut self, out: &mut Vec<Completion>) -> usize {
        let now = Instant::now();
        let before = out.len();
        let mut kept = Vec::with_capacity(self.held.len());
        for (due, completion) in self.held.drain(..) {
            if due <= now {
                out.push(completion);
            } else {
                kept.push((due, completion));
            }
        }
        self.held = kept;
        out.len() - before
    }

    fn next_due(&self) -> Option<Instant> {
        self.held.iter().map(|(due, _)| *due).min()
    }
}

impl Storage for FaultyStorage {
    storage_pass_through!(alloc_read_buf);
    fn open(&mut self, path: &Path, options: OpenOptions) -> io::Result<FileId> {
        let file = self.inner.open(path, options)?;
        self.paths.insert(file, path.to_owned());
        Ok(file)
    }
    fn close(&mut self, file: FileId) -> io::Result<()> {
        self.paths.remove(&file);
        self.inner.close(file)
    }
    fn submit(&mut self, submission: Submission) -> Result<(), Submission> {
        if self.in_flight() >= self.queue_depth() {
            return Err(submission);
        }
        let token = submission.token;
        let file = submission.op.file();
        let is_write = matches!(submission.op, Op::Write { .. });
        let is_sync = matches!(submission.op, Op::SyncData { .. });
        let delay = self.faults.delay();
        self.inner.submit(submission)?;
        if let Some(path) = self.paths.get(&file) {
            let doomed = (is_write && self.faults.take(&self.faults.fail_write, "write", path))
                || (is_sync && self.faults.take(&self.faults.fail_sync, "fdatasync", path));
            if doomed {
                self.doomed.insert(token);
            }
        }
        if !delay.is_zero() {
            self.due.insert(token, Instant::now() + delay);
        }
        Ok(())
    }
    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.held.len()
    }
    fn queue_depth(&self) -> usize {
        match self.faults.queue_depth.load(Ordering::SeqCst) {
            0 => self.inner.queue_depth(),
            depth => depth.min(self.inner.queue_depth()),
        }
    }
    fn complete(&mut self, out: &mut Vec<Completion>, wait: Wait) -> io::Result<usize> {
        let deadline = match wait {
            Wait::Idle(Some(timeout)) => Some(Instant::now() + timeout),
            _ => None,
        };
        loop {
            self.pump(Wait::No)?;
            let delivered = self.deliver(out);
            if delivered > 0 || wait == Wait::No {
                return Ok(delivered);
            }
            if self.held.is_empty() {
                // Nothing held back: wait in the inner storage as asked.
                let inner_wait = match wait {
                    Wait::Idle(_) => {
                        Wait::Idle(deadline.map(|d| d.saturating_duration_since(Instant::now())))
                    }
                    other => other,
                };
                if wait == Wait::One && self.inner.in_flight() == 0 {
                    return Ok(0);
                }
                self.pump(inner_wait)?;
                let delivered = self.deliver(out);
                if delivered > 0 || matches!(wait, Wait::Idle(_)) {
                    return Ok(delivered);
                }
                continue;
            }
            // Something is held: wait for the inner storage at most until it is due.
            let now = Instant::now();
            let mut until = self.next_due().expect("held is not empty");
            if let Some(deadline) = deadline {
                until = until.min(deadline);
            }
            let pause = until.saturating_duration_since(now);
            self.pump(Wait::Idle(Some(pause)))?;
            let delivered = self.deliver(out);
            if delivered > 0 {
                return Ok(delivered);
            }
            if let Wait::Idle(_) = wait {
                // Back early without a completion: woken. Or the caller's timeout passed.
                if Instant::now() < until || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(0);
                }
            }
        }
    }
    fn sync_data_now(&mut self, file: FileId) -> io::Result<()> {
        let delay = self.faults.delay();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let result = self.inner.sync_data_now(file);
        if let Some(path) = self.paths.get(&file)
            && self.faults.take(&self.faults.fail_sync, "fdatasync", path)
        {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        result
    }
}
